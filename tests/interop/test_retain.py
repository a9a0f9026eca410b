"""Retained messages (paho, 3.1.1 and 5.0)."""

import pytest

from clients import V311, V5, Paho, unique_id

BOTH = pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])


@BOTH
def test_retained_delivered_on_subscribe_with_retain_flag(broker, protocol):
    """A retained message is stored [MQTT-3.3.1-5] and sent to a new subscriber
    [MQTT-3.3.1-6] (3.1.1) / [MQTT-3.3.1-9] (5.0) with RETAIN=1 [MQTT-3.3.1-8] (3.1.1),
    at min(published QoS, granted QoS)."""
    topic = unique_id("ret")
    with Paho(broker, unique_id("p"), protocol=protocol) as p:
        p.publish(topic, b"kept", 2, retain=True)
    with Paho(broker, unique_id("s"), protocol=protocol) as s:
        s.subscribe(topic, 1)
        m = s.get()
        assert (m.topic, m.payload, m.retain, m.qos) == (topic, b"kept", True, 1)
        s.expect_nothing(0.3)


@BOTH
def test_retained_replaced(broker, protocol):
    """A new retained message replaces the previous one for the topic [MQTT-3.3.1-5];
    a non-retained publish does not replace it [MQTT-3.3.1-12] (3.1.1) / [MQTT-3.3.1-8] (5.0)."""
    topic = unique_id("ret")
    with Paho(broker, unique_id("p"), protocol=protocol) as p:
        p.publish(topic, b"old", 1, retain=True)
        p.publish(topic, b"new", 1, retain=True)
        p.publish(topic, b"not-retained", 1, retain=False)
    with Paho(broker, unique_id("s"), protocol=protocol) as s:
        s.subscribe(topic, 1)
        m = s.get()
        assert (m.payload, m.retain) == (b"new", True)
        s.expect_nothing(0.4)


@BOTH
def test_retained_deleted_by_empty_payload(broker, protocol):
    """A retained PUBLISH with a zero-byte payload removes the retained message
    [MQTT-3.3.1-10] and is itself not stored [MQTT-3.3.1-11] (3.1.1) /
    [MQTT-3.3.1-6] [MQTT-3.3.1-7] (5.0): a later subscriber receives nothing."""
    topic = unique_id("ret")
    with Paho(broker, unique_id("p"), protocol=protocol) as p:
        p.publish(topic, b"kept", 1, retain=True)
        p.publish(topic, b"", 1, retain=True)
    with Paho(broker, unique_id("s"), protocol=protocol) as s:
        s.subscribe(topic, 1)
        s.expect_nothing(0.6)


@BOTH
def test_live_publish_has_retain_zero(broker, protocol):
    """A retained message forwarded to an existing subscription has RETAIN=0
    [MQTT-3.3.1-9] (3.1.1); in 5.0 with Retain As Published = 0 likewise [MQTT-3.3.1-12];
    with Retain As Published = 1 the flag is kept [MQTT-3.3.1-13]."""
    topic = unique_id("live")
    with Paho(broker, unique_id("s"), protocol=protocol) as s, Paho(broker, unique_id("p"), protocol=protocol) as p:
        s.subscribe(topic, 1)
        p.publish(topic, b"r", 1, retain=True)
        m = s.get()
        assert (m.payload, m.retain) == (b"r", False)
        if protocol == V5:
            s.unsubscribe(topic)
            s.subscribe(topic, 1, rap=True)
            assert s.get().retain is True  # the stored retained message, on the new subscription
            p.publish(topic, b"r2", 1, retain=True)
            m = s.get()
            assert (m.payload, m.retain) == (b"r2", True)


@BOTH
def test_retained_matched_by_wildcard_subscription(broker, protocol):
    """A new wildcard subscription receives the retained messages of every matching topic
    [MQTT-3.3.1-6] (3.1.1) / [MQTT-3.3.1-9] (5.0)."""
    root = unique_id("rw")
    with Paho(broker, unique_id("p"), protocol=protocol) as p:
        for t in ("a", "b/c", "d"):
            p.publish(f"{root}/{t}", t.encode(), 1, retain=True)
    with Paho(broker, unique_id("s"), protocol=protocol) as s:
        s.subscribe(f"{root}/+", 0)
        got = sorted((s.get().payload for _ in range(2)))
        assert got == [b"a", b"d"]
        s.expect_nothing(0.3)
