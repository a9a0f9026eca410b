"""The EMQX DynamoDB tutorial, followed literally (shared/seed/emqx-dynamodb-tutorial.md):
its `aws dynamodb create-table` commands against dynalite, dynamq started with the
tutorial's backend.dynamo.* file (only pool1.server pointed at the test port), MQTT.js over
WebSocket as the client, and its `aws dynamodb scan` commands showing items of exactly the
tutorial's shape: the same attribute names and types."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import REPO, free_port
from clients import unique_id

pytestmark = pytest.mark.dynamq_only

HERE = Path(__file__).parent
JS = HERE / "js"
DYNALITE = REPO / "tests" / "node" / "node_modules" / "dynalite" / "cli.js"
AWS = REPO / ".venv" / "bin" / "aws"
TUTORIAL_CONF = REPO / "store" / "tests" / "fixtures" / "emqx_backend_dynamo.conf"

# The tutorial's create-table commands, as written there (endpoint aside).
CREATE = {
    "mqtt_client": ["--attribute-definitions", "AttributeName=clientid,AttributeType=S",
                    "--key-schema", "AttributeName=clientid,KeyType=HASH"],
    "mqtt_retain": ["--attribute-definitions", "AttributeName=topic,AttributeType=S",
                    "--key-schema", "AttributeName=topic,KeyType=HASH"],
    "mqtt_sub": ["--attribute-definitions", "AttributeName=clientid,AttributeType=S",
                 "AttributeName=topic,AttributeType=S",
                 "--key-schema", "AttributeName=clientid,KeyType=HASH", "AttributeName=topic,KeyType=RANGE"],
    "mqtt_msg": ["--attribute-definitions", "AttributeName=msgid,AttributeType=S",
                 "--key-schema", "AttributeName=msgid,KeyType=HASH"],
    "mqtt_topic_msg_map": ["--attribute-definitions", "AttributeName=topic,AttributeType=S",
                           "--key-schema", "AttributeName=topic,KeyType=HASH"],
    "mqtt_acked": ["--attribute-definitions", "AttributeName=topic,AttributeType=S",
                   "AttributeName=clientid,AttributeType=S",
                   "--key-schema", "AttributeName=topic,KeyType=HASH", "AttributeName=clientid,KeyType=RANGE"],
}

# The item shapes the tutorial's scans show: attribute name -> DynamoDB type.
SHAPES = {
    "mqtt_client": {"node": "S", "connect_state": "N", "online_at": "N", "offline_at": "N", "clientid": "S"},
    "mqtt_retain": {"qos": "N", "sender": "S", "msgid": "S", "topic": "S", "arrived": "N", "retain": "N",
                    "payload": "S"},
    "mqtt_sub": {"qos": "N", "topic": "S", "clientid": "S"},
    "mqtt_msg": {"qos": "N", "sender": "S", "msgid": "S", "topic": "S", "arrived": "N", "retain": "N",
                 "payload": "S"},
    "mqtt_topic_msg_map": {"topic": "S", "MsgId": "SS"},
    "mqtt_acked": {"topic": "S", "msgid": "S", "clientid": "S"},
}


@pytest.fixture
def dynalite(tmp_path):
    if not DYNALITE.exists():
        pytest.fail(f"{DYNALITE} missing: run scripts/install-deps.sh")
    port = free_port()
    proc = subprocess.Popen(["node", str(DYNALITE), "--host", "127.0.0.1", "--port", str(port),
                             "--createTableMs", "0", "--path", str(tmp_path / "dynalite")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 15
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("dynalite did not start")
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()


def aws(endpoint: str, *args: str) -> dict:
    env = dict(os.environ, AWS_ACCESS_KEY_ID="AKIAU5IM2XOC7AQWG7HK",
               AWS_SECRET_ACCESS_KEY="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",
               AWS_EC2_METADATA_DISABLED="true", AWS_PAGER="")
    r = subprocess.run([str(AWS), "dynamodb", *args, "--region", "us-west-2", "--endpoint-url", endpoint],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout) if r.stdout.strip() else {}


def scan_until(endpoint: str, table: str, pred, timeout: float = 10.0) -> list[dict]:
    """`aws dynamodb scan` until an item satisfies pred (writes are batched)."""
    deadline = time.monotonic() + timeout
    while True:
        items = aws(endpoint, "scan", "--table-name", table)["Items"]
        hits = [i for i in items if pred(i)]
        if hits or time.monotonic() > deadline:
            return hits
        time.sleep(0.2)


def shape(item: dict) -> dict:
    return {name: next(iter(v)) for name, v in item.items()}


class Js:
    """An MQTT.js scenario script; stdout is JSON lines."""

    def __init__(self, script: str, **kw):
        cmd = ["node", str(JS / script)]
        for k, v in kw.items():
            cmd += [f"--{k.replace('_', '-')}", str(v).lower() if isinstance(v, bool) else str(v)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)

    def wait(self, event: str, timeout: float = 20.0) -> dict:
        deadline = time.monotonic() + timeout
        os.set_blocking(self.proc.stdout.fileno(), True)
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(f"{self.proc.args} ended before {event}: {self.proc.stderr.read()}")
            e = json.loads(line)
            if e.get("event") == event:
                if event == "result":
                    assert e.get("ok"), e
                return e
        raise AssertionError(f"no {event}")

    def quit(self) -> dict:
        self.proc.stdin.write("quit\n")
        self.proc.stdin.flush()
        r = self.wait("result")
        self.proc.wait(10)
        return r


def test_tutorial_end_to_end(start_broker, dynalite, tmp_path):
    """Every table holds items of exactly the tutorial's shape after the tutorial's steps."""
    for table, spec in CREATE.items():
        aws(dynalite, "create-table", "--table-name", table, *spec,
            "--provisioned-throughput", "ReadCapacityUnits=5,WriteCapacityUnits=5")
        aws(dynalite, "wait", "table-exists", "--table-name", table)

    conf = tmp_path / "emqx_backend_dynamo.conf"
    conf.write_text(TUTORIAL_CONF.read_text().replace("http://localhost:8000", dynalite))
    broker = start_broker(extra_args=("--backend-conf", str(conf)))
    assert "store hooks active" in broker.log_text()

    # Client online state: a WebSocket client connects and subscribes (mqtt_client, mqtt_sub).
    cid = unique_id("mqttjs")
    holder = Js("hold.mjs", url=broker.ws_url, client_id=cid, topic="testtopic", qos=0)
    holder.wait("subscribed")
    online = scan_until(dynalite, "mqtt_client", lambda i: i["clientid"]["S"] == cid)
    assert [shape(i) for i in online] == [SHAPES["mqtt_client"]]
    assert online[0]["connect_state"] == {"N": "1"} and online[0]["offline_at"] == {"N": "0"}
    subs = scan_until(dynalite, "mqtt_sub", lambda i: i["clientid"]["S"] == cid)
    assert [shape(i) for i in subs] == [SHAPES["mqtt_sub"]]
    assert subs[0]["topic"] == {"S": "testtopic"} and subs[0]["qos"] == {"N": "0"}

    # Retained message storage.
    payload = '{ "msg": "Hello, World!" }'
    Js("pub.mjs", url=broker.ws_url, topic="testtopic", message=payload, qos=0, retain=True).wait("result")
    retained = scan_until(dynalite, "mqtt_retain", lambda i: i["topic"]["S"] == "testtopic")
    assert [shape(i) for i in retained] == [SHAPES["mqtt_retain"]]
    assert retained[0]["payload"] == {"S": payload} and retained[0]["retain"] == {"N": "1"}

    # Published message storage: a QoS 1 message (the QoS 0 subscriber does not ack it).
    Js("pub.mjs", url=broker.ws_url, topic="testtopic", message=payload, qos=1).wait("result")
    msgs = scan_until(dynalite, "mqtt_msg", lambda i: i["topic"]["S"] == "testtopic")
    assert [shape(i) for i in msgs] == [SHAPES["mqtt_msg"]]
    assert msgs[0]["qos"] == {"N": "1"} and msgs[0]["retain"] == {"N": "0"}
    maps = scan_until(dynalite, "mqtt_topic_msg_map", lambda i: i["topic"]["S"] == "testtopic")
    assert [shape(i) for i in maps] == [SHAPES["mqtt_topic_msg_map"]]
    assert maps[0]["MsgId"]["SS"] == [msgs[0]["msgid"]["S"]]

    # ACK storage: a QoS 1 subscriber receives and acknowledges a QoS 1 message.
    acker = unique_id("mqttjs")
    sub = Js("hold.mjs", url=broker.ws_url, client_id=acker, topic="testtopic", qos=1)
    sub.wait("subscribed")
    Js("pub.mjs", url=broker.ws_url, topic="testtopic", message="acked", qos=1).wait("result")
    acked = scan_until(dynalite, "mqtt_acked", lambda i: i["clientid"]["S"] == acker)
    assert [shape(i) for i in acked] == [SHAPES["mqtt_acked"]]
    assert acked[0]["topic"] == {"S": "testtopic"}
    got = sub.quit()["messages"]
    assert [m["payload"] for m in got] == [payload, "acked"]  # the retained one, then the new one

    # Offline: connect_state 0 and an offline time.
    holder.quit()
    offline = scan_until(dynalite, "mqtt_client",
                         lambda i: i["clientid"]["S"] == cid and i["connect_state"] == {"N": "0"})
    assert [shape(i) for i in offline] == [SHAPES["mqtt_client"]]
    assert int(offline[0]["offline_at"]["N"]) >= int(offline[0]["online_at"]["N"]) > 0
