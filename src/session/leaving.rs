//! What a session gives up when its client leaves: the deliveries that came through a shared
//! subscription and that the client has not finished, for the broker to hand to another
//! member of the group (see `router::shared` for the policy, and the statements of MQTT 5
//! section 4.8.2 it follows).
//!
//! Which ones: every queued one (any QoS: the client has not seen it), and every QoS 1 one
//! sent and not yet acknowledged. Not a QoS 2 one sent: whether or not the client has
//! answered with a PUBREC, the delivery belongs to that client [MQTT-4.8.2-4] and to nobody
//! else [MQTT-4.8.2-5].

use std::collections::VecDeque;

use dynamq_codec::QoS;

use super::inflight::OutState;
use super::{Session, SessionState, weight};
use crate::message::{Delivery, ShareKey};

/// What an ending session held through shared subscriptions (see `Session::end`).
#[derive(Debug, Default)]
pub(crate) struct Orphans {
    /// Deliveries to hand to another member, oldest first.
    pub deliveries: Vec<Delivery>,
    /// QoS 2 deliveries sent and not answered with a PUBREC: they end with the session
    /// [MQTT-4.8.2-5]. (One answered is the client's: only the PUBREL was missing.)
    pub qos2_lost: usize,
}

impl SessionState {
    /// Removes the shared deliveries `take` accepts (by their group) from the in-flight state
    /// left in the session (sent ones first: they are older) and then from the queue, keeping
    /// their order; the rest stays where it was.
    fn take_shared(&mut self, take: &dyn Fn(&ShareKey) -> bool) -> Vec<Delivery> {
        let accepts = |d: &Delivery| d.shared.as_deref().is_some_and(take);
        let mut out = Vec::new();
        if let Some(carried) = self.carried.as_mut() {
            let sent = carried
                .inflight
                .take_where(|e| e.state == OutState::AwaitPubAck && accepts(&e.delivery));
            out.extend(sent.into_iter().map(|e| e.delivery));
            if carried.is_empty() {
                self.carried = None;
            }
        }
        if self.queue.iter().any(&accepts) {
            let mut kept = VecDeque::with_capacity(self.queue.len());
            for d in self.queue.drain(..) {
                if accepts(&d) {
                    self.queued_bytes -= weight(&d);
                    self.queued_qos0 -= usize::from(d.qos == QoS::AtMostOnce);
                    out.push(d);
                } else {
                    kept.push_back(d);
                }
            }
            self.queue = kept;
        }
        out
    }
}

impl Session {
    /// True if the session has a shared subscription, or holds a delivery through one (from a
    /// group it has left since): only then is there anything to hand over when it leaves.
    pub(crate) fn holds_shared(&self) -> bool {
        let st = self.state.lock();
        st.subscriptions
            .keys()
            .any(|f| dynamq_codec::topic::parse_shared(f).is_some())
            || st.queue.iter().any(|d| d.shared.is_some())
            || st
                .carried
                .as_ref()
                .is_some_and(|c| c.inflight.iter().any(|e| e.delivery.shared.is_some()))
    }

    /// Takes, for another member of their group, the deliveries through shared subscriptions
    /// that the client left unfinished (see the module doc) and whose group `take` accepts.
    /// Takes nothing if a connection owns the session again: the client came back for them.
    pub(crate) fn take_shared(&self, take: &dyn Fn(&ShareKey) -> bool) -> Vec<Delivery> {
        if self.is_online() {
            return Vec::new();
        }
        self.state.lock().take_shared(take)
    }
}

/// Of an ending session's state: every shared delivery to hand over, and a count of the QoS 2
/// ones that end with it. Called by `Session::end` with the session's lock held.
pub(super) fn orphans(st: &mut SessionState) -> Orphans {
    let qos2_lost = st.carried.as_ref().map_or(0, |c| {
        c.inflight
            .iter()
            .filter(|e| e.delivery.shared.is_some() && e.state == OutState::AwaitPubRec)
            .count()
    });
    Orphans {
        deliveries: st.take_shared(&|_| true),
        qos2_lost,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use dynamq_codec::QoS;

    use super::super::inflight::{OutEntry, OutState};
    use super::super::{Carried, QueueBound, Session};
    use crate::message::{ClientId, Delivery, Message, ShareKey};

    const BOUND: QueueBound = QueueBound {
        messages: 100,
        bytes: 1 << 20,
    };

    fn delivery(payload: &str, qos: QoS, share: Option<&str>) -> Delivery {
        let mut msg = Message::for_test("t/1", qos, "p");
        Arc::get_mut(&mut msg).expect("sole owner").payload = payload.to_owned().into();
        Delivery {
            msg,
            qos,
            retain: false,
            sub_ids: Vec::new(),
            shared: share.and_then(ShareKey::parse),
        }
    }

    fn payloads(ds: &[Delivery]) -> Vec<String> {
        ds.iter()
            .map(|d| String::from_utf8_lossy(&d.msg.payload).into_owned())
            .collect()
    }

    /// A session that was online, got `queued` queued and `sent` in flight, and was left.
    fn left_session(queued: Vec<Delivery>, sent: Vec<(Delivery, OutState)>) -> Arc<Session> {
        let s = Arc::new(Session::new(ClientId::new("leaver")));
        s.claim(1).expect("a new session has not ended");
        for d in queued {
            assert!(s.enqueue(d, BOUND, false).is_queued());
        }
        let mut carried = Carried::default();
        for (d, state) in sent {
            let packet_id = carried.inflight.next_packet_id().expect("ids free");
            carried.inflight.push(OutEntry {
                packet_id,
                delivery: d,
                state,
            });
        }
        s.put_carried(carried);
        assert!(s.release(1).is_some());
        s
    }

    #[test]
    fn takes_queued_and_unacknowledged_qos1_shared_deliveries_in_order() {
        let g = Some("$share/g/t/+");
        let s = left_session(
            vec![
                delivery("q1", QoS::AtLeastOnce, g),
                delivery("plain", QoS::AtLeastOnce, None),
                delivery("q0", QoS::AtMostOnce, g),
                delivery("q2", QoS::ExactlyOnce, g),
            ],
            vec![
                (delivery("s1", QoS::AtLeastOnce, g), OutState::AwaitPubAck),
                (delivery("rec", QoS::ExactlyOnce, g), OutState::AwaitPubRec),
                (
                    delivery("comp", QoS::ExactlyOnce, g),
                    OutState::AwaitPubComp,
                ),
                (
                    delivery("s1plain", QoS::AtLeastOnce, None),
                    OutState::AwaitPubAck,
                ),
            ],
        );
        assert!(s.holds_shared());
        let taken = s.take_shared(&|_| true);
        // Sent first (older), then queued; QoS 2 sent ones stay [MQTT-4.8.2-4].
        assert_eq!(payloads(&taken), ["s1", "q1", "q0", "q2"]);
        let carried = s.take_carried();
        let left: Vec<_> = carried
            .inflight
            .iter()
            .map(|e| String::from_utf8_lossy(&e.delivery.msg.payload).into_owned())
            .collect();
        assert_eq!(left, ["rec", "comp", "s1plain"]);
        // The queue's accounting follows what was taken.
        assert_eq!(s.queued_len(), 1);
        let mut rest = Vec::new();
        let _ = s.take_queued_within(10, 10, BOUND, &mut rest);
        assert_eq!(payloads(&rest), ["plain"]);
        assert!(!s.holds_shared());
    }

    #[test]
    fn takes_only_the_groups_accepted_and_nothing_once_the_client_is_back() {
        let s = left_session(
            vec![
                delivery("a", QoS::AtLeastOnce, Some("$share/a/t/+")),
                delivery("b", QoS::AtLeastOnce, Some("$share/b/t/+")),
            ],
            Vec::new(),
        );
        let taken = s.take_shared(&|k: &ShareKey| &*k.group == "b");
        assert_eq!(payloads(&taken), ["b"]);
        s.claim(2).expect("not ended");
        assert!(s.take_shared(&|_| true).is_empty());
        assert_eq!(s.queued_len(), 1);
    }

    #[test]
    fn an_ending_session_gives_up_every_shared_delivery_and_counts_unanswered_qos2() {
        let g = Some("$share/g/t/+");
        let s = left_session(
            vec![delivery("q", QoS::ExactlyOnce, g)],
            vec![
                (delivery("s", QoS::AtLeastOnce, g), OutState::AwaitPubAck),
                (delivery("rec", QoS::ExactlyOnce, g), OutState::AwaitPubRec),
                (
                    delivery("comp", QoS::ExactlyOnce, g),
                    OutState::AwaitPubComp,
                ),
            ],
        );
        let registry = super::super::Registry::default();
        let ended = s.end(&registry);
        assert_eq!(payloads(&ended.orphans.deliveries), ["s", "q"]);
        // "rec" is lost to the group [MQTT-4.8.2-5]; "comp" was received by the client.
        assert_eq!(ended.orphans.qos2_lost, 1);
    }
}
