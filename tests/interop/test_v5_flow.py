"""MQTT 5 corners that popular brokers get wrong: Receive Maximum, topic aliases, Will Delay,
and the DISCONNECT a v5 client gets when the server shuts down. Raw sockets, so that the
client does exactly what each statement is about."""

from __future__ import annotations

import struct
import subprocess
import time

import pytest

import rawmqtt as raw
from clients import Paho, unique_id
from conftest import BROKER, DYNAMQ

V5 = raw.V5


def prop_u16(pid: int, v: int) -> bytes:
    return bytes([pid]) + struct.pack(">H", v)


def prop_u32(pid: int, v: int) -> bytes:
    return bytes([pid]) + struct.pack(">I", v)


def block(*props: bytes) -> bytes:
    body = b"".join(props)
    return raw.varint(len(body)) + body


def publish_v5(topic: str, payload: bytes, *, qos: int = 0, pid: int | None = None,
               properties: bytes = b"\x00") -> bytes:
    body = raw.mqtt_str(topic)
    if qos:
        body += struct.pack(">H", pid if pid is not None else 1)
    return raw.packet(raw.PUBLISH, qos << 1, body + properties + payload)


def connect_v5_with_will(client_id: str, will_topic: str, payload: bytes, *, will_delay: int,
                         session_expiry: int) -> bytes:
    flags = 0x02 | 0x04  # clean start, will flag (will QoS 0)
    body = raw.mqtt_str("MQTT") + bytes([V5, flags]) + struct.pack(">H", 60)
    body += block(prop_u32(0x11, session_expiry))
    body += raw.mqtt_str(client_id)
    body += block(prop_u32(0x18, will_delay))
    body += raw.mqtt_str(will_topic) + raw.mqtt_str(payload)
    return raw.packet(raw.CONNECT, 0, body)


@pytest.mark.xfail(BROKER == "mosquitto", strict=True,
                   reason="Mosquitto 2.0 (Debian) sends a third QoS 1 publish with two unacknowledged "
                          "after an ack [MQTT-3.3.4-9]")
def test_receive_maximum_limits_unacknowledged_publishes(broker):
    """The server sends no more QoS 1 publishes than the client's Receive Maximum before they
    are acknowledged [MQTT-3.3.4-9], and resumes as acknowledgements arrive."""
    topic = unique_id("rm")
    with raw.RawClient(broker.port, version=V5) as s:
        ack = s.handshake(unique_id("rms"), properties=block(prop_u16(0x21, 2)))
        assert ack.reason == 0
        s.send(raw.subscribe(1, [(topic, 1)], version=V5))
        assert s.expect(raw.SUBACK).reasons == [1]
        with Paho(broker, unique_id("rmp")) as p:
            for i in range(5):
                p.publish(topic, f"m{i}".encode(), 1)
        first = [s.expect(raw.PUBLISH), s.expect(raw.PUBLISH)]
        assert [m.payload for m in first] == [b"m0", b"m1"]
        with pytest.raises(TimeoutError):
            s.recv(timeout=0.5)  # a third would exceed Receive Maximum 2
        s.send(raw.ack(raw.PUBACK, first[0].pid))
        third = s.expect(raw.PUBLISH)
        assert third.payload == b"m2"
        with pytest.raises(TimeoutError):
            s.recv(timeout=0.3)
        for m in (first[1], third):
            s.send(raw.ack(raw.PUBACK, m.pid))
        rest = [s.expect(raw.PUBLISH), s.expect(raw.PUBLISH)]
        assert [m.payload for m in rest] == [b"m3", b"m4"]


def test_topic_alias_from_client(broker):
    """A PUBLISH with a topic and a Topic Alias sets the alias; a later PUBLISH with an empty
    topic and that alias goes to the same topic [MQTT-3.3.2-12]."""
    topic = unique_id("alias")
    with Paho(broker, unique_id("as"), protocol=5) as sub:
        sub.subscribe(topic, 0)
        with raw.RawClient(broker.port, version=V5) as p:
            p.handshake(unique_id("ap"))
            p.send(publish_v5(topic, b"one", properties=block(prop_u16(0x23, 1))))
            p.send(publish_v5("", b"two", properties=block(prop_u16(0x23, 1))))
            p.send(raw.pingreq())
            p.expect(raw.PINGRESP)
        got = [sub.get(), sub.get()]
        assert [(m.topic, m.payload) for m in got] == [(topic, b"one"), (topic, b"two")]


def test_topic_alias_above_maximum_is_refused(broker):
    """A Topic Alias greater than the server's Topic Alias Maximum is a protocol error: the
    server sends DISCONNECT 0x94 and closes [MQTT-3.3.2-9]."""
    with raw.RawClient(broker.port, version=V5) as p:
        ack = p.handshake(unique_id("ab"))
        maximum = ack.properties.get(0x22, 0)
        p.send(publish_v5("t", b"x", properties=block(prop_u16(0x23, maximum + 1))))
        got = p.packets_until_close()
        assert [(x.ptype, x.reason) for x in got] == [(raw.DISCONNECT, 0x94)]


def test_unmapped_topic_alias_is_a_protocol_error(broker):
    """An empty topic with an alias the client never set is a Protocol Error (0x82)."""
    with raw.RawClient(broker.port, version=V5) as p:
        p.handshake(unique_id("au"))
        p.send(publish_v5("", b"x", properties=block(prop_u16(0x23, 1))))
        got = p.packets_until_close()
        assert [(x.ptype, x.reason) for x in got] == [(raw.DISCONNECT, 0x82)]


def test_will_delay_interval(broker):
    """With a Will Delay Interval the will is published only after the delay [MQTT-3.1.3-9]."""
    topic = unique_id("wd")
    with Paho(broker, unique_id("wds"), protocol=5) as sub:
        sub.subscribe(topic, 0)
        c = raw.RawClient(broker.port, version=V5)
        c.send(connect_v5_with_will(unique_id("wdc"), topic, b"late", will_delay=2, session_expiry=30))
        assert c.expect(raw.CONNACK).reason == 0
        closed = time.monotonic()
        c.close()
        sub.expect_nothing(1.2)
        m = sub.get(timeout=5)
        assert m.payload == b"late"
        assert time.monotonic() - closed >= 1.8


def test_will_delay_cancelled_by_reconnect(broker):
    """A client that reconnects to its session before the Will Delay Interval has passed
    cancels the will [MQTT-3.1.3-9]."""
    topic, cid = unique_id("wdr"), unique_id("wdrc")
    with Paho(broker, unique_id("wdrs"), protocol=5) as sub:
        sub.subscribe(topic, 0)
        c = raw.RawClient(broker.port, version=V5)
        c.send(connect_v5_with_will(cid, topic, b"never", will_delay=2, session_expiry=30))
        assert c.expect(raw.CONNACK).reason == 0
        c.close()
        with raw.RawClient(broker.port, version=V5) as again:
            ack = again.handshake(cid, clean=False, properties=block(prop_u32(0x11, 30)))
            assert ack.session_present is True
            sub.expect_nothing(3.0)


@pytest.mark.dynamq_only
def test_shutdown_sends_server_shutting_down(broker):
    """On SIGTERM the server tells v5 clients DISCONNECT 0x8B (Server shutting down) and
    exits 0."""
    with raw.RawClient(broker.port, version=V5) as c:
        c.handshake(unique_id("sd"))
        code = broker.stop()
        got = c.packets_until_close(timeout=5)
        assert [(x.ptype, x.reason) for x in got] == [(raw.DISCONNECT, 0x8B)]
        assert code == 0


@pytest.mark.dynamq_only
def test_unknown_config_key_is_named(tmp_path):
    """An unknown key in the config file stops the start with an error naming the key."""
    conf = tmp_path / "bad.toml"
    conf.write_text("[mqtt]\nmax_inflite = 10\n")
    r = subprocess.run([str(DYNAMQ), "serve", "--config", str(conf), "--tcp", "127.0.0.1:0",
                        "--ws", "none"], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0
    assert "max_inflite" in r.stderr


@pytest.mark.dynamq_only
def test_receive_maximum_exceeded_disconnect_is_readable(broker):
    """A v5 client that sends more QoS 2 publishes than our Receive Maximum gets DISCONNECT
    0x93 [MQTT-3.3.4-8], and can still read it if it goes on sending for a moment: the server
    half-closes and drains what the client sends before it closes. (Closed at once, the
    client's next sends met a reset, and a real client failed on the broken pipe without
    reading the reason code.)"""
    with raw.RawClient(broker.port, version=V5) as s:
        ack = s.handshake(unique_id("rmx"))
        assert ack.reason == 0
        limit = ack.properties.get(0x21, 65535)
        s.send(b"".join(raw.publish("rmx/t", b"x", qos=2, pid=i + 1, version=V5) for i in range(limit + 1)))
        time.sleep(0.1)  # the server has answered and half-closed by now
        for i in range(4):
            # PUBRELs for ids it never got PUBRECs for: a client busy with its own flow.
            s.send(raw.ack(raw.PUBREL, i + 1))  # raises BrokenPipeError on a reset connection
            time.sleep(0.05)
        got = s.packets_until_close(timeout=10, max_packets=limit + 10)
        disconnects = [p for p in got if p.ptype == raw.DISCONNECT]
        assert disconnects and disconnects[-1].reason == 0x93, got[-3:]
