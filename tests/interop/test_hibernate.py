"""Hibernation (dynamq): an idle TCP connection gives up its task and waits in the poller.
Nothing a client can see may change: every way a connection is woken is tested here with a
broker that hibernates connections after 100 ms, and the metrics say that they did hibernate
before the test goes on."""

from __future__ import annotations

import socket
import struct
import time

import pytest

import rawmqtt as raw
from clients import V5, Paho, unique_id
from conftest import free_port
from test_metrics import scrape

pytestmark = pytest.mark.dynamq_only

HIBERNATE_MS = 100


@pytest.fixture
def hb(start_broker):
    http = free_port()
    broker = start_broker(extra_args=("--hibernate-after-ms", str(HIBERNATE_MS),
                                      "--http", f"127.0.0.1:{http}"))
    broker.http = http
    return broker


def wait_hibernating(broker, n: int, timeout: float = 3.0) -> dict:
    """Waits until at least `n` connections hibernate; returns the metrics then."""
    deadline = time.monotonic() + timeout
    while True:
        m = scrape(broker.http)
        if m["dynamq_connections_hibernating"] >= n:
            return m
        if time.monotonic() > deadline:
            raise AssertionError(f"{n} connections did not hibernate: {m}")
        time.sleep(0.05)


def prop_u16(pid: int, v: int) -> bytes:
    return bytes([pid]) + struct.pack(">H", v)


def block(*props: bytes) -> bytes:
    body = b"".join(props)
    return raw.varint(len(body)) + body


def test_hibernating_subscriber_receives_every_qos(hb):
    """A message queued for a hibernating subscriber wakes it; QoS 0, 1 and 2 arrive in order
    [MQTT-4.6.0-6], and the subscriber can hibernate and be woken again."""
    topic = unique_id("hb")
    with Paho(hb, unique_id("hbs")) as s:
        s.subscribe(topic, 2)
        wait_hibernating(hb, 1)
        with Paho(hb, unique_id("hbp")) as p:
            for qos in (0, 1, 2):
                p.publish(topic, f"q{qos}".encode(), qos)
            got = [s.get() for _ in range(3)]
            assert [(m.payload, m.qos) for m in got] == [(b"q0", 0), (b"q1", 1), (b"q2", 2)]
            before = scrape(hb.http)["dynamq_hibernations_total"]
            wait_hibernating(hb, 2)
            assert scrape(hb.http)["dynamq_hibernations_total"] > before
            p.publish(topic, b"again", 1)
            assert s.get().payload == b"again"


def test_hibernating_client_is_answered(hb):
    """A hibernating client that sends something is woken and answered: PINGREQ gets
    PINGRESP [MQTT-3.12.4-1], a QoS 1 PUBLISH gets PUBACK [MQTT-4.3.2-2]."""
    with raw.RawClient(hb.port) as c:
        assert c.handshake(unique_id("hbc")).reason == 0
        wait_hibernating(hb, 1)
        c.send(raw.pingreq())
        assert c.expect(raw.PINGRESP).ptype == raw.PINGRESP
        wait_hibernating(hb, 1)
        c.send(raw.publish(unique_id("hbt"), b"x", qos=1, pid=7))
        assert c.expect(raw.PUBACK).pid == 7


def test_keepalive_runs_out_while_hibernating(hb):
    """The keepalive is enforced for a hibernating client: silent for 1.5 times its keepalive,
    it is disconnected [MQTT-3.1.2-22] and its will is published [MQTT-3.1.2-8]."""
    will_topic = unique_id("hbw")
    with Paho(hb, unique_id("hbws")) as w:
        w.subscribe(will_topic, 1)
        with raw.RawClient(hb.port) as c:
            start = time.monotonic()
            c.handshake(unique_id("hbk"), keepalive=1, will=(will_topic, b"gone", 1, False))
            wait_hibernating(hb, 2)
            assert c.recv(timeout=4.0) is None  # closed by the broker
            elapsed = time.monotonic() - start
            assert 1.4 <= elapsed <= 2.5, elapsed
        assert w.get().payload == b"gone"


def test_client_closing_while_hibernating_gets_its_will_published(hb):
    """A hibernating client whose socket closes without DISCONNECT has its will published
    [MQTT-3.1.2-8], at once, not at its keepalive."""
    will_topic = unique_id("hbw")
    with Paho(hb, unique_id("hbws")) as w:
        w.subscribe(will_topic, 1)
        c = raw.RawClient(hb.port)
        c.handshake(unique_id("hbx"), keepalive=60, will=(will_topic, b"bye", 1, False))
        wait_hibernating(hb, 2)
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        c.close()
        start = time.monotonic()
        assert w.get(timeout=3).payload == b"bye"
        assert time.monotonic() - start < 2.0


def test_takeover_of_a_hibernating_connection(hb):
    """A client id connecting again takes the session over from a hibernating connection,
    which gets DISCONNECT 0x8E (v5) and is closed [MQTT-3.1.4-3]."""
    cid = unique_id("hbt")
    with raw.RawClient(hb.port, version=raw.V5) as old:
        assert old.handshake(cid).reason == 0
        wait_hibernating(hb, 1)
        with raw.RawClient(hb.port, version=raw.V5) as new:
            assert new.handshake(cid).reason == 0
            packets = old.packets_until_close(timeout=3)
            assert [(p.ptype, p.reason) for p in packets] == [(raw.DISCONNECT, 0x8E)]
            new.send(raw.pingreq())
            assert new.expect(raw.PINGRESP).ptype == raw.PINGRESP


def test_inflight_window_survives_hibernation(hb):
    """The in-flight state waits in the session while the connection hibernates: with
    Receive Maximum 1 and a message unacknowledged, the next one waits [MQTT-3.3.4-9] until
    the PUBACK, sent to the hibernating connection, frees the window."""
    topic = unique_id("hbi")
    with raw.RawClient(hb.port, version=raw.V5) as s:
        assert s.handshake(unique_id("hbis"), properties=block(prop_u16(0x21, 1))).reason == 0
        s.send(raw.subscribe(1, [(topic, 1)], version=raw.V5))
        assert s.expect(raw.SUBACK).reasons == [1]
        with Paho(hb, unique_id("hbip"), protocol=V5) as p:
            p.publish(topic, b"m0", 1)
            first = s.expect(raw.PUBLISH)
            assert first.payload == b"m0"
            wait_hibernating(hb, 2)
            p.publish(topic, b"m1", 1)
            with pytest.raises(TimeoutError):
                s.recv(timeout=0.5)
            wait_hibernating(hb, 2)
            s.send(raw.ack(raw.PUBACK, first.pid))
            second = s.expect(raw.PUBLISH)
            assert second.payload == b"m1" and not second.dup


def test_topic_alias_survives_hibernation(hb):
    """An inbound topic alias set before the connection hibernated still maps to its topic
    after [MQTT-3.3.2-12]."""
    topic = unique_id("hba")
    with Paho(hb, unique_id("hbas")) as s:
        s.subscribe(topic, 0)
        with raw.RawClient(hb.port, version=raw.V5) as p:
            assert p.handshake(unique_id("hbap")).reason == 0
            alias = block(prop_u16(0x23, 1))
            p.send(raw.packet(raw.PUBLISH, 0, raw.mqtt_str(topic) + alias + b"one"))
            assert s.get().payload == b"one"
            wait_hibernating(hb, 2)
            p.send(raw.packet(raw.PUBLISH, 0, raw.mqtt_str("") + alias + b"two"))
            m = s.get()
            assert (m.topic, m.payload) == (topic, b"two")


def test_shutdown_wakes_hibernating_connections(hb):
    """On shutdown a hibernating v5 client gets DISCONNECT 0x8B (Server shutting down) like
    any other [MQTT-3.14.2-1]."""
    with raw.RawClient(hb.port, version=raw.V5) as c:
        assert c.handshake(unique_id("hbd")).reason == 0
        wait_hibernating(hb, 1)
        code = hb.stop()
        assert code == 0
        packets = c.packets_until_close(timeout=3)
        assert [(p.ptype, p.reason) for p in packets] == [(raw.DISCONNECT, 0x8B)]


@pytest.mark.parametrize("version", [raw.V311, raw.V5], ids=["v311", "v5"])
@pytest.mark.parametrize("how", ["disconnect", "takeover"])
def test_session_of_a_clean_connection_is_not_resumed(hb, version, how):
    """A session with CleanSession=1 (3.1.1) or Session Expiry 0 (5.0) lasts only as long as
    its network connection [MQTT-3.1.2-6] / [MQTT-3.1.2-10]. A CONNECT with CleanSession=0 /
    Clean Start 0 right after that connection sent DISCONNECT, or taking it over, gets Session
    Present 0 [MQTT-3.2.2-2] / [MQTT-3.2.2-3] and none of its subscriptions. (The old
    connection hibernates first, so that it is slowest to notice.)"""
    cid, topic = unique_id("hbc"), unique_id("hbct")
    old = raw.RawClient(hb.port, version=version)
    assert old.handshake(cid, clean=True).reason == 0
    old.send(raw.subscribe(1, [(topic, 1)], version=version))
    assert old.expect(raw.SUBACK).reasons == [1]
    wait_hibernating(hb, 1)
    if how == "disconnect":
        old.send(raw.disconnect(version=version))
    props = raw.props(session_expiry=300) if version == raw.V5 else None
    with raw.RawClient(hb.port, version=version) as new:
        ack = new.handshake(cid, clean=False, properties=props)
        assert (ack.reason, ack.session_present) == (0, False)
        with Paho(hb, unique_id("hbcp")) as p:
            p.publish(topic, b"x", 1)
        with pytest.raises(TimeoutError):
            new.recv(timeout=0.5)
    old.close()
