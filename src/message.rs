//! The application message as the broker routes it, and one delivery of it to one session.
//!
//! A `Message` is built once per PUBLISH and shared (`Arc`) by every subscriber's queue; only
//! the per-subscription parts (QoS, retain flag, subscription identifiers) live in `Delivery`.

use std::fmt;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use dynamq_codec::{PublishProperties, QoS};
use dynamq_store::msgid::MsgId;

/// A client identifier. Cheap to clone; compared by value.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientId(Arc<str>);

impl ClientId {
    pub fn new(s: &str) -> ClientId {
        ClientId(Arc::from(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The shared string itself, for a map that keeps the id as long as the client is
    /// connected (no copy of it).
    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }
}

impl fmt::Display for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClientId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

/// An application message on its way through the broker.
#[derive(Debug)]
pub struct Message {
    /// The topic name (UTF-8, checked by the codec), never an alias.
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: QoS,
    /// The RETAIN flag as published.
    pub retain: bool,
    /// v5 properties to forward: topic alias and subscription identifiers removed
    /// ([MQTT-3.3.2-7] aliases are per connection; identifiers are per subscription).
    pub properties: PublishProperties,
    /// When the Message Expiry Interval runs out; forwarded with the time remaining
    /// [MQTT-3.3.2-6].
    pub expires_at: Option<Instant>,
    /// The publisher, for No Local [MQTT-3.8.3-3] and the stores' `sender`.
    pub sender: ClientId,
    /// The store's id of this message (EMQX-compatible), given when the message is built
    /// (`Persistence::new_msgid`); `None` without a store.
    pub msgid: Option<MsgId>,
}

impl Message {
    pub fn topic_str(&self) -> &str {
        std::str::from_utf8(&self.topic).unwrap_or("")
    }

    pub fn is_expired(&self, now: Instant) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Seconds left of the Message Expiry Interval, rounded up, for forwarding.
    pub fn remaining_expiry(&self, now: Instant) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_duration_since(now);
            let secs = left.as_secs() + u64::from(left.subsec_nanos() > 0);
            u32::try_from(secs).unwrap_or(u32::MAX).max(1)
        })
    }
}

#[cfg(test)]
impl Message {
    /// A one-byte message with no properties, for unit tests.
    pub(crate) fn for_test(topic: &str, qos: QoS, sender: &str) -> Arc<Message> {
        Arc::new(Message {
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            payload: Bytes::from_static(b"x"),
            qos,
            retain: false,
            properties: PublishProperties::default(),
            expires_at: None,
            sender: ClientId::new(sender),
            msgid: None,
        })
    }
}

/// One message queued for one session.
#[derive(Debug, Clone)]
pub(crate) struct Delivery {
    pub msg: Arc<Message>,
    /// min(published QoS, granted QoS) [MQTT-3.8.4-6].
    pub qos: QoS,
    /// The RETAIN flag to send: set for retained messages sent on subscribe; for live
    /// forwarding only with Retain As Published [MQTT-3.3.1-12] [MQTT-3.3.1-13].
    pub retain: bool,
    /// Identifiers of every matching subscription that has one [MQTT-3.3.4-3].
    pub sub_ids: Vec<u32>,
    /// The shared subscription this delivery came through, if it did: a member that leaves
    /// before finishing it hands it to another member of the group (`router::shared`). One
    /// pointer: `None` for every other delivery.
    pub shared: Option<Arc<ShareKey>>,
}

/// A shared subscription, `$share/{group}/{filter}`, as a delivery names it. Compared by
/// value; the trie keeps one per group and each delivery through it shares that one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ShareKey {
    /// The ShareName.
    pub group: Box<str>,
    /// The topic filter after the ShareName.
    pub filter: Box<str>,
}

impl ShareKey {
    /// The key of `filter` if it is a shared subscription's filter (`$share/g/f`).
    pub(crate) fn parse(filter: &str) -> Option<Arc<ShareKey>> {
        dynamq_codec::topic::parse_shared(filter).map(|(group, real)| {
            Arc::new(ShareKey {
                group: Box::from(group),
                filter: Box::from(real),
            })
        })
    }
}
