"""MQTT 5 specifics: SUBACK reason codes, Server Keep Alive, subscription options."""

import time

import pytest

import rawmqtt as raw
from clients import V5, Paho, round_trip, unique_id
from conftest import BROKER


@pytest.mark.xfail(condition=BROKER == "mosquitto", strict=True,
                   reason="Mosquitto 2.0.11 treats an invalid filter as a malformed SUBSCRIBE and "
                          "disconnects (0x81); dynamq answers 0x8F for that filter only")
def test_suback_reason_code_per_filter(broker):
    """5.0: SUBACK holds one reason code per filter, in order [MQTT-3.8.4-6] [MQTT-3.9.3-1];
    an invalid filter ('#' not last [MQTT-4.7.1-1]) gets 0x8F Topic Filter invalid while the
    others are granted, and the granted ones work."""
    root = unique_id("sa")
    with raw.RawClient(broker.port, version=raw.V5) as c:
        c.handshake(unique_id("sa"))
        c.send(raw.subscribe(5, [(f"{root}/ok", 1), ("a/#/b", 0), (f"{root}/two", 2)], version=raw.V5))
        ack = c.expect(raw.SUBACK)
        assert (ack.pid, ack.reasons) == (5, [1, 0x8F, 2])
        c.send(raw.publish(f"{root}/ok", b"x", version=raw.V5))
        m = c.expect(raw.PUBLISH)
        assert (m.topic, m.payload) == (f"{root}/ok", b"x")


def test_suback_granted_qos_v5_paho(broker):
    """5.0: the SUBACK reason code for a granted subscription is the granted QoS
    (0x00, 0x01, 0x02) [MQTT-3.9.3-1]."""
    with Paho(broker, unique_id("s"), protocol=V5) as s:
        assert [int(s.subscribe(unique_id("g"), q)[0].value) for q in (0, 1, 2)] == [0, 1, 2]


def test_unsuback_no_subscription_existed_v5(broker):
    """5.0: UNSUBACK for a filter with no subscription carries 0x11 (No subscription existed)
    (section 3.11.3); an existing one gets 0x00."""
    root = unique_id("us")
    with raw.RawClient(broker.port, version=raw.V5) as c:
        c.handshake(unique_id("us"))
        c.send(raw.subscribe(1, [(f"{root}/a", 0)], version=raw.V5))
        c.expect(raw.SUBACK)
        c.send(raw.unsubscribe(2, [f"{root}/a", f"{root}/never"], version=raw.V5))
        ack = c.expect(raw.UNSUBACK)
        assert (ack.pid, ack.reasons) == (2, [0x00, 0x11])


def test_no_local_option_v5(broker):
    """5.0: with No Local = 1 the server does not forward a client's own publications to it
    [MQTT-3.8.3-3]; other subscribers still get them."""
    topic = unique_id("nl")
    with raw.RawClient(broker.port, version=raw.V5) as c, Paho(broker, unique_id("o"), protocol=V5) as other:
        c.handshake(unique_id("nl"))
        c.send(raw.subscribe(1, [(topic, 0x04 | 1)], version=raw.V5))
        assert c.expect(raw.SUBACK).reasons == [1]
        other.subscribe(topic, 1)
        c.send(raw.publish(topic, b"mine", version=raw.V5))
        assert other.get().payload == b"mine"
        c.send(raw.pingreq())
        assert c.expect(raw.PINGRESP).ptype == raw.PINGRESP  # no PUBLISH came first


def test_server_keep_alive_caps_v5_client(start_broker):
    """5.0: with a maximum keepalive of 10 s (dynamq --max-keepalive 10, Mosquitto
    max_keepalive 10), a client asking 60 gets Server Keep Alive = 10 in CONNACK and must use
    it (section 3.2.2.3.14, [MQTT-3.1.2-21]); a client asking 5 gets no override (or 5)."""
    broker = start_broker(max_keepalive=10)
    with raw.RawClient(broker.port, version=raw.V5) as c:
        ack = c.handshake(unique_id("ka"), keepalive=60)
        assert ack.reason == 0
        assert ack.properties.get(raw.PROP_SERVER_KEEP_ALIVE) == 10, ack
    with raw.RawClient(broker.port, version=raw.V5) as c:
        ack = c.handshake(unique_id("ka"), keepalive=5)
        assert ack.reason == 0
        assert ack.properties.get(raw.PROP_SERVER_KEEP_ALIVE, 5) == 5, ack


def test_max_keepalive_v311_client_asking_more_is_accepted_and_not_capped(start_broker):
    """3.1.1 has no Server Keep Alive, so a server cannot tell a 3.1.1 client to use a lower
    keepalive. dynamq does what Mosquitto 2.0 does with max_keepalive ("This only applies to
    MQTT v5 clients", mosquitto.conf(5)): the CONNECT is accepted (CONNACK 0x00) and the
    client's own Keep Alive (60 s) is the one enforced: a silent client is still connected
    well after 1.5 x 10 s [MQTT-3.1.2-24]."""
    broker = start_broker(max_keepalive=10)
    with raw.RawClient(broker.port, version=raw.V311, timeout=30) as c:
        ack = c.handshake(unique_id("ka311"), keepalive=60)
        assert (ack.reason, ack.session_present) == (0, False)
        t0 = time.monotonic()
        with pytest.raises(TimeoutError):
            p = c.recv(timeout=18.0)  # a close (None) or any packet would be wrong
            raise AssertionError(f"server sent {p!r} (None = closed) after {time.monotonic() - t0:.1f}s")
        c.send(raw.pingreq())
        assert c.expect(raw.PINGRESP).ptype == raw.PINGRESP
    round_trip(broker)
