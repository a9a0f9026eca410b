#!/usr/bin/env python3
"""Summarises a bench/run.sh results folder: medians over repetitions, dynamq/peer ratios.

Each file is TAG.SCENARIO.REP.json, the one-line summary of dynamq-bench, with
TAG.SCENARIO.REP.cpu beside it: the broker's CPU ticks over the run and ticks per second,
TAG.SCENARIO.REP.hwm: the broker's peak resident memory (VmHWM, kB), and
TAG.SCENARIO.REP.disk: what the run added to the broker's data directory (kB).
The DynamoDB write benchmark (run.sh --dynamo) leaves TAG.dynamo.REP.json (dynamo-raw's or
the load generator's summary) and, for dynamq, TAG.dynamo.REP.store: the store writer's
written counter before and after, the seconds until it had drained, what was still pending,
the failed count, and the broker's CPU ticks and ticks per second.
Prints Markdown tables (also written to table.md in the folder) and the targets of the
benchmark issues.
"""

import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

LABELS = {
    "s1_q0": "1→1 QoS 0",
    "s1_q1": "1→1 QoS 1",
    "s1_q2": "1→1 QoS 2",
    "lat_q0": "1→1 QoS 0 @5k/s",
    "lat_q1": "1→1 QoS 1 @5k/s",
    "lat_q2": "1→1 QoS 2 @5k/s",
    "fanin_q0": "fan-in 10→1 QoS 0",
    "fanin_q1": "fan-in 10→1 QoS 1",
    "mesh_q0": "10 pub × 10 sub QoS 0",
    "mesh_q1": "10 pub × 10 sub QoS 1",
    "fanout_q0": "fan-out 1→1000 QoS 0",
    "fan4_q1": "1→4 QoS 1 (dynamq at defaults)",
    "stall_q1": "1→4 QoS 1 + 1 stalled sub (dynamq at defaults)",
    "conn": "idle connections",
    "dyn_s1_q1": "1→1 QoS 1 (20k msgs)",
    "dyn_mesh_q1": "10 pub × 10 sub QoS 1 (2k msgs each)",
    "conn10k": "10,000 idle connections, 10 s hold",
}
PEERS = ["rumqttd", "mosquitto"]
# dynamq's variants (run.sh --brokers) and Mosquitto with persistence: the cost of the store.
VARIANTS = ["dynamq-defaults", "dynamq-none", "dynamq-sync", "mosquitto-persist"]
# The DynamoDB write benchmark (run.sh --dynamo), in its order; the first is the ceiling.
DYNAMO_TAGS = ["dyn-raw", "dyn-put8", "dynamq-async", "dynamq-sync"]
DYNAMO_LABELS = {
    "dyn-raw": "raw BatchWriteItem (25/request, 8 in flight)",
    "dyn-put8": "one PutItem per item, pool of 8 (the original plugin)",
    "dynamq-async": "dynamq --store dynamo --durability async",
    "dynamq-sync": "dynamq --store dynamo --durability sync",
}


def load(folder):
    runs = defaultdict(list)  # (tag, scenario) -> [summary]
    for path in sorted(folder.glob("*.json")):
        parts = path.name.split(".")
        if len(parts) != 4:
            continue
        tag, scenario, _rep, _ = parts
        if scenario == "dynamo":
            continue
        try:
            summary = json.loads(path.read_text().strip() or "{}")
        except json.JSONDecodeError:
            summary = {"error": "unparsable summary"}
        cpu = path.with_suffix(".cpu")
        received = summary.get("received")
        if cpu.exists() and isinstance(received, int) and received > 0:
            ticks, per_sec = (int(x) for x in cpu.read_text().split())
            summary["broker_cpu_us_per_delivery"] = ticks / per_sec * 1e6 / received
        hwm = path.with_suffix(".hwm")
        if hwm.exists() and hwm.read_text().strip().isdigit():
            summary["broker_peak_rss_mb"] = int(hwm.read_text()) / 1024
        disk = path.with_suffix(".disk")
        if disk.exists() and disk.read_text().strip().lstrip("-").isdigit() and received:
            summary["disk_bytes_per_delivery"] = int(disk.read_text()) * 1024 / received
        runs[(tag, scenario)].append(summary)
    return runs


def median(runs, key, sub=None):
    values = []
    for r in runs:
        v = r.get(key)
        if sub is not None and isinstance(v, dict):
            v = v.get(sub)
        if isinstance(v, (int, float)):
            values.append(v)
    return statistics.median(values) if values else None


def fmt(v, unit=""):
    if v is None:
        return "—"
    if abs(v) >= 100 or float(v).is_integer():
        return f"{v:,.0f}{unit}"
    return f"{v:.2f}{unit}"


def ratio(a, b, lower_is_better=False):
    if a is None or b is None or a == 0 or b == 0:
        return "—"
    return f"{(b / a if lower_is_better else a / b):.2f}×"


def rows_for(runs, scenario, tags):
    """(metric, unit, {tag: value}, lower_is_better) rows of one scenario."""
    get = lambda tag: runs.get((tag, scenario), [])
    if scenario.startswith("conn"):
        return [
            ("connected", "", {t: median(get(t), "connected") for t in tags}, False),
            ("connects/s", "", {t: median(get(t), "connect_per_sec") for t in tags}, False),
            ("RSS/conn (B)", "", {t: median(get(t), "rss_per_conn_bytes") for t in tags}, True),
        ]
    rows = [
        ("deliveries/s", "", {t: median(get(t), "recv_per_sec") for t in tags}, False),
        ("latency p50 (µs)", "", {t: median(get(t), "latency_us", "p50") for t in tags}, True),
        ("latency p99 (µs)", "", {t: median(get(t), "latency_us", "p99") for t in tags}, True),
        ("latency p999 (µs)", "", {t: median(get(t), "latency_us", "p999") for t in tags}, True),
        ("broker CPU µs/delivery", "", {t: median(get(t), "broker_cpu_us_per_delivery") for t in tags}, True),
        ("broker peak RSS (MB)", "", {t: median(get(t), "broker_peak_rss_mb") for t in tags}, True),
        ("data dir growth (B/delivery)", "", {t: median(get(t), "disk_bytes_per_delivery") for t in tags}, True),
    ]
    lost = {t: max((r.get("lost", 0) or 0 for r in get(t)), default=None) for t in tags}
    errors = {t: sum(r.get("errors", 0) or 0 for r in get(t)) if get(t) else None for t in tags}
    rows.append(("lost (max of runs)", "", lost, True))
    rows.append(("errors (all runs)", "", errors, True))
    return rows


def table(runs, tags, scenarios, peers):
    head = ["scenario", "metric"] + tags + [f"dynamq/{p}" for p in peers]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in scenarios:
        for metric, unit, values, lower in rows_for(runs, s, tags):
            if all(v is None for v in values.values()):
                continue
            ratios = []
            for p in peers:
                if metric.startswith(("lost", "errors", "connected")):
                    ratios.append("")
                else:
                    ratios.append(ratio(values.get("dynamq"), values.get(p), lower))
            cells = [LABELS[s], metric] + [fmt(values.get(t), unit) for t in tags] + ratios
            out.append("| " + " | ".join(cells) + " |")
    return out


def main():
    folder = Path(sys.argv[1])
    runs = load(folder)
    order = ["dynamq"] + PEERS
    brokers = [t for t in order if any(k[0] == t for k in runs)]
    scenarios = [s for s in LABELS if any((t, s) in runs for t in brokers)]
    out = table(runs, brokers, scenarios, [p for p in PEERS if p in brokers])
    stores = sorted({t for t, _ in runs if t.startswith("dynamq-") and t not in VARIANTS})
    if stores:
        # dynamq with a store, against itself without: same scenario names where they exist.
        scen = [s for s in LABELS if any((t, s) in runs for t in stores)]
        out += ["", "dynamq with persistence (the tutorial's hooks), dynamq alone:", ""]
        out += table(runs, stores, scen, [])
    errors = [
        f"- {t} {s}: {r.get('first_error') or r.get('error')}"
        for (t, s), rs in sorted(runs.items())
        for r in rs[:1]
        if r.get("first_error") or r.get("error")
    ]
    variants = [t for t in ["dynamq-defaults", "dynamq-none", "dynamq-sync", "rumqttd", "mosquitto", "mosquitto-persist"]
                if any(k[0] == t for k in runs)]
    if any(t in VARIANTS for t in variants):
        scen = [s for s in LABELS if any((t, s) in runs for t in variants if t in VARIANTS)]
        out += ["", "The cost of the store (dynamq at its defaults, with --store none, with "
                "--durability sync; Mosquitto without and with persistence):", ""]
        out += variant_table(runs, variants, scen)
    dyn = dynamo_load(folder)
    if dyn:
        out += ["", "DynamoDB writes on dynalite (items written per second):", ""]
        out += dynamo_table(dyn)
    if errors:
        out += ["", "First error per broker and scenario:"] + errors
    out += ["", "Targets:"] + targets(runs) + variant_targets(runs) + dynamo_targets(dyn)
    text = "\n".join(out)
    (folder / "table.md").write_text(text + "\n")
    print(text)


def variant_table(runs, tags, scenarios):
    """Medians of each variant, and dynamq's defaults over --store none (lower is better)."""
    head = ["scenario", "metric"] + tags + ["defaults/none", "sync/none"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for s in scenarios:
        for metric, unit, values, lower in rows_for(runs, s, tags):
            if all(v is None for v in values.values()):
                continue
            extra = ["", ""]
            if not metric.startswith(("lost", "errors", "connected")):
                none = values.get("dynamq-none")
                extra = [ratio(none, values.get("dynamq-defaults"), lower),
                         ratio(none, values.get("dynamq-sync"), lower)]
            out.append("| " + " | ".join([LABELS[s], metric] + [fmt(values.get(t), unit) for t in tags] + extra) + " |")
    return out


def variant_targets(runs):
    def m(tag, s, key):
        return median(runs.get((tag, s), []), key)

    lines = []
    d, n = m("dynamq-defaults", "s1_q1", "broker_cpu_us_per_delivery"), m("dynamq-none", "s1_q1", "broker_cpu_us_per_delivery")
    if d is not None and n is not None:
        lines.append(f"- 1→1 QoS 1 CPU/delivery at the defaults ≤ 1.3× --store none: "
                     f"{'met' if d <= 1.3 * n else 'MISSED'} ({fmt(d)} vs {fmt(n)} µs = {d / n:.2f}×)")
    r = m("rumqttd", "s1_q1", "broker_cpu_us_per_delivery")
    if d is not None and r is not None:
        lines.append(f"- 1→1 QoS 1 CPU/delivery at the defaults < rumqttd's: "
                     f"{'met' if d < r else 'MISSED'} ({fmt(d)} vs {fmt(r)} µs)")
    for conn in ("conn10k", "conn"):
        d, q = m("dynamq-defaults", conn, "rss_per_conn_bytes"), m("mosquitto", conn, "rss_per_conn_bytes")
        if d is not None and q is not None:
            lines.append(f"- RSS per idle connection at the defaults ≤ Mosquitto's ({LABELS[conn]}): "
                         f"{'met' if d <= q else 'MISSED'} ({fmt(d)} B vs {fmt(q)} B)")
    return lines


def dynamo_load(folder):
    """tag -> [{items_per_sec, ...}] of the DynamoDB write benchmark."""
    runs = defaultdict(list)
    for path in sorted(folder.glob("*.dynamo.*.json")):
        tag = path.name.split(".")[0]
        try:
            summary = json.loads(path.read_text().strip() or "{}")
        except json.JSONDecodeError:
            summary = {"error": "unparsable summary"}
        store = path.with_suffix(".store")
        if store.exists():
            f = store.read_text().split()
            try:
                before, after, secs = int(f[0]), int(f[1]), float(f[2])
                summary["written"] = after - before
                summary["secs"] = secs
                summary["items_per_sec"] = (after - before) / secs if secs > 0 else None
                summary["pending_at_end"] = f[3]
                summary["store_failed"] = int(f[4]) if f[4].isdigit() else f[4]
                rec = summary.get("received")
                if len(f) >= 7 and isinstance(rec, int) and rec > 0:
                    summary["items_per_msg"] = (after - before) / rec
                    summary["msgs_per_sec_stored"] = rec / secs if secs > 0 else None
                    summary["broker_cpu_us_per_item"] = int(f[5]) / int(f[6]) * 1e6 / max(after - before, 1)
            except (IndexError, ValueError):
                summary["error"] = f"unparsable {store.name}: {store.read_text().strip()!r}"
        runs[tag].append(summary)
    return runs


def dynamo_table(dyn):
    ceiling = median(dyn.get("dyn-raw", []), "items_per_sec")
    head = ["pattern", "runs", "items/s (median)", "items/s (each run)", "÷ raw ceiling",
            "items per delivered msg", "msgs/s until stored", "broker CPU µs/item", "errors / lost"]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for tag in DYNAMO_TAGS:
        rs = dyn.get(tag, [])
        if not rs:
            continue
        v = median(rs, "items_per_sec")
        each = " / ".join(fmt(r.get("items_per_sec")) for r in rs)
        errs = sum((r.get("errors") or 0) for r in rs) + sum(1 for r in rs if "error" in r)
        lost = max((r.get("lost") or 0 for r in rs), default=0)
        out.append("| " + " | ".join([
            DYNAMO_LABELS[tag], str(len(rs)), fmt(v), each,
            "—" if v is None or not ceiling else f"{v / ceiling:.2f}",
            fmt(median(rs, "items_per_msg")), fmt(median(rs, "msgs_per_sec_stored")),
            fmt(median(rs, "broker_cpu_us_per_item")), f"{errs} / {lost}",
        ]) + " |")
    return out


def dynamo_targets(dyn):
    lines = []
    ceiling = median(dyn.get("dyn-raw", []), "items_per_sec")
    for tag, share in (("dynamq-async", 0.8), ("dynamq-sync", 0.5)):
        v = median(dyn.get(tag, []), "items_per_sec")
        if ceiling and v is not None:
            lines.append(f"- {DYNAMO_LABELS[tag]} ≥ {share:.0%} of the raw ceiling: "
                         f"{'met' if v >= share * ceiling else 'MISSED'} ({fmt(v)} vs {fmt(ceiling)} items/s = {v / ceiling:.0%})")
    return lines


def targets(runs):
    def m(tag, s, key, sub=None):
        return median(runs.get((tag, s), []), key, sub)

    lines = []

    def check(name, ok, detail):
        state = "n/a" if ok is None else ("met" if ok else "MISSED")
        lines.append(f"- {name}: {state} ({detail})")

    for s, label in [("s1_q0", "1→1 QoS 0"), ("mesh_q0", "10×10 QoS 0")]:
        d, r, q = m("dynamq", s, "recv_per_sec"), m("rumqttd", s, "recv_per_sec"), m("mosquitto", s, "recv_per_sec")
        check(f"{label} ≥ 1.2× rumqttd", None if not (d and r) else d >= 1.2 * r, ratio(d, r))
        check(f"{label} ≥ 3× Mosquitto", None if not (d and q) else d >= 3 * q, ratio(d, q))
    d, r = m("dynamq", "s1_q1", "recv_per_sec"), m("rumqttd", "s1_q1", "recv_per_sec")
    check("1→1 QoS 1 ≥ 1.2× rumqttd", None if not (d and r) else d >= 1.2 * r, ratio(d, r))
    d, q = m("dynamq", "conn", "rss_per_conn_bytes"), m("mosquitto", "conn", "rss_per_conn_bytes")
    check("RSS per idle connection ≤ Mosquitto's", None if d is None or q is None else d <= q,
          f"{fmt(d)} B vs {fmt(q)} B")
    lost = [
        f"{t}/{s}"
        for (t, s), rs in runs.items()
        if s.endswith(("q1", "q2")) and t.startswith("dynamq")
        for r in rs
        if (r.get("lost") or 0) > 0 or "error" in r
    ]
    check("dynamq loses nothing at QoS 1/2", not lost, ", ".join(lost) or "0 lost in every run")
    return lines


if __name__ == "__main__":
    main()
