//! Retained messages by topic, for delivery on subscribe [MQTT-3.3.1-5].
//!
//! A map from topic to the last retained message. A subscribe with a literal filter is one
//! lookup; a wildcard filter scans the map. (A trie would make wildcard lookups cheaper when
//! there are very many retained topics.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use dynamq_codec::topic;
use parking_lot::RwLock;

use crate::message::Message;

#[derive(Debug, Default)]
pub struct RetainIndex {
    map: RwLock<HashMap<Box<str>, Arc<Message>>>,
}

impl RetainIndex {
    /// Stores `msg` as the retained message of its topic, or deletes the topic's retained
    /// message if the payload is empty [MQTT-3.3.1-10] [MQTT-3.3.1-11].
    pub fn set(&self, msg: &Arc<Message>) {
        let topic = msg.topic_str();
        let mut map = self.map.write();
        if msg.payload.is_empty() {
            map.remove(topic);
        } else {
            map.insert(Box::from(topic), msg.clone());
        }
    }

    /// Retained messages matching `filter`, expired ones left out and removed.
    pub fn matching(&self, filter: &str) -> Vec<Arc<Message>> {
        let now = Instant::now();
        let mut expired = false;
        let found: Vec<Arc<Message>> = {
            let map = self.map.read();
            if !filter.contains(['+', '#']) {
                map.get(filter).cloned().into_iter().collect()
            } else {
                map.iter()
                    .filter(|(t, _)| topic::matches(filter, t))
                    .map(|(_, m)| m.clone())
                    .collect()
            }
        };
        let found: Vec<Arc<Message>> = found
            .into_iter()
            .filter(|m| {
                let dead = m.is_expired(now);
                expired |= dead;
                !dead
            })
            .collect();
        if expired {
            self.map.write().retain(|_, m| !m.is_expired(now));
        }
        found
    }

    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.read().is_empty()
    }
}
