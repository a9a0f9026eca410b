#!/usr/bin/env python3
"""Summarises a bench/run.sh results folder: medians over repetitions, dynamq/peer ratios.

Each file is TAG.SCENARIO.REP.json, the one-line summary of dynamq-bench, with
TAG.SCENARIO.REP.cpu beside it: the broker's CPU ticks over the run and ticks per second,
and TAG.SCENARIO.REP.hwm: the broker's peak resident memory (VmHWM, kB).
Prints a Markdown table (also written to table.md in the folder) and the targets of the
benchmark issue.
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
}
PEERS = ["rumqttd", "mosquitto"]


def load(folder):
    runs = defaultdict(list)  # (tag, scenario) -> [summary]
    for path in sorted(folder.glob("*.json")):
        parts = path.name.split(".")
        if len(parts) != 4:
            continue
        tag, scenario, _rep, _ = parts
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
    if scenario == "conn":
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
    stores = sorted({t for t, _ in runs if t.startswith("dynamq-")})
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
    if errors:
        out += ["", "First error per broker and scenario:"] + errors
    out += ["", "Targets:"] + targets(runs)
    text = "\n".join(out)
    (folder / "table.md").write_text(text + "\n")
    print(text)


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
