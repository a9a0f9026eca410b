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
        if self.queue.iter().any(|d| accepts(d)) {
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
