//! The items of the six tables, with the tutorial's attribute names and meanings.
//!
//! | table | Rust record |
//! |---|---|
//! | mqtt_client | [`ClientRecord`] |
//! | mqtt_sub | [`SubRecord`] |
//! | mqtt_retain | [`RetainRecord`] (= [`MessageRecord`], keyed by topic) |
//! | mqtt_msg | [`MsgRecord`] (= [`MessageRecord`], keyed by msgid) |
//! | mqtt_topic_msg_map | topic -> set of [`MsgId`] (no record type: only `MapAdd`/`MapRemove`) |
//! | mqtt_acked | [`AckedRecord`] |
//!
//! Payloads are bytes here; a store that keeps strings writes UTF-8 payloads as they are and
//! others base64 with `payload_encoding` = `base64` ([`payload_to_string`]).

use std::collections::BTreeSet;

use base64::Engine;
use bytes::Bytes;

use crate::msgid::MsgId;

/// mqtt_client: where a client is and since when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRecord {
    pub clientid: String,
    /// The broker node the client is connected to (`mqtt_client.node`): the takeover target.
    pub node: String,
    /// 1 online, 0 offline.
    pub connect_state: u8,
    pub online_at: u64,
    pub offline_at: u64,
    /// When the client's session expires if it stays away, in Unix seconds (an extra
    /// attribute of mqtt_client, `session_expires_at`, written at disconnect): `None` while
    /// it is connected, or if its session never expires.
    pub session_expires_at: Option<u64>,
    /// The packet ids of QoS 2 messages from this client that were received (PUBREC'd) and
    /// not yet released by PUBREL [MQTT-4.3.3-9] (an extra attribute of mqtt_client,
    /// `awaiting_rel`, a Number Set; absent when empty). Kept only for a session that
    /// outlives its connection with `store.durability = "sync"`, so that after a restart a
    /// resent PUBLISH is not delivered twice and a PUBREL is answered as for a known id.
    pub awaiting_rel: BTreeSet<u16>,
}

/// mqtt_sub: one subscription of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRecord {
    pub clientid: String,
    /// The subscription's filter (the tutorial's attribute is `topic`).
    pub topic: String,
    pub qos: u8,
}

/// A stored message: an item of mqtt_msg (key msgid) or of mqtt_retain (key topic), which have
/// the same attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub msgid: MsgId,
    pub topic: String,
    /// The publisher's client id.
    pub sender: String,
    pub qos: u8,
    pub retain: bool,
    pub payload: Bytes,
    /// Unix seconds.
    pub arrived: u64,
    /// The MQTT v5 properties kept with the message. `None` if it has none (every v3
    /// message): out of line, so that a record without them stays small (records wait in
    /// the writer's queue).
    pub props: Option<Box<MessageProps>>,
}

/// The MQTT v5 PUBLISH properties a stored message keeps so that it is forwarded as it was
/// published (unaltered: [MQTT-3.3.2-4], -15, -16, -17, -18, -20): retained
/// messages come back from the store at start and stored messages are replayed, possibly
/// after a restart. Topic Alias and Subscription Identifiers are per connection or per
/// subscription and are never stored.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MessageProps {
    /// Payload Format Indicator (0 unspecified bytes, 1 UTF-8).
    pub payload_format: Option<u8>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    /// In the order published [MQTT-3.3.2-18]; a name may repeat.
    pub user_properties: Vec<(String, String)>,
    /// When the Message Expiry Interval runs out, in Unix milliseconds: absolute, so that
    /// the time spent stored (or while the broker was down) counts. Milliseconds rather
    /// than the interval's seconds so that the interval forwarded after a restart is never
    /// longer than the one published, nor the message dropped up to a second early.
    pub expires_at_ms: Option<u64>,
}

impl MessageProps {
    pub fn is_empty(&self) -> bool {
        *self == MessageProps::default()
    }

    /// As [`MessageRecord::props`] holds them: `None` if there are none.
    pub fn boxed(self) -> Option<Box<MessageProps>> {
        (!self.is_empty()).then(|| Box::new(self))
    }
}

impl MessageRecord {
    /// True if the message's Message Expiry Interval has run out at `now_ms` (Unix ms): it
    /// must not be delivered any more [MQTT-3.3.2-5].
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.props
            .as_ref()
            .and_then(|p| p.expires_at_ms)
            .is_some_and(|t| t <= now_ms)
    }
}

/// The current time in Unix milliseconds (0 if the clock is before 1970).
pub fn now_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// An item of mqtt_retain.
pub type RetainRecord = MessageRecord;
/// An item of mqtt_msg.
pub type MsgRecord = MessageRecord;

/// mqtt_acked: the last message a client acknowledged on a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckedRecord {
    pub topic: String,
    pub clientid: String,
    pub msgid: MsgId,
}

/// The value of the `payload_encoding` attribute for payloads that are not UTF-8.
pub const PAYLOAD_ENCODING_BASE64: &str = "base64";

/// The `payload` string for a payload, and whether it had to be base64-encoded.
pub fn payload_to_string(payload: &[u8]) -> (String, bool) {
    match std::str::from_utf8(payload) {
        Ok(s) => (s.to_owned(), false),
        Err(_) => (
            base64::engine::general_purpose::STANDARD.encode(payload),
            true,
        ),
    }
}

/// The payload bytes from the `payload` string and the optional `payload_encoding`.
pub fn payload_from_string(s: &str, encoding: Option<&str>) -> Result<Bytes, String> {
    match encoding {
        None => Ok(Bytes::copy_from_slice(s.as_bytes())),
        Some(PAYLOAD_ENCODING_BASE64) => base64::engine::general_purpose::STANDARD
            .decode(s)
            .map(Bytes::from)
            .map_err(|e| format!("payload is not valid base64: {e}")),
        Some(other) => Err(format!("unknown payload_encoding {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_strings() {
        assert_eq!(
            payload_to_string(b"{ \"msg\": 1 }"),
            ("{ \"msg\": 1 }".into(), false)
        );
        let (s, b64) = payload_to_string(&[0xff, 0x00, 0x80]);
        assert!(b64);
        assert_eq!(
            payload_from_string(&s, Some("base64")).expect("decodes"),
            Bytes::from_static(&[0xff, 0x00, 0x80])
        );
        assert!(payload_from_string("x", Some("rot13")).is_err());
    }
}
