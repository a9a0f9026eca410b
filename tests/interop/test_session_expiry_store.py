"""Session expiry survives a broker restart (issue 10, section 2), on the embedded store and
on DynamoDB (dynalite): a session whose Session Expiry Interval ran out while the broker was
down does not come back (Session Present 0, no subscription) [MQTT-3.1.2-23]; one still
within its interval comes back with its subscription, and so does a v3.1.1 persistent
session (it never expires unless max_session_expiry caps it)."""

from __future__ import annotations

import time

import pytest

from clients import V5, V311, Paho, unique_id
from dynalite import dynalite  # noqa: F401 (fixture)
from test_v5_store import store_broker  # noqa: F401 (fixture)

pytestmark = pytest.mark.dynamq_only


def test_expired_session_does_not_come_back_after_restart(store_broker):  # noqa: F811
    broker, _dyn = store_broker
    topic = unique_id("se/t")
    gone, kept, v3 = unique_id("se-gone"), unique_id("se-kept"), unique_id("se-v3")
    for cid, protocol, expiry in ((gone, V5, 2), (kept, V5, 300), (v3, V311, None)):
        c = Paho(broker, cid, protocol=protocol, clean=False, session_expiry=expiry)
        c.subscribe(topic, 1)
        c.disconnect()
    broker.restart()
    time.sleep(3.5)  # past the 2 s of the first session, measured from its disconnect

    clients = {}
    for cid, protocol in ((gone, V5), (kept, V5), (v3, V311)):
        clients[cid] = Paho(broker, cid, protocol=protocol, clean=False, session_expiry=300)
    try:
        assert clients[gone].session_present is False, "the expired session came back"
        assert clients[kept].session_present is True
        assert clients[v3].session_present is True
        with Paho(broker, unique_id("se-pub")) as p:
            p.publish(topic, b"after", qos=1)
        for cid in (kept, v3):
            m = clients[cid].get()
            assert (m.topic, m.payload) == (topic, b"after"), cid
        clients[gone].expect_nothing(0.5)
    finally:
        for c in clients.values():
            c.disconnect()
