"""dynamq on DynamoDB (dynalite): the table commands, the start-up check, a broker restart,
and a DynamoDB outage that MQTT traffic rides through without losing a write."""

from __future__ import annotations

import subprocess
import time

import pytest

from clients import V311, Paho, unique_id
from conftest import DYNAMQ, REPO
from dynalite import dynalite  # noqa: F401 (fixture)

pytestmark = pytest.mark.dynamq_only

TUTORIAL_CONF = REPO / "store" / "tests" / "fixtures" / "emqx_backend_dynamo.conf"
TABLES = ["mqtt_client", "mqtt_sub", "mqtt_retain", "mqtt_msg", "mqtt_topic_msg_map", "mqtt_acked"]


def dynamq(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(DYNAMQ), *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y",
                               "AWS_EC2_METADATA_DISABLED": "true"})


def backend_conf(tmp_path, dynalite) -> str:
    conf = tmp_path / "backend.conf"
    conf.write_text(TUTORIAL_CONF.read_text().replace("http://localhost:8000", dynalite.endpoint))
    return str(conf)


def test_tables_create_and_check(dynalite):
    """`tables check` says what is missing; `tables create` makes the eight tables with the
    tutorial's keys, idempotently; a wrong key schema is named precisely."""
    e = dynalite.endpoint
    r = dynamq("tables", "check", "--endpoint", e)
    assert r.returncode != 0
    for t in TABLES:
        assert f"{t}: table does not exist" in r.stdout
    r = dynamq("tables", "create", "--endpoint", e)
    assert r.returncode == 0, r.stderr
    # The six, and the users and ACL rules (mqtt_user, mqtt_acl; `check` looks at the six).
    created = TABLES + ["mqtt_user", "mqtt_acl"]
    assert sorted(r.stdout.split("\n")[:-1]) == sorted(f"{t}: created" for t in created)
    r = dynamq("tables", "create", "--endpoint", e)
    assert sorted(r.stdout.split("\n")[:-1]) == sorted(f"{t}: already exists" for t in created)
    r = dynamq("tables", "check", "--endpoint", e)
    assert r.returncode == 0, r.stdout + r.stderr
    keys = dynalite.aws("describe-table", "--table-name", "mqtt_sub")["Table"]["KeySchema"]
    assert keys == [{"AttributeName": "clientid", "KeyType": "HASH"},
                    {"AttributeName": "topic", "KeyType": "RANGE"}]

    # A table with a wrong key: mqtt_acked keyed by clientid only.
    assert dynamq("tables", "create", "--endpoint", e, "--prefix", "bad_").returncode == 0
    dynalite.aws("delete-table", "--table-name", "bad_mqtt_acked")
    for _ in range(100):  # deleting takes a moment; `aws dynamodb wait` polls every 20 s
        if "bad_mqtt_acked" not in dynalite.aws("list-tables")["TableNames"]:
            break
        time.sleep(0.1)
    dynalite.aws("create-table", "--table-name", "bad_mqtt_acked",
                 "--attribute-definitions", "AttributeName=clientid,AttributeType=S",
                 "--key-schema", "AttributeName=clientid,KeyType=HASH",
                 "--provisioned-throughput", "ReadCapacityUnits=5,WriteCapacityUnits=5")
    r = dynamq("tables", "check", "--endpoint", e, "--prefix", "bad_")
    assert r.returncode != 0
    bad = [ln for ln in r.stdout.splitlines() if ln.startswith("bad_mqtt_acked")]
    assert bad and all("ok" not in ln for ln in bad), r.stdout
    assert "bad_mqtt_sub: ok" in r.stdout


def test_serve_refuses_missing_tables(dynalite, tmp_path):
    """`serve` on DynamoDB checks the tables first: a missing one stops it with a message
    that names it and says how to fix it."""
    r = subprocess.run([str(DYNAMQ), "serve", "--backend-conf", backend_conf(tmp_path, dynalite),
                        "--tcp", "127.0.0.1:0", "--ws", "none"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode != 0
    assert "mqtt_client: table does not exist" in r.stderr
    assert "dynamq tables create" in r.stderr


def test_persistent_session_survives_restart_on_dynamo(dynalite, start_broker, tmp_path):
    """On DynamoDB as on the embedded store: a persistent session's subscription and a QoS 1
    message published while it was away survive a broker restart (on_subscribe_lookup,
    on_message_fetch_for_queue), and so does a retained message (on_retain_lookup)."""
    assert dynamq("tables", "create", "--endpoint", dynalite.endpoint).returncode == 0
    broker = start_broker(extra_args=("--backend-conf", backend_conf(tmp_path, dynalite)))
    cid, topic = unique_id("dyn"), unique_id("dynt")
    with Paho(broker, cid, clean=False) as s:
        s.subscribe(topic, 1)
    with Paho(broker, unique_id("p")) as p:
        p.publish(topic, b"kept for you", 1)
        p.publish(topic + "/r", b"retained", 1, retain=True)
    broker.restart()
    with Paho(broker, cid, clean=False) as s:
        assert s.session_present is True
        m = s.get()
        assert (m.topic, m.payload, m.qos) == (topic, b"kept for you", 1)
    with Paho(broker, unique_id("s")) as s:
        s.subscribe(topic + "/r", 1)
        m = s.get()
        assert (m.payload, m.retain) == (b"retained", True)


def test_dynamodb_outage_does_not_stop_mqtt(dynalite, start_broker, tmp_path):
    """With DynamoDB down, clients still connect, subscribe and exchange QoS 1 messages; the
    failures are logged with their AWS error code; the writes are retried and land once
    DynamoDB is back."""
    assert dynamq("tables", "create", "--endpoint", dynalite.endpoint).returncode == 0
    broker = start_broker(extra_args=("--backend-conf", backend_conf(tmp_path, dynalite)))
    topic = unique_id("out")
    with Paho(broker, unique_id("s")) as s:
        s.subscribe(topic, 1)
        dynalite.stop()
        publisher = unique_id("p")
        started = time.monotonic()
        with Paho(broker, publisher) as p:
            for i in range(5):
                p.publish(topic, f"m{i}".encode(), 1)
        got = [s.get().payload for _ in range(5)]
        assert got == [f"m{i}".encode() for i in range(5)]
        assert time.monotonic() - started < 10  # store reads fail fast: no long CONNACK wait
        lines = broker.wait_log(lambda ln: "store write failed" in ln and "code=" in ln, timeout=10)
        assert lines, broker.log_text()[-2000:]
        dynalite.start()
        # The publisher's mqtt_client item, written during the outage, lands.
        items = dynalite.scan_until("mqtt_client", lambda i: i["clientid"]["S"] == publisher, timeout=20)
        assert [i["connect_state"] for i in items] == [{"N": "0"}]
        # The subscriber's acks of the five messages, too.
        acked = dynalite.scan_until("mqtt_acked", lambda i: i["topic"]["S"] == topic, timeout=20)
        assert len(acked) == 1
    assert broker.proc is not None and broker.proc.poll() is None
