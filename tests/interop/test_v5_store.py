"""MQTT v5 properties and the Message Expiry Interval of stored messages survive a broker
restart, on the embedded store and on DynamoDB (dynalite): a retained message (mqtt_retain)
and a message queued for an absent persistent session (mqtt_msg) come back byte for byte,
with the expiry interval that remains; a retained or queued message that expired meanwhile
does not come back."""

from __future__ import annotations

import time

import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from clients import V5, Paho, unique_id
from dynalite import dynalite  # noqa: F401 (fixture)
from test_dynamo_store import backend_conf, dynamq

pytestmark = pytest.mark.dynamq_only

EXPIRY = 300
USER_PROPERTIES = [("z", "1"), ("a", ""), ("z", "2 – é")]  # order, a repeated name, non-ASCII
CORRELATION = bytes([0x00, 0xFF, 0x80, 0x0A]) + b"corr"


@pytest.fixture(params=["embedded", "dynamo"])
def store_broker(request, start_broker, tmp_path):
    """A broker on the embedded store (the default) or on dynalite with the tutorial's
    backend file, and the dynalite server (None for the embedded store)."""
    if request.param == "embedded":
        return start_broker(), None
    dyn = request.getfixturevalue("dynalite")
    assert dynamq("tables", "create", "--endpoint", dyn.endpoint).returncode == 0
    return start_broker(extra_args=("--backend-conf", backend_conf(tmp_path, dyn))), dyn


def props(tag: str, expiry: int) -> Properties:
    p = Properties(PacketTypes.PUBLISH)
    p.PayloadFormatIndicator = 1
    p.ContentType = f"application/{tag}+json"
    p.ResponseTopic = f"reply/{tag}"
    p.CorrelationData = CORRELATION
    p.UserProperty = USER_PROPERTIES
    p.MessageExpiryInterval = expiry
    return p


def publish(client: Paho, topic: str, payload: bytes, qos: int, retain: bool, p: Properties) -> None:
    info = client.client.publish(topic, payload, qos, retain, properties=p)
    info.wait_for_publish(5)
    assert info.is_published()


def assert_same(m, tag: str, payload: bytes, published_at: float) -> None:
    """Every property as published; the expiry interval what remains of it."""
    assert m.payload == payload
    p = m.properties
    assert p.PayloadFormatIndicator == 1
    assert p.ContentType == f"application/{tag}+json"
    assert p.ResponseTopic == f"reply/{tag}"
    assert p.CorrelationData == CORRELATION
    assert p.UserProperty == USER_PROPERTIES
    elapsed = time.monotonic() - published_at
    assert 0 < p.MessageExpiryInterval <= EXPIRY
    # Remaining, not restarted from the original: it went down by the time elapsed (rounded
    # up to whole seconds).
    assert p.MessageExpiryInterval <= EXPIRY - int(elapsed) + 1, (p.MessageExpiryInterval, elapsed)


def test_v5_properties_survive_restart(store_broker):
    broker, dyn = store_broker
    cid, topic = unique_id("v5s"), unique_id("v5t")
    with Paho(broker, cid, protocol=V5, clean=False, session_expiry=600) as s:
        s.subscribe(topic + "/q", 1)
    with Paho(broker, unique_id("p"), protocol=V5) as p:
        published_at = time.monotonic()
        publish(p, topic + "/r", "retained é".encode(), 1, True, props("r", EXPIRY))
        publish(p, topic + "/q", b"queued, expires", 1, False, props("x", 1))
        publish(p, topic + "/q", b"queued \x00", 1, False, props("q", EXPIRY))
        publish(p, topic + "/gone", b"expires", 1, True, props("g", 1))
    if dyn is not None:
        # The extra attributes, with their DynamoDB types, next to the tutorial's.
        [item] = dyn.scan_until("mqtt_retain", lambda i: i["topic"]["S"] == topic + "/r")
        assert item["content_type"] == {"S": "application/r+json"}
        assert item["payload_format"] == {"N": "1"}
        assert item["response_topic"] == {"S": "reply/r"}
        assert "B" in item["correlation_data"]
        assert item["user_properties"] == {"L": [{"M": {"k": {"S": k}, "v": {"S": v}}}
                                                 for k, v in USER_PROPERTIES]}
        assert "N" in item["expires_at"]
    # Long enough for the 1 s expiry to run out, and for the remaining interval to drop.
    time.sleep(max(0.0, published_at + 2.2 - time.monotonic()))
    broker.restart()

    with Paho(broker, cid, protocol=V5, clean=False, session_expiry=600) as s:
        assert s.session_present is True
        m = s.get()
        assert (m.topic, m.qos) == (topic + "/q", 1)
        assert_same(m, "q", b"queued \x00", published_at)
        assert m.properties.MessageExpiryInterval < EXPIRY
        s.expect_nothing(1.0)  # the one queued before it expired while the broker was down
    with Paho(broker, unique_id("s"), protocol=V5) as s:
        s.subscribe(topic + "/r", 1)
        m = s.get()
        assert (m.topic, m.retain) == (topic + "/r", True)
        assert_same(m, "r", "retained é".encode(), published_at)
        assert m.properties.MessageExpiryInterval < EXPIRY
        s.subscribe(topic + "/gone", 1)
        s.expect_nothing(1.0)
