"""Configured limits (issue 12, section 3; issue 11's many subscriptions from one client),
each answered with its reason code: client id length (CONNACK v3 0x02, v5 0x85), topic
levels (PUBLISH: v5 PUBACK 0x90, v3 dropped; SUBSCRIBE 0x8F / v3 0x80), subscriptions per
session (0x97 Quota exceeded / v3 0x80)."""

from __future__ import annotations

import pytest

import rawmqtt as raw
from clients import V5, V311, Paho, unique_id

pytestmark = pytest.mark.dynamq_only


@pytest.fixture
def limited(start_broker, tmp_path):
    conf = tmp_path / "limits.toml"
    conf.write_text("[mqtt]\nmax_client_id_len = 12\nmax_topic_levels = 3\nmax_subscriptions = 2\n")
    return start_broker(extra_args=("--config", str(conf)))


@pytest.mark.parametrize("version", [pytest.param(raw.V311, id="v311"), pytest.param(raw.V5, id="v5")])
def test_client_id_too_long(limited, version):
    with raw.RawClient(limited.port, version=version) as s:
        ack = s.handshake("x" * 13)
        assert ack.reason == (0x02 if version == raw.V311 else 0x85)
    with raw.RawClient(limited.port, version=version) as s:
        assert s.handshake("x" * 12).reason == 0


@pytest.mark.parametrize("protocol", [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")])
def test_topic_levels(limited, protocol):
    """A filter or a topic of 4 levels is refused; 3 are fine."""
    with Paho(limited, unique_id("lv"), protocol=protocol) as c:
        codes = c.subscribe("a/b/c/d", 1)
        assert [getattr(r, "value", r) for r in codes] == [0x8F if protocol == V5 else 0x80]
        assert [getattr(r, "value", r) for r in c.subscribe("a/b/#", 1)] == [1]
        c.publish("a/b/c", b"three", qos=1)
        assert c.get().payload == b"three"
        if protocol == V5:
            info = c.client.publish("a/b/c/d", b"four", 1)
            info.wait_for_publish(5)
        else:
            c.publish("a/b/c/d", b"four", qos=1)  # acknowledged as usual, not delivered
        c.expect_nothing(0.5)


@pytest.mark.parametrize("protocol", [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")])
def test_subscriptions_per_session(limited, protocol):
    """Two subscriptions fit; a third new filter gets Quota exceeded (v3 0x80); subscribing
    again to one it holds is still fine."""
    with Paho(limited, unique_id("ms"), protocol=protocol) as c:
        assert [getattr(r, "value", r) for r in c.subscribe("s/1", 1)] == [1]
        assert [getattr(r, "value", r) for r in c.subscribe("s/2", 1)] == [1]
        assert [getattr(r, "value", r) for r in c.subscribe("s/3", 1)] == [0x97 if protocol == V5 else 0x80]
        assert [getattr(r, "value", r) for r in c.subscribe("s/1", 0)] == [0]
