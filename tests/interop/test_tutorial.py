"""The EMQX DynamoDB tutorial, followed literally (shared/seed/emqx-dynamodb-tutorial.md):
its `aws dynamodb create-table` commands against dynalite, dynamq started with the
tutorial's backend.dynamo.* file (only pool1.server pointed at the test port), MQTT.js over
WebSocket as the client, and its `aws dynamodb scan` commands showing items of exactly the
tutorial's shape: the same attribute names and types."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from clients import unique_id
from conftest import REPO
from dynalite import dynalite  # noqa: F401 (fixture)

pytestmark = pytest.mark.dynamq_only

HERE = Path(__file__).parent
JS = HERE / "js"
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


def test_tutorial_end_to_end(dynalite, start_broker, tmp_path):
    """Every table holds items of exactly the tutorial's shape after the tutorial's steps."""
    for table, spec in CREATE.items():
        dynalite.aws("create-table", "--table-name", table, *spec,
            "--provisioned-throughput", "ReadCapacityUnits=5,WriteCapacityUnits=5")
        dynalite.aws("wait", "table-exists", "--table-name", table)

    conf = tmp_path / "emqx_backend_dynamo.conf"
    conf.write_text(TUTORIAL_CONF.read_text().replace("http://localhost:8000", dynalite.endpoint))
    broker = start_broker(extra_args=("--backend-conf", str(conf)))
    assert "store hooks active" in broker.log_text()

    # Client online state: a WebSocket client connects and subscribes (mqtt_client, mqtt_sub).
    cid = unique_id("mqttjs")
    holder = Js("hold.mjs", url=broker.ws_url, client_id=cid, topic="testtopic", qos=0)
    holder.wait("subscribed")
    online = dynalite.scan_until("mqtt_client", lambda i: i["clientid"]["S"] == cid)
    assert [shape(i) for i in online] == [SHAPES["mqtt_client"]]
    assert online[0]["connect_state"] == {"N": "1"} and online[0]["offline_at"] == {"N": "0"}
    subs = dynalite.scan_until("mqtt_sub", lambda i: i["clientid"]["S"] == cid)
    assert [shape(i) for i in subs] == [SHAPES["mqtt_sub"]]
    assert subs[0]["topic"] == {"S": "testtopic"} and subs[0]["qos"] == {"N": "0"}

    # Retained message storage.
    payload = '{ "msg": "Hello, World!" }'
    Js("pub.mjs", url=broker.ws_url, topic="testtopic", message=payload, qos=0, retain=True).wait("result")
    retained = dynalite.scan_until("mqtt_retain", lambda i: i["topic"]["S"] == "testtopic")
    assert [shape(i) for i in retained] == [SHAPES["mqtt_retain"]]
    assert retained[0]["payload"] == {"S": payload} and retained[0]["retain"] == {"N": "1"}

    # Published message storage: a QoS 1 message (the QoS 0 subscriber does not ack it).
    Js("pub.mjs", url=broker.ws_url, topic="testtopic", message=payload, qos=1).wait("result")
    msgs = dynalite.scan_until("mqtt_msg", lambda i: i["topic"]["S"] == "testtopic")
    assert [shape(i) for i in msgs] == [SHAPES["mqtt_msg"]]
    assert msgs[0]["qos"] == {"N": "1"} and msgs[0]["retain"] == {"N": "0"}
    maps = dynalite.scan_until("mqtt_topic_msg_map", lambda i: i["topic"]["S"] == "testtopic")
    assert [shape(i) for i in maps] == [SHAPES["mqtt_topic_msg_map"]]
    assert maps[0]["MsgId"]["SS"] == [msgs[0]["msgid"]["S"]]

    # ACK storage: a QoS 1 subscriber receives and acknowledges a QoS 1 message.
    acker = unique_id("mqttjs")
    sub = Js("hold.mjs", url=broker.ws_url, client_id=acker, topic="testtopic", qos=1)
    sub.wait("subscribed")
    Js("pub.mjs", url=broker.ws_url, topic="testtopic", message="acked", qos=1).wait("result")
    acked = dynalite.scan_until("mqtt_acked", lambda i: i["clientid"]["S"] == acker)
    assert [shape(i) for i in acked] == [SHAPES["mqtt_acked"]]
    assert acked[0]["topic"] == {"S": "testtopic"}
    got = sub.quit()["messages"]
    assert [m["payload"] for m in got] == [payload, "acked"]  # the retained one, then the new one

    # Offline: connect_state 0 and an offline time.
    holder.quit()
    offline = dynalite.scan_until("mqtt_client",
                         lambda i: i["clientid"]["S"] == cid and i["connect_state"] == {"N": "0"})
    assert [shape(i) for i in offline] == [SHAPES["mqtt_client"]]
    assert int(offline[0]["offline_at"]["N"]) >= int(offline[0]["online_at"]["N"]) > 0
