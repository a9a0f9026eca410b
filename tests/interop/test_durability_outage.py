"""Durability on DynamoDB (dynalite) through an outage and through throttling (issue 9 §7),
with `--durability async`:

- Crash during an outage: dynalite is down, so the store writer's memory buffer (a tiny
  `store.buffer_bytes`) fills and every later write spills to the journal in the data dir;
  dynamq is killed (SIGKILL) and both are restarted on their data. Every write that reached
  the journal reaches DynamoDB, and the persistent subscriber that was away gets those
  messages, in order.
- Throttling: a proxy in front of dynalite answers writes with
  ProvisionedThroughputExceededException, ThrottlingException, 500 and 503 for a while, and
  holds one past the SDK's attempt time-out. Nothing is lost, and the broker's own retries
  (behind the SDK's three attempts) show in /metrics.
"""

from __future__ import annotations

import signal
import time

import pytest

from clients import Paho, unique_id
from conftest import free_port
from dynalite import dynalite  # noqa: F401 (fixture)
from test_dynamo_store import backend_conf, dynamq
from test_durability import _acking_publisher
from test_metrics import scrape
from throttling_proxy import ThrottlingProxy

pytestmark = pytest.mark.dynamq_only

# The memory budget of the store writer in these tests: past it, writes go to the journal.
BUFFER_BYTES = 64 * 1024


def _config(tmp_path) -> str:
    conf = tmp_path / "dynamq.toml"
    # coalesce_ms = 0: the delay line releases 100 ms of writes at once, more than a 64 KiB
    # budget takes while the journal syncs (dropped_buffer_full; README, Limitations).
    conf.write_text(f"[store]\nbuffer_bytes = {BUFFER_BYTES}\ncoalesce_ms = 0\n")
    return str(conf)


def _start(start_broker, tmp_path, endpoint_conf: str, *, small_buffer: bool):
    """A broker on DynamoDB, with the small buffer or the default one (64 MiB), /metrics on
    a port of its own, and no $SYS messages (their writes would mix with the test's)."""
    http = free_port()
    config = ("--config", _config(tmp_path)) if small_buffer else ()
    broker = start_broker(extra_args=("--backend-conf", endpoint_conf, *config,
                                      "--http", f"127.0.0.1:{http}", "--sys-interval", "0"))
    return broker, http


def _wait_metrics(http: int, pred, what: str, timeout: float = 20.0) -> dict[str, float]:
    """Scrapes /metrics until pred(values) holds; fails naming `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            m = scrape(http)
        except OSError:  # the HTTP listener of a broker just started
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
            continue
        if pred(m):
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout}s; metrics: {_store(m)}")
        time.sleep(0.1)


def _wait_steady(http: int, keys: tuple[str, ...], timeout: float = 10.0) -> dict[str, float]:
    """Scrapes until `keys` keep their values over three scrapes 0.2 s apart."""
    deadline = time.monotonic() + timeout
    last: list[tuple[float, ...]] = []
    while time.monotonic() < deadline:
        m = scrape(http)
        last = (last + [tuple(m[k] for k in keys)])[-3:]
        if len(last) == 3 and len(set(last)) == 1:
            return m
        time.sleep(0.2)
    raise AssertionError(f"{keys} still changing after {timeout}s: {last}")


def _store(m: dict[str, float]) -> dict[str, float]:
    """The writer's metrics of a scrape, for assertion messages."""
    return {k: v for k, v in m.items() if "store_" in k and "_bucket" not in k}


def _stored(dynalite, topic: str) -> tuple[dict[str, int], set[str]]:
    """The test topic's mqtt_msg items (msgid -> payload as a number) and the ids its
    mqtt_topic_msg_map item holds."""
    msgs = {i["msgid"]["S"]: int(i["payload"]["S"])
            for i in dynalite.aws("scan", "--table-name", "mqtt_msg")["Items"] if i["topic"]["S"] == topic}
    item = dynalite.aws("get-item", "--table-name", "mqtt_topic_msg_map",
                        "--key", f'{{"topic": {{"S": "{topic}"}}}}').get("Item", {})
    return msgs, set(item.get("MsgId", {}).get("SS", []))


def _publish_acked(broker, topic: str, payloads, timeout: float = 20.0, *, chunk: int = 0,
                   between=None) -> None:
    """Publishes each payload at QoS 1 (20 in flight) and waits for every PUBACK; with
    `chunk`, calls `between()` after every `chunk` messages are acknowledged."""
    acked: list[int] = []
    c = _acking_publisher(broker, 20, acked)
    deadline = time.monotonic() + timeout

    def wait_acks(n: int) -> None:
        while len(acked) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(acked) == n, f"{len(acked)} of {n} PUBACKs"

    try:
        n = 0
        for p in payloads:
            c.publish(topic, p, 1)
            n += 1
            if chunk and n % chunk == 0 and between is not None:
                wait_acks(n)
                between()
        wait_acks(n)
    finally:
        c.disconnect()
        c.loop_stop()


def _receive(broker, sub_id: str, count: int) -> list[int]:
    """Connects `sub_id` again (persistent session) and returns the payloads of the first
    `count` messages it gets, then checks nothing more comes."""
    with Paho(broker, sub_id, clean=False) as s:
        assert s.session_present is True
        got = [int(s.get(10).payload) for _ in range(count)]
        s.expect_nothing(1.0)
    return got


# Messages the away subscriber's topic gets during the outage, each two writes (mqtt_msg and
# mqtt_topic_msg_map), all of which spill: fewer than map_cap_per_topic (5000) so that the
# topic's ids stay in one map item.
SPILLED_MESSAGES = 2000


def test_async_journal_survives_sigkill_during_outage(dynalite, start_broker, tmp_path):
    """dynalite stopped; filler messages on another topic fill the writer's memory until it
    spills; then SPILLED_MESSAGES QoS 1 messages to a persistent subscriber that is away,
    whose writes all go to the journal; SIGKILL dynamq; restart dynalite on its data and
    dynamq on its data dir. The journal is replayed, every one of those messages is in
    mqtt_msg and in the topic's map item, and the subscriber gets them all, in order. (The
    filler writes that were only in memory at the kill may be lost: `async` promises no more.)"""
    assert dynamq("tables", "create", "--endpoint", dynalite.endpoint).returncode == 0
    broker, http = _start(start_broker, tmp_path, backend_conf(tmp_path, dynalite), small_buffer=True)
    sub_id, topic, filler = unique_id("away"), unique_id("spilled"), unique_id("filler")
    with Paho(broker, sub_id, clean=False) as s:
        s.subscribe(topic, 1)
    # The subscriber's session is in DynamoDB before the outage.
    _wait_metrics(http, lambda m: m["dynamq_store_ops_pending"] == 0, "session written")
    dynalite.stop()

    # Fill memory: 1 KB payloads, 20 at a time, until the writer spills.
    start = time.monotonic()
    sent = 0
    while scrape(http)["dynamq_store_ops_spilled_total"] == 0:
        assert time.monotonic() - start < 20 and sent < 2000, f"no spill after {sent} filler messages"
        _publish_acked(broker, filler, [b"f" * 1000] * 20)
        sent += 20
    before = _wait_steady(http, ("dynamq_store_ops_spilled_total", "dynamq_store_buffer_bytes"))

    # In chunks, each once the previous one is synced to the journal (the memory gauge is
    # back to the ops held in memory): a flood would overrun what the writer holds while the
    # journal syncs (twice buffer_bytes), and what is dropped then is not what this tests.
    in_memory = before["dynamq_store_buffer_bytes"]
    _publish_acked(broker, topic, [str(n).encode() for n in range(SPILLED_MESSAGES)], chunk=100,
                   between=lambda: _wait_metrics(http, lambda m: m["dynamq_store_buffer_bytes"] <= in_memory,
                                                 "chunk synced to the journal"))
    at_kill = _wait_steady(http, ("dynamq_store_ops_spilled_total", "dynamq_store_buffer_bytes",
                                  "dynamq_store_journal_ops", "dynamq_store_journal_bytes"))
    spilled = at_kill["dynamq_store_ops_spilled_total"] - before["dynamq_store_ops_spilled_total"]
    # Every write of those messages went to the journal (the publisher's connect and
    # disconnect add their mqtt_client writes), none was dropped, none read back yet.
    assert spilled >= 2 * SPILLED_MESSAGES, f"{spilled} {_store(before)} {_store(at_kill)}"
    for k in ("dropped_buffer_full", "dropped_journal_full", "dropped_journal_error", "replayed"):
        assert at_kill[f"dynamq_store_ops_{k}_total"] == 0, (k, at_kill)
    journal_records = at_kill["dynamq_store_journal_ops"]
    assert journal_records == at_kill["dynamq_store_ops_spilled_total"], at_kill
    journal = broker.data_dir / "data"
    assert sum(f.stat().st_size for f in journal.rglob("*journal*") if f.is_file()) > 0, \
        sorted(p.name for p in journal.rglob("*"))

    broker.proc.send_signal(signal.SIGKILL)
    broker.proc.wait(5)
    broker.proc = None
    dynalite.start()
    broker.start()
    after = _wait_metrics(http, lambda m: m["dynamq_store_ops_replayed_total"] >= journal_records
                          and m["dynamq_store_journal_ops"] == 0 and m["dynamq_store_ops_pending"] == 0,
                          "journal replayed", timeout=30)
    assert after["dynamq_store_ops_failed_total"] == 0, after
    assert broker.wait_log(lambda ln: "store journal found at start: replayed and applied" in ln), \
        broker.log_text()[-3000:]

    msgs, map_ids = _stored(dynalite, topic)
    assert sorted(msgs.values()) == list(range(SPILLED_MESSAGES)), \
        sorted(set(range(SPILLED_MESSAGES)) - set(msgs.values()))[:10]
    assert map_ids == set(msgs), (len(map_ids), len(msgs))
    # The kill did lose what was only in memory: the first filler messages' writes, which
    # never reached the journal (what `async` does not promise).
    filler_stored = [i for i in dynalite.aws("scan", "--table-name", "mqtt_msg")["Items"]
                     if i["topic"]["S"] == filler]
    assert len(filler_stored) < sent, (len(filler_stored), sent)
    got = _receive(broker, sub_id, SPILLED_MESSAGES)
    assert got == list(range(SPILLED_MESSAGES)), [g for i, g in enumerate(got) if g != i][:10]


THROTTLED_MESSAGES = 1000
# The codes the proxy answers with, as the broker names a failed write.
THROTTLE_CODES = {"ProvisionedThroughputExceededException", "ThrottlingException",
                  "InternalServerError", "ServiceUnavailable"}


def test_throttling_loses_nothing_and_shows_retries(dynalite, start_broker, tmp_path):
    """The broker (default memory buffer: the writes wait in memory, none spills) talks to
    dynalite through the throttling proxy. For 4 s every write gets an error answer (the
    first is held unanswered for 12 s, past the SDK's 10 s attempt time-out) while a
    publisher sends THROTTLED_MESSAGES QoS 1 messages to a persistent subscriber that is
    away. Afterwards every message is in mqtt_msg and in the map item,
    the broker retried (store_batch_retries_total) after failures it counted under the
    proxy's codes (store_write_errors_total), none given up; after a restart the
    subscriber gets every message, in order, from DynamoDB."""
    assert dynamq("tables", "create", "--endpoint", dynalite.endpoint).returncode == 0
    proxy = ThrottlingProxy(dynalite.port)
    try:
        class Via:  # backend_conf() takes the endpoint from this
            endpoint = proxy.endpoint

        broker, http = _start(start_broker, tmp_path, backend_conf(tmp_path, Via), small_buffer=False)
        sub_id, topic = unique_id("away"), unique_id("throttled")
        with Paho(broker, sub_id, clean=False) as s:
            s.subscribe(topic, 1)
        _wait_metrics(http, lambda m: m["dynamq_store_ops_pending"] == 0, "session written")
        before = scrape(http)

        proxy.throttle(4.0, hold=1, hold_seconds=12.0)
        _publish_acked(broker, topic, [str(n).encode() for n in range(THROTTLED_MESSAGES)])
        while proxy.throttling():
            time.sleep(0.1)
        after = _wait_metrics(http, lambda m: m["dynamq_store_ops_pending"] == 0, "writes applied",
                              timeout=40)
        assert proxy.counts["held"] == 1, proxy.counts
        assert proxy.counts["ProvisionedThroughputExceededException"] > 0, proxy.counts
        assert all(proxy.counts[c] > 0 for c in THROTTLE_CODES), proxy.counts

        retries = after["dynamq_store_batch_retries_total"] - before["dynamq_store_batch_retries_total"]
        errors = {k.split('"')[1]: v for k, v in after.items() if k.startswith("dynamq_store_write_errors_total{")}
        # Two layers retried: the SDK (RetryConfig::standard, 3 attempts, in
        # store/src/dynamo/client.rs) took more error answers than the broker saw failed
        # attempts, and the broker's writer retried what the SDK gave up on.
        answered = sum(proxy.counts[c] for c in THROTTLE_CODES)
        assert retries > 0, (retries, errors, proxy.counts)
        assert answered > retries, (answered, retries)
        assert errors.get("ProvisionedThroughputExceededException", 0) > 0, (errors, proxy.counts)
        assert set(errors) <= THROTTLE_CODES | {"TimeoutError"}, errors
        assert after["dynamq_store_ops_failed_total"] == 0, after
        for k in ("dropped_buffer_full", "dropped_journal_full", "dropped_journal_error"):
            assert after[f"dynamq_store_ops_{k}_total"] == 0, (k, after)

        msgs, map_ids = _stored(dynalite, topic)
        assert sorted(msgs.values()) == list(range(THROTTLED_MESSAGES)), \
            sorted(set(range(THROTTLED_MESSAGES)) - set(msgs.values()))[:10]
        assert map_ids == set(msgs), (len(map_ids), len(msgs))
        # From DynamoDB, not from the session's memory: a restart in between.
        broker.restart()
        got = _receive(broker, sub_id, THROTTLED_MESSAGES)
        assert got == list(range(THROTTLED_MESSAGES)), [g for i, g in enumerate(got) if g != i][:10]
    finally:
        proxy.close()
