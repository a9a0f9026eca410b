"""Hand-built MQTT packets over a plain TCP socket, for tests that need to misbehave.

Real clients (paho, mosquitto_pub, MQTT.js) refuse to send malformed packets, to stay
silent past their keepalive, or to withhold an acknowledgement; these helpers do exactly
that. Only what the tests need: CONNECT, PUBLISH, SUBSCRIBE, UNSUBSCRIBE, the
acknowledgements, PINGREQ and DISCONNECT for MQTT 3.1.1 (protocol level 4) and 5.0
(level 5), and a reader that returns one packet or raises within a deadline.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field

V311 = 4
V5 = 5

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
         7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
         12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT", 15: "AUTH"}

# MQTT 5 property identifiers the tests use, and how each one is encoded (section 2.2.2.2).
PROP_SESSION_EXPIRY = 0x11
PROP_ASSIGNED_CLIENT_ID = 0x12
PROP_SERVER_KEEP_ALIVE = 0x13
PROP_REASON_STRING = 0x1F
PROP_SUBSCRIPTION_ID = 0x0B
PROP_MAXIMUM_PACKET_SIZE = 0x27
_PROP_KIND = {
    0x01: "byte", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin", 0x0B: "varint",
    0x11: "u32", 0x12: "str", 0x13: "u16", 0x15: "str", 0x16: "bin", 0x17: "byte",
    0x18: "u32", 0x19: "byte", 0x1A: "str", 0x1C: "str", 0x1F: "str", 0x21: "u16",
    0x22: "u16", 0x23: "u16", 0x24: "byte", 0x25: "byte", 0x26: "pair", 0x27: "u32",
    0x28: "byte", 0x29: "byte", 0x2A: "byte",
}


class ProtocolViolationError(Exception):
    """The server sent something a conforming server cannot send."""


# ---------------------------------------------------------------- encoding


def varint(n: int) -> bytes:
    """Variable Byte Integer (section 1.5.5 / 2.2.3), minimum number of bytes."""
    if not 0 <= n <= 268_435_455:
        raise ValueError(n)
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def mqtt_str(s: str | bytes) -> bytes:
    """UTF-8 Encoded String: two-byte length then the bytes (bytes pass through unchecked)."""
    raw = s.encode() if isinstance(s, str) else s
    return struct.pack(">H", len(raw)) + raw


def packet(ptype: int, flags: int, body: bytes) -> bytes:
    """Fixed header (type, flags, remaining length) + body."""
    return bytes([(ptype << 4) | flags]) + varint(len(body)) + body


def props(**kw) -> bytes:
    """MQTT 5 property block from keywords: session_expiry, subscription_id, max_packet_size."""
    out = bytearray()
    if "session_expiry" in kw:
        out += bytes([PROP_SESSION_EXPIRY]) + struct.pack(">I", kw["session_expiry"])
    if "subscription_id" in kw:
        out += bytes([PROP_SUBSCRIPTION_ID]) + varint(kw["subscription_id"])
    if "max_packet_size" in kw:
        out += bytes([PROP_MAXIMUM_PACKET_SIZE]) + struct.pack(">I", kw["max_packet_size"])
    return varint(len(out)) + bytes(out)


def connect(client_id: str, *, version: int = V311, clean: bool = True, keepalive: int = 60,
            will: tuple[str, bytes, int, bool] | None = None, properties: bytes | None = None,
            username: str | None = None, password: bytes | None = None) -> bytes:
    """CONNECT (3.1). `will` is (topic, payload, qos, retain)."""
    flags = 0x02 if clean else 0
    if will:
        flags |= 0x04 | (will[2] << 3) | (0x20 if will[3] else 0)
    if username is not None:
        flags |= 0x80
    if password is not None:
        flags |= 0x40
    body = mqtt_str("MQTT") + bytes([version, flags]) + struct.pack(">H", keepalive)
    if version == V5:
        body += properties if properties is not None else varint(0)
    body += mqtt_str(client_id)
    if will:
        if version == V5:
            body += varint(0)  # will properties
        body += mqtt_str(will[0]) + mqtt_str(will[1])
    if username is not None:
        body += mqtt_str(username)
    if password is not None:
        body += mqtt_str(password)
    return packet(CONNECT, 0, body)


def publish(topic: str | bytes, payload: bytes, *, qos: int = 0, retain: bool = False,
            dup: bool = False, pid: int | None = None, version: int = V311) -> bytes:
    """PUBLISH (3.3). A QoS > 0 publish needs `pid`; qos=3 is allowed here on purpose."""
    flags = (0x08 if dup else 0) | (qos << 1) | (0x01 if retain else 0)
    body = mqtt_str(topic)
    if qos:
        body += struct.pack(">H", pid if pid is not None else 1)
    if version == V5:
        body += varint(0)
    return packet(PUBLISH, flags, body + payload)


def subscribe(pid: int, filters: list[tuple[str, int]], *, version: int = V311,
              properties: bytes | None = None, flags: int = 0x02) -> bytes:
    """SUBSCRIBE (3.8): filters are (filter, options byte: QoS and, for v5, the other options)."""
    body = struct.pack(">H", pid)
    if version == V5:
        body += properties if properties is not None else varint(0)
    for f, opts in filters:
        body += mqtt_str(f) + bytes([opts])
    return packet(SUBSCRIBE, flags, body)


def unsubscribe(pid: int, filters: list[str], *, version: int = V311) -> bytes:
    body = struct.pack(">H", pid) + (varint(0) if version == V5 else b"")
    return packet(UNSUBSCRIBE, 0x02, body + b"".join(mqtt_str(f) for f in filters))


def ack(ptype: int, pid: int) -> bytes:
    """PUBACK / PUBREC / PUBREL / PUBCOMP with reason Success (valid for both versions)."""
    return packet(ptype, 0x02 if ptype == PUBREL else 0, struct.pack(">H", pid))


def pingreq() -> bytes:
    return packet(PINGREQ, 0, b"")


def disconnect(*, version: int = V311, reason: int = 0) -> bytes:
    body = bytes([reason, 0]) if version == V5 and reason else b""
    return packet(DISCONNECT, 0, body)


# ---------------------------------------------------------------- decoding


def _read_varint(buf: bytes, i: int) -> tuple[int, int]:
    value, mult = 0, 1
    for _ in range(4):
        b = buf[i]
        i += 1
        value += (b & 0x7F) * mult
        if not b & 0x80:
            return value, i
        mult *= 128
    raise ProtocolViolationError("variable byte integer longer than 4 bytes")


def parse_props(buf: bytes, i: int) -> tuple[dict[int, object], int]:
    """MQTT 5 property block at buf[i:], as {id: value} (repeated ids become lists)."""
    length, i = _read_varint(buf, i)
    end, out = i + length, {}
    while i < end:
        pid = buf[i]
        i += 1
        kind = _PROP_KIND.get(pid)
        if kind == "byte":
            v, i = buf[i], i + 1
        elif kind == "u16":
            v, i = struct.unpack_from(">H", buf, i)[0], i + 2
        elif kind == "u32":
            v, i = struct.unpack_from(">I", buf, i)[0], i + 4
        elif kind == "varint":
            v, i = _read_varint(buf, i)
        elif kind in ("str", "bin"):
            n = struct.unpack_from(">H", buf, i)[0]
            v, i = buf[i + 2:i + 2 + n], i + 2 + n
            v = v.decode() if kind == "str" else v
        elif kind == "pair":
            n = struct.unpack_from(">H", buf, i)[0]
            k = buf[i + 2:i + 2 + n].decode()
            i += 2 + n
            n = struct.unpack_from(">H", buf, i)[0]
            v, i = (k, buf[i + 2:i + 2 + n].decode()), i + 2 + n
        else:
            raise ProtocolViolationError(f"unknown property id {pid:#x}")
        if pid in out:
            prev = out[pid]
            out[pid] = (prev if isinstance(prev, list) else [prev]) + [v]
        else:
            out[pid] = v
    return out, end


def prop_items(buf: bytes, i: int) -> list[bytes]:
    """The property block at buf[i:] as the exact bytes of each property, identifier included,
    in the order they were sent: for checks byte for byte."""
    length, i = _read_varint(buf, i)
    end, out = i + length, []
    while i < end:
        start = i
        kind = _PROP_KIND.get(buf[i])
        i += 1
        if kind in ("byte", "u16", "u32"):
            i += {"byte": 1, "u16": 2, "u32": 4}[kind]
        elif kind == "varint":
            _, i = _read_varint(buf, i)
        elif kind in ("str", "bin", "pair"):
            for _ in range(2 if kind == "pair" else 1):
                i += 2 + struct.unpack_from(">H", buf, i)[0]
        else:
            raise ProtocolViolationError(f"unknown property id {buf[start]:#x}")
        out.append(buf[start:i])
    if i != end:
        raise ProtocolViolationError("a property runs past the end of its block")
    return out


def publish_prop_items(p: "Packet") -> list[bytes]:
    """The properties of a received v5 PUBLISH, each as its exact bytes (see prop_items)."""
    i = 2 + struct.unpack_from(">H", p.body, 0)[0] + (2 if p.qos else 0)
    return prop_items(p.body, i)


@dataclass
class Packet:
    """One received packet, with the fields the tests look at decoded for `version`."""

    ptype: int
    flags: int
    body: bytes
    version: int = V311
    reason: int | None = None          # CONNACK return/reason code, DISCONNECT / ack reason
    session_present: bool | None = None
    properties: dict = field(default_factory=dict)
    topic: str | None = None
    payload: bytes | None = None
    pid: int | None = None
    reasons: list[int] = field(default_factory=list)  # SUBACK / UNSUBACK

    @property
    def name(self) -> str:
        return NAMES.get(self.ptype, str(self.ptype))

    @property
    def qos(self) -> int:
        return (self.flags >> 1) & 3

    @property
    def dup(self) -> bool:
        return bool(self.flags & 0x08)

    @property
    def retain(self) -> bool:
        return bool(self.flags & 0x01)

    def __repr__(self) -> str:
        return (f"<{self.name} flags={self.flags:#x} reason={self.reason} topic={self.topic!r} "
                f"payload={self.payload!r} pid={self.pid} reasons={self.reasons} props={self.properties}>")


def decode(first: int, body: bytes, version: int) -> Packet:
    p = Packet(first >> 4, first & 0x0F, body, version)
    v5 = version == V5
    if p.ptype == CONNACK:
        p.session_present = bool(body[0] & 1)
        p.reason = body[1]
        if v5 and len(body) > 2:
            p.properties, _ = parse_props(body, 2)
    elif p.ptype == PUBLISH:
        n = struct.unpack_from(">H", body, 0)[0]
        p.topic = body[2:2 + n].decode("utf-8", "replace")
        i = 2 + n
        if p.qos:
            p.pid = struct.unpack_from(">H", body, i)[0]
            i += 2
        if v5:
            p.properties, i = parse_props(body, i)
        p.payload = body[i:]
    elif p.ptype in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        p.pid = struct.unpack_from(">H", body, 0)[0]
        p.reason = body[2] if len(body) > 2 else 0
    elif p.ptype in (SUBACK, UNSUBACK):
        p.pid = struct.unpack_from(">H", body, 0)[0]
        i = 2
        if v5:
            p.properties, i = parse_props(body, i)
        p.reasons = list(body[i:])
    elif p.ptype == DISCONNECT:
        p.reason = body[0] if body else 0
        if v5 and len(body) > 1:
            p.properties, _ = parse_props(body, 1)
    return p


# ---------------------------------------------------------------- the socket


class RawClient:
    """A TCP connection to the broker that sends exactly the bytes it is told to."""

    def __init__(self, port: int, *, version: int = V311, timeout: float = 5.0):
        self.version = version
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._buf = b""
        self.closed = False

    @property
    def local_port(self) -> int:
        return self.sock.getsockname()[1]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, n: int, deadline: float) -> bool:
        """Buffer at least n bytes; False on EOF/reset. Raises TimeoutError at the deadline."""
        while len(self._buf) < n:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no complete packet within the deadline (have {self._buf!r})")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise TimeoutError(f"no complete packet within the deadline (have {self._buf!r})") from None
            except (ConnectionResetError, ConnectionAbortedError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed = True
                return False
            self._buf += chunk
        return True

    def recv(self, timeout: float = 5.0) -> Packet | None:
        """The next packet, None if the server closed the connection; TimeoutError if neither."""
        deadline = time.monotonic() + timeout
        if not self._fill(2, deadline):
            return None
        length, mult, i = 0, 1, 1
        while True:
            if not self._fill(i + 1, deadline):
                return None
            b = self._buf[i]
            length += (b & 0x7F) * mult
            i += 1
            if not b & 0x80:
                break
            if i > 4:
                raise ProtocolViolationError("server sent a remaining length longer than 4 bytes")
            mult *= 128
        if not self._fill(i + length, deadline):
            return None
        first, body = self._buf[0], self._buf[i:i + length]
        self._buf = self._buf[i + length:]
        return decode(first, body, self.version)

    def expect(self, ptype: int, timeout: float = 5.0) -> Packet:
        """The next packet, which must be of type `ptype` (PINGRESP is skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            p = self.recv(max(0.01, deadline - time.monotonic()))
            if p is None:
                raise AssertionError(f"connection closed while waiting for {NAMES[ptype]}")
            if p.ptype == PINGRESP and ptype != PINGRESP:
                continue
            assert p.ptype == ptype, f"expected {NAMES[ptype]}, got {p!r}"
            return p

    def handshake(self, client_id: str, **kw) -> Packet:
        """Send CONNECT and return the CONNACK."""
        self.send(connect(client_id, version=self.version, **kw))
        return self.expect(CONNACK)

    def packets_until_close(self, timeout: float = 5.0, max_packets: int = 100) -> list[Packet]:
        """Everything received until the server closes; AssertionError if it stays open."""
        deadline = time.monotonic() + timeout
        got: list[Packet] = []
        for _ in range(max_packets):
            try:
                p = self.recv(max(0.01, deadline - time.monotonic()))
            except TimeoutError:
                raise AssertionError(f"server did not close the connection within {timeout}s; got {got}") from None
            if p is None:
                return got
            got.append(p)
        raise AssertionError(f"too many packets before close: {got[:5]}...")

    def close(self) -> None:
        """Close without DISCONNECT: for the server, an unclean close."""
        try:
            self.sock.close()
        except OSError:
            pass
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
