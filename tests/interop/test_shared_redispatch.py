"""Shared subscriptions (issue 10, section 3): when the member chosen for a QoS 1/2 message
leaves before acknowledging it, the message goes to another member of the group - not lost,
not kept waiting for the one that left. v5, v3.1.1 and mixed groups; a member that closes its
socket and one that sends DISCONNECT; with the default embedded store and `--store none`.

The member that leaves is a raw client (rawmqtt), so that it never acknowledges; the other
member is paho, which acknowledges everything. The broker allows 3 messages in flight per
client (`mqtt.max_inflight`), so the leaver has some messages sent and unacknowledged and
the rest still queued for it when it leaves.

MQTT 5 section 4.8.2, which the policy follows (see src/router/shared.rs):
- QoS 1: "If the Client's Session terminates before the Client reconnects, the Server SHOULD
  send the Application Message to another Client that is subscribed to the same Shared
  Subscription. It MAY attempt to send the message to another Client as soon as it loses its
  connection to the first Client." dynamq does so as soon as the connection is lost.
- QoS 2 being sent: the Server "MUST complete the delivery of the message to that Client when
  it reconnects" [MQTT-4.8.2-4]; if the session ends first it "MUST NOT send the Application
  Message to any other subscribed Client" [MQTT-4.8.2-5]. Queued QoS 2 messages (never sent)
  go to another member.
- The other member gets its granted QoS [MQTT-4.8.2-3]; a redispatched message is a new
  delivery to it: DUP=0.
"""

from __future__ import annotations

import time
import urllib.request

import pytest

import rawmqtt as raw
from clients import V5 as PAHO_V5
from clients import V311 as PAHO_V311
from clients import Paho, unique_id
from conftest import free_port

pytestmark = pytest.mark.dynamq_only

N = 20
INFLIGHT = 3
PAHO = {raw.V5: PAHO_V5, raw.V311: PAHO_V311}


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    return {
        name: float(value)
        for name, value in (ln.split(" ") for ln in text.splitlines() if ln and not ln.startswith("#"))
    }


@pytest.fixture
def shared_broker(start_any_store_broker, tmp_path):
    """A broker (embedded store, then `--store none`) allowing INFLIGHT messages in flight
    per client, with its metrics endpoint; returns (broker, http port)."""
    conf = tmp_path / "shared.toml"
    conf.write_text(f"[mqtt]\nmax_inflight = {INFLIGHT}\n")
    http = free_port()
    broker = start_any_store_broker(extra_args=("--config", str(conf), "--http", f"127.0.0.1:{http}"))
    return broker, http


def raw_member(broker, version: int, client_id: str, share: str, qos: int, *,
               persistent: bool = False) -> raw.RawClient:
    """A member that never acknowledges; `persistent`: its session outlives the connection."""
    c = raw.RawClient(broker.port, version=version)
    if version == raw.V5:
        ack = c.handshake(client_id, clean=True,
                          properties=raw.props(session_expiry=300) if persistent else None)
    else:
        ack = c.handshake(client_id, clean=not persistent)
    assert ack.reason == 0
    c.send(raw.subscribe(1, [(share, qos)], version=version))
    assert c.expect(raw.SUBACK).reasons == [qos]
    return c


def publishes(c: raw.RawClient, quiet: float = 0.7) -> list[raw.Packet]:
    """The PUBLISH packets `c` receives until it has received nothing for `quiet` seconds."""
    got = []
    for _ in range(10 * N):
        try:
            p = c.recv(quiet)
        except TimeoutError:
            return got
        assert p is not None, "the broker closed the member's connection"
        if p.ptype == raw.PUBLISH:
            got.append(p)
    return got


def drain(member: Paho, quiet: float = 0.7) -> list:
    """Messages `member` receives until it has received nothing for `quiet` seconds."""
    got = []
    for _ in range(10 * N):
        try:
            got.append(member.messages.get(timeout=quiet))
        except Exception:  # queue.Empty
            return got
    return got


def collect(member: Paho, want: set[bytes], timeout: float = 5.0) -> list:
    """Messages `member` receives until it has every payload in `want` (or the timeout),
    then anything that follows within half a second (a duplicate would)."""
    got = []
    deadline = time.monotonic() + timeout
    while not want <= {m.payload for m in got} and time.monotonic() < deadline:
        try:
            got.append(member.messages.get(timeout=max(0.01, deadline - time.monotonic())))
        except Exception:  # queue.Empty
            break
    return got + drain(member, 0.5)


def leave(c: raw.RawClient, how: str, version: int) -> None:
    if how == "disconnect":
        c.send(raw.disconnect(version=version))
    c.close()


def publish_all(broker, topic: str, qos: int) -> set[bytes]:
    payloads = [f"m{i:02}".encode() for i in range(N)]
    with Paho(broker, unique_id("pub")) as p:
        for body in payloads:
            p.publish(topic, body, qos)
    return set(payloads)


def one_group(broker, leaver_version: int, member_version: int, qos: int, **leaver_kw):
    """The leaver (raw) and a paho member of one group, a topic they share, and N messages
    published: returns (leaver, member, topic, share, payloads, what the leaver holds sent,
    what the member got meanwhile)."""
    t = unique_id("sh")
    share = f"$share/g/{t}/#"
    leaver = raw_member(broker, leaver_version, unique_id("leaver"), share, qos, **leaver_kw)
    member = Paho(broker, unique_id("member"), protocol=PAHO[member_version])
    member.subscribe(share, qos)
    payloads = publish_all(broker, f"{t}/x", qos)
    sent = publishes(leaver)
    before = drain(member)
    return leaver, member, t, share, payloads, sent, before


VERSIONS = [(raw.V5, raw.V5), (raw.V311, raw.V311), (raw.V311, raw.V5), (raw.V5, raw.V311)]
VERSION_IDS = ["v5", "v311", "v311-leaves-v5-stays", "v5-leaves-v311-stays"]


@pytest.mark.parametrize("how", ["socket-close", "disconnect"])
@pytest.mark.parametrize(("leaver_version", "member_version"), VERSIONS, ids=VERSION_IDS)
def test_qos1_unacknowledged_messages_go_to_the_other_member(shared_broker, leaver_version,
                                                             member_version, how):
    broker, http = shared_broker
    leaver, member, _, _, payloads, sent, before = one_group(broker, leaver_version,
                                                             member_version, 1)
    with member:
        # Round-robin: both got some; the leaver has a full window sent, the rest queued.
        assert len(sent) == INFLIGHT, sent
        assert before and len(before) < N
        held = payloads - {m.payload for m in before}
        assert {p.payload for p in sent} <= held
        leave(leaver, how, leaver_version)
        after = collect(member, held)
        # Every message the leaver had not acknowledged, once; nothing else.
        assert sorted(m.payload for m in after) == sorted(held)
        for m in after:
            # A new delivery to this member, at its granted QoS [MQTT-4.8.2-3].
            assert (m.qos, m.dup) == (1, False), m
        metrics = scrape(http)
        assert metrics["dynamq_shared_redispatched_total"] == len(held)
        assert metrics["dynamq_shared_dropped_no_member_total"] == 0


@pytest.mark.parametrize("leaver_version", [raw.V5, raw.V311], ids=["v5", "v311"])
def test_a_persistent_member_that_leaves_does_not_keep_them(shared_broker, leaver_version):
    """A member whose session outlives its connection (v5 expiry 300, v3 CleanSession=0): its
    unacknowledged shared messages go to the other member at once, and it does not get them
    again when it comes back."""
    broker, http = shared_broker
    t = unique_id("sh")
    share = f"$share/g/{t}/#"
    cid = unique_id("leaver")
    leaver = raw_member(broker, leaver_version, cid, share, 1, persistent=True)
    with Paho(broker, unique_id("member"), protocol=PAHO[leaver_version]) as member:
        member.subscribe(share, 1)
        payloads = publish_all(broker, f"{t}/x", 1)
        assert len(publishes(leaver)) == INFLIGHT
        before = drain(member)
        held = payloads - {m.payload for m in before}
        leaver.close()
        after = collect(member, held)
        assert sorted(m.payload for m in after) == sorted(held)
        assert all((m.qos, m.dup) == (1, False) for m in after)
        assert scrape(http)["dynamq_shared_redispatched_total"] == len(held)
        with raw.RawClient(broker.port, version=leaver_version) as back:
            if leaver_version == raw.V5:
                ack = back.handshake(cid, clean=False, properties=raw.props(session_expiry=300))
            else:
                ack = back.handshake(cid, clean=False)
            assert ack.session_present
            # Neither resent (they were in flight) nor sent (they were queued): the other
            # member has them.
            assert publishes(back, 0.7) == []


@pytest.mark.parametrize("leaver_version", [raw.V5, raw.V311], ids=["v5", "v311"])
def test_qos2_queued_ones_go_to_the_other_member_sent_ones_do_not(shared_broker, leaver_version):
    """QoS 2, a member whose session ends with its connection: what was queued for it goes to
    the other member; what it was sent does not [MQTT-4.8.2-5] - here one it answered with a
    PUBREC (it has the message) and the others it did not (counted as lost)."""
    broker, http = shared_broker
    leaver, member, _, _, payloads, sent, before = one_group(broker, leaver_version,
                                                             leaver_version, 2)
    with member:
        assert len(sent) == INFLIGHT and all(p.qos == 2 for p in sent)
        leaver.send(raw.ack(raw.PUBREC, sent[0].pid))
        assert leaver.expect(raw.PUBREL).pid == sent[0].pid
        held = payloads - {m.payload for m in before}
        queued = held - {p.payload for p in sent}
        leave(leaver, "socket-close", leaver_version)
        after = collect(member, queued)
        assert sorted(m.payload for m in after) == sorted(queued)
        assert all((m.qos, m.dup) == (2, False) for m in after)
        metrics = scrape(http)
        assert metrics["dynamq_shared_redispatched_total"] == len(queued)
        assert metrics["dynamq_shared_qos2_lost_total"] == INFLIGHT - 1


def test_qos2_sent_ones_are_completed_to_the_member_when_it_reconnects(shared_broker):
    """[MQTT-4.8.2-4]: a persistent member that leaves with QoS 2 messages sent gets them
    again (DUP=1) when it comes back; the other member gets only the queued ones."""
    broker, _ = shared_broker
    cid = unique_id("leaver")
    t = unique_id("sh")
    share = f"$share/g/{t}/#"
    leaver = raw_member(broker, raw.V5, cid, share, 2, persistent=True)
    with Paho(broker, unique_id("member"), protocol=PAHO_V5) as member:
        member.subscribe(share, 2)
        payloads = publish_all(broker, f"{t}/x", 2)
        sent = publishes(leaver)
        assert len(sent) == INFLIGHT
        before = drain(member)
        queued = payloads - {m.payload for m in before} - {p.payload for p in sent}
        leaver.close()
        assert sorted(m.payload for m in collect(member, queued)) == sorted(queued)
        with raw.RawClient(broker.port, version=raw.V5) as back:
            ack = back.handshake(cid, clean=False, properties=raw.props(session_expiry=300))
            assert ack.session_present
            again = publishes(back)
            assert [(p.payload, p.dup, p.qos) for p in again] == \
                [(p.payload, True, 2) for p in sent]


def test_the_last_member_leaving_drops_and_counts(shared_broker):
    """Nobody else in the group: a member whose session ends takes the messages with it, and
    the broker counts them (`shared_dropped_no_member_total`)."""
    broker, http = shared_broker
    t = unique_id("sh")
    leaver = raw_member(broker, raw.V5, unique_id("leaver"), f"$share/g/{t}/#", 1)
    publish_all(broker, f"{t}/x", 1)
    assert len(publishes(leaver)) == INFLIGHT
    leaver.close()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        metrics = scrape(http)
        if metrics["dynamq_shared_dropped_no_member_total"] > 0:
            break
        time.sleep(0.05)
    assert metrics["dynamq_shared_dropped_no_member_total"] == N
    assert metrics["dynamq_shared_redispatched_total"] == 0


def test_a_persistent_last_member_keeps_them(shared_broker):
    """No other member online and a session that outlives the connection: the session keeps
    the messages and its client gets them when it comes back (here: all N, the sent ones
    resent with DUP=1, then the queued ones)."""
    broker, _ = shared_broker
    t = unique_id("sh")
    cid = unique_id("leaver")
    leaver = raw_member(broker, raw.V311, cid, f"$share/g/{t}/#", 1, persistent=True)
    payloads = publish_all(broker, f"{t}/x", 1)
    sent = publishes(leaver)
    assert len(sent) == INFLIGHT
    leaver.close()
    with raw.RawClient(broker.port, version=raw.V311) as back:
        assert back.handshake(cid, clean=False).session_present
        got = []
        for _ in range(N):
            p = back.expect(raw.PUBLISH)
            got.append(p)
            back.send(raw.ack(raw.PUBACK, p.pid))
        assert [p.payload for p in got[:INFLIGHT]] == [p.payload for p in sent]
        assert all(p.dup for p in got[:INFLIGHT])
        assert {p.payload for p in got} == payloads
