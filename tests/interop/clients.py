"""A thin synchronous wrapper around paho-mqtt 2.x for tests: every call waits for its
acknowledgement with a timeout, and received messages land in a queue.

paho reconnects by itself after the server drops it; tests in which the server closes a
connection on purpose (takeover, violations) use rawmqtt instead, so nothing ping-pongs.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5
WAIT = 5.0
_ids = itertools.count(1)


def unique_id(prefix: str) -> str:
    return f"{prefix}-{int(time.time() * 1000) % 100000}-{next(_ids)}"


@dataclass
class Msg:
    topic: str
    payload: bytes
    qos: int
    retain: bool
    dup: bool
    properties: object | None


class Paho:
    """One paho client, connected on construction."""

    def __init__(self, broker, client_id: str = "", *, protocol=V311, clean: bool = True,
                 keepalive: int = 30, will: tuple | None = None, session_expiry: int | None = None,
                 transport: str = "tcp", connect: bool = True, username: str | None = None,
                 password: str | None = None, connect_properties: dict | None = None):
        self.protocol = protocol
        self.broker = broker
        kw = {}
        if protocol != V5:
            kw["clean_session"] = clean
        self.client = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=protocol, transport=transport, **kw)
        self.client.enable_logger()
        if username is not None:
            self.client.username_pw_set(username, password)
        self._clean = clean
        self._keepalive = keepalive
        self._session_expiry = session_expiry
        # v5 CONNECT properties by paho's names, e.g. {"MaximumPacketSize": 200}
        self._connect_properties = dict(connect_properties or {})
        self.messages: queue.Queue[Msg] = queue.Queue()
        self.connack = queue.Queue()
        self.disconnects = queue.Queue()
        self._acks: dict[int, queue.Queue] = {}
        self._lock = threading.Lock()
        if will:
            topic, payload, qos, retain = will
            self.client.will_set(topic, payload, qos, retain)
        c = self.client
        c.on_connect = lambda _c, _u, flags, rc, props: self.connack.put((flags, rc, props))
        c.on_disconnect = lambda _c, _u, flags, rc, props: self.disconnects.put(rc)
        c.on_message = lambda _c, _u, m: self.messages.put(
            Msg(m.topic, m.payload, m.qos, bool(m.retain), bool(m.dup), getattr(m, "properties", None)))
        c.on_subscribe = lambda _c, _u, mid, rcs, props: self._ack(mid).put(rcs)
        # PUBACK / PUBREC reason codes by message id (v5; v3 has none: Success)
        self.publish_reasons: dict[int, object] = {}
        c.on_publish = lambda _c, _u, mid, rc, props: self.publish_reasons.__setitem__(mid, rc)
        c.on_unsubscribe = lambda _c, _u, mid, rcs, props: self._ack(mid).put(rcs)
        self.session_present = None
        self.reason_code = None
        self.connack_properties = None
        if connect:
            self.connect()

    def _ack(self, mid: int) -> queue.Queue:
        with self._lock:
            return self._acks.setdefault(mid, queue.Queue())

    def try_connect(self):
        """Connect and return the CONNACK reason code (a paho ReasonCode), refused or not."""
        try:
            self.connect()
        except AssertionError:
            if self.reason_code is None:
                raise
        return self.reason_code

    def connect(self):
        kw = {}
        if self.protocol == V5:
            kw["clean_start"] = self._clean
            props = dict(self._connect_properties)
            if self._session_expiry is not None:
                props["SessionExpiryInterval"] = self._session_expiry
            if props:
                p = Properties(PacketTypes.CONNECT)
                for name, value in props.items():
                    setattr(p, name, value)
                kw["properties"] = p
        host = "127.0.0.1"
        port = self.broker.port
        if self.client._transport == "websockets":
            port = self.broker.ws_port
            self.client.ws_set_options(path="/mqtt")
        self.client.connect(host, port, keepalive=self._keepalive, **kw)
        self.client.loop_start()
        try:
            flags, rc, props = self.connack.get(timeout=WAIT)
        except queue.Empty:
            self.client.loop_stop()
            raise AssertionError("no CONNACK within the timeout") from None
        self.session_present = bool(flags.session_present)
        self.reason_code = rc
        self.connack_properties = props
        if rc.is_failure:
            self.client.loop_stop()
            raise AssertionError(f"connection refused: {rc}")
        return self

    def subscribe(self, topic, qos: int = 0, **kw) -> list:
        """Subscribe and return the SUBACK reason codes (paho ReasonCode objects). v5 options:
        rap (Retain As Published), rh (Retain Handling 0, 1, 2)."""
        if self.protocol == V5:
            from paho.mqtt.subscribeoptions import SubscribeOptions
            opts = SubscribeOptions(qos=qos, retainAsPublished=kw.pop("rap", False),
                                    retainHandling=kw.pop("rh", 0))
            rc, mid = self.client.subscribe(topic, options=opts, **kw)
        else:
            rc, mid = self.client.subscribe(topic, qos)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        try:
            return self._ack(mid).get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no SUBACK for {topic!r}") from None

    def unsubscribe(self, topic) -> list:
        rc, mid = self.client.unsubscribe(topic)
        assert rc == mqtt.MQTT_ERR_SUCCESS, rc
        try:
            return self._ack(mid).get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"no UNSUBACK for {topic!r}") from None

    def publish(self, topic: str, payload: bytes | str, qos: int = 0, retain: bool = False,
                properties: Properties | None = None):
        """Publish and, for QoS > 0, wait until the flow completes (PUBACK / PUBCOMP); returns
        the reason code of the acknowledgement (v5; paho's Success for v3 and QoS 0)."""
        info = self.client.publish(topic, payload, qos, retain, properties=properties)
        info.wait_for_publish(WAIT)
        assert info.is_published(), f"publish to {topic!r} (QoS {qos}) not acknowledged within {WAIT}s"
        deadline = time.monotonic() + WAIT
        while info.mid not in self.publish_reasons and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.publish_reasons.pop(info.mid, None)

    def get(self, timeout: float = WAIT) -> Msg:
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no message within {timeout}s") from None

    def expect_nothing(self, duration: float = 0.5) -> None:
        """Assert no message arrives within `duration` seconds."""
        try:
            m = self.messages.get(timeout=duration)
        except queue.Empty:
            return
        raise AssertionError(f"unexpected message {m}")

    def disconnect(self) -> None:
        """A normal DISCONNECT."""
        if self.client.is_connected():
            self.client.disconnect()
            try:
                self.disconnects.get(timeout=WAIT)
            except queue.Empty:
                pass
        self.client.loop_stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.disconnect()


def round_trip(broker, protocol=V311, topic: str | None = None) -> None:
    """A fresh client subscribes and receives its own QoS 1 message: the broker still works."""
    topic = topic or unique_id("alive")
    with Paho(broker, unique_id("rt"), protocol=protocol) as c:
        c.subscribe(topic, 1)
        c.publish(topic, b"ping", 1)
        m = c.get()
        assert (m.topic, m.payload) == (topic, b"ping")
