"""Authentication (a Mosquitto password file, anonymous clients) and authorization (a Mosquitto
ACL file), with real clients: mosquitto_passwd writes the password file, mosquitto_pub and
mosquitto_sub and paho-mqtt (v3.1.1 and v5) connect, publish and subscribe.

Refusals: credentials that are not accepted get CONNACK return code 4 "bad user name or
password" (v5: 0x86), as EMQX answers; a refused anonymous client gets 5 "not authorized"
(v5: 0x87). Mosquitto 2.0.11 answers 5 / 0x87 to both, so the tests of the first are
dynamq_only. The tests without `dynamq_only` pass against Mosquitto 2.0.11 too
(DYNAMQ_TEST_BROKER=mosquitto). Mosquitto 2.0.11 grants every SUBSCRIBE
and filters at delivery; dynamq also refuses a subscription its ACL does not cover, so those
tests are dynamq_only.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request

import pytest

import rawmqtt
from clients import V5, V311, Paho, unique_id
from conftest import BROKER, DYNAMQ, free_port

NOT_AUTHORIZED = {V311: 5, V5: 0x87}
BAD_CREDENTIALS = 0x86  # paho reports v3.1.1's return code 4 as 0x86 too
PROTOCOLS = [pytest.param(V311, id="v311"), pytest.param(V5, id="v5")]

ACL = """\
# anonymous clients (no user name)
topic read public/#

user alice
topic readwrite a/+
topic deny a/secret
topic write public/#

user bob
topic read a/#
topic read public/#

user admin
topic readwrite #

pattern readwrite c/%c/#
"""


@pytest.fixture
def pwfile(tmp_path):
    """A password file written by Mosquitto's own mosquitto_passwd ($7$, PBKDF2-SHA512)."""
    path = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(path), "alice", "alice-pw"], check=True)
    for user, pw in (("bob", "bob-pw"), ("admin", "admin-pw")):
        subprocess.run(["mosquitto_passwd", "-b", str(path), user, pw], check=True)
    assert path.read_text().startswith("alice:$7$")
    return path


@pytest.fixture
def aclfile(tmp_path):
    path = tmp_path / "acl"
    path.write_text(ACL)
    return path


@pytest.fixture
def secured(start_broker, pwfile, aclfile):
    """A broker with the password file and the ACL; anonymous clients allowed."""
    return start_broker(password_file=pwfile, acl_file=aclfile, allow_anonymous=True)


def user(broker, name, protocol=V311, client_id=None):
    return Paho(broker, client_id or unique_id(name), protocol=protocol, username=name,
                password=f"{name}-pw")


def code(rc) -> int:
    return rc.value if hasattr(rc, "value") else int(rc)


# ------------------------------------------------------------------ authentication


def test_mosquitto_clients_with_password(start_broker, pwfile):
    """mosquitto_sub and mosquitto_pub with -u/-P: the right password connects and the message
    goes through; a wrong one is refused (return code 4 "bad user name or password"; Mosquitto
    answers 5 "not authorised") [MQTT-3.2.2-5]."""
    b = start_broker(password_file=pwfile, allow_anonymous=False)
    topic = unique_id("auth/pub")
    sub = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(b.port), "-u", "bob",
                            "-P", "bob-pw", "-t", topic, "-C", "1", "-W", "5"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    pub = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(b.port), "-t", topic, "-m", "hello", "-q", "1"]
    ok = subprocess.run(pub + ["-u", "alice", "-P", "alice-pw"], capture_output=True, text=True, timeout=10)
    assert ok.returncode == 0, ok.stderr
    out, err = sub.communicate(timeout=10)
    assert out.strip() == "hello", err
    bad = subprocess.run(pub + ["-u", "alice", "-P", "wrong"], capture_output=True, text=True, timeout=10)
    assert bad.returncode != 0
    said = (bad.stderr + bad.stdout).lower()
    assert ("not authori" if BROKER == "mosquitto" else "bad user name or password") in said, said
    anon = subprocess.run(pub, capture_output=True, text=True, timeout=10)
    assert anon.returncode != 0


def raw_connack(broker, version, *, refused=True, **kw):
    """CONNECT over a raw socket; the CONNACK, and (refused) whether the server closed
    afterwards."""
    c = rawmqtt.RawClient(broker.port, version=version)
    ack = c.handshake(unique_id("raw"), **kw)
    closed = refused and c.recv(timeout=3) is None
    c.sock.close()
    return ack, closed


@pytest.mark.dynamq_only
@pytest.mark.parametrize("version", [pytest.param(rawmqtt.V311, id="v311"), pytest.param(rawmqtt.V5, id="v5")])
def test_bad_password_is_refused(start_broker, pwfile, version):
    """A wrong password, an unknown user, or no password: CONNACK return code 4 "bad user
    name or password" (v5: 0x86), with Session Present 0 [MQTT-3.2.2-6]; then the server
    closes the connection [MQTT-3.2.2-5]."""
    b = start_broker(password_file=pwfile, allow_anonymous=False)
    for name, pw in (("alice", b"wrong"), ("nobody", b"alice-pw"), ("alice", None)):
        ack, closed = raw_connack(b, version, username=name, password=pw)
        assert ack.reason == (4 if version == rawmqtt.V311 else 0x86), (name, pw)
        assert not ack.session_present
        assert closed
    ack, _ = raw_connack(b, version, refused=False, username="alice", password=b"alice-pw")
    assert ack.reason == 0


@pytest.mark.dynamq_only
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_paho_sees_bad_user_name_or_password(start_broker, pwfile, protocol):
    """paho-mqtt v3.1.1 and v5: a wrong password is refused as Bad user name or password
    (paho reports v3's return code 4 as 0x86); the right one connects."""
    b = start_broker(password_file=pwfile, allow_anonymous=False)
    c = Paho(b, unique_id("bad"), protocol=protocol, username="alice", password="wrong", connect=False)
    assert code(c.try_connect()) == BAD_CREDENTIALS
    with user(b, "alice", protocol) as ok:
        assert code(ok.reason_code) == 0


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_anonymous_refused_when_not_allowed(start_broker, pwfile, protocol):
    """--allow-anonymous false: a CONNECT without a user name gets 5 / 0x87 Not authorized."""
    b = start_broker(password_file=pwfile, allow_anonymous=False)
    c = Paho(b, unique_id("anon"), protocol=protocol, connect=False)
    assert code(c.try_connect()) == 0x87
    ack, closed = raw_connack(b, rawmqtt.V311 if protocol == V311 else rawmqtt.V5)
    assert ack.reason == NOT_AUTHORIZED[protocol] and closed


@pytest.mark.dynamq_only
def test_anonymous_allowed_by_default_on_loopback(start_broker, pwfile):
    """Without --allow-anonymous, every listener being on 127.0.0.1, anonymous clients may
    connect, and the start-up log says why."""
    b = start_broker(password_file=pwfile)
    with Paho(b, unique_id("anon")) as c:
        assert code(c.reason_code) == 0
    assert b.wait_log(lambda ln: "anonymous clients allowed: every listener is on loopback" in ln)


@pytest.mark.dynamq_only
def test_file_from_dynamq_passwd_is_accepted(start_broker, tmp_path):
    """`dynamq passwd` writes the $7$ format (batch with -b, or the password on stdin); the
    broker accepts it, and mosquitto_passwd can still update the same file."""
    path = tmp_path / "pw"
    subprocess.run([str(DYNAMQ), "passwd", "-b", str(path), "carol", "carol-pw"], check=True)
    subprocess.run([str(DYNAMQ), "passwd", str(path), "dave"], input="dave-pw\n", text=True, check=True)
    subprocess.run(["mosquitto_passwd", "-b", str(path), "erin", "erin-pw"], check=True)
    text = path.read_text()
    assert [ln.split(":")[0] for ln in text.splitlines()] == ["carol", "dave", "erin"]
    assert text.startswith("carol:$7$101$")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    b = start_broker(password_file=path, allow_anonymous=False)
    for name in ("carol", "dave", "erin"):
        with user(b, name, V5) as c:
            assert code(c.reason_code) == 0
    c = Paho(b, unique_id("x"), username="carol", password="dave-pw", connect=False)
    assert code(c.try_connect()) == BAD_CREDENTIALS


def test_mosquitto_accepts_a_file_from_dynamq_passwd(tmp_path, start_broker):
    """The other way round: Mosquitto itself (the reference broker) accepts a file written by
    `dynamq passwd`. Needs both programs."""
    if not DYNAMQ.exists():
        pytest.skip("no dynamq binary")
    if BROKER != "mosquitto":
        pytest.skip("run with DYNAMQ_TEST_BROKER=mosquitto")
    path = tmp_path / "pw"
    subprocess.run([str(DYNAMQ), "passwd", "-b", str(path), "carol", "carol-pw"], check=True)
    b = start_broker(password_file=path, allow_anonymous=False)
    with user(b, "carol") as c:
        assert code(c.reason_code) == 0


@pytest.mark.dynamq_only
def test_password_never_logged(start_broker, pwfile):
    """A run with right and wrong passwords: the log names the client and the user of a
    refusal, and holds neither password."""
    b = start_broker(password_file=pwfile, allow_anonymous=False)
    with user(b, "alice", V5):
        pass
    wrong = "Wr0ng-Secret-" + unique_id("pw")
    Paho(b, "who-failed", username="bob", password=wrong, connect=False).try_connect()
    lines = b.wait_log(lambda ln: "CONNECT refused" in ln)
    assert lines and "who-failed" in lines[0] and "bob" in lines[0], lines
    log = b.log_text()
    assert "alice-pw" not in log
    assert wrong not in log


@pytest.mark.dynamq_only
def test_repeated_failures_are_slowed_down(start_broker, pwfile):
    """Failures from one address: the refusals come later and later (never faster), counted in
    dynamq_auth_failures_total."""
    http = free_port()
    b = start_broker(password_file=pwfile, allow_anonymous=False, extra_args=("--http", f"127.0.0.1:{http}"))
    took = []
    for _ in range(3):
        c = Paho(b, unique_id("guess"), username="alice", password="guess", connect=False)
        t0 = time.monotonic()
        assert code(c.try_connect()) == BAD_CREDENTIALS
        took.append(time.monotonic() - t0)
    assert took[1] >= 0.2 and took[2] >= 0.45, took
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as r:
        metrics = r.read().decode()
    assert "dynamq_auth_failures_total 3" in metrics, metrics


# ------------------------------------------------------------------ authorization


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_publish_denied(secured, protocol):
    """A PUBLISH the ACL does not allow is not delivered. v5: PUBACK 0x87 Not authorized; v3
    cannot be told, so its PUBACK is normal [MQTT-4.3.2-2] and the message is dropped."""
    with user(secured, "bob") as reader, user(secured, "alice", protocol) as alice:
        reader.subscribe("a/#", 1)
        assert code(alice.publish("a/secret", b"no", 1)) == (0x87 if protocol == V5 else 0)
        assert code(alice.publish("b/x", b"no", 1)) == (0x87 if protocol == V5 else 0)
        reader.expect_nothing(0.3)
        assert code(alice.publish("a/x", b"yes", 1)) == 0
        m = reader.get()
        assert (m.topic, m.payload) == ("a/x", b"yes")


@pytest.mark.dynamq_only
@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_subscribe_denied(secured, protocol):
    """A SUBSCRIBE the ACL does not cover gets Failure 0x80 in a v3.1.1 SUBACK [MQTT-3.9.3-2]
    (v5: 0x87 Not authorized), per filter; a filter wider than the rule (a/# where a/+ is
    allowed) is refused; the other filters of the packet are granted."""
    with user(secured, "alice", protocol) as alice:
        rcs = alice.subscribe([("a/#", 1), ("a/+", 1), ("a/secret", 1), ("public/x", 1)]) \
            if protocol == V311 else None
        if protocol == V5:
            from paho.mqtt.subscribeoptions import SubscribeOptions
            rcs = alice.subscribe([(f, SubscribeOptions(qos=1)) for f in ("a/#", "a/+", "a/secret", "public/x")])
        denied = 0x80 if protocol == V311 else 0x87
        assert [code(r) for r in rcs] == [denied, 1, denied, denied]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_wildcard_subscription_gets_only_readable_topics(secured, protocol):
    """A message reaching a subscriber through a wildcard is delivered only if the subscriber
    may read its topic (deny a/secret inside readwrite a/+); another subscriber that may read
    it gets it."""
    with user(secured, "alice", protocol) as alice, user(secured, "bob") as bob, \
            user(secured, "admin") as admin:
        alice.subscribe("a/+", 1)
        bob.subscribe("a/#", 1)
        admin.publish("a/secret", b"s", 1)
        admin.publish("a/open", b"o", 1)
        assert (bob.get().topic, bob.get().topic) == ("a/secret", "a/open")
        m = alice.get()
        assert m.topic == "a/open"
        alice.expect_nothing(0.3)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_retained_message_only_to_readers(secured, protocol):
    """Retained messages are sent on subscribe [MQTT-3.3.1-9] only where the subscriber may
    read their topic."""
    with user(secured, "admin") as admin:
        admin.publish("a/secret", b"s", 1, retain=True)
        admin.publish("a/open", b"o", 1, retain=True)
    with user(secured, "alice", protocol) as alice:
        alice.subscribe("a/+", 1)
        m = alice.get()
        assert (m.topic, m.retain) == ("a/open", True)
        alice.expect_nothing(0.3)
    with user(secured, "bob") as bob:
        bob.subscribe("a/#", 1)
        assert sorted(bob.get().topic for _ in range(2)) == ["a/open", "a/secret"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_pattern_rules_use_the_client_id(secured, protocol):
    """`pattern readwrite c/%c/#`: a client may use the topics under its own client id only."""
    with user(secured, "bob", protocol, client_id="dev1") as dev, user(secured, "admin") as spy:
        spy.subscribe("c/#", 1)
        assert code(dev.publish("c/dev1/t", b"mine", 1)) == 0
        assert spy.get().topic == "c/dev1/t"
        assert code(dev.publish("c/dev2/t", b"theirs", 1)) == (0x87 if protocol == V5 else 0)
        spy.expect_nothing(0.3)


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_anonymous_rules(secured, protocol):
    """The topic lines before any user line are the anonymous clients' (read public/#): they
    get what alice writes there, and may not write it themselves."""
    with Paho(secured, unique_id("anon"), protocol=protocol) as anon, user(secured, "alice") as alice:
        anon.subscribe("public/#", 1)
        alice.publish("public/news", b"n", 1)
        assert anon.get().topic == "public/news"
        assert code(anon.publish("public/news", b"x", 1)) == (0x87 if protocol == V5 else 0)
        anon.expect_nothing(0.3)


@pytest.mark.parametrize("version", [pytest.param(rawmqtt.V311, id="v311"), pytest.param(rawmqtt.V5, id="v5")])
def test_will_needs_write_access(secured, version):
    """A will message is published when the connection is lost [MQTT-3.1.2-8] only if its
    client may write its topic, checked when it is published (as Mosquitto does)."""
    with user(secured, "bob") as bob:
        bob.subscribe("a/#", 1)
        for topic in ("a/secret", "a/open"):
            c = rawmqtt.RawClient(secured.port, version=version)
            ack = c.handshake(unique_id("will"), username="alice", password=b"alice-pw",
                              will=(topic, b"gone", 1, False))
            assert ack.reason == 0
            c.sock.close()  # no DISCONNECT: the will is due
        m = bob.get()
        assert (m.topic, m.payload) == ("a/open", b"gone")
        bob.expect_nothing(0.3)
