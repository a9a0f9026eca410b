"""MQTT over TLS and over WebSocket over TLS, with clients that verify the server's
certificate: mosquitto_pub/mosquitto_sub, paho-mqtt, and MQTT.js over wss."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
from pathlib import Path

import pytest

from clients import V5, Paho, unique_id
from conftest import free_port

pytestmark = pytest.mark.dynamq_only

JS = Path(__file__).parent / "js"


@pytest.fixture
def cert(tmp_path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 and localhost (openssl)."""
    key, crt = tmp_path / "server.key", tmp_path / "server.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                   check=True, capture_output=True, timeout=30)
    return crt, key


@pytest.fixture
def tls_broker(start_broker, cert):
    crt, key = cert
    tls_port, wss_port = free_port(), free_port()
    b = start_broker(extra_args=("--tls", f"127.0.0.1:{tls_port}", "--wss", f"127.0.0.1:{wss_port}",
                                 "--tls-cert", str(crt), "--tls-key", str(key)))
    b.tls_port, b.wss_port, b.ca = tls_port, wss_port, crt
    deadline = time.monotonic() + 5
    while True:  # the TLS listeners are bound with the others; make sure before use
        try:
            socket.create_connection(("127.0.0.1", wss_port), timeout=0.5).close()
            break
        except OSError:
            assert time.monotonic() < deadline
            time.sleep(0.05)
    return b


@pytest.mark.parametrize("qos", [0, 1, 2])
def test_mosquitto_clients_over_tls(tls_broker, qos):
    """mosquitto_sub and mosquitto_pub over TLS, verifying the server certificate."""
    topic = unique_id("tls")
    common = ["-h", "127.0.0.1", "-p", str(tls_broker.tls_port), "--cafile", str(tls_broker.ca)]
    sub = subprocess.Popen(["mosquitto_sub", *common, "-t", topic, "-q", str(qos), "-C", "1", "-W", "10",
                            "-F", "%t|%q|%p"], stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)
    r = subprocess.run(["mosquitto_pub", *common, "-t", topic, "-m", "secret", "-q", str(qos)],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    out, _ = sub.communicate(timeout=15)
    assert out.strip() == f"{topic}|{qos}|secret"


def test_paho_over_tls_to_plain_tcp(tls_broker):
    """paho over TLS (v5) publishes; a plain-TCP subscriber receives: one broker, both ways in."""
    topic = unique_id("tlsx")
    with Paho(tls_broker, unique_id("s")) as s:
        s.subscribe(topic, 1)
        ctx = ssl.create_default_context(cafile=str(tls_broker.ca))
        p = Paho(tls_broker, unique_id("p"), protocol=V5, connect=False)
        p.client.tls_set_context(ctx)
        port, tls_broker.port = tls_broker.port, tls_broker.tls_port
        try:
            p.connect()
        finally:
            tls_broker.port = port
        with p:
            p.publish(topic, b"from tls", 1)
            m = s.get()
            assert (m.topic, m.payload, m.qos) == (topic, b"from tls", 1)


def test_mqttjs_over_wss(tls_broker):
    """MQTT.js over wss:// (certificate verified) subscribes and receives its own publish."""
    r = subprocess.run(["node", str(JS / "wss.mjs"), "--url", f"wss://localhost:{tls_broker.wss_port}/mqtt",
                        "--ca", str(tls_broker.ca), "--topic", unique_id("wss"), "--qos", "1"],
                       capture_output=True, text=True, timeout=30)
    result = json.loads(r.stdout.strip().splitlines()[-1])
    assert result["ok"], result
    assert [(m["payload"], m["qos"]) for m in result["messages"]] == [("over wss", 1)]


def test_plain_mqtt_on_the_tls_port_is_refused(tls_broker):
    """A client speaking plain MQTT to the TLS port is dropped after a failed handshake; the
    broker logs it and keeps serving."""
    with socket.create_connection(("127.0.0.1", tls_broker.tls_port), timeout=5) as s:
        s.sendall(bytes([0x10, 0x10, 0x00, 0x04]) + b"MQTT" + bytes([4, 2, 0, 60, 0, 4]) + b"abcd")
        s.settimeout(5)
        data = s.recv(100)
        assert not data.startswith(b"\x20")  # never a CONNACK
    assert tls_broker.wait_log(lambda ln: "TLS handshake failed" in ln)
    with Paho(tls_broker, unique_id("after")) as c:
        c.subscribe("x", 0)
