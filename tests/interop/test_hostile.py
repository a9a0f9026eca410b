"""Hostile clients (issue 11, section 2): a client that trickles a packet a byte at a time
after CONNECT is still timed out by its keepalive, which counts complete control packets
only [MQTT-3.1.2-22]; accepted sockets carry TCP keepalive, which finds half-open
connections even when the MQTT keepalive is 0; a WebSocket client that sends text frames or
offers no `mqtt` subprotocol; PUBREL for unknown packet ids; a flood of QoS 2 publishes never
released; a subscriber that never acknowledges until every packet id is in flight. Each
flood also checks that the broker's resident memory (VmRSS) stays under a stated bound."""

from __future__ import annotations

import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

import rawmqtt as raw
import wsraw
from clients import Paho, unique_id
from conftest import free_port
from test_metrics import scrape

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


# ------------------------------------------------------------ helpers

VERSIONS = pytest.mark.parametrize("version", [raw.V311, raw.V5], ids=["v311", "v5"])
PUBCOMP_NOT_FOUND = 0x92      # 5.0 section 3.7.2.1: Packet Identifier not found
RECEIVE_MAXIMUM_EXCEEDED = 0x93
RECEIVE_MAXIMUM = 1024        # mqtt.receive_maximum, the default
MIB = 1024 * 1024


def rss_bytes(broker) -> int:
    """The broker process's resident set size (VmRSS in /proc/PID/status)."""
    for line in Path(f"/proc/{broker.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/PID/status")


def assert_rss_growth_under(broker, before: int, bound_mib: int, what: str) -> None:
    """The broker's RSS grew by less than `bound_mib` MiB since `before`; prints the growth
    (seen with pytest -s) so that the bound can be compared with what was measured."""
    growth = rss_bytes(broker) - before
    print(f"\n{what}: broker RSS grew by {growth / MIB:.1f} MiB (bound {bound_mib} MiB)")
    assert growth < bound_mib * MIB, f"{what}: RSS grew by {growth / MIB:.1f} MiB"


class PacketReader:
    """Reads many packets fast from a RawClient's socket (rawmqtt's reader copies its buffer
    for each packet): yields (first byte, body) of every complete packet received."""

    def __init__(self, client: raw.RawClient):
        self.sock = client.sock
        self.buf = bytearray(client._buf)
        client._buf = b""
        self.closed = False

    def read(self, timeout: float) -> list[tuple[int, bytes]]:
        """The packets completed by one read (waiting up to `timeout`); [] on time-out or close
        (then `closed` is set)."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(1 << 20)
        except (socket.timeout, TimeoutError):
            return []
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            self.closed = True
        self.buf += chunk
        out, i, n = [], 0, len(self.buf)
        while i + 2 <= n:
            length, mult, j = 0, 1, i + 1
            while j < n:
                b = self.buf[j]
                length += (b & 0x7F) * mult
                j += 1
                if not b & 0x80:
                    break
                mult *= 128
            else:
                break
            if j + length > n:
                break
            out.append((self.buf[i], bytes(self.buf[j:j + length])))
            i = j + length
        del self.buf[:i]
        return out


def send_tolerant(s: raw.RawClient, data: bytes) -> bool:
    """Send; False if the server has closed the connection."""
    try:
        s.send(data)
        return True
    except (BrokenPipeError, ConnectionResetError):
        return False


# ------------------------------------------------------------ PUBREL for an unknown id


@VERSIONS
def test_pubrel_for_unknown_id_gets_pubcomp(broker, version):
    """A PUBREL is answered by a PUBCOMP with its packet id [MQTT-4.3.3-11] (5.0) /
    [MQTT-4.3.3-2] (3.1.1). For an id with no QoS 2 flow open (never used, or already
    released) a v5 PUBCOMP says 0x92 Packet Identifier not found (section 3.7.2.1); a v3.1.1
    PUBCOMP has no reason code (a 2-byte body). The connection stays open either way, and a
    real flow on the same connection still completes with Success."""
    with raw.RawClient(broker.port, version=version) as s:
        assert s.handshake(unique_id("rel")).reason == 0
        s.send(raw.ack(raw.PUBREL, 4242))
        p = s.expect(raw.PUBCOMP)
        assert p.pid == 4242
        if version == raw.V5:
            assert p.reason == PUBCOMP_NOT_FOUND, p
        else:
            assert len(p.body) == 2, p
        s.send(raw.publish(unique_id("rel/t"), b"x", qos=2, pid=7, version=version))
        assert s.expect(raw.PUBREC).pid == 7
        s.send(raw.ack(raw.PUBREL, 7))
        p = s.expect(raw.PUBCOMP)
        assert (p.pid, p.reason) == (7, 0), p
        s.send(raw.ack(raw.PUBREL, 7))  # released already: unknown now
        p = s.expect(raw.PUBCOMP)
        assert (p.pid, p.reason) == (7, PUBCOMP_NOT_FOUND if version == raw.V5 else 0), p
        s.send(raw.pingreq())
        assert s.expect(raw.PINGRESP)


@VERSIONS
def test_flood_of_unknown_pubrels_costs_no_memory(broker, version):
    """100,000 PUBRELs for ids never used, in batches of 1,000, each batch answered in full
    before the next is sent: every one gets its PUBCOMP (v5: 0x92), the connection stays open,
    and the broker's RSS grows by less than 16 MiB (nothing is kept per unknown id)."""
    total, batch = 100_000, 1000
    with raw.RawClient(broker.port, version=version) as s:
        assert s.handshake(unique_id("relflood")).reason == 0
        rss_before = rss_bytes(broker)
        r = PacketReader(s)
        got = 0
        for start in range(0, total, batch):
            s.send(b"".join(raw.ack(raw.PUBREL, 1 + (start + k) % 65535) for k in range(batch)))
            want = start + batch
            deadline = time.monotonic() + 10
            while got < want and time.monotonic() < deadline and not r.closed:
                for first, body in r.read(0.5):
                    assert first >> 4 == raw.PUBCOMP, (first, body)
                    reason = body[2] if len(body) > 2 else 0
                    assert reason == (PUBCOMP_NOT_FOUND if version == raw.V5 else 0), body
                    got += 1
            assert got == want and not r.closed, (got, want, r.closed)
        assert_rss_growth_under(broker, rss_before, 16, "100,000 unknown PUBRELs")
        s.send(raw.pingreq())
        assert s.expect(raw.PINGRESP)


# ------------------------------------------------------------ QoS 2 never released


@VERSIONS
def test_qos2_flood_never_released(broker, version):
    """A client sends QoS 2 PUBLISHes (1 KiB payloads) and never a PUBREL. The broker keeps
    the packet ids of unreleased messages [MQTT-4.3.3-9] (5.0) / [MQTT-4.3.3-2] (3.1.1) up to
    mqtt.receive_maximum (1,024, the Receive Maximum in a v5 CONNACK): the first 1,024 ids
    each get a PUBREC and are routed once; then 98,976 resends of those pending ids (DUP set,
    100,000 publishes in all) each get a PUBREC again and are not routed again; the
    connection stays open. One more new id is more than the client may have unreleased
    [MQTT-3.3.4-7]: v5 gets DISCONNECT 0x93 Receive Maximum exceeded, v3.1.1 (which has no
    way to say it) is closed. The broker's RSS grows by less than 32 MiB over the whole flood
    (100,000 KiB of payloads went through; the 1,024 routed ones are 1 MiB)."""
    topic = unique_id("q2flood")
    payload = bytes(1024)
    total, batch = 100_000, 1024
    with Paho(broker, unique_id("q2sub")) as sub:
        sub.subscribe(topic, 0)
        with raw.RawClient(broker.port, version=version) as s:
            ack = s.handshake(unique_id("q2pub"))
            assert ack.reason == 0
            if version == raw.V5:
                assert ack.properties.get(0x21) == RECEIVE_MAXIMUM, ack
            rss_before = rss_bytes(broker)
            r = PacketReader(s)
            recs: list[int] = []
            for start in range(0, total, batch):
                dup = start > 0
                s.send(b"".join(raw.publish(topic, payload, qos=2, pid=1 + k, dup=dup, version=version)
                                for k in range(min(batch, total - start))))
                want = min(start + batch, total)
                deadline = time.monotonic() + 10
                while len(recs) < want and time.monotonic() < deadline and not r.closed:
                    for first, body in r.read(0.5):
                        assert first >> 4 == raw.PUBREC, (first, body)
                        assert len(body) == 2 or body[2] == 0, body
                        recs.append(struct.unpack_from(">H", body)[0])
                assert len(recs) == want and not r.closed, (len(recs), want, r.closed)
            assert recs[:batch] == list(range(1, batch + 1))
            assert_rss_growth_under(broker, rss_before, 32, "100,000 QoS 2 PUBLISH never released")
            got = [sub.get().payload for _ in range(RECEIVE_MAXIMUM)]
            assert got == [payload] * RECEIVE_MAXIMUM
            sub.expect_nothing(0.5)  # the resends were not routed again
            s.send(raw.publish(topic, payload, qos=2, pid=RECEIVE_MAXIMUM + 1, version=version))
            rest = s.packets_until_close(timeout=5)
            if version == raw.V5:
                assert [(p.ptype, p.reason) for p in rest] == [(raw.DISCONNECT, RECEIVE_MAXIMUM_EXCEEDED)], rest
            else:
                assert rest == [], rest
        sub.expect_nothing(0.3)  # the one over the limit was not routed


# ------------------------------------------------------------ packet id exhaustion


@VERSIONS
def test_packet_ids_exhausted_by_a_subscriber_that_never_acks(start_broker, tmp_path, version):
    """With mqtt.max_inflight 65,535, a subscriber (QoS 1; v5: Receive Maximum 65,535 in its
    CONNECT) that never sends PUBACK gets 70,000 messages published to it. The broker may
    have at most 65,535 in flight, one per non-zero packet id, and must not reuse an id still
    in flight [MQTT-2.3.1-2] [MQTT-2.3.1-4] (3.1.1) / [MQTT-2.2.1-4] (5.0), nor send more
    than the client's Receive Maximum [MQTT-3.3.4-9]: exactly 65,535 PUBLISHes arrive, with
    distinct ids, none 0. The rest waits in the session's bounded queue
    (mqtt.max_queued_messages 1,000 here; up to twice that under flow control) and the
    remainder is dropped and counted (dynamq_dropped_queue_full_total): the publisher is
    not held up for good. Once the subscriber acknowledges id 777, the only free id, the next
    queued message goes out with id 777. Broker RSS grows by less than 160 MiB (65,535
    in-flight messages of 64-byte payloads plus 2,000 queued; the measured growth is printed)."""
    conf = tmp_path / "ids.toml"
    conf.write_text("[mqtt]\nmax_inflight = 65535\nmax_queued_messages = 1000\n"
                    "slow_consumer_timeout_ms = 0\n")
    http = free_port()
    broker = start_broker(extra_args=("--config", str(conf), "--http", f"127.0.0.1:{http}"))
    topic = unique_id("ids")
    total, batch, payload = 70_000, 1000, bytes(64)
    with raw.RawClient(broker.port, version=version) as sub, raw.RawClient(broker.port) as pub:
        receive_max = raw.varint(3) + bytes([0x21]) + struct.pack(">H", 65535)
        assert sub.handshake(unique_id("idsub"), properties=receive_max if version == raw.V5 else None).reason == 0
        sub.send(raw.subscribe(1, [(topic, 1)], version=version))
        assert sub.expect(raw.SUBACK).reasons == [1]
        assert pub.handshake(unique_id("idpub")).reason == 0
        rss_before = rss_bytes(broker)
        ids: list[int] = []
        unexpected: list[tuple[int, bytes]] = []  # asserted on in the test's thread
        stop = threading.Event()
        reader = PacketReader(sub)

        def read_sub():
            while not stop.is_set() and not reader.closed:
                for first, body in reader.read(0.2):
                    if first >> 4 != raw.PUBLISH or (first >> 1) & 3 != 1:
                        unexpected.append((first, body))
                        continue
                    n = struct.unpack_from(">H", body)[0]
                    ids.append(struct.unpack_from(">H", body, 2 + n)[0])

        t = threading.Thread(target=read_sub, daemon=True)
        t.start()
        try:
            pr = PacketReader(pub)
            acked = 0
            for start in range(0, total, batch):
                pub.send(b"".join(raw.publish(topic, payload, qos=1, pid=1 + (start + k) % 65535)
                                  for k in range(batch)))
                deadline = time.monotonic() + 15
                while acked < start + batch and time.monotonic() < deadline and not pr.closed:
                    for first, _ in pr.read(0.5):
                        assert first >> 4 == raw.PUBACK
                        acked += 1
                assert acked == start + batch, (acked, start + batch, pr.closed)
            deadline = time.monotonic() + 20
            while len(ids) < 65535 and time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(0.5)  # anything more than 65,535 would have come by now
        finally:
            stop.set()
            t.join(5)
        assert not unexpected and not reader.closed, unexpected[:3]
        assert len(ids) == 65535, len(ids)
        assert len(set(ids)) == 65535 and 0 not in ids
        assert_rss_growth_under(broker, rss_before, 160, "65,535 QoS 1 in flight")
        m = scrape(http)
        dropped = sum(v for k, v in m.items() if k.startswith("dynamq_dropped_queue_full_total"))
        assert total - 65535 - 2 * 1000 <= dropped <= total - 65535 - 1, m
        sub.send(raw.ack(raw.PUBACK, 777))
        nxt: list[tuple[int, bytes]] = []
        deadline = time.monotonic() + 5
        while not nxt and time.monotonic() < deadline and not reader.closed:
            nxt = reader.read(0.5)
        assert nxt, "no queued message after an acknowledgement"
        first, body = nxt[0]
        n = struct.unpack_from(">H", body)[0]
        assert first >> 4 == raw.PUBLISH and struct.unpack_from(">H", body, 2 + n)[0] == 777, nxt[0]


# ------------------------------------------------------------ WebSocket


@pytest.mark.parametrize("utf8", [True, False], ids=["utf8-text", "non-utf8-text"])
def test_ws_text_frame_closes_the_connection(start_broker, utf8):
    """MQTT travels in binary WebSocket frames only; any other data frame makes the recipient
    close the network connection [MQTT-6.0.0-1]. After a CONNECT that got its CONNACK, a text
    frame holding a QoS 0 PUBLISH (plain ASCII, so valid UTF-8 text) or a PINGREQ (0xC0 0x00,
    not UTF-8: RFC 6455 8.1 says to fail the connection for that alone) closes the
    connection: no PINGRESP, the PUBLISH is not routed, a warning names the cause
    ([MQTT-6.0.0-1] or the UTF-8 error) and dynamq_protocol_errors_total counts it. 300 more
    connections whose CONNECT comes in a text frame are closed and counted too, and leave
    the broker's RSS less than 16 MiB larger."""
    http = free_port()
    broker = start_broker(extra_args=("--http", f"127.0.0.1:{http}"))
    errors_before = scrape(http)["dynamq_protocol_errors_total"]
    topic = unique_id("wstext/t")
    with Paho(broker, unique_id("wssub")) as sub:
        sub.subscribe(topic, 0)
        s, status, _ = wsraw.handshake(broker.ws_port, "mqtt")
        with s:
            assert status.startswith("HTTP/1.1 101"), status
            s.sendall(wsraw.frame(raw.connect(unique_id("wstext"))))
            assert wsraw.read_binary(s, 4) == b"\x20\x02\x00\x00"
            data = raw.publish(topic, b"in a text frame") if utf8 else raw.pingreq()
            assert utf8 == data.isascii()
            s.sendall(wsraw.frame(data, opcode=wsraw.OP_TEXT))
            frames = wsraw.read_until_closed(s)
            assert all(op != wsraw.OP_BINARY for op, _ in frames), f"MQTT data after a text frame: {frames}"
        sub.expect_nothing(0.3)
    why = "[MQTT-6.0.0-1] text WebSocket frame" if utf8 else "UTF-8"
    assert broker.wait_log(lambda ln: "WARN" in ln and "invalid data on the transport" in ln and why in ln), \
        broker.log_text()[-2000:]
    assert scrape(http)["dynamq_protocol_errors_total"] - errors_before == 1
    rss_before = rss_bytes(broker)
    for i in range(300):
        s, status, _ = wsraw.handshake(broker.ws_port, "mqtt")
        with s:
            assert status.startswith("HTTP/1.1 101"), status
            s.sendall(wsraw.frame(raw.connect(f"text{i}"), opcode=wsraw.OP_TEXT))
            assert all(op != wsraw.OP_BINARY for op, _ in wsraw.read_until_closed(s))
    assert_rss_growth_under(broker, rss_before, 16, "300 text-frame connections")
    assert broker.wait_log(lambda ln: "before CONNECT" in ln and "text WebSocket frame" in ln)
    deadline = time.monotonic() + 3
    while scrape(http)["dynamq_protocol_errors_total"] - errors_before < 301 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert scrape(http)["dynamq_protocol_errors_total"] - errors_before == 301


@pytest.mark.parametrize("offer", [None, "chat", "mqttv5, chat"], ids=["none", "chat", "two-wrong"])
def test_ws_without_mqtt_subprotocol_is_upgraded_without_one(broker, offer):
    """A client that does not offer `mqtt` breaks [MQTT-6.0.0-3] ("The Client MUST include
    mqtt in the list of WebSocket Sub Protocols it offers"). The server may only select one
    of the subprotocols the client offered, or none by sending no Sec-WebSocket-Protocol
    header (RFC 6455 4.2.2); so [MQTT-6.0.0-4] (the selected one is `mqtt`) cannot hold, and
    the choice is between refusing the upgrade and accepting it with no subprotocol.
    dynamq does the latter, leniently: 101 with no Sec-WebSocket-Protocol header (never an
    echo of the unknown offer), and MQTT then works over the connection."""
    s, status, headers = wsraw.handshake(broker.ws_port, offer)
    with s:
        assert status.startswith("HTTP/1.1 101"), status
        assert "sec-websocket-protocol" not in headers, headers
        s.sendall(wsraw.frame(raw.connect(unique_id("wsnosub"))))
        assert wsraw.read_binary(s, 4) == b"\x20\x02\x00\x00"


def test_ws_mqtt_selected_among_other_offers(broker):
    """Offered "chat, mqtt", the server selects `mqtt` [MQTT-6.0.0-4]: one value, one the
    client offered (RFC 6455 4.2.2)."""
    s, status, headers = wsraw.handshake(broker.ws_port, "chat, mqtt")
    with s:
        assert status.startswith("HTTP/1.1 101"), status
        assert headers.get("sec-websocket-protocol") == "mqtt", headers
