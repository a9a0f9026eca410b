"""An HTTP proxy in front of dynalite that plays a throttled DynamoDB: while a window is
open, the write requests it gets (BatchWriteItem, PutItem, UpdateItem, DeleteItem) are
answered as DynamoDB answers when it throttles or fails (400
ProvisionedThroughputExceededException or ThrottlingException, 500 InternalServerError, 503
ServiceUnavailable), or held unanswered past the client's attempt time-out; everything else,
and every request once the window is closed, is forwarded to dynalite unchanged.

Python's standard library only (http.server, http.client): one thread per connection,
listening on 127.0.0.1 on a port the OS picks, stopped by `close()`.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

WRITES = frozenset({"BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem"})
_PREFIX = "com.amazonaws.dynamodb.v20120810#"
# What a throttled write gets, in turn: mostly ProvisionedThroughputExceeded, as DynamoDB
# answers a table over its provisioned capacity, and the other answers the SDK and the broker
# must both treat as "try again".
ANSWERS = (
    (400, "ProvisionedThroughputExceededException",
     "The level of configured provisioned throughput for the table was exceeded."),
    (400, "ThrottlingException", "Rate of requests exceeds the allowed throughput."),
    (400, "ProvisionedThroughputExceededException",
     "The level of configured provisioned throughput for the table was exceeded."),
    (500, "InternalServerError", "Internal server error"),
    (400, "ProvisionedThroughputExceededException",
     "The level of configured provisioned throughput for the table was exceeded."),
    (503, "ServiceUnavailable", "Service unavailable"),
)


class ThrottlingProxy:
    """Forwards to `upstream_port`; `throttle(seconds, hold=n)` opens the window."""

    def __init__(self, upstream_port: int):
        self.upstream_port = upstream_port
        self._lock = threading.Lock()
        self._until = 0.0
        self._hold_left = 0
        self._hold_seconds = 0.0
        self._turn = itertools.count()
        # What the proxy did: answers by error code, "held", "forwarded:<operation>".
        self.counts: Counter[str] = Counter()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                op = (self.headers.get("X-Amz-Target") or "").rpartition(".")[2]
                action = proxy._decide(op)
                if action == "hold":
                    # No answer: the client's attempt time-out ends it, then we drop it.
                    time.sleep(proxy._hold_seconds)
                    self.close_connection = True
                    return
                if action is not None:
                    status, code, message = action
                    self._answer(status, json.dumps({"__type": _PREFIX + code, "message": message}).encode())
                    return
                status, headers, data = proxy._forward(self.path, self.headers, body)
                self.send_response(status)
                for k, v in headers:
                    if k.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _answer(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("x-amzn-RequestId", "throttling-proxy")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_args):  # quiet: pytest shows the counts instead
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def throttle(self, seconds: float, *, hold: int = 0, hold_seconds: float = 12.0) -> None:
        """For `seconds` from now, write requests get the error answers in turn; the first
        `hold` of them are instead held unanswered for `hold_seconds`."""
        with self._lock:
            self._until = time.monotonic() + seconds
            self._hold_left = hold
            self._hold_seconds = hold_seconds

    def throttling(self) -> bool:
        with self._lock:
            return time.monotonic() < self._until

    def _decide(self, op: str):
        with self._lock:
            if op not in WRITES or time.monotonic() >= self._until:
                self.counts[f"forwarded:{op}"] += 1
                return None
            if self._hold_left > 0:
                self._hold_left -= 1
                self.counts["held"] += 1
                return "hold"
            answer = ANSWERS[next(self._turn) % len(ANSWERS)]
            self.counts[answer[1]] += 1
            return answer

    _local = threading.local()

    def _forward(self, path: str, headers, body: bytes):
        """Sends the request to dynalite on this thread's connection (one retry on a new one,
        for a connection dynalite closed meanwhile)."""
        for attempt in range(2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection("127.0.0.1", self.upstream_port, timeout=30)
            try:
                conn.request("POST", path, body=body,
                             headers={k: v for k, v in headers.items() if k.lower() not in ("connection",)})
                r = conn.getresponse()
                return r.status, r.getheaders(), r.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)
