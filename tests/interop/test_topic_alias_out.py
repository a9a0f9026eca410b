"""Topic aliases from server to client (MQTT 5, issue 10 §3): within the client's Topic Alias
Maximum, a topic gets an alias the first time it is sent (topic and alias), later PUBLISHes
carry the alias and an empty topic; once every alias is taken, the least recently used one
is remapped (sent again with its new topic). Checked byte for byte with a raw client, and
with MQTT.js, which resolves the aliases itself."""

import struct
import time

import pytest

import rawmqtt as raw
from clients import unique_id
from test_websocket import Node, js_pub

pytestmark = pytest.mark.dynamq_only

PROP_TOPIC_ALIAS_MAXIMUM = 0x22
PROP_TOPIC_ALIAS = 0x23


def alias_max(n: int) -> bytes:
    body = bytes([PROP_TOPIC_ALIAS_MAXIMUM]) + struct.pack(">H", n)
    return raw.varint(len(body)) + body


def received(sub: raw.RawClient, n: int) -> list[tuple[str, int | None, bytes]]:
    """(topic as sent, Topic Alias property or None, payload) of the next n PUBLISHes."""
    out = []
    for _ in range(n):
        p = sub.expect(raw.PUBLISH)
        out.append((p.topic, p.properties.get(PROP_TOPIC_ALIAS), p.payload))
    return out


def publish_all(broker, topics: list[str]) -> None:
    with raw.RawClient(broker.port) as pub:
        pub.handshake(unique_id("pub"))
        for i, t in enumerate(topics):
            pub.send(raw.publish(t, f"m{i}".encode()))
        pub.send(raw.pingreq())
        pub.expect(raw.PINGRESP)


def test_aliases_assigned_reused_and_least_recently_used_replaced(broker):
    """Topic Alias Maximum 2 in CONNECT: no alias above 2 [MQTT-3.1.2-26] [MQTT-3.3.2-11];
    the first PUBLISH on a topic carries the topic and its alias, the next ones an empty
    topic and the alias (spec 3.3.2.3.4); a third topic remaps the alias used longest ago."""
    base = unique_id("ta")
    a, b, c = f"{base}/a", f"{base}/b", f"{base}/c"
    with raw.RawClient(broker.port, version=raw.V5) as sub:
        sub.handshake(unique_id("s"), properties=alias_max(2))
        sub.send(raw.subscribe(1, [(f"{base}/#", 0)], version=raw.V5))
        sub.expect(raw.SUBACK)
        publish_all(broker, [a, a, b, a, c, c, b, a])
        got = received(sub, 8)
    assert got == [
        (a, 1, b"m0"),
        ("", 1, b"m1"),
        (b, 2, b"m2"),
        ("", 1, b"m3"),
        (c, 2, b"m4"),   # b sent longest ago: its alias goes to c
        ("", 2, b"m5"),
        (b, 1, b"m6"),   # now a is the least recently used
        (a, 2, b"m7"),
    ]


@pytest.mark.parametrize("props", [None, alias_max(0)], ids=["absent", "zero"])
def test_no_alias_without_a_topic_alias_maximum(broker, props):
    """Topic Alias Maximum absent or 0: the server sends no Topic Alias [MQTT-3.1.2-27]."""
    topic = unique_id("ta0")
    with raw.RawClient(broker.port, version=raw.V5) as sub:
        sub.handshake(unique_id("s"), properties=props)
        sub.send(raw.subscribe(1, [(topic, 0)], version=raw.V5))
        sub.expect(raw.SUBACK)
        publish_all(broker, [topic, topic, topic])
        got = received(sub, 3)
    assert got == [(topic, None, f"m{i}".encode()) for i in range(3)]


def test_mqttjs_resolves_the_servers_aliases(broker):
    """MQTT.js over WebSocket with topicAliasMaximum 2 gets every message on its real topic,
    in order, while the broker cycles three topics through two aliases."""
    base = unique_id("tajs")
    topics = [f"{base}/{t}" for t in "aabacbca"]
    sub = Node("sub.mjs", url=broker.ws_url, topic=f"{base}/#", qos=1, version=5,
               count=len(topics), topic_alias_max=2)
    sub.wait("subscribed")
    for i, t in enumerate(topics):
        js_pub(broker, t, f"m{i}", qos=1, version=5)
    result = sub.wait("result")
    got = [(m["topic"], m["payload"]) for m in result["messages"]]
    assert got == [(t, f"m{i}") for i, t in enumerate(topics)]
    aliases = [m["topicAlias"] for m in result["messages"]]
    assert all(a in (1, 2) for a in aliases), aliases
