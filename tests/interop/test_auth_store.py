"""Users and ACL rules kept in the store (mqtt_user, mqtt_acl), on the embedded store and on
DynamoDB (dynalite): `dynamq user add|del|list` and `dynamq acl add|del|list` run while the
broker runs, and real clients (mosquitto_pub / mosquitto_sub with -u -P, paho v3.1.1 and v5)
connect with those users.

Refusals are the password file's (test_auth.py): a wrong password or an unknown user gets 4
"bad user name or password" (v5 0x86); a user store that cannot answer gets 3 "server
unavailable" (v5 0x88), never a connection. The broker runs with --auth-cache-secs 1, so a
`user del` and a rule change take effect within about a second.
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

import rawmqtt
from clients import V5, V311, Paho, unique_id
from conftest import DYNAMQ
from dynalite import dynalite  # noqa: F401 (fixture)

pytestmark = pytest.mark.dynamq_only

BAD_CREDENTIALS = 0x86  # paho reports v3.1.1's return code 4 as 0x86 too
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "y", "AWS_EC2_METADATA_DISABLED": "true"}


def code(rc) -> int:
    return rc.value if hasattr(rc, "value") else int(rc)


def accepted(rc) -> bool:
    """A PUBACK that is not a refusal (v5 0x10 "no matching subscribers" included)."""
    return code(rc) < 0x80


class Target:
    """Where the users live: the flags of `dynamq user|acl` and of `serve` for one store."""

    def __init__(self, kind: str, tmp_path, dynalite=None):
        self.kind = kind
        self.dynalite = dynalite
        self.tmp_path = tmp_path
        # Embedded: the data dir of the broker that start() started (start_broker's own).
        self.data_dir = None
        if kind == "dynamo":
            r = run("tables", "create", "--endpoint", dynalite.endpoint)
            assert r.returncode == 0, r.stderr
            assert "mqtt_user: created" in r.stdout and "mqtt_acl: created" in r.stdout, r.stdout

    def cli_args(self) -> list[str]:
        if self.kind == "dynamo":
            return ["--store", "dynamo", "--endpoint", self.dynalite.endpoint]
        return ["--data-dir", str(self.data_dir)]

    def start(self, start_broker):
        """A broker that takes users and rules from this store, cache TTL 1 s."""
        args = ("--user-store", "--acl-store", "--auth-cache-secs", "1", "--allow-anonymous", "false")
        if self.kind == "dynamo":
            conf = self.tmp_path / "dynamo.toml"
            conf.write_text(f'[store]\nkind = "dynamo"\n[store.dynamo]\nendpoint = "{self.dynalite.endpoint}"\n'
                            'access_key_id = "x"\nsecret_access_key = "y"\n')
            args += ("--config", str(conf))
        b = start_broker(extra_args=args)
        if self.kind == "embedded":
            self.data_dir = b.data_dir / "data"
        return b

    def user(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
        return run("user", args[0], *self.cli_args(), *args[1:], stdin=stdin)

    def acl(self, *args: str) -> subprocess.CompletedProcess:
        return run("acl", args[0], *self.cli_args(), *args[1:])


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(DYNAMQ), *args], capture_output=True, text=True, timeout=60, input=stdin,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **CREDENTIALS})


@pytest.fixture(params=["embedded", "dynamo"])
def target(request, tmp_path):
    if request.param == "dynamo":
        d = request.getfixturevalue("dynalite")
        return Target("dynamo", tmp_path, d)
    return Target("embedded", tmp_path)


def ok(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout


def until(pred, timeout: float = 5.0, step: float = 0.1):
    """pred() until it is truthy (returned) or `timeout` passes (the last value returned)."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def connack(broker, name, password, protocol=V5) -> int:
    c = Paho(broker, unique_id(name), protocol=protocol, username=name, password=password, connect=False)
    rc = code(c.try_connect())
    c.client.disconnect()
    c.client.loop_stop()
    return rc


def raw_connack(broker, version, name, password: bytes) -> int:
    c = rawmqtt.RawClient(broker.port, version=version)
    ack = c.handshake(unique_id("raw"), username=name, password=password)
    c.sock.close()
    return ack.reason


def test_users_in_the_store(start_broker, target):
    """`user add` (password by flag and on stdin) while the broker runs; the right password
    connects (mosquitto clients, paho v3.1.1 and v5); `user list` shows no hash; `user add`
    again replaces the password; `user del` refuses new connections within the cache TTL.
    (Each refusal from an address delays the next: the refusals are in the next test.)"""
    b = target.start(start_broker)
    assert ok(target.acl("add", "$all", "allow", "all", "t/#")).endswith("added\n")
    assert ok(target.user("add", "alice", "--password", "alice-pw")) == "alice: added\n"
    assert ok(target.user("add", "bob", stdin="bob-pw\n")) == "bob: added\n"
    assert ok(target.user("add", "root", "--password", "root-pw", "--superuser")) == "root: added\n"

    listed = ok(target.user("list"))
    rows = [ln.split("\t") for ln in listed.splitlines()]
    assert rows[0] == ["username", "superuser", "created"]
    assert [(r[0], r[1]) for r in rows[1:]] == [("alice", "false"), ("bob", "false"), ("root", "true")]
    assert all(abs(int(r[2]) - time.time()) < 600 for r in rows[1:])
    assert "$7$" not in listed and "pw" not in listed

    topic = "t/" + unique_id("x")
    # The rule is read within the refresh interval (1 s).
    time.sleep(1.5)
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.port), "-u", "bob", "-P", "bob-pw",
                            "-t", topic, "-C", "1", "-W", "10"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    pub = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-t", topic, "-m", "hello", "-q", "1"]
    r = subprocess.run(pub + ["-u", "alice", "-P", "alice-pw"], capture_output=True, text=True, timeout=10)
    assert r.returncode == 0, r.stderr
    out, err = sub.communicate(timeout=15)
    assert out.strip() == "hello", err
    for protocol in (V311, V5):
        assert connack(b, "alice", "alice-pw", protocol) == 0

    # A new password replaces the old one (after the cache TTL at most).
    assert ok(target.user("add", "bob", "--password", "bob-pw2")) == "bob: replaced\n"
    assert until(lambda: connack(b, "bob", "bob-pw2") == 0)
    assert connack(b, "bob", "bob-pw") == BAD_CREDENTIALS

    # Deleted: new connections refused within the TTL (1 s); an open one stays.
    with Paho(b, unique_id("alice"), protocol=V5, username="alice", password="alice-pw") as kept:
        assert ok(target.user("del", "alice")) == "alice: deleted\n"
        t0 = time.monotonic()
        assert until(lambda: connack(b, "alice", "alice-pw") == BAD_CREDENTIALS, timeout=5)
        assert time.monotonic() - t0 < 5
        assert accepted(kept.publish(topic, b"still here", 1))
    r = target.user("del", "alice")
    assert r.returncode != 0 and 'no user "alice"' in r.stderr
    assert "alice" not in ok(target.user("list"))
    log = b.log_text()
    assert "alice-pw" not in log and "bob-pw" not in log

    if target.kind == "dynamo":
        items = {i["username"]["S"]: i for i in target.dynalite.aws("scan", "--table-name", "mqtt_user")["Items"]}
        assert sorted(items) == ["bob", "root"]
        root = items["root"]
        assert sorted(root) == ["created", "is_superuser", "password_hash", "username"]
        assert root["password_hash"]["S"].startswith("$7$101$")
        assert root["is_superuser"] == {"BOOL": True}
        assert items["bob"]["is_superuser"] == {"BOOL": False}
        assert int(root["created"]["N"]) > 1_700_000_000
    else:
        assert (target.data_dir / "users.redb").exists()


def test_wrong_passwords_refused(start_broker, target):
    """A wrong password or an unknown user: 4 "bad user name or password" (v5 0x86), as with
    a password file; mosquitto_pub says so."""
    b = target.start(start_broker)
    ok(target.user("add", "alice", "--password", "alice-pw"))
    pub = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-t", "t", "-m", "x", "-q", "1"]
    r = subprocess.run(pub + ["-u", "alice", "-P", "wrong"], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and "bad user name or password" in (r.stderr + r.stdout).lower()
    assert connack(b, "alice", "wrong", V311) == BAD_CREDENTIALS
    assert connack(b, "nobody", "alice-pw", V5) == BAD_CREDENTIALS
    assert raw_connack(b, rawmqtt.V311, "alice", b"wrong") == 4
    assert raw_connack(b, rawmqtt.V5, "alice", b"wrong") == 0x86
    # The right one still connects (the refusals' delays do not apply to it).
    assert connack(b, "alice", "alice-pw", V5) == 0


def test_store_hash_is_a_password_file_line(start_broker, target, tmp_path):
    """The hash `dynamq user add` stores is Mosquitto's: as a password file line it lets the
    same user in with a password file alone."""
    if target.kind != "dynamo":
        pytest.skip("read back with the aws CLI: the DynamoDB item")
    ok(target.user("add", "carol", "--password", "carol-pw"))
    items = target.dynalite.aws("scan", "--table-name", "mqtt_user")["Items"]
    line = f"carol:{items[0]['password_hash']['S']}\n"
    pw = tmp_path / "pwfile"
    pw.write_text(line)
    b = start_broker(password_file=pw, allow_anonymous=False)
    assert connack(b, "carol", "carol-pw") == 0
    assert connack(b, "carol", "x") == BAD_CREDENTIALS


def test_acl_rules_in_the_store(start_broker, target):
    """Rules in mqtt_acl: a user's allow and one-way deny, $all patterns with %c; a denied
    publish gets v5 PUBACK 0x87 and is not delivered; a superuser bypasses the rules; a rule
    added later takes effect for new connections within the refresh interval."""
    b = target.start(start_broker)
    for user in ("alice", "bob", "root"):
        ok(target.user("add", user, "--password", f"{user}-pw", *(["--superuser"] if user == "root" else [])))
    ok(target.acl("add", "alice", "allow", "all", "a/#"))
    ok(target.acl("add", "alice", "deny", "publish", "a/secret"))
    ok(target.acl("add", "bob", "allow", "subscribe", "a/#"))
    ok(target.acl("add", "$all", "allow", "all", "c/%c/#"))
    r = target.acl("add", "bob", "allow", "all", "d/%u")
    assert r.returncode != 0 and "$all rules only" in r.stderr
    r = target.acl("add", "bob", "allow", "read", "d")
    assert r.returncode != 0 and "publish, subscribe or all" in r.stderr
    listed = ok(target.acl("list")).splitlines()
    assert listed[0] == "username\tpermission\taction\ttopic"
    assert "alice\tdeny\tpublish\ta/secret" in listed and "$all\tallow\tall\tc/%c/#" in listed


    def alice_may_publish() -> bool:
        with Paho(b, unique_id("alice"), protocol=V5, username="alice", password="alice-pw") as a:
            return accepted(a.publish("a/x", b"", 1))
    # Rules added while the broker runs: read within the refresh interval (1 s).
    assert until(alice_may_publish, timeout=5, step=0.3)
    with Paho(b, unique_id("bob"), username="bob", password="bob-pw") as bob, \
            Paho(b, unique_id("alice"), protocol=V5, username="alice", password="alice-pw") as alice, \
            Paho(b, "dev1", protocol=V5, username="bob", password="bob-pw") as dev:
        assert [code(x) for x in bob.subscribe("a/#", 1)] == [1]
        assert code(alice.publish("a/secret", b"no", 1)) == 0x87
        assert code(alice.publish("b/x", b"no", 1)) == 0x87
        assert code(alice.publish("a/x", b"yes", 1)) == 0
        m = bob.get()
        assert (m.topic, m.payload) == ("a/x", b"yes")
        bob.expect_nothing(0.3)
        # bob may subscribe but not publish; $all c/%c/# lets dev1 use c/dev1/ only.
        assert code(dev.publish("a/x", b"no", 1)) == 0x87
        assert accepted(dev.publish("c/dev1/t", b"mine", 1))
        assert code(dev.publish("c/dev2/t", b"theirs", 1)) == 0x87
        assert [code(x) for x in alice.subscribe("#", 1)] == [0x87]

    with Paho(b, unique_id("root"), protocol=V5, username="root", password="root-pw") as root:
        assert [code(x) for x in root.subscribe("#", 1)] == [1]
        assert code(root.publish("a/secret", b"root", 1)) == 0
        assert root.get().topic == "a/secret"

    # Removed rule: alice may publish a/secret once the rules are read again.
    ok(target.acl("del", "alice", "a/secret"))

    def published() -> bool:
        with Paho(b, unique_id("alice"), protocol=V5, username="alice", password="alice-pw") as a:
            return accepted(a.publish("a/secret", b"now", 1))
    assert until(published, timeout=5, step=0.3)

    if target.kind == "dynamo":
        items = target.dynalite.aws("scan", "--table-name", "mqtt_acl")["Items"]
        shapes = sorted((i["username"]["S"], i["topic"]["S"], i["permission"]["S"], i["action"]["S"])
                        for i in items)
        assert shapes == [("$all", "c/%c/#", "allow", "all"), ("alice", "a/#", "allow", "all"),
                          ("bob", "a/#", "allow", "subscribe")]
        assert all(sorted(i) == ["action", "permission", "topic", "username"] for i in items)
        keys = target.dynalite.aws("describe-table", "--table-name", "mqtt_acl")["Table"]["KeySchema"]
        assert keys == [{"AttributeName": "username", "KeyType": "HASH"},
                        {"AttributeName": "topic", "KeyType": "RANGE"}]


def test_store_down_refuses_as_unavailable(start_broker, tmp_path, dynalite):  # noqa: F811
    """DynamoDB unreachable at CONNECT: a user not in the cache is refused with 3 / 0x88
    Server unavailable, never let in; once the store is back, it connects."""
    target = Target("dynamo", tmp_path, dynalite)
    ok(target.user("add", "carol", "--password", "carol-pw"))
    ok(target.acl("add", "$all", "allow", "all", "#"))
    b = target.start(start_broker)
    dynalite.stop()
    assert raw_connack(b, rawmqtt.V311, "carol", b"carol-pw") == 3
    assert raw_connack(b, rawmqtt.V5, "carol", b"carol-pw") == 0x88
    assert connack(b, "carol", "carol-pw", V5) == 0x88
    assert b.wait_log(lambda ln: "CONNECT refused" in ln and "0x88" in ln)
    dynalite.start()
    assert until(lambda: connack(b, "carol", "carol-pw") == 0, timeout=10, step=0.3)
