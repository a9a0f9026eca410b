"""Secrets never appear in logs, at any level, nor in the HTTP API; a configuration file that
holds a secret and that other users can read gets a warning at start.

One run with every secret set: AWS keys in the TOML config file and in the tutorial's backend
file (on DynamoDB, dynalite), the HTTP token, the users' passwords of a password file (used
by paho and mosquitto_pub, right and wrong), a TLS key, at `--log-level trace` (every crate,
the AWS SDK and the HTTP stack included). Then the whole log, and the API's answers, are
searched for each secret value.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from clients import V5, V311, Paho, unique_id
from conftest import DYNAMQ, free_port, listening
from dynalite import dynalite  # noqa: F401 (fixture)

pytestmark = pytest.mark.dynamq_only

SECRETS = {
    "config access key id": "AKIACONFIGKEY7QWG7HK",
    "config secret key": "cfgSecret+vtCJYQ9YsAinh19jR1rngm/hxZMW",
    "backend access key id": "AKIABACKENDKEYQWG7HK",
    "backend secret key": "bkSecret+vtCJYQ9YsAinh19jR1rngm/hxZMWR2",
    "HTTP token": "http-token-Zq81vLk2Pw",
    "wrong HTTP token": "wrong-token-Hh7Gf3Dd",
    "alice's password": "alice-pw-Xy7Qm2Lp",
    "bob's password": "bob-pw-Nn4Rt8Vc",
    "a wrong password": "not-the-pw-Ee3Ww9Kk",
}


def write(path: Path, text: str, mode: int) -> Path:
    path.write_text(text)
    os.chmod(path, mode)
    return path


def http(port: int, path: str, token: str, body: bytes | None = None) -> tuple[int, str]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=body,
                                 headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_no_secret_in_the_trace_log_or_the_api(start_broker, dynalite, tmp_path):  # noqa: F811
    tables = subprocess.run([str(DYNAMQ), "tables", "create", "--endpoint", dynalite.endpoint],
                            capture_output=True, text=True, timeout=120,
                            env={"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                                 "AWS_EC2_METADATA_DISABLED": "true"})
    assert tables.returncode == 0, tables.stderr
    s = SECRETS
    # World-readable, as a careless install leaves them: both get the warning.
    config = write(tmp_path / "dynamq.toml", f"""\
[listeners]
http_token = "{s['HTTP token']}"

[store.dynamo]
region = "us-west-2"
endpoint = "{dynalite.endpoint}"
access_key_id = "{s['config access key id']}"
secret_access_key = "{s['config secret key']}"
""", 0o644)
    backend = write(tmp_path / "backend.conf", f"""\
backend.dynamo.region = us-west-2
backend.dynamo.pool1.server = {dynalite.endpoint}
backend.dynamo.pool1.aws_access_key_id = {s['backend access key id']}
backend.dynamo.pool1.aws_secret_access_key = {s['backend secret key']}
""", 0o644)
    pwfile = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(pwfile), "alice", s["alice's password"]], check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(pwfile), "bob", s["bob's password"]], check=True)
    key, crt = tmp_path / "server.key", tmp_path / "server.crt"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                    "-nodes", "-keyout", str(key), "-out", str(crt), "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=30)
    key_lines = [ln for ln in key.read_text().splitlines() if ln and not ln.startswith("-----")]

    http_port, tls_port = free_port(), free_port()
    # The environment must not supply the keys: they come from the files.
    env_keys = {k: os.environ.pop(k) for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY") if k in os.environ}
    try:
        b = start_broker(password_file=pwfile, allow_anonymous=False, log_level="trace",
                         extra_args=("--config", str(config), "--backend-conf", str(backend),
                                     "--http", f"127.0.0.1:{http_port}", "--tls", f"127.0.0.1:{tls_port}",
                                     "--tls-cert", str(crt), "--tls-key", str(key)))
    finally:
        os.environ.update(env_keys)
    assert listening(http_port)

    topic = unique_id("sec")
    with Paho(b, unique_id("alice"), protocol=V5, username="alice", password=s["alice's password"]) as a:
        a.subscribe(topic, 1)
        r = subprocess.run(["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-u", "bob", "-P",
                            s["bob's password"], "-t", topic, "-m", "m", "-q", "1"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 0, r.stderr
        assert a.get().payload == b"m"
        for protocol in (V311, V5):
            bad = Paho(b, unique_id("bad"), protocol=protocol, username="bob", password=s["a wrong password"],
                       connect=False)
            assert bad.try_connect().value == 0x86
        # The API, with the token and with a wrong one.
        answers = []
        for path in ("/api/v5/clients", "/api/v5/stats", "/api/v5/subscriptions", "/metrics"):
            status, body = http(http_port, path, s["HTTP token"])
            assert status == 200, (path, status, body)
            answers.append(body)
        status, body = http(http_port, "/api/v5/publish", s["HTTP token"],
                            json.dumps({"topic": topic, "payload": "via api", "qos": 1}).encode())
        assert status == 200, body
        assert a.get().payload == b"via api"
        status, body = http(http_port, "/api/v5/clients", s["wrong HTTP token"])
        assert status == 401
        answers.append(body)
    # The AWS SDK did sign requests with the backend file's keys: the client's item is there.
    assert dynalite.scan_until("mqtt_client", lambda i: i["clientid"]["S"].startswith("alice"), timeout=20)
    assert b.stop() == 0
    log = b.log_text()

    assert " TRACE " in log and "DEBUG" in log, "the run was not at trace level"
    for what, value in SECRETS.items():
        assert value not in log, f"{what} is in the log"
        assert all(value not in a for a in answers), f"{what} is in an API answer"
    for line in key_lines:
        assert line not in log, "a line of the TLS key is in the log"
    # Each world-readable file with a secret is named, with the fix.
    for path in (config, backend):
        warned = [ln for ln in log.splitlines() if "WARN" in ln and str(path) in ln]
        assert warned and "chmod 600" in warned[0] and "644" in warned[0], (path, warned)


def test_owner_only_files_get_no_warning(start_broker, tmp_path):
    """The same config file with mode 600: no warning; and a file without secrets is not
    named whatever its mode."""
    config = write(tmp_path / "dynamq.toml", '[listeners]\nhttp_token = "tok-Aa1Bb2Cc3"\n', 0o600)
    plain = write(tmp_path / "plain.toml", "[mqtt]\nmax_inflight = 64\n", 0o644)
    for path in (config, plain):
        b = start_broker(extra_args=("--config", str(path), "--store", "none"))
        assert b.wait_log(lambda ln: "MQTT over TCP" in ln)
        time.sleep(0.1)
        assert not [ln for ln in b.log_text().splitlines() if "chmod" in ln or "readable by other" in ln]
        b.stop()
