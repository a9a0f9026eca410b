//! The router: which sessions a published message goes to, and the retained messages.
//!
//! Subscriptions live in a topic trie behind a read-write lock: publishers only read it (many
//! at once, no writer in the way except a subscribe or unsubscribe, which holds it for a few
//! map operations) and match the topic. The router knows subscriptions, not connections: it
//! hands each match, as a `Delivery` for one session, to its caller (`Broker::deliver`
//! queues it). A client with several matching subscriptions gets one copy at the highest
//! granted QoS, carrying every matching subscription identifier [MQTT-3.3.4-2]
//! [MQTT-3.3.4-3].

pub(crate) mod retained;
mod shared;
mod trie;

use std::sync::Arc;

use dynamq_codec::topic;
use parking_lot::RwLock;

use crate::message::{Delivery, Message};
use crate::session::{Session, Subscription};
pub(crate) use retained::RetainIndex;
use shared::shared_delivery;
use trie::{Entry, Trie};

#[derive(Debug, Default)]
pub(crate) struct Router {
    trie: RwLock<Trie>,
    pub retained: RetainIndex,
}

impl Router {
    pub(crate) fn new() -> Router {
        Router::default()
    }

    /// Adds or replaces `session`'s subscription to `filter` (which may be `$share/g/f`).
    /// Returns true if the session already had a subscription to that filter.
    pub(crate) fn subscribe(
        &self,
        session: &Arc<Session>,
        filter: &str,
        sub: &Subscription,
    ) -> bool {
        let entry = Entry {
            session: session.clone(),
            options: sub.options.clone(),
            id: sub.id,
        };
        let mut trie = self.trie.write();
        match topic::parse_shared(filter) {
            Some((group, real)) => trie.insert_shared(real, group, entry),
            None => trie.insert(filter, entry),
        }
    }

    /// Removes `session`'s subscription to `filter`. Returns true if there was one.
    pub(crate) fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        let mut trie = self.trie.write();
        match topic::parse_shared(filter) {
            Some((group, real)) => trie.remove_shared(real, group, session),
            None => trie.remove(filter, session),
        }
    }

    /// Calls `deliver` once for every session `msg` goes to, with that session's delivery.
    /// Runs in the publisher's task, with the trie read-locked: `deliver` must not subscribe
    /// or unsubscribe.
    pub(crate) fn route(
        &self,
        msg: &Arc<Message>,
        mut deliver: impl FnMut(&Arc<Session>, Delivery),
    ) {
        let trie = self.trie.read();
        let mut matches: Vec<&Entry> = Vec::new();
        trie.matches(msg.topic_str(), &mut matches);
        matches.retain(|e| !(e.options.no_local && e.session.client_id == msg.sender));
        if matches.len() > 1 {
            matches.sort_unstable_by_key(|e| Arc::as_ptr(&e.session));
        }
        let mut i = 0;
        while i < matches.len() {
            let first = matches[i];
            let mut j = i + 1;
            let mut qos = first.options.qos;
            let mut rap = first.options.retain_as_published;
            let mut ids: Vec<u32> = first.id.into_iter().collect();
            while j < matches.len() && Arc::ptr_eq(&matches[j].session, &first.session) {
                let e = matches[j];
                qos = qos.max(e.options.qos);
                rap |= e.options.retain_as_published;
                ids.extend(e.id);
                j += 1;
            }
            let d = Delivery {
                msg: msg.clone(),
                qos: qos.min(msg.qos),
                retain: rap && msg.retain,
                sub_ids: ids,
                shared: None,
            };
            deliver(&first.session, d);
            i = j;
        }
        drop(matches);
        // Shared subscriptions: one member of each group gets the message.
        trie.shared_matches(msg.topic_str(), |e, key| {
            deliver(&e.session, shared_delivery(e, msg, key));
        });
    }

    /// Number of distinct filters with at least one subscriber.
    pub(crate) fn filter_count(&self) -> usize {
        self.trie.read().filter_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ClientId;
    use crate::session::{EnqueueResult, QueueBound};

    const BOUND: QueueBound = QueueBound {
        messages: 100,
        bytes: 1 << 20,
    };
    use dynamq_codec::{QoS, SubscriptionOptions};

    fn session(id: &str) -> Arc<Session> {
        let s = Arc::new(Session::new(ClientId::new(id)));
        // Online, so QoS 0 messages are queued.
        s.claim(1).unwrap();
        s
    }

    /// Routes `msg`, queueing every delivery; returns how many sessions got it.
    fn route(r: &Router, msg: &Arc<Message>) -> usize {
        let mut queued = 0;
        r.route(msg, |s, d| {
            assert!(matches!(
                s.enqueue(d, BOUND, false),
                EnqueueResult::Queued { .. }
            ));
            queued += 1;
        });
        queued
    }

    fn msg(topic: &str, qos: QoS, sender: &str) -> Arc<Message> {
        Message::for_test(topic, qos, sender)
    }

    fn sub(qos: QoS, id: Option<u32>) -> Subscription {
        Subscription {
            options: SubscriptionOptions::qos(qos),
            id,
        }
    }

    fn drain(s: &Session) -> Vec<Delivery> {
        let mut out = Vec::new();
        let _ = s.take_queued_within(1000, 1000, BOUND, &mut out);
        out
    }

    #[test]
    fn wildcards_and_dollar_topics() {
        let r = Router::new();
        let s = session("a");
        r.subscribe(&s, "sport/#", &sub(QoS::AtMostOnce, None));
        r.subscribe(&s, "+/x", &sub(QoS::AtMostOnce, None));
        r.subscribe(&s, "#", &sub(QoS::AtMostOnce, None));
        // `sport/#` matches `sport` itself [MQTT-4.7.1-2]; `#` too: one copy.
        assert_eq!(route(&r, &msg("sport", QoS::AtMostOnce, "p")), 1);
        // `$` topics are not matched by first-level wildcards [MQTT-4.7.2-1].
        assert_eq!(route(&r, &msg("$SYS/x", QoS::AtMostOnce, "p")), 0);
        let t = session("t");
        r.subscribe(&t, "$SYS/#", &sub(QoS::AtMostOnce, None));
        assert_eq!(route(&r, &msg("$SYS/x", QoS::AtMostOnce, "p")), 1);
        assert_eq!(drain(&s).len(), 1);
    }

    #[test]
    fn overlapping_subscriptions_deliver_one_copy_at_highest_qos() {
        // [MQTT-3.3.5-1] and, for v5, every matching subscription identifier [MQTT-3.3.4-3].
        let r = Router::new();
        let s = session("a");
        r.subscribe(&s, "a/+", &sub(QoS::AtMostOnce, Some(1)));
        r.subscribe(&s, "a/#", &sub(QoS::ExactlyOnce, Some(2)));
        r.subscribe(&s, "a/b", &sub(QoS::AtLeastOnce, None));
        assert_eq!(route(&r, &msg("a/b", QoS::ExactlyOnce, "p")), 1);
        let d = drain(&s);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].qos, QoS::ExactlyOnce);
        let mut ids = d[0].sub_ids.clone();
        ids.sort();
        assert_eq!(ids, vec![1, 2]);
        // Delivered QoS is the minimum of publish and subscription QoS [MQTT-3.8.4-6].
        route(&r, &msg("a/b", QoS::AtLeastOnce, "p"));
        assert_eq!(drain(&s)[0].qos, QoS::AtLeastOnce);
    }

    #[test]
    fn unsubscribe_and_no_local() {
        let r = Router::new();
        let s = session("me");
        let mut opts = SubscriptionOptions::qos(QoS::AtLeastOnce);
        opts.no_local = true;
        r.subscribe(
            &s,
            "t",
            &Subscription {
                options: opts,
                id: None,
            },
        );
        // No Local: not sent back to the publisher [MQTT-3.8.3-3].
        assert_eq!(route(&r, &msg("t", QoS::AtLeastOnce, "me")), 0);
        assert_eq!(route(&r, &msg("t", QoS::AtLeastOnce, "other")), 1);
        assert!(r.unsubscribe(&s, "t"));
        assert!(!r.unsubscribe(&s, "t"));
        assert_eq!(route(&r, &msg("t", QoS::AtLeastOnce, "other")), 0);
        assert_eq!(r.filter_count(), 0);
    }

    #[test]
    fn shared_subscription_delivers_to_one_member() {
        let r = Router::new();
        let a = session("a");
        let b = session("b");
        r.subscribe(&a, "$share/g/t/+", &sub(QoS::AtLeastOnce, None));
        r.subscribe(&b, "$share/g/t/+", &sub(QoS::AtLeastOnce, None));
        for _ in 0..10 {
            assert_eq!(route(&r, &msg("t/1", QoS::AtLeastOnce, "p")), 1);
        }
        // Round-robin: both members got some.
        assert_eq!(drain(&a).len(), 5);
        assert_eq!(drain(&b).len(), 5);
    }
}
