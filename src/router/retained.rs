//! Retained messages by topic, for delivery on subscribe [MQTT-3.3.1-5]. The one retained
//! index: kept current by every retained publish, and loaded from the store at start when
//! the store keeps retained messages (on_retain_lookup).
//!
//! A `TopicMap` (sorted by topic): a literal filter is one lookup, a wildcard filter scans
//! only the topics that start with its literal levels (`a/b/#` scans `a/b...`; `#` and
//! `+/...` scan all).

use std::sync::Arc;
use std::time::Instant;

use dynamq_codec::topic_map::TopicMap;
use parking_lot::RwLock;

use crate::message::Message;

#[derive(Debug, Default)]
pub(crate) struct RetainIndex {
    map: RwLock<TopicMap<Arc<Message>>>,
}

impl RetainIndex {
    /// Stores `msg` as the retained message of its topic, or deletes the topic's retained
    /// message if the payload is empty [MQTT-3.3.1-10] [MQTT-3.3.1-11].
    pub(crate) fn set(&self, msg: &Arc<Message>) {
        let topic = msg.topic_str();
        let mut map = self.map.write();
        if msg.payload.is_empty() {
            map.remove(topic);
        } else {
            map.insert(topic.to_owned(), msg.clone());
        }
    }

    /// Retained messages matching `filter`, expired ones left out and removed.
    pub(crate) fn matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let now = Instant::now();
        let mut expired = false;
        let found: Vec<Arc<Message>> = self
            .map
            .read()
            .matching(filter)
            .into_iter()
            .filter_map(|(_, m)| {
                let dead = m.is_expired(now);
                expired |= dead;
                (!dead).then(|| m.clone())
            })
            .collect();
        if expired {
            self.map.write().retain(|_, m| !m.is_expired(now));
        }
        found
    }

    /// The retained message of `topic`, if any (expired or not).
    pub(crate) fn get(&self, topic: &str) -> Option<Arc<Message>> {
        self.map.read().get(topic).cloned()
    }

    /// Every retained message on a topic not starting with `$`, then those under `$SYS/`,
    /// expired ones left out.
    pub(crate) fn all(&self) -> Vec<Arc<Message>> {
        let mut out = self.matching("#");
        out.extend(self.matching("$SYS/#"));
        out
    }

    pub(crate) fn len(&self) -> usize {
        self.map.read().len()
    }
}
