"""QoS 2 exactly once across a broker restart, with `--durability sync` (issue 9 section 2).

The broker keeps the packet ids of QoS 2 messages it received and has not been released
from (PUBREC sent, PUBREL not yet received) on the client's mqtt_client item
(`awaiting_rel`), for a session that outlives its connection. The PUBREC goes only once the
id is stored with the message, the PUBCOMP only once its removal is. So after a SIGKILL and
a restart on the same data:

- a resent PUBLISH (DUP=1) with a kept id is answered PUBREC and not delivered again
  [MQTT-4.3.3-9];
- a PUBREL for a kept id is answered PUBCOMP, reason 0 in v5 (not 0x92 Packet Identifier
  not found) [MQTT-4.3.3-11];
- an id released before the kill may be reused for a new message, which is delivered
  [MQTT-4.3.3-13];
- a Clean Start drops the kept ids with the session [MQTT-3.1.2-4].

Raw packets (rawmqtt): the tests decide exactly when PUBREL is sent, which real clients
do not let them.
"""

from __future__ import annotations

import signal

import pytest

import rawmqtt as raw
from clients import unique_id
from dynalite import dynalite  # noqa: F401 (fixture)
from test_dynamo_store import backend_conf, dynamq

pytestmark = pytest.mark.dynamq_only

SILENCE = 1.5  # seconds a subscriber waits to see that nothing comes


def _kill_and_restart(broker) -> None:
    """SIGKILL (nothing is flushed) and start again on the same data dir and ports."""
    broker.proc.send_signal(signal.SIGKILL)
    broker.proc.wait(5)
    broker.proc = None
    broker.start()


def _connect(broker, client_id: str, *, version: int = raw.V311, clean: bool = False,
             expiry: int = 300) -> tuple[raw.RawClient, raw.Packet]:
    c = raw.RawClient(broker.port, version=version)
    kw = {"properties": raw.props(session_expiry=expiry)} if version == raw.V5 else {}
    ack = c.handshake(client_id, clean=clean, **kw)
    assert ack.reason == 0, ack
    return c, ack


def _publish_qos2(c: raw.RawClient, topic: str, payload: bytes, pid: int, *, dup: bool = False) -> None:
    """Sends the PUBLISH and checks its PUBREC: same packet id, reason 0 [MQTT-4.3.3-8]."""
    c.send(raw.publish(topic, payload, qos=2, pid=pid, dup=dup, version=c.version))
    rec = c.expect(raw.PUBREC)
    assert (rec.pid, rec.reason) == (pid, 0), rec


def _nothing_comes(c: raw.RawClient, seconds: float = SILENCE) -> None:
    try:
        p = c.recv(seconds)
    except TimeoutError:
        return
    raise AssertionError(f"expected nothing, got {p!r}")


def _exactly_once_flow(broker, tag: str) -> None:
    """A persistent subscriber (QoS 0, so that no replay of stored messages is involved)
    and a persistent v3.1.1 publisher that sends QoS 2 and withholds PUBREL; the broker is
    killed and restarted; the resent PUBLISH (DUP) is acknowledged and not delivered again
    [MQTT-4.3.3-9]; PUBREL then gets PUBCOMP [MQTT-4.3.3-11]. After a second kill, the
    released id is free: a new message with it is delivered [MQTT-4.3.3-13]."""
    topic, sub_id, pub_id = unique_id(f"{tag}/t"), unique_id("sub"), unique_id("pub")
    sub, _ = _connect(broker, sub_id)
    sub.send(raw.subscribe(1, [(topic, 0)]))
    assert sub.expect(raw.SUBACK).reasons == [0]
    pub, ack = _connect(broker, pub_id)
    assert not ack.session_present

    _publish_qos2(pub, topic, b"once", 7)
    got = sub.expect(raw.PUBLISH)
    assert got.payload == b"once"
    _nothing_comes(sub, 0.3)

    _kill_and_restart(broker)
    sub.close()
    pub.close()

    sub, ack = _connect(broker, sub_id)
    assert ack.session_present, "the subscriber's session was not restored from the store"
    pub, ack = _connect(broker, pub_id)
    # The kept packet id is session state [MQTT-4.1.0-1]: the session is present.
    assert ack.session_present, "the publisher's QoS 2 state was not restored"
    _publish_qos2(pub, topic, b"once", 7, dup=True)
    _nothing_comes(sub)
    pub.send(raw.ack(raw.PUBREL, 7))
    comp = pub.expect(raw.PUBCOMP)
    assert (comp.pid, comp.reason) == (7, 0), comp

    # PUBCOMP went once the release was stored: after another kill, id 7 is a new message.
    _kill_and_restart(broker)
    sub.close()
    pub.close()
    sub, _ = _connect(broker, sub_id)
    pub, _ = _connect(broker, pub_id)
    _publish_qos2(pub, topic, b"second", 7)
    got = sub.expect(raw.PUBLISH)
    assert got.payload == b"second", got
    pub.send(raw.ack(raw.PUBREL, 7))
    assert pub.expect(raw.PUBCOMP).pid == 7
    _nothing_comes(sub, 0.3)
    sub.close()
    pub.close()


def test_resent_publish_after_restart_is_not_delivered_twice(start_broker):
    """Embedded store: see `_exactly_once_flow`."""
    broker = start_broker(extra_args=("--durability", "sync"))
    _exactly_once_flow(broker, "emb")


def test_pubrel_alone_after_restart_gets_pubcomp_success(start_broker):
    """A v5 client (Session Expiry 300) gets PUBREC for a QoS 2 message, and after a kill
    and restart sends only PUBREL: PUBCOMP with reason 0, not 0x92 [MQTT-4.3.3-11]. The id is
    released: a second PUBREL gets 0x92. Another client that comes back with Clean Start
    has no kept ids any more [MQTT-3.1.2-4]: its PUBREL gets 0x92, and its resent PUBLISH is
    a new message, delivered."""
    broker = start_broker(extra_args=("--durability", "sync"))
    topic = unique_id("rel/t")
    keeper, cleaner = unique_id("keep"), unique_id("clean")
    sub, _ = _connect(broker, unique_id("sub"), version=raw.V5)
    sub.send(raw.subscribe(1, [(topic, 0)], version=raw.V5))
    assert sub.expect(raw.SUBACK).reasons == [0]
    a, _ = _connect(broker, keeper, version=raw.V5)
    b, _ = _connect(broker, cleaner, version=raw.V5)
    _publish_qos2(a, topic, b"a", 9)
    _publish_qos2(b, topic, b"b", 11)
    assert sorted(sub.expect(raw.PUBLISH).payload for _ in range(2)) == [b"a", b"b"]

    _kill_and_restart(broker)
    for c in (sub, a, b):
        c.close()

    sub, _ = _connect(broker, unique_id("sub2"), version=raw.V5, clean=True, expiry=0)
    sub.send(raw.subscribe(1, [(topic, 0)], version=raw.V5))
    assert sub.expect(raw.SUBACK).reasons == [0]
    a, ack = _connect(broker, keeper, version=raw.V5)
    assert ack.session_present
    a.send(raw.ack(raw.PUBREL, 9))
    comp = a.expect(raw.PUBCOMP)
    assert (comp.pid, comp.reason) == (9, 0), comp
    a.send(raw.ack(raw.PUBREL, 9))
    comp = a.expect(raw.PUBCOMP)
    assert (comp.pid, comp.reason) == (9, 0x92), comp

    b, ack = _connect(broker, cleaner, version=raw.V5, clean=True)
    assert not ack.session_present
    b.send(raw.ack(raw.PUBREL, 11))
    comp = b.expect(raw.PUBCOMP)
    assert (comp.pid, comp.reason) == (11, 0x92), comp
    _publish_qos2(b, topic, b"b", 11, dup=True)
    assert sub.expect(raw.PUBLISH).payload == b"b"
    for c in (sub, a, b):
        c.close()


def test_exactly_once_across_restart_on_dynamodb(start_broker, dynalite, tmp_path):
    """The same on DynamoDB (dynalite): the id is in mqtt_client's `awaiting_rel` Number Set
    while it waits for PUBREL, and the attribute is gone once it is released."""
    assert dynamq("tables", "create", "--endpoint", dynalite.endpoint).returncode == 0
    broker = start_broker(extra_args=("--backend-conf", backend_conf(tmp_path, dynalite),
                                      "--durability", "sync"))
    topic, sub_id, pub_id = unique_id("dyn/t"), unique_id("sub"), unique_id("pub")
    sub, _ = _connect(broker, sub_id)
    sub.send(raw.subscribe(1, [(topic, 0)]))
    assert sub.expect(raw.SUBACK).reasons == [0]
    pub, _ = _connect(broker, pub_id)
    _publish_qos2(pub, topic, b"once", 5)
    assert sub.expect(raw.PUBLISH).payload == b"once"
    # The PUBREC came after the write: the item holds the id now.
    item = dynalite.aws("get-item", "--table-name", "mqtt_client",
                        "--key", f'{{"clientid": {{"S": "{pub_id}"}}}}')["Item"]
    assert item["awaiting_rel"] == {"NS": ["5"]}, item
    assert {"node", "connect_state", "online_at", "offline_at"} <= item.keys()

    _kill_and_restart(broker)
    sub.close()
    pub.close()
    sub, ack = _connect(broker, sub_id)
    assert ack.session_present
    pub, ack = _connect(broker, pub_id)
    assert ack.session_present
    _publish_qos2(pub, topic, b"once", 5, dup=True)
    _nothing_comes(sub)
    pub.send(raw.ack(raw.PUBREL, 5))
    assert pub.expect(raw.PUBCOMP).reason == 0
    item = dynalite.aws("get-item", "--table-name", "mqtt_client",
                        "--key", f'{{"clientid": {{"S": "{pub_id}"}}}}')["Item"]
    assert "awaiting_rel" not in item, item
    sub.close()
    pub.close()
