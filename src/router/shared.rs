//! Shared subscriptions whose chosen member leaves: the deliveries it had not finished go to
//! another member of the group, not lost and not kept waiting for the one that left.
//!
//! MQTT 5 section 4.8.2 lets a server do this for QoS 1: "If the Client's Session terminates
//! before the Client reconnects, the Server SHOULD send the Application Message to another
//! Client that is subscribed to the same Shared Subscription. It MAY attempt to send the
//! message to another Client as soon as it loses its connection to the first Client." For a
//! QoS 2 message it is sending, it forbids it: the server "MUST complete the delivery of the
//! message to that Client when it reconnects" [MQTT-4.8.2-4], and if the session ends first
//! "MUST NOT send the Application Message to any other subscribed Client" [MQTT-4.8.2-5].
//!
//! The policy (named *redispatch*, as in EMQX, which does the same):
//! - **What**: every delivery through a shared subscription still queued for the member (any
//!   QoS: it was never sent), and every QoS 1 one sent and not acknowledged. A QoS 2 one sent
//!   stays with the member; if its session ends before the PUBREC, it is dropped and counted
//!   (`shared_qos2_lost`). A negative PUBACK or PUBREC has already ended a delivery
//!   (`Inflight::complete`), so it is never sent to anyone else [MQTT-4.8.2-6].
//! - **When**: as soon as the member's connection ends (DISCONNECT, a closed socket, a
//!   protocol error, a kick), with or without a session that outlives it; not when it is
//!   taken over by its own client (the new connection resends), nor at shutdown.
//! - **To whom**: the next online member of the same group, round-robin, never the one that
//!   left. If none is online: a member whose session outlives it keeps the deliveries, and
//!   its client gets them when it comes back, or another member when the session ends; a
//!   session that ends hands them to any other member (its session is kept while its client
//!   is away), and if there is none, they are dropped and counted (`shared_dropped_no_member`).
//! - **How**: as a new delivery to that member, through `Broker::deliver` like any other
//!   (queue bound, ACL, counters): DUP=0, and the QoS its own subscription grants
//!   [MQTT-4.8.2-3]; the message itself, properties and all, is the same. Each one handed over
//!   is counted (`shared_redispatched`).

use std::sync::Arc;

use parking_lot::RwLockWriteGuard;

use super::Router;
use super::trie::Entry;
use crate::message::{Delivery, Message, ShareKey};
use crate::session::Session;

/// The delivery of `msg` to the member `e` of the shared group `key`.
pub(super) fn shared_delivery(e: &Entry, msg: &Arc<Message>, key: &Arc<ShareKey>) -> Delivery {
    Delivery {
        msg: msg.clone(),
        qos: e.options.qos.min(msg.qos),
        retain: e.options.retain_as_published && msg.retain,
        sub_ids: e.id.into_iter().collect(),
        shared: Some(key.clone()),
    }
}

impl Router {
    /// Hands deliveries that `leaver` did not finish to other members of their groups.
    ///
    /// `take` is called once, with a test telling whether a group has an online member other
    /// than `leaver`, and returns the deliveries to hand over, oldest first. It runs after
    /// every publish that could still see `leaver` online has queued its delivery (so none
    /// is left behind), and while subscriptions cannot change. `deliver` is called for each
    /// delivery with the member chosen (see `Trie::pick_other`) and the delivery as that
    /// member's subscription makes it; like `route`'s, it must not subscribe or unsubscribe.
    /// Returns the deliveries whose group had no other member.
    pub(crate) fn redispatch(
        &self,
        leaver: &Arc<Session>,
        take: impl FnOnce(&dyn Fn(&ShareKey) -> bool) -> Vec<Delivery>,
        mut deliver: impl FnMut(&Arc<Session>, Delivery),
    ) -> Vec<Delivery> {
        // The write lock waits for the routes under way (a route holds the read lock while it
        // picks a member and queues for it); read-locked from then on.
        let trie = RwLockWriteGuard::downgrade(self.trie.write());
        let taken = take(&|key| trie.has_other_online(key, leaver));
        let mut left = Vec::new();
        for d in taken {
            let picked = d
                .shared
                .as_ref()
                .and_then(|key| trie.pick_other(key, leaver).map(|e| (e, key)));
            match picked {
                Some((e, key)) => deliver(&e.session, shared_delivery(e, &d.msg, key)),
                None => left.push(d),
            }
        }
        left
    }
}

#[cfg(test)]
mod tests {
    use dynamq_codec::{QoS, SubscriptionOptions};

    use super::*;
    use crate::message::ClientId;
    use crate::session::{QueueBound, Subscription};

    const BOUND: QueueBound = QueueBound {
        messages: 100,
        bytes: 1 << 20,
    };

    fn member(r: &Router, id: &str, qos: QoS, online: bool) -> Arc<Session> {
        let s = Arc::new(Session::new(ClientId::new(id)));
        if online {
            s.claim(1).expect("a new session has not ended");
        }
        let sub = Subscription {
            options: SubscriptionOptions::qos(qos),
            id: Some(7),
        };
        r.subscribe(&s, "$share/g/t/#", &sub);
        s
    }

    fn orphan(qos: QoS) -> Delivery {
        Delivery {
            msg: Message::for_test("t/x", qos, "p"),
            qos,
            retain: false,
            sub_ids: Vec::new(),
            shared: ShareKey::parse("$share/g/t/#"),
        }
    }

    /// Redispatches `ds` from `leaver`: (member chosen, delivery) for each, and what was left.
    fn redispatch(
        r: &Router,
        leaver: &Arc<Session>,
        ds: Vec<Delivery>,
        online_only: bool,
    ) -> (Vec<(ClientId, Delivery)>, Vec<Delivery>) {
        let mut out = Vec::new();
        let left = r.redispatch(
            leaver,
            |has_other_online| {
                ds.into_iter()
                    .filter(|d| !online_only || d.shared.as_deref().is_some_and(has_other_online))
                    .collect()
            },
            |s, d| out.push((s.client_id.clone(), d)),
        );
        (out, left)
    }

    #[test]
    fn goes_round_robin_to_online_members_other_than_the_leaver() {
        let r = Router::new();
        let leaver = member(&r, "leaver", QoS::AtLeastOnce, false);
        let _away = member(&r, "away", QoS::AtLeastOnce, false);
        let _b = member(&r, "b", QoS::AtMostOnce, true);
        let _c = member(&r, "c", QoS::ExactlyOnce, true);
        let ds = (0..4).map(|_| orphan(QoS::ExactlyOnce)).collect();
        let (out, left) = redispatch(&r, &leaver, ds, true);
        assert!(left.is_empty());
        let mut to: Vec<&str> = out.iter().map(|(id, _)| id.as_str()).collect();
        to.sort_unstable();
        assert_eq!(to, ["b", "b", "c", "c"]);
        for (id, d) in &out {
            // The member's own grant [MQTT-4.8.2-3], its subscription identifier, the group.
            let want = if id.as_str() == "b" {
                QoS::AtMostOnce
            } else {
                QoS::ExactlyOnce
            };
            assert_eq!(d.qos, want);
            assert_eq!(d.sub_ids, [7]);
            assert_eq!(d.shared, ShareKey::parse("$share/g/t/#"));
        }
    }

    #[test]
    fn with_nobody_online_an_offline_member_or_nobody() {
        let r = Router::new();
        let leaver = member(&r, "leaver", QoS::AtLeastOnce, false);
        // The test of a persistent leaver: no other member online, so nothing is taken.
        let (out, left) = redispatch(&r, &leaver, vec![orphan(QoS::AtLeastOnce)], true);
        assert!(out.is_empty() && left.is_empty());
        // An ending one's: the leaver is not chosen; with no other member, it comes back.
        let (out, left) = redispatch(&r, &leaver, vec![orphan(QoS::AtLeastOnce)], false);
        assert!(out.is_empty());
        assert_eq!(left.len(), 1);
        // Another member, away: it gets it (its session keeps it for its client).
        let away = member(&r, "away", QoS::AtLeastOnce, false);
        let (out, left) = redispatch(&r, &leaver, vec![orphan(QoS::AtLeastOnce)], false);
        assert!(left.is_empty());
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].0, away.client_id);
        let mut q = Vec::new();
        let _ = leaver.take_queued_within(10, 10, BOUND, &mut q);
        assert!(q.is_empty());
    }
}
