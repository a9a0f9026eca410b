//! Value encoding of the embedded tables: postcard (compact varints, no field names) over
//! private serde structs, so the on-disk shape is decoupled from the public record types.
//!
//! Field order is the format, and postcard is not self-describing: a struct decodes as a
//! fixed-length tuple, so a field appended with `#[serde(default)]` does NOT read values
//! written before it existed (the decoder runs out of input: "Hit the end of buffer";
//! `tests::serde_default_does_not_read_old_values` pins this). New fields therefore go in
//! an extension struct written after the existing value, and only when it has something to
//! say: a reader decodes the base struct with `take_from_bytes` and the extension from what
//! is left, if anything. Values written before the extension existed are a base struct
//! alone and still decode; an older reader ignores the trailing bytes
//! (`postcard::from_bytes` does not require the input to be consumed). A later extension
//! follows the same rule: appended after this one.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::msgid::MsgId;
use crate::record::{ClientRecord, MessageProps, MessageRecord};

#[derive(Serialize)]
struct ClientRef<'a> {
    node: &'a str,
    connect_state: u8,
    online_at: u64,
    offline_at: u64,
}

#[derive(Deserialize)]
struct ClientOwned {
    node: String,
    connect_state: u8,
    online_at: u64,
    offline_at: u64,
}

/// The second extension of a client value, for a client with `awaiting_rel` ids: written
/// after a first extension of `u64::MAX` (what an older reader takes for a session expiry
/// far away), and carrying the real session expiry itself.
#[derive(Serialize)]
struct ClientRelRef<'a> {
    session_expires_at: Option<u64>,
    awaiting_rel: &'a [u16],
}

#[derive(Deserialize)]
struct ClientRelOwned {
    session_expires_at: Option<u64>,
    awaiting_rel: Vec<u16>,
}

#[derive(Serialize)]
struct MsgRef<'a> {
    msgid: u128,
    topic: &'a str,
    sender: &'a str,
    qos: u8,
    retain: bool,
    payload: &'a [u8],
    arrived: u64,
}

#[derive(Deserialize)]
struct MsgOwned {
    msgid: u128,
    topic: String,
    sender: String,
    qos: u8,
    retain: bool,
    payload: Vec<u8>,
    arrived: u64,
}

/// The v5 properties of a message (see [`MessageProps`]), appended after [`MsgRef`] when a
/// message has any.
#[derive(Serialize)]
struct MsgPropsRef<'a> {
    payload_format: Option<u8>,
    content_type: Option<&'a str>,
    response_topic: Option<&'a str>,
    correlation_data: Option<&'a [u8]>,
    user_properties: &'a [(String, String)],
    expires_at_ms: Option<u64>,
}

#[derive(Deserialize)]
struct MsgPropsOwned {
    payload_format: Option<u8>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<Vec<u8>>,
    user_properties: Vec<(String, String)>,
    expires_at_ms: Option<u64>,
}

pub(super) fn encode_client(r: &ClientRecord) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail.
    let mut out = postcard::to_stdvec(&ClientRef {
        node: &r.node,
        connect_state: r.connect_state,
        online_at: r.online_at,
        offline_at: r.offline_at,
    })
    .unwrap_or_default();
    // Without a session expiry the value is exactly what versions before it wrote (postcard
    // cannot read a #[serde(default)] field: the extension is appended instead).
    if !r.awaiting_rel.is_empty() {
        let ids: Vec<u16> = r.awaiting_rel.iter().copied().collect();
        out.extend_from_slice(&postcard::to_stdvec(&u64::MAX).unwrap_or_default());
        out.extend_from_slice(
            &postcard::to_stdvec(&ClientRelRef {
                session_expires_at: r.session_expires_at,
                awaiting_rel: &ids,
            })
            .unwrap_or_default(),
        );
    } else if let Some(at) = r.session_expires_at {
        out.extend_from_slice(&postcard::to_stdvec(&at).unwrap_or_default());
    }
    out
}

pub(super) fn decode_client(clientid: &str, bytes: &[u8]) -> Result<ClientRecord, StoreError> {
    let bad = |e: postcard::Error| StoreError::BadItem {
        table: "mqtt_client".into(),
        reason: e.to_string(),
    };
    let (c, rest): (ClientOwned, &[u8]) = postcard::take_from_bytes(bytes).map_err(bad)?;
    let (session_expires_at, awaiting_rel) = if rest.is_empty() {
        (None, Default::default())
    } else {
        let (at, rest) = postcard::take_from_bytes::<u64>(rest).map_err(bad)?;
        if rest.is_empty() {
            (Some(at), Default::default())
        } else {
            let ext: ClientRelOwned = postcard::from_bytes(rest).map_err(bad)?;
            (
                ext.session_expires_at,
                ext.awaiting_rel.into_iter().collect(),
            )
        }
    };
    Ok(ClientRecord {
        clientid: clientid.to_owned(),
        node: c.node,
        connect_state: c.connect_state,
        online_at: c.online_at,
        offline_at: c.offline_at,
        session_expires_at,
        awaiting_rel,
    })
}

pub(super) fn encode_msg(r: &MessageRecord) -> Vec<u8> {
    let mut out = postcard::to_stdvec(&MsgRef {
        msgid: r.msgid.0,
        topic: &r.topic,
        sender: &r.sender,
        qos: r.qos,
        retain: r.retain,
        payload: &r.payload,
        arrived: r.arrived,
    })
    .unwrap_or_default();
    // No properties: the value is exactly what versions before them wrote.
    if let Some(p) = &r.props {
        let ext = postcard::to_stdvec(&MsgPropsRef {
            payload_format: p.payload_format,
            content_type: p.content_type.as_deref(),
            response_topic: p.response_topic.as_deref(),
            correlation_data: p.correlation_data.as_deref(),
            user_properties: &p.user_properties,
            expires_at_ms: p.expires_at_ms,
        })
        .unwrap_or_default();
        out.extend_from_slice(&ext);
    }
    out
}

pub(super) fn decode_msg(table: &str, bytes: &[u8]) -> Result<MessageRecord, StoreError> {
    let bad = |e: postcard::Error| StoreError::BadItem {
        table: table.into(),
        reason: e.to_string(),
    };
    let (m, rest): (MsgOwned, &[u8]) = postcard::take_from_bytes(bytes).map_err(bad)?;
    let props = if rest.is_empty() {
        None
    } else {
        let p: MsgPropsOwned = postcard::from_bytes(rest).map_err(bad)?;
        MessageProps {
            payload_format: p.payload_format,
            content_type: p.content_type,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data.map(Bytes::from),
            user_properties: p.user_properties,
            expires_at_ms: p.expires_at_ms,
        }
        .boxed()
    };
    Ok(MessageRecord {
        msgid: MsgId(m.msgid),
        topic: m.topic,
        sender: m.sender,
        qos: m.qos,
        retain: m.retain,
        payload: Bytes::from(m.payload),
        arrived: m.arrived,
        props,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The value shape of mqtt_msg / mqtt_retain before v5 properties were stored, as that
    /// version wrote it (a copy: `MsgRef` must keep encoding the same bytes).
    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct MsgBeforeProps {
        msgid: u128,
        topic: String,
        sender: String,
        qos: u8,
        retain: bool,
        payload: Vec<u8>,
        arrived: u64,
    }

    fn old_value() -> (MsgBeforeProps, Vec<u8>) {
        let old = MsgBeforeProps {
            msgid: 0x0005_f3a2_1b2c_3d4e_0102_0304_0506_0708,
            topic: "sensor/1".into(),
            sender: "pub-1".into(),
            qos: 1,
            retain: true,
            payload: vec![0xff, 0x00, b'a'],
            arrived: 1_700_000_000,
        };
        let bytes = postcard::to_stdvec(&old).expect("encodes");
        (old, bytes)
    }

    fn record_with_props() -> MessageRecord {
        MessageRecord {
            msgid: MsgId(42),
            topic: "a/b".into(),
            sender: "c".into(),
            qos: 2,
            retain: false,
            payload: Bytes::from_static(b"p"),
            arrived: 7,
            props: Some(Box::new(MessageProps {
                payload_format: Some(1),
                content_type: Some("text/plain".into()),
                response_topic: Some("reply/to".into()),
                correlation_data: Some(Bytes::from_static(&[0, 1, 0xfe, 0xff])),
                user_properties: vec![
                    ("k".into(), "1".into()),
                    ("a".into(), "x".into()),
                    ("k".into(), "2".into()),
                ],
                expires_at_ms: Some(1_800_000_000_123),
            })),
        }
    }

    /// Why the format has an extension instead of `#[serde(default)]` fields: postcard
    /// cannot tell a missing trailing field from a truncated value.
    #[test]
    fn serde_default_does_not_read_old_values() {
        #[derive(Deserialize)]
        #[allow(dead_code)] // only decoded, to see whether it decodes
        struct WithDefault {
            msgid: u128,
            topic: String,
            sender: String,
            qos: u8,
            retain: bool,
            payload: Vec<u8>,
            arrived: u64,
            #[serde(default)]
            content_type: Option<String>,
        }
        let (_, bytes) = old_value();
        assert!(postcard::from_bytes::<WithDefault>(&bytes).is_err());
    }

    #[test]
    fn old_values_still_decode() {
        let (old, bytes) = old_value();
        let r = decode_msg("mqtt_retain", &bytes).expect("an old value decodes");
        assert_eq!(r.msgid, MsgId(old.msgid));
        assert_eq!(r.topic, old.topic);
        assert_eq!(r.sender, old.sender);
        assert_eq!(r.qos, old.qos);
        assert_eq!(r.retain, old.retain);
        assert_eq!(&r.payload[..], &old.payload[..]);
        assert_eq!(r.arrived, old.arrived);
        assert!(r.props.is_none());
    }

    #[test]
    fn no_properties_encode_as_before() {
        let (old, bytes) = old_value();
        let r = MessageRecord {
            msgid: MsgId(old.msgid),
            topic: old.topic,
            sender: old.sender,
            qos: old.qos,
            retain: old.retain,
            payload: Bytes::from(old.payload),
            arrived: old.arrived,
            props: None,
        };
        assert_eq!(encode_msg(&r), bytes);
    }

    #[test]
    fn properties_round_trip() {
        let r = record_with_props();
        assert_eq!(decode_msg("mqtt_msg", &encode_msg(&r)).expect("decodes"), r);
    }

    /// A downgraded broker still reads values with properties (without them).
    #[test]
    fn old_reader_ignores_properties() {
        let r = record_with_props();
        let old: MsgBeforeProps = postcard::from_bytes(&encode_msg(&r)).expect("decodes");
        assert_eq!(old.topic, r.topic);
        assert_eq!(old.arrived, r.arrived);
    }

    #[test]
    fn bad_extension_is_an_error() {
        let mut bytes = encode_msg(&record_with_props());
        bytes.truncate(bytes.len() - 2);
        assert!(decode_msg("mqtt_msg", &bytes).is_err());
    }

    /// A client value without a session expiry is byte for byte what versions before it
    /// wrote (the four fields alone), and one with it round-trips.
    #[test]
    fn client_session_expiry_is_an_appended_extension() {
        let mut r = ClientRecord {
            clientid: "c".into(),
            node: "n".into(),
            connect_state: 0,
            online_at: 5,
            offline_at: 7,
            session_expires_at: None,
            awaiting_rel: Default::default(),
        };
        let before = postcard::to_stdvec(&("n", 0u8, 5u64, 7u64)).expect("encodes");
        assert_eq!(encode_client(&r), before);
        assert_eq!(decode_client("c", &before).expect("decodes"), r);
        r.session_expires_at = Some(67);
        assert_eq!(decode_client("c", &encode_client(&r)).expect("decodes"), r);
    }

    /// `awaiting_rel` ids round-trip with and without a session expiry; a reader from before
    /// them sees the four fields and a session expiry far away (`u64::MAX`), not an expired
    /// session.
    #[test]
    fn client_awaiting_rel_is_a_second_extension() {
        for at in [None, Some(67)] {
            let r = ClientRecord {
                clientid: "c".into(),
                node: "n".into(),
                connect_state: 1,
                online_at: 5,
                offline_at: 0,
                session_expires_at: at,
                awaiting_rel: [1, 300, 65535].into(),
            };
            let bytes = encode_client(&r);
            assert_eq!(decode_client("c", &bytes).expect("decodes"), r);
            let (_, rest): (ClientOwned, &[u8]) =
                postcard::take_from_bytes(&bytes).expect("base decodes");
            let old_expiry: u64 = postcard::from_bytes(rest).expect("old extension decodes");
            assert_eq!(old_expiry, u64::MAX);
        }
    }
}
