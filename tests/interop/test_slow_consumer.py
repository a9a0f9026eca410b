"""Slow consumers, with real clients (issue 11, section 3).

A paho-mqtt v5 subscriber that stops acknowledging fills its window (Receive Maximum 2),
then its queue. Its publisher is paused for `flow_control_ms` at most; the subscriber is
then stalled (what goes over its bound is dropped and counted) and, after
`slow_consumer_timeout_ms` without progress, disconnected with 0x97 Quota exceeded. A
mosquitto_sub subscriber of the same topic meanwhile gets every message, in order
[MQTT-4.6.0-6], and the publisher (mosquitto_pub) has each one acknowledged.
"""

from __future__ import annotations

import queue
import subprocess
import time

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from clients import unique_id
from test_mosquitto_clients import Sub

pytestmark = pytest.mark.dynamq_only

PUBLISHED = 200
QUOTA_EXCEEDED = 0x97


def slow_broker(start_broker, tmp_path):
    conf = tmp_path / "slow.toml"
    conf.write_text("[mqtt]\nmax_queued_messages = 20\nflow_control_ms = 200\n"
                    "slow_consumer_timeout_ms = 1000\n")
    return start_broker(extra_args=("--config", str(conf)))


def never_acks(broker, client_id: str):
    """A paho v5 client with manual acknowledgements that never acknowledges anything."""
    c = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id,
                    protocol=mqtt.MQTTv5, manual_ack=True)
    got: queue.Queue = queue.Queue()
    disconnects: queue.Queue = queue.Queue()
    connacks: queue.Queue = queue.Queue()
    subacks: queue.Queue = queue.Queue()
    c.on_connect = lambda _c, _u, _f, rc, _p: connacks.put(rc)
    c.on_subscribe = lambda _c, _u, _m, rcs, _p: subacks.put(rcs)
    c.on_message = lambda _c, _u, m: got.put(m.payload)
    c.on_disconnect = lambda _c, _u, _f, rc, _p: disconnects.put(rc)
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = 2
    props.SessionExpiryInterval = 60
    c.connect("127.0.0.1", broker.port, keepalive=30, clean_start=True, properties=props)
    c.loop_start()
    assert not connacks.get(timeout=5).is_failure
    c.subscribe("slow/t", qos=1)
    assert subacks.get(timeout=5)[0].value == 1
    return c, got, disconnects


def test_stalled_subscriber_disconnected_while_others_go_on(start_broker, tmp_path):
    broker = slow_broker(start_broker, tmp_path)
    stuck, stuck_got, stuck_disconnects = never_acks(broker, unique_id("stuck"))
    try:
        other = Sub(broker, ["slow/t"], qos=1, count=PUBLISHED, wait=20).wait_subscribed()
        started = time.monotonic()
        lines = "".join(f"{i}\n" for i in range(PUBLISHED))
        r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(broker.port), "-q", "1",
                            "-t", "slow/t", "-l"], input=lines, capture_output=True, text=True,
                           timeout=20)
        assert r.returncode == 0, r.stderr
        payloads = [p for (_t, _q, _r, p) in other.messages(timeout=20)]
        assert payloads == [str(i) for i in range(PUBLISHED)], payloads
        # One pause of 200 ms for the publisher, not one per message.
        assert time.monotonic() - started < 10

        rc = stuck_disconnects.get(timeout=5)
        assert rc.value == QUOTA_EXCEEDED, rc
        # Its window of two, no more: it acknowledged nothing.
        assert stuck_got.qsize() == 2
        assert broker.wait_log(lambda ln: "disconnecting a slow consumer" in ln)
        assert broker.wait_log(lambda ln: "subscriber stalled" in ln)
    finally:
        stuck.loop_stop()
