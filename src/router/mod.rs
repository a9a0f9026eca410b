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
    pub fn route(&self, msg: &Arc<Message>, max_queue: usize, metrics: &Metrics) -> RouteOutcome {
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
            self.deliver(&first.session, d, max_queue, metrics, &mut out);
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
            self.deliver(&e.session, d, max_queue, metrics, &mut out);
        });
        out
    }

    fn deliver(
        &self,
        session: &Session,
        d: Delivery,
        max_queue: usize,
        metrics: &Metrics,
        out: &mut RouteOutcome,
    ) {
        match session.enqueue(d, max_queue) {
            EnqueueResult::Queued => out.queued += 1,
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
