"""Hostile clients (issue 11, section 2): a client that trickles a packet a byte at a time
after CONNECT is still timed out by its keepalive, which counts complete control packets
only [MQTT-3.1.2-22]; and accepted sockets carry TCP keepalive, which finds half-open
connections even when the MQTT keepalive is 0."""

from __future__ import annotations

import re
import subprocess
import time

import pytest

import rawmqtt as raw
from clients import unique_id

pytestmark = pytest.mark.dynamq_only


def test_slowloris_after_connect_is_timed_out(broker):
    """Keepalive 1 s: a PUBLISH sent one byte every 300 ms keeps bytes coming, but no packet
    completes within 1.5 s, so the server closes the connection (a v5 client is told 0x8D)
    long before the trickle would end (its 30-odd bytes take about 10 s)."""
    with raw.RawClient(broker.port, version=raw.V5) as s:
        assert s.handshake(unique_id("slow"), keepalive=1).reason == 0
        trickle = raw.publish("slow/loris/topic", b"payload", qos=0, version=raw.V5)
        started = time.monotonic()
        closed_at = None
        for b in trickle[:-1]:
            try:
                s.send(bytes([b]))
            except (BrokenPipeError, ConnectionResetError):
                closed_at = time.monotonic()
                break
            time.sleep(0.3)
            try:
                p = s.recv(timeout=0.01)
            except TimeoutError:
                continue
            assert p is None or (p.ptype == raw.DISCONNECT and p.reason == 0x8D), p
            closed_at = time.monotonic()
            break
        assert closed_at is not None, "still open after the whole trickle"
        assert closed_at - started < 3.0, closed_at - started


def test_accepted_sockets_have_tcp_keepalive(broker):
    """The server's side of an accepted connection runs a TCP keepalive timer (`ss -o`
    shows `timer:(keepalive,...)`), so a client gone without a FIN is found."""
    with raw.RawClient(broker.port) as s:
        assert s.handshake(unique_id("tcpka"), keepalive=0).reason == 0
        out = subprocess.run(["ss", "-tnoH", "state", "established", f"( sport = :{broker.port} )"],
                             capture_output=True, text=True, timeout=10).stdout
        mine = [ln for ln in out.splitlines() if f":{s.local_port}" in ln]
        assert mine, out
        assert re.search(r"timer:\(keepalive,", mine[0]), mine[0]
