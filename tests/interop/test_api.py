"""The HTTP endpoints next to /metrics: /health, /health/ready and the REST API under
/api/v5 (EMQX's paths and shapes), and the bearer token rule."""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import urllib.error
import urllib.parse
import urllib.request

import pytest

import rawmqtt as raw
from clients import V5, Paho, unique_id
from conftest import DYNAMQ, free_port

pytestmark = pytest.mark.dynamq_only

TOKEN = "t0ken-for-tests"


def call(port: int, path: str, method: str = "GET", body: dict | None = None,
         token: str | None = None) -> tuple[int, object]:
    """(status, JSON or text body) of one request."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    if data is not None:
        req.add_header("Content-Type", "application/json")
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            status, text = r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        status, text = e.code, e.read().decode()
    try:
        return status, json.loads(text) if text else None
    except json.JSONDecodeError:
        return status, text


@pytest.fixture
def api(start_broker):
    port = free_port()
    broker = start_broker(extra_args=("--http", f"127.0.0.1:{port}", "--sys-interval", "0"))
    broker.http = port
    return broker


def test_health(api):
    assert call(api.http, "/health") == (200, "live")
    assert call(api.http, "/health/ready") == (200, "ready")


def test_stats_clients_subscriptions_topics(api):
    prefix = unique_id("api")
    with Paho(api, f"{prefix}-a") as a, Paho(api, f"{prefix}-b") as b, Paho(api, unique_id("x")):
        a.subscribe("t/1", 1)
        b.subscribe("t/+", 0)
        b.subscribe("$share/g/t/2", 0)
        status, stats = call(api.http, "/api/v5/stats")
        assert status == 200
        assert stats["connections.count"] == 3
        assert stats["subscriptions.count"] == 3
        assert stats["subscriptions.shared.count"] == 1
        assert stats["topics.count"] == 3
        status, page = call(api.http, f"/api/v5/clients?like_clientid={prefix}")
        assert status == 200
        assert [c["clientid"] for c in page["data"]] == [f"{prefix}-a", f"{prefix}-b"]
        assert page["meta"] == {"page": 1, "limit": 100, "count": 2, "hasnext": False}
        assert all(c["connected"] for c in page["data"])
        status, page = call(api.http, f"/api/v5/clients?like_clientid={prefix}&limit=1&page=2")
        assert [c["clientid"] for c in page["data"]] == [f"{prefix}-b"]
        assert page["meta"]["count"] == 2 and page["meta"]["hasnext"] is False
        assert call(api.http, "/api/v5/clients?page=0")[0] == 400
        status, one = call(api.http, f"/api/v5/clients/{prefix}-b")
        assert status == 200 and one["subscriptions_cnt"] == 2 and one["mqueue_len"] == 0
        assert call(api.http, "/api/v5/clients/nobody")[0] == 404
        status, subs = call(api.http, "/api/v5/subscriptions")
        got = sorted((s["clientid"], s["topic"], s["qos"]) for s in subs["data"])
        assert got == [(f"{prefix}-a", "t/1", 1), (f"{prefix}-b", "$share/g/t/2", 0),
                       (f"{prefix}-b", "t/+", 0)]
        status, topics = call(api.http, "/api/v5/topics")
        assert sorted(t["topic"] for t in topics["data"]) == ["t/+", "t/1", "t/2"]


def test_kick_v5_gets_0x98(api):
    cid = unique_id("kick")
    with raw.RawClient(api.port, version=raw.V5) as c:
        assert c.handshake(cid).reason == 0
        assert call(api.http, f"/api/v5/clients/{cid}", "DELETE")[0] == 204
        packets = c.packets_until_close(timeout=3)
        assert [(p.ptype, p.reason) for p in packets] == [(raw.DISCONNECT, 0x98)]
    # The session ended with it.
    assert call(api.http, f"/api/v5/clients/{cid}")[0] == 404
    assert call(api.http, f"/api/v5/clients/{cid}", "DELETE")[0] == 404


def test_kick_v3_closes(api):
    cid = unique_id("kick3")
    with raw.RawClient(api.port) as c:
        assert c.handshake(cid).reason == 0
        assert call(api.http, f"/api/v5/clients/{cid}", "DELETE")[0] == 204
        assert c.packets_until_close(timeout=3) == []


def test_publish_through_the_api(api):
    topic = unique_id("pub") + "/x"
    with Paho(api, unique_id("s"), protocol=V5) as s:
        s.subscribe(topic, 1)
        status, body = call(api.http, "/api/v5/publish", "POST",
                            {"topic": topic, "payload": "hello", "qos": 1})
        assert status == 200 and "id" in body
        m = s.get()
        assert (m.topic, m.payload, m.qos) == (topic, b"hello", 1)
        raw_payload = base64.b64encode(b"\x00\x01").decode()
        call(api.http, "/api/v5/publish", "POST",
             {"topic": topic, "payload": raw_payload, "payload_encoding": "base64"})
        assert s.get().payload == b"\x00\x01"
    assert call(api.http, "/api/v5/publish", "POST", {"topic": "a/#"})[0] == 400
    assert call(api.http, "/api/v5/publish", "POST", {"topic": "a", "qos": 3})[0] == 400


def test_retained_list_get_delete(api):
    topic = unique_id("ret") + "/a b"
    with Paho(api, unique_id("p")) as p:
        p.publish(topic, b"kept", 1, retain=True)
    status, page = call(api.http, "/api/v5/retainer/messages")
    assert status == 200
    found = [m for m in page["data"] if m["topic"] == topic]
    assert len(found) == 1 and base64.b64decode(found[0]["payload"]) == b"kept"
    quoted = urllib.parse.quote(topic, safe="")
    status, one = call(api.http, f"/api/v5/retainer/message/{quoted}")
    assert status == 200 and one["topic"] == topic
    assert call(api.http, f"/api/v5/retainer/message/{quoted}", "DELETE")[0] == 204
    assert call(api.http, f"/api/v5/retainer/message/{quoted}")[0] == 404
    # Deleted through the broker: a new subscriber gets nothing.
    with Paho(api, unique_id("s")) as s:
        s.subscribe(topic, 1)
        s.expect_nothing(0.5)


def test_token_required_once_set(start_broker):
    port = free_port()
    broker = start_broker(extra_args=("--http", f"127.0.0.1:{port}", "--http-token", TOKEN))
    for path in ("/metrics", "/api/v5/stats", "/api/v5/clients"):
        assert call(port, path)[0] == 401
        assert call(port, path, token="wrong")[0] == 401
        assert call(port, path, token=TOKEN)[0] == 200
    assert call(port, "/health") == (200, "live")
    assert call(port, "/health/ready")[0] == 200
    assert TOKEN not in broker.log_text()


def test_refuses_non_loopback_http_without_token(tmp_path):
    port = free_port()
    proc = subprocess.run(
        [str(DYNAMQ), "serve", "--tcp", f"127.0.0.1:{free_port()}", "--ws", "none",
         "--http", f"0.0.0.0:{port}", "--data-dir", str(tmp_path / "data")],
        capture_output=True, text=True, timeout=10)
    assert proc.returncode != 0
    assert f"0.0.0.0:{port}" in proc.stderr and "token" in proc.stderr, proc.stderr
    # It never listened.
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0
