"""MQTT 5 limits and intervals with real v5 clients (issue 10, sections 3 and 4): the Message
Expiry Interval (an expired message is not delivered, a delivered one carries what remains),
a message larger than one client's Maximum Packet Size skipped for that client only, a client
that goes over our Receive Maximum disconnected with 0x93, and a DISCONNECT that sets a new
Session Expiry Interval. Each test runs with the default embedded store and with
`--store none` (fixture `start_any_store_broker`).
"""

from __future__ import annotations

import queue
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import rawmqtt as raw
from clients import V5, WAIT, Paho, unique_id


def publish_properties(**values) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def expiry(seconds: int) -> Properties:
    return publish_properties(MessageExpiryInterval=seconds)


def remaining(m) -> int | None:
    return getattr(m.properties, "MessageExpiryInterval", None)


def test_message_expiry_live_and_retained(any_store_broker):
    """A message forwarded at once carries its Message Expiry Interval less the time it
    waited, here none [MQTT-3.3.2-6]; one published without an interval is forwarded without
    one. A retained message with an interval goes to a new subscriber with what remains
    [MQTT-3.3.2-6]; once the interval has passed it is no longer sent (section 3.3.2.3.3,
    [MQTT-3.3.2-5])."""
    broker = any_store_broker
    topic, gone = unique_id("mex"), unique_id("mexg")
    with Paho(broker, unique_id("s"), protocol=V5) as s, Paho(broker, unique_id("p"), protocol=V5) as p:
        s.subscribe(topic, 1)
        p.publish(topic, b"live", 1, properties=expiry(120))
        p.publish(topic, b"forever", 1)
        m = s.get()
        assert m.payload == b"live"
        assert 119 <= remaining(m) <= 120
        f = s.get()
        assert (f.payload, remaining(f)) == (b"forever", None)
        published = time.monotonic()
        p.publish(topic, b"kept", 1, retain=True, properties=expiry(60))
        p.publish(gone, b"short", 1, retain=True, properties=expiry(1))
        s.get()  # the live copy of "kept"
    time.sleep(max(0.0, published + 2.2 - time.monotonic()))
    with Paho(broker, unique_id("late"), protocol=V5) as late:
        late.subscribe(topic, 1)
        m = late.get()
        assert (m.payload, m.retain) == (b"kept", True)
        waited = time.monotonic() - published
        assert 60 - waited - 1 <= remaining(m) <= 60 - 2, (remaining(m), waited)
        late.subscribe(gone, 1)
        late.expect_nothing(0.6)


def test_message_expiry_of_a_queued_message(any_store_broker):
    """Messages queued for an absent persistent session: one whose Message Expiry Interval
    passed before the session came back is not delivered [MQTT-3.3.2-5]; the other is, with
    the interval less the time it waited in the server [MQTT-3.3.2-6]."""
    broker = any_store_broker
    cid, topic = unique_id("mexq"), unique_id("mexq")
    with Paho(broker, cid, protocol=V5, clean=True, session_expiry=300) as s:
        s.subscribe(topic, 1)
    with Paho(broker, unique_id("p"), protocol=V5) as p:
        published = time.monotonic()
        p.publish(topic, b"expires", 1, properties=expiry(1))
        p.publish(topic, b"stays", 1, properties=expiry(60))
    time.sleep(max(0.0, published + 2.2 - time.monotonic()))
    with Paho(broker, cid, protocol=V5, clean=False, session_expiry=300) as s:
        assert s.session_present is True
        m = s.get()
        waited = time.monotonic() - published
        assert m.payload == b"stays"
        assert 60 - waited - 1 <= remaining(m) <= 60 - 2, (remaining(m), waited)
        s.expect_nothing(0.6)


def test_message_over_a_clients_maximum_packet_size_is_skipped_for_it_only(any_store_broker):
    """The server sends no packet larger than the client's Maximum Packet Size
    [MQTT-3.1.2-24]; one too large is discarded for that client as if sent [MQTT-3.1.2-25]:
    the client stays connected and gets the next message; a client without the limit gets
    both. The same for retained messages sent on subscribe."""
    broker = any_store_broker
    root = unique_id("mps")
    limit = 200
    big, small = b"B" * 400, b"small"
    with Paho(broker, unique_id("lim"), protocol=V5, connect_properties={"MaximumPacketSize": limit}) as lim, \
            Paho(broker, unique_id("all"), protocol=V5) as full, \
            Paho(broker, unique_id("p"), protocol=V5) as p:
        for s in (lim, full):
            s.subscribe(f"{root}/live", 2)
        for qos in (0, 1, 2):
            p.publish(f"{root}/live", big, qos)
            p.publish(f"{root}/live", small, qos)
        assert [(m.payload, m.qos) for m in (full.get() for _ in range(6))] == \
            [(pl, q) for q in (0, 1, 2) for pl in (big, small)]
        assert [(m.payload, m.qos) for m in (lim.get() for _ in range(3))] == [(small, q) for q in (0, 1, 2)]
        lim.expect_nothing(0.5)
        # Retained: the large one is skipped, the small one sent.
        p.publish(f"{root}/r/big", big, 1, retain=True)
        p.publish(f"{root}/r/small", small, 1, retain=True)
        lim.subscribe(f"{root}/r/+", 1)
        m = lim.get()
        assert (m.topic, m.payload, m.retain) == (f"{root}/r/small", small, True)
        lim.expect_nothing(0.5)
        full.subscribe(f"{root}/r/+", 1)
        assert sorted((full.get().payload, full.get().payload)) == sorted([big, small])
        assert lim.client.is_connected()


def suppress_pubrel(c: mqtt.Client) -> None:
    """Make paho keep its QoS 2 publishes unfinished: it sends no PUBREL for a PUBREC, so the
    server cannot complete them (a client misbehaving on purpose; paho has no switch for it)."""
    c._send_pubrel = lambda mid: mqtt.MQTT_ERR_SUCCESS


@pytest.mark.dynamq_only
def test_client_over_our_receive_maximum_is_disconnected_0x93(start_any_store_broker, tmp_path):
    """With our Receive Maximum 3 (CONNACK property), a client may have 3 QoS 2 publishes
    unfinished and stays connected; a 4th is one more than it may send [MQTT-3.3.4-7] and the
    server disconnects it with DISCONNECT 0x93 Receive Maximum exceeded (section 3.3.4).
    Other clients are not affected."""
    conf = tmp_path / "rm.toml"
    conf.write_text("[mqtt]\nreceive_maximum = 3\n")
    broker = start_any_store_broker(extra_args=("--config", str(conf)))
    topic = unique_id("rmx")
    with Paho(broker, unique_id("s"), protocol=V5) as sub:
        sub.subscribe(topic, 2)
        c = Paho(broker, unique_id("rmx"), protocol=V5)
        try:
            assert c.connack_properties.ReceiveMaximum == 3
            suppress_pubrel(c.client)
            infos = [c.client.publish(topic, f"m{i}".encode(), 2) for i in range(3)]
            assert [sub.get().payload for _ in infos] == [b"m0", b"m1", b"m2"]  # routed at PUBLISH
            with pytest.raises(queue.Empty):
                c.disconnects.get(timeout=0.8)
            c.client.publish(topic, b"m3", 2)
            rc = c.disconnects.get(timeout=WAIT)
            assert int(rc.value) == 0x93, rc
        finally:
            c.client.loop_stop()  # before paho reconnects by itself
            c.client.disconnect()
        sub.expect_nothing(0.3)  # the 4th was not routed
        with Paho(broker, unique_id("after"), protocol=V5) as again:
            again.subscribe(topic + "/x", 1)
            again.publish(topic + "/x", b"ok", 1)
            assert again.get().payload == b"ok"


def disconnect_with(c: Paho, **props) -> None:
    """A normal DISCONNECT carrying properties (paho names), then stop the client's loop."""
    p = Properties(PacketTypes.DISCONNECT)
    for name, value in props.items():
        setattr(p, name, value)
    c.client.disconnect(properties=p)
    try:
        c.disconnects.get(timeout=WAIT)
    except queue.Empty:
        pass
    c.client.loop_stop()


def test_disconnect_sets_a_new_session_expiry(any_store_broker):
    """A DISCONNECT may set a new Session Expiry Interval (section 3.14.2.2.2), and the
    session is kept for that long after the connection closes [MQTT-3.1.2-23]: a session
    opened with 1 s and closed with 300 s is there 2.2 s later with the message queued
    meanwhile; one opened with 300 s and closed with 0 s ends at once. A DISCONNECT without
    the property keeps the CONNECT's interval."""
    broker = any_store_broker
    longer, ended, kept = unique_id("sel"), unique_id("see"), unique_id("sek")
    topic = unique_id("set")
    c = Paho(broker, longer, protocol=V5, session_expiry=1)
    c.subscribe(topic, 1)
    disconnect_with(c, SessionExpiryInterval=300)
    c = Paho(broker, ended, protocol=V5, session_expiry=300)
    disconnect_with(c, SessionExpiryInterval=0)
    c = Paho(broker, kept, protocol=V5, session_expiry=300)
    disconnect_with(c)
    closed = time.monotonic()
    with Paho(broker, unique_id("p"), protocol=V5) as p:
        p.publish(topic, b"while away", 1)
    time.sleep(max(0.0, closed + 2.2 - time.monotonic()))
    with Paho(broker, longer, protocol=V5, clean=False, session_expiry=0) as c:
        assert c.session_present is True
        m = c.get()
        assert (m.topic, m.payload, m.qos) == (topic, b"while away", 1)
    for cid, present in ((ended, False), (kept, True)):
        with Paho(broker, cid, protocol=V5, clean=False, session_expiry=0) as c:
            assert c.session_present is present, cid


def test_disconnect_setting_an_expiry_after_connect_had_0_is_a_protocol_error(any_store_broker):
    """A client whose CONNECT had Session Expiry Interval 0 may not set a non-zero one on
    DISCONNECT: a Protocol Error (section 3.14.2.2.2), answered with DISCONNECT 0x82
    (section 4.13), and the session still ends with the connection [MQTT-3.1.2-23]."""
    broker = any_store_broker
    cid = unique_id("se0")
    with raw.RawClient(broker.port, version=raw.V5) as c:
        assert c.handshake(cid, clean=True, properties=raw.props(session_expiry=0)).reason == 0
        body = bytes([0x00]) + raw.props(session_expiry=300)
        c.send(raw.packet(raw.DISCONNECT, 0, body))
        got = c.packets_until_close()
        assert [(x.ptype, x.reason) for x in got] == [(raw.DISCONNECT, 0x82)]
    with Paho(broker, cid, protocol=V5, clean=False, session_expiry=0) as again:
        assert again.session_present is False
