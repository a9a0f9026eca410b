//! The router: which sessions a published message goes to, and the retained messages.
//!
//! Subscriptions live in a topic trie behind a read-write lock: publishers only read it (many
//! at once, no writer in the way except a subscribe or unsubscribe, which holds it for a few
//! map operations), match the topic, and push into each matching session's own bounded
//! queue. A client with several matching subscriptions gets one copy at the highest granted
//! QoS, carrying every matching subscription identifier [MQTT-3.3.4-2] [MQTT-3.3.4-3].

pub mod retained;
mod trie;

use std::sync::Arc;

use dynamq_codec::topic;
use parking_lot::RwLock;

use crate::connection::Parker;
use crate::message::{Delivery, Message};
use crate::metrics::Metrics;
use crate::session::{EnqueueResult, Session, Subscription};
pub use retained::RetainIndex;
use trie::{Entry, Trie};

#[derive(Debug, Default)]
pub struct Router {
    trie: RwLock<Trie>,
    pub retained: RetainIndex,
}

/// What one publish did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RouteOutcome {
    /// Sessions the message was queued for.
    pub queued: usize,
    /// Sessions whose queue was full.
    pub dropped: usize,
}

impl Router {
    pub fn new() -> Router {
        Router::default()
    }

    /// Adds or replaces `session`'s subscription to `filter` (which may be `$share/g/f`).
    /// Returns true if the session already had a subscription to that filter.
    pub fn subscribe(&self, session: &Arc<Session>, filter: &str, sub: &Subscription) -> bool {
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
    pub fn unsubscribe(&self, session: &Arc<Session>, filter: &str) -> bool {
        let mut trie = self.trie.write();
        match topic::parse_shared(filter) {
            Some((group, real)) => trie.remove_shared(real, group, session),
            None => trie.remove(filter, session),
        }
    }

    /// Queues `msg` for every matching session. Runs in the publisher's task.
    pub fn route(
        &self,
        msg: &Arc<Message>,
        max_queue: usize,
        metrics: &Metrics,
        parker: &Parker,
    ) -> RouteOutcome {
        let mut out = RouteOutcome::default();
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
            };
            self.deliver(&first.session, d, max_queue, metrics, parker, &mut out);
            i = j;
        }
        drop(matches);
        // Shared subscriptions: one member of each group gets the message.
        trie.shared_matches(msg.topic_str(), |e| {
            let d = Delivery {
                msg: msg.clone(),
                qos: e.options.qos.min(msg.qos),
                retain: e.options.retain_as_published && msg.retain,
                sub_ids: e.id.into_iter().collect(),
            };
            self.deliver(&e.session, d, max_queue, metrics, parker, &mut out);
        });
        out
    }

    fn deliver(
        &self,
        session: &Session,
        d: Delivery,
        max_queue: usize,
        metrics: &Metrics,
        parker: &Parker,
        out: &mut RouteOutcome,
    ) {
        match session.enqueue(d, max_queue) {
            EnqueueResult::Queued => out.queued += 1,
            EnqueueResult::QueuedWakeParked(slot) => {
                out.queued += 1;
                parker.wake(slot);
            }
            EnqueueResult::QueueFull { first } => {
                out.dropped += 1;
                metrics.inc_dropped_queue_full();
                if first {
                    tracing::warn!(
                        client = %session.client_id,
                        max_queue,
                        "session queue full: dropping new messages until it drains"
                    );
                }
            }
            EnqueueResult::Offline => metrics.inc_dropped_qos0_offline(),
        }
    }

    /// Number of distinct filters with at least one subscriber.
    pub fn filter_count(&self) -> usize {
        self.trie.read().filter_count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ClientId;
    use bytes::Bytes;
    use dynamq_codec::{PublishProperties, QoS, SubscriptionOptions};

    fn session(id: &str) -> Arc<Session> {
        let s = Arc::new(Session::new(ClientId::new(id)));
        // Online, so QoS 0 messages are queued.
        s.claim(1).unwrap();
        s
    }

    /// Routes with the queue bound most tests use, and no hibernating connections.
    fn route(r: &Router, msg: &Arc<Message>, m: &Metrics) -> RouteOutcome {
        r.route(msg, 100, m, &Parker::default())
    }

    fn msg(topic: &str, qos: QoS, sender: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: None,
            sender: ClientId::new(sender),
            msgid: Default::default(),
        })
    }

    fn sub(qos: QoS, id: Option<u32>) -> Subscription {
        Subscription {
            options: SubscriptionOptions::qos(qos),
            id,
        }
    }

    fn drain(s: &Session) -> Vec<Delivery> {
        let mut out = Vec::new();
        s.take_queued_within(1000, 1000, &mut out);
        out
    }

    #[test]
    fn wildcards_and_dollar_topics() {
        let r = Router::new();
        let m = Metrics::default();
        let s = session("a");
        r.subscribe(&s, "sport/#", &sub(QoS::AtMostOnce, None));
        r.subscribe(&s, "+/x", &sub(QoS::AtMostOnce, None));
        r.subscribe(&s, "#", &sub(QoS::AtMostOnce, None));
        // `sport/#` matches `sport` itself [MQTT-4.7.1-2]; `#` too: one copy.
        assert_eq!(route(&r, &msg("sport", QoS::AtMostOnce, "p"), &m).queued, 1);
        // `$` topics are not matched by first-level wildcards [MQTT-4.7.2-1].
        assert_eq!(
            route(&r, &msg("$SYS/x", QoS::AtMostOnce, "p"), &m).queued,
            0
        );
        let t = session("t");
        r.subscribe(&t, "$SYS/#", &sub(QoS::AtMostOnce, None));
        assert_eq!(
            route(&r, &msg("$SYS/x", QoS::AtMostOnce, "p"), &m).queued,
            1
        );
        assert_eq!(drain(&s).len(), 1);
    }

    #[test]
    fn overlapping_subscriptions_deliver_one_copy_at_highest_qos() {
        // [MQTT-3.3.5-1] and, for v5, every matching subscription identifier [MQTT-3.3.4-3].
        let r = Router::new();
        let m = Metrics::default();
        let s = session("a");
        r.subscribe(&s, "a/+", &sub(QoS::AtMostOnce, Some(1)));
        r.subscribe(&s, "a/#", &sub(QoS::ExactlyOnce, Some(2)));
        r.subscribe(&s, "a/b", &sub(QoS::AtLeastOnce, None));
        let out = route(&r, &msg("a/b", QoS::ExactlyOnce, "p"), &m);
        assert_eq!(out.queued, 1);
        let d = drain(&s);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].qos, QoS::ExactlyOnce);
        let mut ids = d[0].sub_ids.clone();
        ids.sort();
        assert_eq!(ids, vec![1, 2]);
        // Delivered QoS is the minimum of publish and subscription QoS [MQTT-3.8.4-6].
        route(&r, &msg("a/b", QoS::AtLeastOnce, "p"), &m);
        assert_eq!(drain(&s)[0].qos, QoS::AtLeastOnce);
    }

    #[test]
    fn unsubscribe_and_no_local() {
        let r = Router::new();
        let m = Metrics::default();
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
        assert_eq!(route(&r, &msg("t", QoS::AtLeastOnce, "me"), &m).queued, 0);
        assert_eq!(
            route(&r, &msg("t", QoS::AtLeastOnce, "other"), &m).queued,
            1
        );
        assert!(r.unsubscribe(&s, "t"));
        assert!(!r.unsubscribe(&s, "t"));
        assert_eq!(
            route(&r, &msg("t", QoS::AtLeastOnce, "other"), &m).queued,
            0
        );
        assert_eq!(r.filter_count(), 0);
    }

    #[test]
    fn shared_subscription_delivers_to_one_member() {
        let r = Router::new();
        let m = Metrics::default();
        let a = session("a");
        let b = session("b");
        r.subscribe(&a, "$share/g/t/+", &sub(QoS::AtLeastOnce, None));
        r.subscribe(&b, "$share/g/t/+", &sub(QoS::AtLeastOnce, None));
        for _ in 0..10 {
            assert_eq!(route(&r, &msg("t/1", QoS::AtLeastOnce, "p"), &m).queued, 1);
        }
        // Round-robin: both members got some.
        assert_eq!(drain(&a).len(), 5);
        assert_eq!(drain(&b).len(), 5);
    }

    #[test]
    fn full_queue_drops_and_counts() {
        let r = Router::new();
        let m = Metrics::default();
        let s = session("a");
        r.subscribe(&s, "t", &sub(QoS::AtLeastOnce, None));
        for _ in 0..3 {
            r.route(&msg("t", QoS::AtLeastOnce, "p"), 2, &m, &Parker::default());
        }
        assert_eq!(drain(&s).len(), 2);
        assert_eq!(
            m.dropped_queue_full
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
    }
}
