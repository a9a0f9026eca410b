"""MQTT 5 features of the PUBLISH path with real v5 clients (issue 10, section 4): Retain As
Published, Retain Handling 0/1/2, no retained messages on a `$share/` subscription, the
application properties forwarded unaltered and in order, and a payload that is not UTF-8
under Payload Format Indicator 1 answered with 0x99. Each test runs with the default
embedded store and with `--store none` (fixture `any_store_broker`).

paho-mqtt 2.x is the client; a raw socket subscriber is added where the bytes on the wire are
what the statement is about (the properties of a forwarded PUBLISH, byte for byte).
Limits and expiry are in test_v5_features_limits.py.
"""

from __future__ import annotations

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

import rawmqtt as raw
from clients import V5, Paho, unique_id
from conftest import BROKER

CONTENT_TYPE = "application/vnd.dynamq+json; charset=utf-8"
RESPONSE_TOPIC = "reply/é/1"
CORRELATION = bytes([0x00, 0xFF, 0x80, 0x0A, 0x7F]) + b"corr"
# Order matters [MQTT-3.3.2-18]; a name may repeat, a value may be empty or non-ASCII.
USER_PROPERTIES = [("z", "1"), ("a", ""), ("z", "2 – é"), ("a", "x"), ("ключ", "значение")]
UTF8_PAYLOAD = "ünïcode ✓ \u0001".encode()


def publish_properties(**values) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    for name, value in values.items():
        setattr(p, name, value)
    return p


def app_properties() -> Properties:
    return publish_properties(PayloadFormatIndicator=1, ContentType=CONTENT_TYPE,
                              ResponseTopic=RESPONSE_TOPIC, CorrelationData=CORRELATION,
                              UserProperty=USER_PROPERTIES)


def expected_items() -> tuple[list[bytes], list[bytes]]:
    """The encoding of each application property (section 2.2.2.2): the ones whose place in
    the block is free, sorted, and the User Properties in their order."""
    others = sorted([
        bytes([0x01, 0x01]),
        b"\x03" + raw.mqtt_str(CONTENT_TYPE),
        b"\x08" + raw.mqtt_str(RESPONSE_TOPIC),
        b"\x09" + raw.mqtt_str(CORRELATION),
    ])
    users = [b"\x26" + raw.mqtt_str(k) + raw.mqtt_str(v) for k, v in USER_PROPERTIES]
    return others, users


def split_items(items: list[bytes]) -> tuple[list[bytes], list[bytes]]:
    return sorted(i for i in items if i[0] != 0x26), [i for i in items if i[0] == 0x26]


def raw_subscriber(broker, topic_filter: str, qos: int) -> raw.RawClient:
    c = raw.RawClient(broker.port, version=raw.V5)
    assert c.handshake(unique_id("raw")).reason == 0
    c.send(raw.subscribe(1, [(topic_filter, qos)], version=raw.V5))
    assert c.expect(raw.SUBACK).reasons == [qos]
    return c


def next_publish(c: raw.RawClient) -> raw.Packet:
    """The next PUBLISH, acknowledged (PUBACK, or PUBREC then PUBCOMP for the PUBREL)."""
    while True:
        p = c.recv()
        assert p is not None, "connection closed"
        if p.ptype == raw.PUBREL:
            c.send(raw.ack(raw.PUBCOMP, p.pid))
            continue
        assert p.ptype == raw.PUBLISH, p
        if p.qos:
            c.send(raw.ack(raw.PUBACK if p.qos == 1 else raw.PUBREC, p.pid))
        return p


def test_retain_as_published(any_store_broker):
    """Retain As Published 0: a forwarded message has RETAIN 0 however it was published
    [MQTT-3.3.1-12]; Retain As Published 1: RETAIN as in the received PUBLISH [MQTT-3.3.1-13];
    at QoS 0, 1 and 2. A retained message sent because of a new subscription has RETAIN 1
    whatever the option (section 3.3.1.3)."""
    broker = any_store_broker
    topic = unique_id("rap")
    with Paho(broker, unique_id("rap1"), protocol=V5) as keep, \
            Paho(broker, unique_id("rap0"), protocol=V5) as clear, \
            Paho(broker, unique_id("p"), protocol=V5) as p:
        assert [int(rc.value) for rc in keep.subscribe(topic, 2, rap=True)] == [2]
        assert [int(rc.value) for rc in clear.subscribe(topic, 2, rap=False)] == [2]
        sent = []
        for qos in (0, 1, 2):
            for retain in (True, False):
                payload = f"q{qos}-{'r' if retain else 'n'}".encode()
                p.publish(topic, payload, qos, retain=retain)
                sent.append((payload, qos, retain))
        got_keep = [keep.get() for _ in sent]
        got_clear = [clear.get() for _ in sent]
        assert [(m.payload, m.qos, m.retain) for m in got_keep] == sent
        assert [(m.payload, m.qos, m.retain) for m in got_clear] == [(pl, q, False) for pl, q, _ in sent]
        keep.expect_nothing(0.3)
        clear.expect_nothing(0.1)
    # The last retained one (q2-r) comes with RETAIN 1 on a new subscription, RAP 0 or 1.
    for rap in (False, True):
        with Paho(broker, unique_id("late"), protocol=V5) as late:
            late.subscribe(topic, 1, rap=rap)
            m = late.get()
            assert (m.payload, m.qos, m.retain) == (b"q2-r", 1, True)
            late.expect_nothing(0.3)


def test_retain_handling_0_1_2(any_store_broker):
    """Retain Handling 0: the retained messages are sent at every SUBSCRIBE
    [MQTT-3.3.1-9], also when it replaces an existing subscription [MQTT-3.8.4-3] [MQTT-3.8.4-4];
    1: only if the subscription did not exist [MQTT-3.3.1-10] (again after UNSUBSCRIBE);
    2: never [MQTT-3.3.1-11].
    Every one of them receives live messages, with RETAIN 0."""
    broker = any_store_broker
    root = unique_id("rh")
    with Paho(broker, unique_id("p"), protocol=V5) as p:
        p.publish(f"{root}/a", b"A", 1, retain=True)
        p.publish(f"{root}/b", b"B", 1, retain=True)
        with Paho(broker, unique_id("rh0"), protocol=V5) as s0, \
                Paho(broker, unique_id("rh1"), protocol=V5) as s1, \
                Paho(broker, unique_id("rh2"), protocol=V5) as s2:
            expected = [(f"{root}/a", b"A", True), (f"{root}/b", b"B", True)]
            for _ in range(2):
                s0.subscribe(f"{root}/+", 1, rh=0)
                assert sorted((m.topic, m.payload, m.retain) for m in (s0.get(), s0.get())) == expected
                s0.expect_nothing(0.3)
            s1.subscribe(f"{root}/+", 1, rh=1)
            assert sorted((m.topic, m.payload, m.retain) for m in (s1.get(), s1.get())) == expected
            s1.subscribe(f"{root}/+", 1, rh=1)
            s1.expect_nothing(0.5)
            # Unsubscribed, the subscription is new again.
            s1.unsubscribe(f"{root}/+")
            s1.subscribe(f"{root}/+", 1, rh=1)
            assert sorted((m.topic, m.payload, m.retain) for m in (s1.get(), s1.get())) == expected
            s1.expect_nothing(0.3)
            s2.subscribe(f"{root}/+", 1, rh=2)
            s2.expect_nothing(0.5)
            s2.subscribe(f"{root}/+", 1, rh=2)
            s2.expect_nothing(0.3)

            p.publish(f"{root}/a", b"live", 1)
            for s in (s0, s1, s2):
                m = s.get()
                assert (m.topic, m.payload, m.retain) == (f"{root}/a", b"live", False)
                s.expect_nothing(0.2)


@pytest.mark.xfail(BROKER == "mosquitto", strict=True,
                   reason="Mosquitto 2.0.11 sends the retained message on a $share/ subscription (section 4.8.2)")
def test_no_retained_messages_on_a_shared_subscription(any_store_broker):
    """Retained messages are not sent to a session when it subscribes to a Shared
    Subscription (section 4.8.2), Retain Handling 0 or not; live messages are delivered to it;
    the same session subscribing without `$share/` gets the retained message (it was there)."""
    broker = any_store_broker
    topic = unique_id("shr")
    with Paho(broker, unique_id("p"), protocol=V5) as p, \
            Paho(broker, unique_id("s"), protocol=V5) as s:
        p.publish(topic, b"kept", 1, retain=True)
        for rh in (0, 1):
            assert [int(rc.value) for rc in s.subscribe(f"$share/g{rh}/{topic}", 1, rh=rh)] == [1]
        s.expect_nothing(0.6)
        p.publish(topic, b"live", 1)
        got = [s.get(), s.get()]  # one per share group
        assert [(m.topic, m.payload, m.retain) for m in got] == [(topic, b"live", False)] * 2
        s.expect_nothing(0.2)
        s.subscribe(topic, 1, rh=0)
        m = s.get()
        assert (m.topic, m.payload, m.retain) == (topic, b"kept", True)


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_application_properties_forwarded_unaltered_in_order(any_store_broker, qos):
    """A forwarded PUBLISH carries, unaltered, the Payload Format Indicator [MQTT-3.3.2-4],
    the Response Topic [MQTT-3.3.2-15], the Correlation Data [MQTT-3.3.2-16], the User
    Properties [MQTT-3.3.2-17] in their order [MQTT-3.3.2-18] and the Content Type
    [MQTT-3.3.2-20]; the payload is unchanged; checked byte for byte on the wire (a raw
    subscriber) and as paho decodes them, live and as a retained message on subscribe.
    A message published without properties is forwarded with none."""
    broker = any_store_broker
    topic = unique_id("props")
    others, users = expected_items()
    with Paho(broker, unique_id("ps"), protocol=V5) as sub, raw_subscriber(broker, topic, qos) as wire, \
            Paho(broker, unique_id("pp"), protocol=V5) as p:
        sub.subscribe(topic, qos)
        p.publish(topic, UTF8_PAYLOAD, qos, retain=True, properties=app_properties())
        p.publish(topic, b"\x00\xffbare", qos)

        m = sub.get()
        assert (m.payload, m.qos) == (UTF8_PAYLOAD, qos)
        pr = m.properties
        assert (pr.PayloadFormatIndicator, pr.ContentType, pr.ResponseTopic, pr.CorrelationData,
                pr.UserProperty) == (1, CONTENT_TYPE, RESPONSE_TOPIC, CORRELATION, USER_PROPERTIES)
        bare = sub.get()
        assert bare.payload == b"\x00\xffbare"
        assert bare.properties is None or bare.properties.json() == {}

        first = next_publish(wire)
        assert (first.topic, first.payload, first.qos) == (topic, UTF8_PAYLOAD, qos)
        assert split_items(raw.publish_prop_items(first)) == (others, users)
        second = next_publish(wire)
        assert (second.payload, raw.publish_prop_items(second)) == (b"\x00\xffbare", [])

    with raw_subscriber(broker, topic, 1) as late:
        kept = next_publish(late)
        assert (kept.topic, kept.payload, kept.retain) == (topic, UTF8_PAYLOAD, True)
        assert split_items(raw.publish_prop_items(kept)) == (others, users)


@pytest.mark.xfail(BROKER == "mosquitto", strict=True,
                   reason="Mosquitto 2.0.11 does not check the payload format (the check is a MAY) "
                          "and forwards the message")
def test_payload_not_utf8_with_format_indicator_1_is_refused_0x99(any_store_broker):
    """A PUBLISH whose Payload Format Indicator is 1 and whose payload is not UTF-8 is
    answered with reason code 0x99 Payload format invalid: PUBACK at QoS 1, PUBREC at QoS 2
    (sections 3.3.2.3.2 and 4.13), and is neither forwarded nor retained. A valid UTF-8
    payload with the indicator goes through, the indicator unaltered [MQTT-3.3.2-4]."""
    broker = any_store_broker
    topic = unique_id("pfi")
    bad = b"\xff\xfe not UTF-8 \xc3\x28"
    with Paho(broker, unique_id("s"), protocol=V5) as sub, Paho(broker, unique_id("p"), protocol=V5) as p:
        sub.subscribe(topic, 2)
        pubrecs = record_pubrec_reasons(p)
        rc = p.publish(topic, bad, 1, retain=True, properties=publish_properties(PayloadFormatIndicator=1))
        assert int(rc.value) == 0x99
        p.publish(topic, bad, 2, retain=True, properties=publish_properties(PayloadFormatIndicator=1))
        assert list(pubrecs.values()) == [0x99]
        sub.expect_nothing(0.5)
        p.publish(topic, "ok é".encode(), 1, properties=publish_properties(PayloadFormatIndicator=1))
        m = sub.get()
        assert (m.payload, m.properties.PayloadFormatIndicator) == ("ok é".encode(), 1)
    with Paho(broker, unique_id("late"), protocol=V5) as late:
        late.subscribe(topic, 1)
        late.expect_nothing(0.5)  # neither refused message was retained


def record_pubrec_reasons(p: Paho) -> dict[int, int]:
    """paho 2.2 reads the reason code of a PUBREC and drops it (it answers PUBREL whatever
    the code): wrap its handler to keep each PUBREC's reason code by packet id."""
    reasons: dict[int, int] = {}
    client = p.client
    handle = client._handle_pubrec

    def keep_reason():
        body = client._in_packet["packet"]
        reasons[int.from_bytes(body[:2], "big")] = body[2] if len(body) > 2 else 0
        return handle()

    client._handle_pubrec = keep_reason
    return reasons
