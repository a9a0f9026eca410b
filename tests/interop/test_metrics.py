"""The metrics endpoint (GET /metrics, Prometheus text format): what the broker counts is
visible, including violations and store activity."""

from __future__ import annotations

import time
import urllib.request

import pytest

import rawmqtt as raw
from clients import Paho, unique_id
from conftest import free_port

pytestmark = pytest.mark.dynamq_only


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain")
        text = r.read().decode()
    values = {}
    for line in text.splitlines():
        if line.startswith("#") or not line:
            continue
        name, value = line.split(" ")
        values[name] = float(value)
    # Every sample has its HELP and TYPE lines: those of its family, the name without labels
    # and, for a histogram's samples, without the _bucket / _sum / _count suffix.
    for sample in values:
        name = sample.split("{", 1)[0]
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and f"# TYPE {name[: -len(suffix)]} histogram" in text:
                family = name[: -len(suffix)]
        assert f"# TYPE {family} " in text and f"# HELP {family} " in text, sample
    return values


def test_metrics_count_what_happened(start_broker):
    http = free_port()
    broker = start_broker(extra_args=("--http", f"127.0.0.1:{http}"))
    before = scrape(http)
    assert before["dynamq_clients_connected"] == 0
    topic = unique_id("m")
    with Paho(broker, unique_id("s")) as s:
        s.subscribe(topic, 1)
        with Paho(broker, unique_id("p")) as p:
            for i in range(3):
                p.publish(topic, f"{i}".encode(), 1)
        for _ in range(3):
            s.get()
        # The publisher's DISCONNECT is handled by its own task: wait for it (bounded).
        deadline = time.monotonic() + 5
        during = scrape(http)
        while during["dynamq_clients_connected"] != 1 and time.monotonic() < deadline:
            time.sleep(0.05)
            during = scrape(http)
        assert during["dynamq_clients_connected"] == 1
        assert during["dynamq_subscription_filters"] == 1
    with raw.RawClient(broker.port) as bad:  # a wildcard in a PUBLISH topic
        bad.handshake(unique_id("bad"))
        bad.send(raw.publish("a/#", b"x"))
        bad.packets_until_close()
    after = scrape(http)
    assert after["dynamq_messages_received_total"] - before["dynamq_messages_received_total"] == 3
    assert after["dynamq_messages_sent_total"] - before["dynamq_messages_sent_total"] == 3
    assert after["dynamq_protocol_errors_total"] - before["dynamq_protocol_errors_total"] == 1
    # The default store took the messages (on_message_publish) and the acks.
    assert after["dynamq_store_ops_submitted_total"] > before["dynamq_store_ops_submitted_total"]
    assert after["dynamq_store_action_errors_total"] == 0
