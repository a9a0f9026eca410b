"""Client certificates (mutual TLS): `--tls-ca FILE` makes the TLS listeners require a client
certificate that chains to that CA; `--tls-cn-as-username` makes its subject CN the client's
user name (for the ACL), as Mosquitto's `require_certificate` and `use_identity_as_username`.
And SIGHUP reloads the ACL file: a connected client is checked against the new rules.

The certificates are made by the openssl CLI: a CA, a server certificate for 127.0.0.1, a
client certificate with CN=alice signed by the CA, and one (CN=mallory) from another CA.
Clients: mosquitto_pub / mosquitto_sub (`--cafile --cert --key`) and paho-mqtt v3.1.1 and v5.
"""

from __future__ import annotations

import signal
import socket
import ssl
import subprocess
import time
import types
import urllib.request
from pathlib import Path

import pytest

import rawmqtt
from clients import V5, V311, Paho, unique_id
from conftest import free_port, listening

pytestmark = pytest.mark.dynamq_only

PROTOCOLS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]
NOT_AUTHORIZED = 0x87


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=30)


def make_ca(d: Path, name: str) -> tuple[Path, Path]:
    crt, key = d / f"{name}.crt", d / f"{name}.key"
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", f"/CN={name}",
            "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    return crt, key


def make_leaf(d: Path, name: str, cn: str, ca: tuple[Path, Path], ext: str) -> tuple[Path, Path]:
    crt, key, csr, extfile = d / f"{name}.crt", d / f"{name}.key", d / f"{name}.csr", d / f"{name}.ext"
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", str(key), "-out", str(csr), "-subj", f"/CN={cn}")
    extfile.write_text(ext)
    openssl("x509", "-req", "-in", str(csr), "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-set_serial",
            str(int(time.time() * 1000)), "-days", "2", "-out", str(crt), "-extfile", str(extfile))
    return crt, key


@pytest.fixture
def pki(tmp_path) -> types.SimpleNamespace:
    d = tmp_path / "pki"
    d.mkdir()
    ca = make_ca(d, "dynamq-test-ca")
    other_ca = make_ca(d, "other-ca")
    server = make_leaf(d, "server", "localhost", ca,
                       "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
                       "subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    client_ext = "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n"
    alice = make_leaf(d, "alice", "alice", ca, client_ext)
    mallory = make_leaf(d, "mallory", "mallory", other_ca, client_ext)
    return types.SimpleNamespace(ca=ca[0], server=server, alice=alice, mallory=mallory)


def start_tls(start_broker, pki, *flags: str, **opts):
    """A broker with a TLS listener requiring client certificates of `pki.ca`, and HTTP for
    the metrics."""
    tls_port, http_port = free_port(), free_port()
    b = start_broker(extra_args=("--tls", f"127.0.0.1:{tls_port}", "--tls-cert", str(pki.server[0]),
                                 "--tls-key", str(pki.server[1]), "--tls-ca", str(pki.ca),
                                 "--http", f"127.0.0.1:{http_port}", *flags), **opts)
    b.tls_port, b.http_port = tls_port, http_port
    deadline = time.monotonic() + 5
    while not (listening(tls_port) and listening(http_port)):
        assert time.monotonic() < deadline, "TLS listener not up"
        time.sleep(0.05)
    return b


def metric(b, name: str) -> int:
    with urllib.request.urlopen(f"http://127.0.0.1:{b.http_port}/metrics", timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(f"dynamq_{name} "):
                return int(line.split()[1])
    raise AssertionError(f"no metric {name}")


def tls_paho(b, pki, cert, protocol=V311, **kw) -> Paho:
    """A paho client over TLS to `b`, verifying the server, presenting `cert` (or none)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    p = Paho(types.SimpleNamespace(port=b.tls_port, ws_port=None), unique_id("tlsc"), protocol=protocol,
             connect=False, **kw)
    p.client.tls_set_context(ctx)
    return p.connect()


def raw_tls_connack(b, pki, cert) -> bytes | None:
    """A CONNECT over Python's ssl (server verified, `cert` presented or not): the first bytes
    the broker answers, or None if the TLS handshake failed (in TLS 1.3 the client learns it
    on its first read)."""
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert is not None:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    try:
        with socket.create_connection(("127.0.0.1", b.tls_port), timeout=5) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as s:
            s.sendall(rawmqtt.connect(unique_id("raw")))
            return s.recv(4) or None
    except (ssl.SSLError, ConnectionError):
        return None


def mosquitto(tool: str, b, pki, cert, *args: str, **kw):
    common = ["-h", "127.0.0.1", "-p", str(b.tls_port), "--cafile", str(pki.ca)]
    if cert is not None:
        common += ["--cert", str(cert[0]), "--key", str(cert[1])]
    return [tool, *common, *args]


def test_mosquitto_clients_with_a_client_certificate(start_broker, pki):
    """mosquitto_sub and mosquitto_pub with --cafile --cert --key connect over TLS and the
    message goes through."""
    b = start_tls(start_broker, pki)
    topic = unique_id("mtls")
    sub = subprocess.Popen(mosquitto("mosquitto_sub", b, pki, pki.alice, "-t", topic, "-q", "1", "-C", "1",
                                     "-W", "10", "-F", "%t|%q|%p"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 5
    # the subscriber is subscribed once the broker has counted its CONNECT
    while metric(b, "connects_total") < 1:
        assert time.monotonic() < deadline, "mosquitto_sub did not connect"
        time.sleep(0.05)
    time.sleep(0.2)
    r = subprocess.run(mosquitto("mosquitto_pub", b, pki, pki.alice, "-t", topic, "-m", "hello", "-q", "1"),
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    out, err = sub.communicate(timeout=15)
    assert out.strip() == f"{topic}|1|hello", err
    # The same CONNECT over Python's ssl with the certificate: CONNACK 0.
    assert raw_tls_connack(b, pki, pki.alice) == bytes([0x20, 2, 0, 0])


def test_no_certificate_or_the_wrong_ca_fails_the_handshake(start_broker, pki):
    """Without a client certificate, or with one the CA did not sign, the TLS handshake fails:
    no CONNECT is ever read. Each failure is counted and logged with the peer address."""
    b = start_tls(start_broker, pki)
    for cert in (None, pki.mallory):
        r = subprocess.run(mosquitto("mosquitto_pub", b, pki, cert, "-t", "x", "-m", "m", "-q", "1"),
                           capture_output=True, text=True, timeout=15)
        assert r.returncode != 0, (cert, r.stdout, r.stderr)
        assert raw_tls_connack(b, pki, cert) is None, cert
    assert metric(b, "connects_total") == 0
    assert metric(b, "tls_handshake_failures_total") >= 2
    lines = b.wait_log(lambda ln: "TLS handshake failed" in ln)
    assert lines and "peer=127.0.0.1:" in lines[0], lines


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_paho_with_a_client_certificate(start_broker, pki, protocol):
    """paho-mqtt (v3.1.1 and v5) with alice's certificate subscribes and receives its own QoS 1
    message."""
    b = start_tls(start_broker, pki)
    topic = unique_id("paho-mtls")
    with tls_paho(b, pki, pki.alice, protocol) as c:
        c.subscribe(topic, 1)
        c.publish(topic, b"over mtls", 1)
        m = c.get()
        assert (m.topic, m.payload, m.qos) == (topic, b"over mtls", 1)


ACL = "user alice\ntopic readwrite a/#\n"


@pytest.fixture
def cn_broker(start_broker, pki, tmp_path):
    """--tls-cn-as-username, an ACL giving user alice a/# only, anonymous clients refused."""
    acl = tmp_path / "acl"
    acl.write_text(ACL)
    b = start_tls(start_broker, pki, "--tls-cn-as-username", acl_file=acl, allow_anonymous=False)
    b.acl = acl
    return b


def test_cn_is_the_user_name_for_the_acl(cn_broker, pki):
    """The certificate's CN (alice) is the user name: the ACL's `user alice` rules apply, even
    though the CONNECT gives another user name and no password, and anonymous clients are
    refused [MQTT-3.1.4-2]. Publish to a/x is delivered; to b/x is refused (v5 PUBACK 0x87);
    SUBSCRIBE b/# is refused (0x87), a/# granted."""
    with tls_paho(cn_broker, pki, pki.alice, V5, username="mallory") as c:
        assert c.reason_code.value == 0
        rcs = c.subscribe("a/#", 1)
        assert [r.value for r in rcs] == [1]
        rcs = c.subscribe("b/#", 1)
        assert [r.value for r in rcs] == [NOT_AUTHORIZED]
        assert c.publish("b/x", b"no", 1).value == NOT_AUTHORIZED
        assert c.publish("a/x", b"yes", 1).value == 0
        m = c.get()
        assert (m.topic, m.payload) == ("a/x", b"yes")
        c.expect_nothing(0.3)
    # The plain TCP listener has no certificate: an anonymous client is refused there.
    refused = Paho(cn_broker, unique_id("anon"), protocol=V5, connect=False)
    assert refused.try_connect().value == NOT_AUTHORIZED


def test_mosquitto_clients_with_cn_as_user_name(cn_broker, pki):
    """mosquitto_pub with alice's certificate: a/x goes through to a subscriber with the same
    certificate; a publish to b/x (v5) is refused with 0x87 and never delivered."""
    topic = "a/" + unique_id("m")
    sub = subprocess.Popen(mosquitto("mosquitto_sub", cn_broker, pki, pki.alice, "-t", "a/#", "-q", "1",
                                     "-C", "1", "-W", "10", "-F", "%t|%p"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 5
    while metric(cn_broker, "connects_total") < 1:
        assert time.monotonic() < deadline, "mosquitto_sub did not connect"
        time.sleep(0.05)
    time.sleep(0.2)
    denied = subprocess.run(mosquitto("mosquitto_pub", cn_broker, pki, pki.alice, "-V", "mqttv5", "-t", "b/x",
                                      "-m", "no", "-q", "1"), capture_output=True, text=True, timeout=10)
    assert "not authorized" in (denied.stdout + denied.stderr).lower() or denied.returncode != 0, denied
    ok = subprocess.run(mosquitto("mosquitto_pub", cn_broker, pki, pki.alice, "-t", topic, "-m", "yes", "-q", "1"),
                        capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    out, err = sub.communicate(timeout=15)
    assert out.strip() == f"{topic}|yes", err
    assert metric(cn_broker, "acl_denied_publish_total") == 1


def test_sighup_reloads_the_acl_for_connected_clients(cn_broker, pki):
    """SIGHUP reads the ACL file again: a client connected before it is checked against the
    new rules from its next PUBLISH or SUBSCRIBE on. An ACL with an error leaves the rules in
    force, and the log says why."""
    with tls_paho(cn_broker, pki, pki.alice, V5) as c:
        assert c.publish("b/x", b"1", 1).value == NOT_AUTHORIZED
        cn_broker.acl.write_text("user alice\ntopic readwrite b/#\n")
        cn_broker.proc.send_signal(signal.SIGHUP)
        assert cn_broker.wait_log(lambda ln: "ACL file reloaded" in ln and "clients=1" in ln)
        # Accepted (0x10 No matching subscribers: nobody subscribes to b/x yet)
        assert c.publish("b/x", b"2", 1).value in (0, 0x10)
        assert c.publish("a/x", b"3", 1).value == NOT_AUTHORIZED
        assert [r.value for r in c.subscribe("b/#", 1)] == [1]
        assert [r.value for r in c.subscribe("a/#", 1)] == [NOT_AUTHORIZED]

        cn_broker.acl.write_text("user alice\ntopic readwrite a/#\nbogus line\n")
        cn_broker.proc.send_signal(signal.SIGHUP)
        lines = cn_broker.wait_log(lambda ln: "ACL file not reloaded" in ln)
        assert lines and "line 3" in lines[0], lines
        assert c.publish("b/y", b"4", 1).value == 0
        # (the store hooks may first replay the stored b/x to the new subscription)
        m = c.get()
        if (m.topic, m.payload) == ("b/x", b"2"):
            m = c.get()
        assert (m.topic, m.payload) == ("b/y", b"4")
        assert c.publish("a/y", b"5", 1).value == NOT_AUTHORIZED
