"""The $SYS/broker/... topics: published every --sys-interval seconds as retained messages,
under Mosquitto's names, and not matched by `#` [MQTT-4.7.2-1]."""

from __future__ import annotations

import re
import time

import pytest

from clients import Paho, unique_id

pytestmark = pytest.mark.dynamq_only


def collect(client: Paho, want: set[str], timeout: float = 5.0) -> dict[str, str]:
    """Messages received until every topic in `want` was seen (the latest value of each)."""
    got: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    while not want <= got.keys():
        left = deadline - time.monotonic()
        assert left > 0, f"missing {want - got.keys()}; got {got}"
        m = client.get(timeout=left)
        got[m.topic] = m.payload.decode()
    return got


def test_sys_topics(start_broker):
    broker = start_broker(extra_args=("--sys-interval", "1"))
    with Paho(broker, unique_id("other")):
        with Paho(broker, unique_id("sys")) as s:
            s.subscribe("$SYS/#", 0)
            got = collect(s, {
                "$SYS/broker/uptime", "$SYS/broker/version", "$SYS/broker/clients/connected",
                "$SYS/broker/clients/total", "$SYS/broker/messages/received",
                "$SYS/broker/bytes/received", "$SYS/broker/subscriptions/count",
                "$SYS/broker/retained messages/count", "$SYS/broker/store/pending",
            })
            assert re.fullmatch(r"\d+ seconds", got["$SYS/broker/uptime"]), got
            assert re.fullmatch(r"dynamq \d+\.\d+\.\d+.*", got["$SYS/broker/version"]), got
            # Retained: sent on subscribe, when the subscriber itself may not be counted yet;
            # the next publications count both clients.
            deadline = time.monotonic() + 5
            while got["$SYS/broker/clients/connected"] != "2":
                assert time.monotonic() < deadline, got
                m = s.get()
                got[m.topic] = m.payload.decode()
            # The uptime goes on.
            first = int(got["$SYS/broker/uptime"].split()[0])
            while True:
                m = s.get(timeout=3)
                if m.topic == "$SYS/broker/uptime":
                    assert int(m.payload.decode().split()[0]) > first
                    break


def test_hash_does_not_match_sys(start_broker):
    """`#` and `+/...` do not match topics starting with `$` [MQTT-4.7.2-1]."""
    broker = start_broker(extra_args=("--sys-interval", "1"))
    with Paho(broker, unique_id("all")) as c:
        c.subscribe("#", 0)
        c.subscribe("+/broker/uptime", 0)
        c.expect_nothing(2.5)


def test_sys_interval_zero_publishes_nothing(start_broker):
    broker = start_broker(extra_args=("--sys-interval", "0"))
    with Paho(broker, unique_id("sys")) as s:
        s.subscribe("$SYS/#", 0)
        s.expect_nothing(1.5)
