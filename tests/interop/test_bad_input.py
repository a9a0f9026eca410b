"""Protocol violations from a raw TCP client, one test per case.

For each: the server closes the connection; for a 5.0 client it first sends DISCONNECT with
a reason code the specification allows (section 4.13: "SHOULD send a DISCONNECT ... before
closing"; dynamq always does); a client connected before the bad one and one connecting
after keep working. `test_violation_is_logged` checks dynamq's stderr names the client and
the violation (one line per violation).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import rawmqtt as raw
from clients import Paho, round_trip, unique_id
from conftest import BROKER

MAX_PACKET = 1024


@dataclass
class Case:
    build: object                  # (version) -> the offending bytes, sent after CONNACK
    v5_codes: set[int]             # DISCONNECT reason codes a 5.0 server may send
    tags: tuple[str, ...] = ()     # statement tags one of which the log line must carry
    keywords: tuple[str, ...] = ()  # or, where no statement applies, words it must carry
    mosquitto_no_disconnect: bool = False  # Mosquitto 2.0.11 closes without DISCONNECT


CASES = {
    # Remaining Length is at most 4 bytes (section 2.2.3 / 1.5.5): a 5th byte is malformed.
    "remaining_length_5_bytes": Case(lambda v: b"\x30\xff\xff\xff\xff\x01", {0x81},
                                     keywords=("malformed", "remaining length", "variable byte"),
                                     mosquitto_no_disconnect=True),
    # [MQTT-3.3.1-4]: QoS bits both set is a Malformed Packet.
    "publish_qos_3": Case(lambda v: raw.publish("bad/q", b"x", qos=3, pid=1, version=v), {0x81},
                          tags=("MQTT-3.3.1-4",)),
    # [MQTT-3.1.0-2]: a second CONNECT is a Protocol Error.
    "second_connect": Case(lambda v: raw.connect("again", version=v), {0x82},
                           tags=("MQTT-3.1.0-2",), mosquitto_no_disconnect=True),
    # [MQTT-3.3.2-2]: no wildcards in a Topic Name; 0x90 Topic Name invalid is also allowed.
    "wildcard_in_publish_topic": Case(lambda v: raw.publish("bad/+/t", b"x", version=v), {0x81, 0x82, 0x90},
                                      tags=("MQTT-3.3.2-2",)),
    # [MQTT-1.5.3-1] (3.1.1) / [MQTT-1.5.4-1] (5.0): ill-formed UTF-8 is a Malformed Packet.
    "invalid_utf8_topic": Case(lambda v: raw.publish(b"bad/\xff\xfe", b"x", version=v), {0x81},
                               tags=("MQTT-1.5.3-1", "MQTT-1.5.4-1")),
    # [MQTT-3.8.1-1]: SUBSCRIBE fixed-header flags must be 0010; anything else is malformed
    # ([MQTT-2.2.2-2] in 3.1.1: invalid flags close the connection).
    "reserved_flags_subscribe": Case(lambda v: raw.subscribe(1, [("bad/f", 0)], version=v, flags=0), {0x81},
                                     tags=("MQTT-3.8.1-1", "MQTT-2.2.2-1", "MQTT-2.2.2-2", "MQTT-2.1.3-1")),
    # [MQTT-2.3.1-1] (3.1.1) / [MQTT-2.2.1-3] (5.0): QoS > 0 PUBLISH needs a non-zero id.
    "packet_id_zero_qos1": Case(lambda v: raw.publish("bad/p", b"x", qos=1, pid=0, version=v), {0x81, 0x82},
                                tags=("MQTT-2.3.1-1", "MQTT-2.2.1-3")),
    # A packet larger than the server's Maximum Packet Size: DISCONNECT 0x95 (section 3.2.2.3.6).
    "oversized_packet": Case(lambda v: raw.publish("bad/big", b"x" * (MAX_PACKET * 2), version=v), {0x95},
                             keywords=("too large", "packet size", "exceeds", "oversize")),
}


def _v5_param(case: Case):
    if case.mosquitto_no_disconnect:
        return pytest.param(raw.V5, id="v5", marks=pytest.mark.xfail(
            condition=BROKER == "mosquitto", strict=True,
            reason="Mosquitto 2.0.11 closes without sending DISCONNECT (a SHOULD in 4.13; dynamq sends it)"))
    return pytest.param(raw.V5, id="v5")


def _versions(name: str):
    return pytest.mark.parametrize("version", [pytest.param(raw.V311, id="v311"), _v5_param(CASES[name])])


def _start(start_broker, name):
    return start_broker(max_packet_size=MAX_PACKET) if name == "oversized_packet" else start_broker()


def run_case(broker, name: str, version: int) -> str:
    """The scenario; returns the bad client's id."""
    case = CASES[name]
    guard_topic = unique_id("guard")
    cid = unique_id(f"bad-v{version}")  # not the case name: it would match the keywords
    with Paho(broker, unique_id("guard")) as guard:
        guard.subscribe(guard_topic, 1)
        with raw.RawClient(broker.port, version=version) as bad:
            ack = bad.handshake(cid)
            assert ack.reason == 0
            if name == "oversized_packet" and version == raw.V5:
                # a server that limits packet size tells a 5.0 client so (section 3.2.2.3.6)
                assert ack.properties.get(raw.PROP_MAXIMUM_PACKET_SIZE) == MAX_PACKET, ack
            try:
                bad.send(case.build(version))
            except (BrokenPipeError, ConnectionResetError):
                pass  # already closed by the server: fine
            got = bad.packets_until_close(timeout=5)
        if version == raw.V311:
            assert got == [], f"a 3.1.1 server closes without sending anything more: {got}"
        else:
            assert len(got) == 1 and got[0].ptype == raw.DISCONNECT, got
            assert got[0].reason in case.v5_codes, f"reason {got[0].reason:#x} not in {sorted(map(hex, case.v5_codes))}"
        guard.publish(guard_topic, b"still-here", 1)
        m = guard.get()
        assert (m.topic, m.payload) == (guard_topic, b"still-here")
    round_trip(broker)
    return cid


@_versions("remaining_length_5_bytes")
def test_remaining_length_five_bytes(start_broker, version):
    """Remaining Length encoded in 5 bytes: Malformed Packet (section 2.2.3 / 1.5.5): close;
    5.0: DISCONNECT 0x81 first [MQTT-4.13.1-1]."""
    run_case(_start(start_broker, "remaining_length_5_bytes"), "remaining_length_5_bytes", version)


@_versions("publish_qos_3")
def test_publish_qos_3(start_broker, version):
    """PUBLISH with both QoS bits set [MQTT-3.3.1-4]: Malformed Packet, close; 5.0: 0x81."""
    run_case(_start(start_broker, "publish_qos_3"), "publish_qos_3", version)


@_versions("second_connect")
def test_second_connect(start_broker, version):
    """A second CONNECT is a Protocol Error [MQTT-3.1.0-2]: close; 5.0: DISCONNECT 0x82."""
    run_case(_start(start_broker, "second_connect"), "second_connect", version)


@_versions("wildcard_in_publish_topic")
def test_wildcard_in_publish_topic(start_broker, version):
    """A PUBLISH Topic Name must not contain wildcards [MQTT-3.3.2-2]: close; 5.0:
    DISCONNECT 0x81, 0x82 or 0x90 (Topic Name invalid)."""
    run_case(_start(start_broker, "wildcard_in_publish_topic"), "wildcard_in_publish_topic", version)


@_versions("invalid_utf8_topic")
def test_invalid_utf8_topic(start_broker, version):
    """Ill-formed UTF-8 in a Topic Name [MQTT-1.5.3-1] (3.1.1) / [MQTT-1.5.4-1] (5.0): close;
    5.0: DISCONNECT 0x81 (Malformed Packet)."""
    run_case(_start(start_broker, "invalid_utf8_topic"), "invalid_utf8_topic", version)


@_versions("reserved_flags_subscribe")
def test_reserved_flags_violation(start_broker, version):
    """SUBSCRIBE with fixed-header flags 0000 instead of 0010 [MQTT-3.8.1-1] [MQTT-2.2.2-2]:
    close; 5.0: DISCONNECT 0x81."""
    run_case(_start(start_broker, "reserved_flags_subscribe"), "reserved_flags_subscribe", version)


@_versions("packet_id_zero_qos1")
def test_packet_id_zero_in_qos1_publish(start_broker, version):
    """A QoS 1 PUBLISH with Packet Identifier 0 [MQTT-2.3.1-1] (3.1.1) / [MQTT-2.2.1-3]
    (5.0): close; 5.0: DISCONNECT 0x81 or 0x82."""
    run_case(_start(start_broker, "packet_id_zero_qos1"), "packet_id_zero_qos1", version)


@_versions("oversized_packet")
def test_oversized_packet(start_broker, version):
    """With a maximum packet size of 1024 (dynamq --max-packet-size, Mosquitto
    max_packet_size), a 2 KiB PUBLISH closes the connection; 5.0: the CONNACK announced
    Maximum Packet Size 1024 and the server sends DISCONNECT 0x95 (Packet too large)."""
    run_case(_start(start_broker, "oversized_packet"), "oversized_packet", version)


@pytest.mark.parametrize("version", [raw.V311, raw.V5], ids=["v311", "v5"])
def test_packet_before_connect(broker, version):
    """The first packet must be CONNECT [MQTT-3.1.0-1]: a PUBLISH first closes the connection
    with nothing sent back (no CONNACK; the protocol version is unknown)."""
    with Paho(broker, unique_id("guard")) as guard:
        topic = unique_id("guard")
        guard.subscribe(topic, 1)
        with raw.RawClient(broker.port, version=version) as bad:
            bad.send(raw.publish("early/t", b"x", version=version))
            assert bad.packets_until_close(timeout=5) == []
        guard.publish(topic, b"ok", 1)
        assert guard.get().payload == b"ok"
    round_trip(broker)


@pytest.mark.dynamq_only
@pytest.mark.parametrize("version", [raw.V311, raw.V5], ids=["v311", "v5"])
@pytest.mark.parametrize("name", list(CASES))
def test_violation_is_logged(start_broker, name, version):
    """dynamq logs one line per protocol violation naming the client and the violation (its
    [MQTT-x.y.z-n] statement, or what was wrong where no statement applies)."""
    broker = _start(start_broker, name)
    cid = run_case(broker, name, version)
    case = CASES[name]
    needles = [f"[{t}]" for t in case.tags] + list(case.keywords)
    lines = broker.wait_log(lambda ln: cid in ln and any(n.lower() in ln.lower() for n in needles))
    assert len(lines) == 1, f"expected one line naming {cid} and one of {needles}:\n{broker.log_text()[-3000:]}"


@pytest.mark.dynamq_only
def test_packet_before_connect_is_logged(broker):
    """The violation before CONNECT is logged with the peer address and [MQTT-3.1.0-1]."""
    with raw.RawClient(broker.port) as bad:
        peer = f"127.0.0.1:{bad.local_port}"
        bad.send(raw.publish("early/t", b"x"))
        bad.packets_until_close(timeout=5)
    lines = broker.wait_log(lambda ln: peer in ln and "[MQTT-3.1.0-1]" in ln)
    assert len(lines) == 1, broker.log_text()[-3000:]
