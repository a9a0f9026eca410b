"""MQTT v5 information the server gives, with paho-mqtt v5 (issue 10, section 3): Response
Information in the CONNACK, Reason Strings on error acknowledgements and on the server's
DISCONNECT (and none when Request Problem Information is 0), a DISCONNECT that changes the
Session Expiry Interval, and `$SYS` topics that clients may not publish to."""

from __future__ import annotations

import queue
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from clients import V5, Paho, unique_id

pytestmark = pytest.mark.dynamq_only

WAIT = 5


class V5Client:
    """A paho v5 client that keeps what the callbacks report, properties included."""

    def __init__(self, broker, client_id: str, clean: bool = True, **connect_props):
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2,
                                  client_id=client_id, protocol=mqtt.MQTTv5)
        self.connacks: queue.Queue = queue.Queue()
        self.pubacks: queue.Queue = queue.Queue()
        self.subacks: queue.Queue = queue.Queue()
        self.disconnects: queue.Queue = queue.Queue()
        self.messages: queue.Queue = queue.Queue()
        c = self.client
        c.on_connect = lambda _c, _u, flags, rc, props: self.connacks.put((flags, rc, props))
        c.on_publish = lambda _c, _u, mid, rc, props: self.pubacks.put((rc, props))
        c.on_subscribe = lambda _c, _u, mid, rcs, props: self.subacks.put((rcs, props))
        c.on_disconnect = lambda _c, _u, flags, rc, props: self.disconnects.put((rc, props))
        c.on_message = lambda _c, _u, m: self.messages.put(m)
        props = Properties(PacketTypes.CONNECT)
        for name, value in connect_props.items():
            setattr(props, name, value)
        c.connect("127.0.0.1", broker.port, keepalive=30, clean_start=clean, properties=props)
        c.loop_start()
        self.flags, self.rc, self.props = self.connacks.get(timeout=WAIT)
        assert not self.rc.is_failure, self.rc

    def publish(self, topic: str, payload: bytes, qos: int = 1, **publish_props):
        props = Properties(PacketTypes.PUBLISH)
        for name, value in publish_props.items():
            setattr(props, name, value)
        self.client.publish(topic, payload, qos, properties=props)
        return self.pubacks.get(timeout=WAIT)

    def close(self, **disconnect_props):
        props = None
        if disconnect_props:
            props = Properties(PacketTypes.DISCONNECT)
            for name, value in disconnect_props.items():
                setattr(props, name, value)
        if self.client.is_connected():
            self.client.disconnect(properties=props)
            try:
                self.disconnects.get(timeout=WAIT)
            except queue.Empty:
                pass
        self.client.loop_stop()


def reason_string(props) -> str | None:
    return getattr(props, "ReasonString", None) if props is not None else None


def test_response_information_when_requested(broker):
    """Request Response Information 1: the CONNACK carries Response Information, the
    configured prefix and the client id [MQTT-3.1.2-28]; without the request, none."""
    cid = unique_id("ri")
    c = V5Client(broker, cid, RequestResponseInformation=1)
    try:
        assert c.props.ResponseInformation == f"resp/{cid}"
    finally:
        c.close()
    c = V5Client(broker, unique_id("ri-none"))
    try:
        assert getattr(c.props, "ResponseInformation", None) is None
    finally:
        c.close()


def test_reason_string_on_an_error_puback_unless_refused(broker):
    """A PUBACK with an error code carries a Reason String; a client that set Request
    Problem Information 0 gets the code without it [MQTT-3.1.2-29]."""
    bad = b"\xff\xfe not UTF-8"
    c = V5Client(broker, unique_id("rs"))
    try:
        rc, props = c.publish("rs/t", bad, PayloadFormatIndicator=1)
        assert rc.value == 0x99
        assert "Payload Format Indicator" in reason_string(props)
    finally:
        c.close()
    quiet = V5Client(broker, unique_id("rs-quiet"), RequestProblemInformation=0)
    try:
        rc, props = quiet.publish("rs/t", bad, PayloadFormatIndicator=1)
        assert rc.value == 0x99
        assert reason_string(props) is None
    finally:
        quiet.close()


def test_sys_topics_are_not_writable_by_clients(broker):
    """A client's PUBLISH to a `$SYS` topic is refused (v5 PUBACK 0x87 with a Reason String)
    and reaches no subscriber; a v3.1.1 client is acknowledged as usual and nothing is
    delivered either (as Mosquitto)."""
    with Paho(broker, unique_id("sys-sub"), protocol=V5) as sub:
        sub.subscribe("$SYS/fake/#", 1)
        c = V5Client(broker, unique_id("sys-pub"))
        try:
            rc, props = c.publish("$SYS/fake/v5", b"x")
            assert rc.value == 0x87
            assert "$SYS" in reason_string(props)
        finally:
            c.close()
        with Paho(broker, unique_id("sys-pub3")) as v3:
            v3.publish("$SYS/fake/v3", b"x", qos=1)
        sub.expect_nothing(0.5)


def test_server_disconnect_carries_a_reason_string(broker):
    """The server's DISCONNECT says why in a Reason String: here a takeover (0x8E)."""
    cid = unique_id("takeover")
    first = V5Client(broker, cid)
    second = V5Client(broker, cid)
    try:
        rc, props = first.disconnects.get(timeout=WAIT)
        assert rc.value == 0x8E
        assert "took the session over" in reason_string(props)
    finally:
        second.close()
        first.client.loop_stop()


def test_disconnect_changes_the_session_expiry(broker):
    """DISCONNECT may set a new Session Expiry Interval [MQTT-3.14.2-2]: a session opened with
    1 s and closed with 300 s is still there 2 s later; one opened with 300 s and closed with
    0 ends at once."""
    longer, ended = unique_id("se-longer"), unique_id("se-ended")
    c = V5Client(broker, longer, clean=True, SessionExpiryInterval=1)
    c.client.subscribe("se/x", 1)
    c.subacks.get(timeout=WAIT)
    c.close(SessionExpiryInterval=300)
    c = V5Client(broker, ended, clean=True, SessionExpiryInterval=300)
    c.close(SessionExpiryInterval=0)
    time.sleep(2)
    c = V5Client(broker, longer, clean=False, SessionExpiryInterval=300)
    try:
        assert c.flags.session_present
    finally:
        c.close(SessionExpiryInterval=0)
    c = V5Client(broker, ended, clean=False, SessionExpiryInterval=0)
    try:
        assert not c.flags.session_present
    finally:
        c.close()
