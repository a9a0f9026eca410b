"""MQTT over WebSocket (MQTT 3.1.1 / 5.0 section 6): MQTT.js 5 scripts under js/, paho over
WebSocket, and a hand-made WebSocket handshake."""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
from pathlib import Path

import pytest

import rawmqtt as raw
from clients import V311, V5, Paho, unique_id
from wsraw import frame, handshake, read_binary

JS = Path(__file__).parent / "js"
VERSIONS = pytest.mark.parametrize("version", [4, 5], ids=["v311", "v5"])


class Node:
    """A js/*.mjs scenario in the background; its stdout is JSON lines."""

    def __init__(self, script: str, **kw):
        cmd = ["node", str(JS / script)]
        for k, v in kw.items():
            cmd += [f"--{k.replace('_', '-')}", str(v).lower() if isinstance(v, bool) else str(v)]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.events: queue.Queue[dict | None] = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self):
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except json.JSONDecodeError:
                self.events.put({"event": "garbage", "line": line})
        self.events.put(None)

    def wait(self, event: str, timeout: float = 15.0) -> dict:
        deadline = time.monotonic() + timeout
        for _ in range(1000):
            try:
                e = self.events.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                self.proc.kill()
                raise AssertionError(f"no {event!r} from {self.proc.args} within {timeout}s") from None
            if e is None:
                self.proc.wait(5)
                raise AssertionError(f"{self.proc.args} exited ({self.proc.returncode}) before {event!r}: "
                                     f"{self.proc.stderr.read()}")
            if e.get("event") == event:
                if event == "result":
                    assert e.get("ok"), f"{self.proc.args}: {e}"
                    self.proc.wait(5)
                return e
        raise AssertionError("too many events")


def js_pub(broker, topic, message, qos=0, retain=False, version=4):
    Node("pub.mjs", url=broker.ws_url, topic=topic, message=message, qos=qos, retain=retain,
         version=version).wait("result")


@VERSIONS
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_ws_subscriber_tcp_publisher(broker, version, qos):
    """MQTT.js over WebSocket (subprotocol mqtt) subscribes; paho over TCP publishes: the
    message crosses transports at the subscribed QoS [MQTT-3.8.4-6], RETAIN 0."""
    topic = unique_id("ws")
    sub = Node("sub.mjs", url=broker.ws_url, topic=topic, qos=qos, version=version)
    assert sub.wait("subscribed")["granted"] == [qos]
    with Paho(broker, unique_id("p"), protocol=V5 if version == 5 else V311) as p:
        p.publish(topic, f"tcp->ws {qos}", qos)
    got = sub.wait("result")["messages"]
    assert [(m["topic"], m["payload"], m["qos"], m["retain"]) for m in got] == [(topic, f"tcp->ws {qos}", qos, False)]


@VERSIONS
@pytest.mark.parametrize("qos", [0, 1, 2])
def test_tcp_subscriber_ws_publisher(broker, version, qos):
    """MQTT.js publishes over WebSocket; paho receives over TCP, at QoS min(pub, sub)."""
    topic = unique_id("ws")
    with Paho(broker, unique_id("s"), protocol=V5 if version == 5 else V311) as s:
        s.subscribe(topic, 2)
        js_pub(broker, topic, f"ws->tcp {qos}", qos=qos, version=version)
        m = s.get()
        assert (m.topic, m.payload, m.qos, m.retain) == (topic, f"ws->tcp {qos}".encode(), qos, False)


@VERSIONS
def test_ws_retained(broker, version):
    """A retained message published over WebSocket is delivered to a later WebSocket
    subscriber with RETAIN 1 [MQTT-3.3.1-8] (3.1.1) / [MQTT-3.3.1-9] (5.0)."""
    topic = unique_id("wsret")
    js_pub(broker, topic, "kept", qos=1, retain=True, version=version)
    sub = Node("sub.mjs", url=broker.ws_url, topic=topic, qos=1, version=version)
    got = sub.wait("result")["messages"]
    assert [(m["payload"], m["retain"], m["qos"]) for m in got] == [("kept", True, 1)]


@VERSIONS
def test_ws_will(broker, version):
    """A WebSocket client that vanishes without DISCONNECT has its will published
    [MQTT-3.1.2-8]; the TCP observer gets it."""
    topic = unique_id("wswill")
    with Paho(broker, unique_id("obs")) as o:
        o.subscribe(topic, 1)
        Node("will.mjs", url=broker.ws_url, will_topic=topic, will_payload="ws-gone", will_qos=1,
             version=version).wait("result")
        m = o.get()
        assert (m.topic, m.payload, m.qos) == (topic, b"ws-gone", 1)


@VERSIONS
def test_ws_persistent_session(broker, version):
    """Over WebSocket: a persistent session (clean false; 5.0 Session Expiry 300) keeps its
    subscription; a QoS 1 message published while away is delivered on reconnect with
    Session Present 1 [MQTT-3.2.2-2] (3.1.1) / [MQTT-3.2.2-3] (5.0)."""
    cid, topic = unique_id("wsps"), unique_id("wspst")
    common = dict(url=broker.ws_url, topic=topic, qos=1, version=version, client_id=cid, clean=False)
    if version == 5:
        common["session_expiry"] = 300
    first = Node("sub.mjs", count=0, **common)
    assert first.wait("result")["sessionPresent"] is False
    with Paho(broker, unique_id("p")) as p:
        p.publish(topic, b"while-away", 1)
    again = Node("sub.mjs", count=1, **common)
    assert again.wait("subscribed")["sessionPresent"] is True
    got = again.wait("result")["messages"]
    assert [(m["payload"], m["qos"]) for m in got] == [("while-away", 1)]


def test_paho_over_websocket(broker):
    """paho-mqtt's own WebSocket transport (path /mqtt) interoperates with a TCP client."""
    topic = unique_id("pws")
    with Paho(broker, unique_id("w"), transport="websockets") as w, Paho(broker, unique_id("t")) as t:
        w.subscribe(topic, 1)
        t.publish(topic, b"to-ws", 1)
        assert w.get().payload == b"to-ws"


# ------------------------------------------------------------ hand-made WebSocket


@pytest.mark.parametrize("subprotocol", ["mqtt", "mqttv3.1"])
def test_ws_handshake_echoes_subprotocol(broker, subprotocol):
    """The server answers the upgrade with 101 and selects the subprotocol the client offered,
    'mqtt' [MQTT-6.0.0-3] [MQTT-6.0.0-4] (or the legacy 'mqttv3.1'); then a CONNECT in a
    binary frame gets a CONNACK in binary frames [MQTT-6.0.0-1]."""
    s, status, headers = handshake(broker.ws_port, subprotocol)
    with s:
        assert status.startswith("HTTP/1.1 101"), status
        assert headers.get("sec-websocket-protocol") == subprotocol, headers
        s.sendall(frame(raw.connect(unique_id("ws"))))
        assert read_binary(s, 4) == b"\x20\x02\x00\x00"


def test_ws_packets_not_aligned_with_frames(broker):
    """The receiver must not assume MQTT packets are aligned on WebSocket frame boundaries
    [MQTT-6.0.0-2]: a CONNECT split across a fragmented message and two frames, then
    SUBSCRIBE + PUBLISH in one frame, are all understood."""
    s, status, _ = handshake(broker.ws_port, "mqtt")
    with s:
        topic = unique_id("wsframes")
        c = raw.connect(unique_id("wsf"))
        s.sendall(frame(c[:5], fin=False) + frame(c[5:], fin=True, opcode=0))
        assert read_binary(s, 4) == b"\x20\x02\x00\x00"
        both = raw.subscribe(1, [(topic, 0)]) + raw.publish(topic, b"split")
        s.sendall(frame(both[:7]) + frame(both[7:]))
        expected = b"\x90\x03\x00\x01\x00" + raw.publish(topic, b"split")  # SUBACK, PUBLISH
        assert read_binary(s, len(expected)) == expected
