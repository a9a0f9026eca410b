"""A hand-made WebSocket client (RFC 6455) on a plain socket, for tests that need to send what
real WebSocket clients will not: an unusual subprotocol, text frames, fragments split
anywhere. Only the client side of the opening handshake, masked client frames and a reader
of the server's binary frames."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import struct
import time

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE = 0, 1, 2, 8


def handshake(port: int, subprotocol: str | None) -> tuple[socket.socket, str, dict[str, str]]:
    """Upgrade GET /mqtt, offering `subprotocol` (a header value, e.g. "chat, mqtt"; None:
    no Sec-WebSocket-Protocol header). Returns the socket, the status line and the response
    headers (lower-case names); a 101 must carry the right Sec-WebSocket-Accept."""
    key = base64.b64encode(os.urandom(16)).decode()
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    offer = f"Sec-WebSocket-Protocol: {subprotocol}\r\n" if subprotocol is not None else ""
    s.sendall((f"GET /mqtt HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
               f"{offer}\r\n").encode())
    buf = b""
    for _ in range(100):
        if b"\r\n\r\n" in buf:
            break
        chunk = s.recv(4096)
        if not chunk:
            break
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:])}
    if lines[0].startswith("HTTP/1.1 101"):
        assert rest == b"", "no frame may come before the client's CONNECT"
        accept = base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()
        assert headers.get("sec-websocket-accept") == accept, headers
    return s, lines[0], headers


def frame(data: bytes, fin: bool = True, opcode: int = OP_BINARY) -> bytes:
    """A masked client frame (RFC 6455 5.2); binary by default [MQTT-6.0.0-1]."""
    mask = os.urandom(4)
    n = len(data)
    head = bytes([(0x80 if fin else 0) | opcode])
    head += bytes([0x80 | n]) if n < 126 else bytes([0x80 | 126]) + struct.pack(">H", n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data))


def read_binary(s: socket.socket, want: int, timeout: float = 5.0) -> bytes:
    """Concatenate the payloads of server frames until `want` bytes (frames unmasked, binary)."""
    deadline = time.monotonic() + timeout
    buf, out = b"", b""
    for _ in range(1000):
        if len(out) >= want:
            return out
        while len(buf) < 2 or len(buf) < 2 + (buf[1] & 0x7F if buf[1] & 0x7F < 126 else 2):
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(4096)
            assert chunk, "server closed the WebSocket"
            buf += chunk
        n, i = buf[1] & 0x7F, 2
        assert not buf[1] & 0x80, "server frames must not be masked (RFC 6455 5.1)"
        if n == 126:
            n, i = struct.unpack(">H", buf[2:4])[0], 4
        while len(buf) < i + n:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = s.recv(4096)
            assert chunk, "server closed the WebSocket"
            buf += chunk
        assert buf[0] & 0x0F in (0, 2), f"MQTT must travel in binary frames [MQTT-6.0.0-1], got opcode {buf[0] & 0x0F}"
        out += buf[i:i + n]
        buf = buf[i + n:]
    raise AssertionError("too many frames")


def read_until_closed(s: socket.socket, timeout: float = 5.0) -> list[tuple[int, bytes]]:
    """The server's frames, as (opcode, payload), until it closes the TCP connection;
    AssertionError if it is still open after `timeout`."""
    deadline = time.monotonic() + timeout
    buf, frames = b"", []
    for _ in range(10_000):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"server did not close within {timeout}s; frames {frames}")
        s.settimeout(left)
        try:
            chunk = s.recv(4096)
        except socket.timeout:
            continue
        except (ConnectionResetError, BrokenPipeError):
            chunk = b""
        if not chunk:
            return frames
        buf += chunk
        while len(buf) >= 2:
            n, i = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, i = struct.unpack(">H", buf[2:4])[0], 4
            if len(buf) < i + n:
                break
            frames.append((buf[0] & 0x0F, buf[i:i + n]))
            buf = buf[i + n:]
    raise AssertionError("too many reads")
