"""Durability (issue 9): what an acknowledgement promises, and that a store that stops
answering does not stall live traffic.

- A hung DynamoDB (dynalite stopped with SIGSTOP, so requests are accepted and never answered):
  other clients still connect (the CONNACK waits at most store.read_timeout_ms), subscribe,
  publish and receive at QoS 0 and 1; the reads that missed their deadline are logged.
- `--durability sync` on the embedded store: the broker is killed (SIGKILL) while a publisher
  sends QoS 1 messages to a persistent subscriber that is away. After a restart, the
  subscriber gets every message that was acknowledged, in order, none twice.
"""

from __future__ import annotations

import signal
import threading
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from clients import V5, V311, Paho, unique_id
from dynalite import dynalite  # noqa: F401 (fixture)
from test_dynamo_store import backend_conf, dynamq

pytestmark = pytest.mark.dynamq_only


def test_hung_store_does_not_stall_other_clients(start_broker, dynalite, tmp_path):
    assert dynamq("tables", "create", "--endpoint", dynalite.endpoint).returncode == 0
    broker = start_broker(extra_args=("--backend-conf", backend_conf(tmp_path, dynalite)))
    topic = unique_id("hung")
    dynalite.proc.send_signal(signal.SIGSTOP)
    try:
        t0 = time.monotonic()
        with Paho(broker, unique_id("sub"), clean=False) as sub, \
                Paho(broker, unique_id("pub")) as pub:
            # Two CONNACKs, each at most read_timeout_ms (500) late, and a SUBACK likewise.
            sub.subscribe(topic, 1)
            assert time.monotonic() - t0 < 5, "CONNECT/SUBSCRIBE waited on the hung store"
            for i in range(20):
                pub.publish(topic, f"q0-{i}", 0)
                pub.publish(topic, f"q1-{i}", 1)
            got = sorted(sub.get(5).payload.decode() for _ in range(40))
            assert got == sorted([f"q0-{i}" for i in range(20)] + [f"q1-{i}" for i in range(20)])
            assert time.monotonic() - t0 < 15
        assert broker.wait_log(lambda ln: "missed its deadline" in ln), broker.log_text()[-3000:]
    finally:
        dynalite.proc.send_signal(signal.SIGCONT)


def _acking_publisher(broker, inflight: int, acked: list[int]) -> mqtt.Client:
    """A connected paho v3.1.1 client with `inflight` QoS 1 messages in flight at most, that
    appends the packet id of each PUBACK it gets to `acked`."""
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=unique_id("pub"),
                    protocol=V311, clean_session=True)
    c.max_inflight_messages_set(inflight)
    # No lock of ours around publish(): paho calls on_publish holding its own locks.
    c.on_publish = lambda _c, _u, mid, _rc, _props: acked.append(mid)
    c.connect("127.0.0.1", broker.port, keepalive=60)
    c.loop_start()
    deadline = time.monotonic() + 5
    while not c.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    return c


def _publish_until_killed(broker, topic: str, count: int, acked: list[int], stop: threading.Event):
    """Publishes `count` QoS 1 messages `0..count` (payload = the number), recording in `acked`
    the packet ids whose PUBACK came (message n has packet id n + 1); returns when all are
    acknowledged, the connection drops, or `stop` is set."""
    c = _acking_publisher(broker, 100, acked)
    try:
        for n in range(count):
            if stop.is_set() or not c.is_connected():
                break
            # mids are 1, 2, 3, ... for a fresh client: message n has mid n + 1 (count < 65535).
            info = c.publish(topic, str(n).encode(), 1)
            assert info.mid == n + 1, (info.mid, n)
        deadline = time.monotonic() + 10
        while len(acked) < count and not stop.is_set() and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        # No DISCONNECT: the broker may be gone; stop paho's reconnecting.
        c.loop_stop()


# Sent as fast as paho goes (100 in flight), so that writes are still queued at the kill:
# with `--durability async` the same test loses acknowledged messages.
COUNT, KILL_AFTER = 20000, 2000


def test_sync_acknowledged_messages_survive_sigkill(start_broker):
    broker = start_broker(extra_args=("--durability", "sync"))
    sub_id, topic = unique_id("away"), unique_id("dur")
    with Paho(broker, sub_id, clean=False) as s:
        s.subscribe(topic, 1)
    acked: list[int] = []
    stop = threading.Event()
    t = threading.Thread(target=_publish_until_killed, args=(broker, topic, COUNT, acked, stop))
    t.start()
    deadline = time.monotonic() + 20
    while len(acked) < KILL_AFTER and time.monotonic() < deadline:
        time.sleep(0.01)
    broker.proc.send_signal(signal.SIGKILL)
    broker.proc.wait(5)
    broker.proc = None
    stop.set()
    t.join(15)
    acked_at_kill = sorted({mid - 1 for mid in list(acked)})
    assert len(acked_at_kill) >= KILL_AFTER, f"only {len(acked_at_kill)} acknowledged before the kill"
    assert len(acked_at_kill) < COUNT, "the kill came after the last message: nothing tested"

    broker.start()
    received: list[int] = []
    with Paho(broker, sub_id, clean=False) as s:
        wanted = set(acked_at_kill)
        deadline = time.monotonic() + 30
        while not wanted.issubset(received) and time.monotonic() < deadline:
            try:
                received.append(int(s.get(1).payload))
            except AssertionError:
                pass
        # Anything else that comes (stored but not acknowledged) comes in the same order.
        while True:
            try:
                received.append(int(s.get(1).payload))
            except AssertionError:
                break
    missing = sorted(set(acked_at_kill) - set(received))
    assert not missing, f"{len(missing)} acknowledged messages lost, first {missing[:10]}"
    assert len(received) == len(set(received)), "a message was delivered twice"
    assert received == sorted(received), "messages out of order"


def test_message_dynamodb_cannot_hold_is_refused(start_broker, dynalite, tmp_path):
    """A 320 KB binary payload (base64 in the item: over 400 KB) on DynamoDB: a v5 publisher
    gets PUBACK 0x97 (Quota exceeded: a PUBACK has no 0x95) and nobody gets the message; a v3 publisher, which a PUBACK cannot
    refuse, is disconnected unacknowledged. A smaller one is stored and delivered."""
    assert dynamq("tables", "create", "--endpoint", dynalite.endpoint).returncode == 0
    broker = start_broker(extra_args=("--backend-conf", backend_conf(tmp_path, dynalite)))
    topic = unique_id("big")
    big = bytes([0xFF]) * 320_000
    with Paho(broker, unique_id("sub")) as sub, Paho(broker, unique_id("p5"), protocol=V5) as p5:
        sub.subscribe(topic, 1)
        rc = p5.publish(topic, big, 1)
        assert rc is not None and rc.value == 0x97, rc
        assert p5.publish(topic, b"\xff" * 1000, 1).value == 0
        assert sub.get().payload == b"\xff" * 1000
        sub.expect_nothing(0.5)
        p3 = Paho(broker, unique_id("p3"))
        info = p3.client.publish(topic, big, 1)
        assert p3.disconnects.get(timeout=5) is not None
        assert not info.is_published()
        p3.client.loop_stop()
    assert broker.wait_log(lambda ln: "PUBLISH refused" in ln and "item limit" in ln)


def test_sync_outage_loses_no_acknowledged_message(start_broker, dynalite, tmp_path):
    """`--durability sync` on DynamoDB while dynalite is down for 3 s and comes back on the
    same data: the publisher's PUBACKs wait for the store, then every message it got a
    PUBACK for is in mqtt_msg; meanwhile another client is served (QoS 0 does not wait)."""
    assert dynamq("tables", "create", "--endpoint", dynalite.endpoint).returncode == 0
    broker = start_broker(extra_args=("--backend-conf", backend_conf(tmp_path, dynalite),
                                      "--durability", "sync"))
    topic = unique_id("outage")
    count = 300
    acked: list[int] = []
    c = _acking_publisher(broker, 20, acked)

    def publish_all():
        for n in range(count):
            c.publish(topic, str(n).encode(), 1)
            time.sleep(0.01)

    t = threading.Thread(target=publish_all)
    t.start()
    try:
        time.sleep(1)
        dynalite.stop()
        during = len(acked)
        # Another client is served while the store is down.
        other = unique_id("served")
        with Paho(broker, unique_id("o")) as o:
            o.subscribe(other, 0)
            o.publish(other, b"still here", 0)
            assert o.get(5).payload == b"still here"
        time.sleep(2)
        stalled = len(acked)
        dynalite.start()
        t.join(30)
        deadline = time.monotonic() + 40
        while len(acked) < count and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        c.loop_stop()
    assert len(acked) == count, f"{len(acked)} of {count} acknowledged after the outage"
    # PUBACKs stopped while the store was down (at most what was in flight when it went).
    assert stalled - during <= 20, (during, stalled)
    items = dynalite.scan_until("mqtt_msg", lambda i: i["topic"]["S"] == topic, timeout=10)
    stored = {int(i["payload"]["S"]) for i in dynalite.aws("scan", "--table-name", "mqtt_msg")["Items"]
              if i["topic"]["S"] == topic}
    assert items and stored == set(range(count)), sorted(set(range(count)) - stored)[:10]
    assert broker.wait_log(lambda ln: "store write failed, retrying" in ln)
