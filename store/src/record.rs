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
