"""CONNECT / CONNACK with paho and raw sockets, MQTT 3.1.1 and 5.0."""

import pytest

import rawmqtt as raw
from clients import V311, V5, Paho, round_trip, unique_id


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_connect_connack_success(broker, protocol):
    """A well-formed CONNECT gets CONNACK 0 (Success / Connection Accepted) with Session
    Present 0 for a clean session [MQTT-3.2.2-1] (3.1.1) / [MQTT-3.2.2-2] (5.0)."""
    with Paho(broker, unique_id("c"), protocol=protocol) as c:
        assert c.reason_code.value == 0
        assert c.session_present is False


@pytest.mark.parametrize("version", [raw.V311, raw.V5], ids=["v311", "v5"])
def test_connack_bytes_raw(broker, version):
    """CONNACK is the first packet the server sends [MQTT-3.2.0-1]; for 3.1.1 it is exactly
    20 02 00 00 for a clean session accepted; for 5.0 reason 0 and a property block."""
    with raw.RawClient(broker.port, version=version) as c:
        c.send(raw.connect(unique_id("raw"), version=version))
        p = c.recv()
        assert p is not None and p.ptype == raw.CONNACK, p
        assert (p.session_present, p.reason) == (False, 0)
        if version == raw.V311:
            assert p.flags == 0 and p.body == b"\x00\x00"


def test_empty_client_id_clean_session_v311(broker):
    """A zero-byte ClientId with CleanSession=1 is accepted; the server assigns an id
    [MQTT-3.1.3-6] [MQTT-3.1.3-7]; two such clients coexist (neither takes the other over)."""
    with raw.RawClient(broker.port) as a, raw.RawClient(broker.port) as b:
        assert a.handshake("", clean=True).reason == 0
        assert b.handshake("", clean=True).reason == 0
        a.send(raw.pingreq())
        assert a.expect(raw.PINGRESP).ptype == raw.PINGRESP


def test_empty_client_id_clean_start_v5_assigned_id(broker):
    """5.0: a zero-length Client Identifier is accepted and the CONNACK carries an Assigned
    Client Identifier [MQTT-3.1.3-6] [MQTT-3.2.2-16]; two such clients get different ids."""
    ids = []
    for _ in range(2):
        with raw.RawClient(broker.port, version=raw.V5) as c:
            p = c.handshake("", clean=True)
            assert p.reason == 0
            assigned = p.properties.get(raw.PROP_ASSIGNED_CLIENT_ID)
            assert assigned, f"no Assigned Client Identifier in {p}"
            ids.append(assigned)
    assert ids[0] != ids[1]


def test_empty_client_id_persistent_v311_rejected(broker):
    """3.1.1: a zero-byte ClientId with CleanSession=0 gets CONNACK return code 0x02
    (Identifier rejected) and the connection is closed [MQTT-3.1.3-8]."""
    with raw.RawClient(broker.port) as c:
        c.send(raw.connect("", clean=False))
        got = c.packets_until_close(timeout=5)
        assert [p.name for p in got] == ["CONNACK"], got
        assert got[0].reason == 0x02 and got[0].session_present is False
    round_trip(broker)


@pytest.mark.parametrize("protocol", [V311, V5], ids=["v311", "v5"])
def test_keepalive_zero_accepted(broker, protocol):
    """Keep Alive 0 turns the keepalive mechanism off (section 3.1.2.10, both versions); the
    connection is accepted and works."""
    with Paho(broker, unique_id("ka0"), protocol=protocol, keepalive=0) as c:
        assert c.reason_code.value == 0
        c.subscribe("ka0/t", 1)
        c.publish("ka0/t", b"x", 1)
        assert c.get().payload == b"x"
