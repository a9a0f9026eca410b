//! Records to and from DynamoDB items, with exactly the tutorial's attribute names and types
//! (see the table in DESIGN.md). Numbers are `N`, everything else `S`, the map's ids `SS`.
//!
//! mqtt_msg and mqtt_retain items also carry a message's MQTT v5 properties, each only when
//! present, so that a v3 message's item is exactly the tutorial's: `content_type` (S),
//! `payload_format` (N), `response_topic` (S), `correlation_data` (B), `user_properties`
//! (L of M {k: S, v: S}: a list keeps their order and repeated names) and `expires_at` (N,
//! Unix milliseconds).

use std::collections::HashMap;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::StoreError;
use crate::msgid::MsgId;
use crate::op::Table;
use crate::record::{
    AckedRecord, ClientRecord, MessageProps, MessageRecord, PAYLOAD_ENCODING_BASE64, SubRecord,
    payload_from_string, payload_to_string,
};

pub(crate) type Item = HashMap<String, AttributeValue>;

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// The key attribute names of a table: (hash, optional range).
pub(crate) fn key_names(table: Table) -> (&'static str, Option<&'static str>) {
    match table {
        Table::Client => ("clientid", None),
        Table::Sub => ("clientid", Some("topic")),
        Table::Retain => ("topic", None),
        Table::Msg => ("msgid", None),
        Table::TopicMsgMap => ("topic", None),
        Table::Acked => ("topic", Some("clientid")),
    }
}

pub(crate) fn client_item(r: &ClientRecord) -> Item {
    let mut item = HashMap::from([
        ("clientid".to_owned(), s(&r.clientid)),
        ("node".to_owned(), s(&r.node)),
        ("connect_state".to_owned(), n(r.connect_state)),
        ("online_at".to_owned(), n(r.online_at)),
        ("offline_at".to_owned(), n(r.offline_at)),
    ]);
    // An extra attribute, only when there is one: the tutorial's items stay as they are.
    if let Some(at) = r.session_expires_at {
        item.insert("session_expires_at".to_owned(), n(at));
    }
    if !r.awaiting_rel.is_empty() {
        item.insert("awaiting_rel".to_owned(), packet_id_set(&r.awaiting_rel));
    }
    item
}

/// Packet ids as a Number Set (never empty: DynamoDB has no empty set).
pub(crate) fn packet_id_set<'a>(ids: impl IntoIterator<Item = &'a u16>) -> AttributeValue {
    AttributeValue::Ns(ids.into_iter().map(u16::to_string).collect())
}

pub(crate) fn sub_item(r: &SubRecord) -> Item {
    HashMap::from([
        ("clientid".to_owned(), s(&r.clientid)),
        ("topic".to_owned(), s(&r.topic)),
        ("qos".to_owned(), n(r.qos)),
    ])
}

/// An mqtt_msg or mqtt_retain item (same attributes).
pub(crate) fn message_item(r: &MessageRecord) -> Item {
    let (payload, base64) = payload_to_string(&r.payload);
    let mut item = HashMap::from([
        ("msgid".to_owned(), s(r.msgid.encode())),
        ("topic".to_owned(), s(&r.topic)),
        ("sender".to_owned(), s(&r.sender)),
        ("qos".to_owned(), n(r.qos)),
        ("retain".to_owned(), n(u8::from(r.retain))),
        ("payload".to_owned(), s(payload)),
        ("arrived".to_owned(), n(r.arrived)),
    ]);
    if base64 {
        item.insert("payload_encoding".to_owned(), s(PAYLOAD_ENCODING_BASE64));
    }
    if let Some(p) = &r.props {
        props_item(p, &mut item);
    }
    item
}

/// DynamoDB's largest item: 400 KB, counting attribute names and values (UTF-8 bytes).
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// The size DynamoDB counts for an item, by its documented rules: each attribute's name
/// (UTF-8 bytes) plus its value: S its UTF-8 bytes, B its bytes, N one byte per two digits
/// plus one (zero: one byte; leading and trailing zeros counted, so never less than
/// DynamoDB counts), sets the sum of their
/// members, L and M 3 bytes plus one per element plus the elements (and M's names), BOOL and
/// NULL one byte.
pub fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn number_size(n: &str) -> usize {
    if !n.bytes().any(|b| (b'1'..=b'9').contains(&b)) {
        // Zero: one byte (as dynalite counts it).
        return 1;
    }
    let digits = n.bytes().filter(u8::is_ascii_digit).count();
    digits.div_ceil(2) + 1
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(s) => s.len(),
        AttributeValue::N(n) => number_size(n),
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Ss(ss) => ss.iter().map(String::len).sum(),
        AttributeValue::Ns(ns) => ns.iter().map(|n| number_size(n)).sum(),
        AttributeValue::Bs(bs) => bs.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(l) => 3 + l.iter().map(|e| 1 + value_size(e)).sum::<usize>(),
        AttributeValue::M(m) => {
            3 + m
                .iter()
                .map(|(k, e)| 1 + k.len() + value_size(e))
                .sum::<usize>()
        }
        // BOOL, NULL, and any type added to the SDK later (counted small).
        _ => 1,
    }
}

/// [`item_size`] of the mqtt_msg / mqtt_retain item of `r`, without building it (no payload
/// copy or base64 encoding): what `message_item(r)` would weigh.
pub fn message_item_size(r: &MessageRecord) -> usize {
    let payload = match std::str::from_utf8(&r.payload) {
        Ok(_) => r.payload.len(),
        // Standard base64 with padding, plus `payload_encoding`.
        Err(_) => {
            r.payload.len().div_ceil(3) * 4
                + "payload_encoding".len()
                + PAYLOAD_ENCODING_BASE64.len()
        }
    };
    let mut size = "msgid".len()
        + r.msgid.encode().len()
        + "topic".len()
        + r.topic.len()
        + "sender".len()
        + r.sender.len()
        + "qos".len()
        + number_size(&r.qos.to_string())
        + "retain".len()
        + number_size(&u8::from(r.retain).to_string())
        + "payload".len()
        + payload
        + "arrived".len()
        + number_size(&r.arrived.to_string());
    if let Some(p) = &r.props {
        let mut props = Item::new();
        props_item(p, &mut props);
        size += item_size(&props);
    }
    size
}

fn props_item(p: &MessageProps, item: &mut Item) {
    if let Some(v) = &p.content_type {
        item.insert("content_type".to_owned(), s(v));
    }
    if let Some(v) = p.payload_format {
        item.insert("payload_format".to_owned(), n(v));
    }
    if let Some(v) = &p.response_topic {
        item.insert("response_topic".to_owned(), s(v));
    }
    if let Some(v) = &p.correlation_data {
        item.insert(
            "correlation_data".to_owned(),
            AttributeValue::B(Blob::new(v.to_vec())),
        );
    }
    if !p.user_properties.is_empty() {
        let list = p
            .user_properties
            .iter()
            .map(|(k, v)| {
                AttributeValue::M(HashMap::from([
                    ("k".to_owned(), s(k)),
                    ("v".to_owned(), s(v)),
                ]))
            })
            .collect();
        item.insert("user_properties".to_owned(), AttributeValue::L(list));
    }
    if let Some(v) = p.expires_at_ms {
        item.insert("expires_at".to_owned(), n(v));
    }
}

/// The v5 properties of an mqtt_msg or mqtt_retain item (all optional).
fn props_from(table: Table, item: &Item) -> Result<MessageProps, StoreError> {
    let opt_s = |name: &str| -> Result<Option<String>, StoreError> {
        match item.get(name) {
            None => Ok(None),
            Some(_) => get_s(table, item, name).map(|v| Some(v.to_owned())),
        }
    };
    let opt_n = |name: &str| -> Result<Option<u64>, StoreError> {
        match item.get(name) {
            None => Ok(None),
            Some(_) => get_n(table, item, name).map(Some),
        }
    };
    let payload_format = match opt_n("payload_format")? {
        None => None,
        Some(v) => Some(
            u8::try_from(v).map_err(|_| bad(table, format!("payload_format {v} is not a byte")))?,
        ),
    };
    let correlation_data = match item.get("correlation_data") {
        None => None,
        Some(AttributeValue::B(b)) => Some(bytes::Bytes::copy_from_slice(b.as_ref())),
        Some(other) => return Err(bad(table, format!("correlation_data is not B: {other:?}"))),
    };
    let user_properties = match item.get("user_properties") {
        None => Vec::new(),
        Some(AttributeValue::L(list)) => list
            .iter()
            .map(|pair| {
                let AttributeValue::M(m) = pair else {
                    return Err(bad(table, format!("user_properties holds {pair:?}")));
                };
                Ok((
                    get_s(table, m, "k")?.to_owned(),
                    get_s(table, m, "v")?.to_owned(),
                ))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(bad(table, format!("user_properties is not L: {other:?}"))),
    };
    Ok(MessageProps {
        payload_format,
        content_type: opt_s("content_type")?,
        response_topic: opt_s("response_topic")?,
        correlation_data,
        user_properties,
        expires_at_ms: opt_n("expires_at")?,
    })
}

pub(crate) fn acked_item(r: &AckedRecord) -> Item {
    HashMap::from([
        ("topic".to_owned(), s(&r.topic)),
        ("clientid".to_owned(), s(&r.clientid)),
        ("msgid".to_owned(), s(r.msgid.encode())),
    ])
}

pub(crate) fn key1(name: &str, v: impl Into<String>) -> Item {
    HashMap::from([(name.to_owned(), s(v))])
}

pub(crate) fn key2(a: &str, va: impl Into<String>, b: &str, vb: impl Into<String>) -> Item {
    HashMap::from([(a.to_owned(), s(va)), (b.to_owned(), s(vb))])
}

/// A batch-unique string for an item's key, to match unprocessed requests to their ops.
pub(crate) fn key_string(table: Table, item: &Item) -> String {
    let (h, r) = key_names(table);
    let part = |name: &str| match item.get(name) {
        Some(AttributeValue::S(v)) => v.as_str(),
        _ => "",
    };
    match r {
        Some(r) => format!("{}\u{0}{}\u{0}{}", table.base_name(), part(h), part(r)),
        None => format!("{}\u{0}{}", table.base_name(), part(h)),
    }
}

fn bad(table: Table, reason: String) -> StoreError {
    StoreError::BadItem {
        table: table.base_name().to_owned(),
        reason,
    }
}

fn get_s<'a>(table: Table, item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v),
        Some(other) => Err(bad(table, format!("{name} is not S: {other:?}"))),
        None => Err(bad(table, format!("missing {name}"))),
    }
}

/// Missing numbers read as 0: an UpdateItem on a missing client creates a partial item.
fn get_n<T: std::str::FromStr + Default>(
    table: Table,
    item: &Item,
    name: &str,
) -> Result<T, StoreError> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| bad(table, format!("{name} is not a valid number: {v:?}"))),
        Some(other) => Err(bad(table, format!("{name} is not N: {other:?}"))),
        None => Ok(T::default()),
    }
}

fn get_msgid(table: Table, item: &Item) -> Result<MsgId, StoreError> {
    let v = get_s(table, item, "msgid")?;
    MsgId::decode(v).map_err(|e| bad(table, e.to_string()))
}

pub(crate) fn client_from(item: &Item) -> Result<ClientRecord, StoreError> {
    let t = Table::Client;
    Ok(ClientRecord {
        clientid: get_s(t, item, "clientid")?.to_owned(),
        node: get_s(t, item, "node").unwrap_or_default().to_owned(),
        connect_state: get_n(t, item, "connect_state")?,
        online_at: get_n(t, item, "online_at")?,
        offline_at: get_n(t, item, "offline_at")?,
        session_expires_at: match item.get("session_expires_at") {
            None => None,
            Some(_) => Some(get_n(t, item, "session_expires_at")?),
        },
        awaiting_rel: match item.get("awaiting_rel") {
            None => Default::default(),
            Some(AttributeValue::Ns(ids)) => ids
                .iter()
                .map(|v| {
                    v.parse()
                        .map_err(|_| bad(t, format!("awaiting_rel holds {v:?}, not a packet id")))
                })
                .collect::<Result<_, _>>()?,
            Some(other) => return Err(bad(t, format!("awaiting_rel is not NS: {other:?}"))),
        },
    })
}

pub(crate) fn sub_from(item: &Item) -> Result<SubRecord, StoreError> {
    let t = Table::Sub;
    Ok(SubRecord {
        clientid: get_s(t, item, "clientid")?.to_owned(),
        topic: get_s(t, item, "topic")?.to_owned(),
        qos: get_n(t, item, "qos")?,
    })
}

pub(crate) fn message_from(table: Table, item: &Item) -> Result<MessageRecord, StoreError> {
    let encoding = match item.get("payload_encoding") {
        Some(AttributeValue::S(v)) => Some(v.as_str()),
        _ => None,
    };
    let payload = payload_from_string(get_s(table, item, "payload")?, encoding)
        .map_err(|reason| bad(table, reason))?;
    Ok(MessageRecord {
        msgid: get_msgid(table, item)?,
        topic: get_s(table, item, "topic")?.to_owned(),
        sender: get_s(table, item, "sender").unwrap_or_default().to_owned(),
        qos: get_n(table, item, "qos")?,
        retain: get_n::<u8>(table, item, "retain")? != 0,
        payload,
        arrived: get_n(table, item, "arrived")?,
        props: props_from(table, item)?.boxed(),
    })
}

pub(crate) fn acked_msgid_from(item: &Item) -> Result<MsgId, StoreError> {
    get_msgid(Table::Acked, item)
}

/// The `MsgId` string set of a map item, decoded; ids that do not decode are skipped.
pub(crate) fn map_ids_from(item: &Item) -> Vec<MsgId> {
    match item.get("MsgId") {
        Some(AttributeValue::Ss(ids)) => ids
            .iter()
            .filter_map(|s| match MsgId::decode(s) {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(error = %e, "mqtt_topic_msg_map holds an id that does not decode; skipped");
                    None
                }
            })
            .collect(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn record(props: Option<Box<MessageProps>>) -> MessageRecord {
        MessageRecord {
            msgid: MsgId(0x0005_f3a2_1b2c_3d4e_0102_0304_0506_0708),
            topic: "t/1".into(),
            sender: "s".into(),
            qos: 1,
            retain: true,
            payload: Bytes::from_static(b"p"),
            arrived: 1_700_000_000,
            props,
        }
    }

    #[test]
    fn properties_round_trip_and_only_when_present() {
        let props = MessageProps {
            payload_format: Some(0),
            content_type: Some("".into()),
            response_topic: Some("r".into()),
            correlation_data: Some(Bytes::from_static(&[0, 0xff])),
            user_properties: vec![("b".into(), "1".into()), ("a".into(), "2".into())],
            expires_at_ms: Some(1_800_000_000_123),
        };
        let r = record(props.boxed());
        let item = message_item(&r);
        assert_eq!(item.get("payload_format"), Some(&n(0)));
        assert_eq!(message_from(Table::Retain, &item).expect("reads"), r);

        let plain = message_item(&record(None));
        let mut names: Vec<&str> = plain.keys().map(String::as_str).collect();
        names.sort_unstable();
        assert_eq!(
            names,
            [
                "arrived", "msgid", "payload", "qos", "retain", "sender", "topic"
            ]
        );
        assert_eq!(message_from(Table::Msg, &plain).expect("reads").props, None);
    }

    #[test]
    fn message_item_size_matches_the_item() {
        let props = MessageProps {
            payload_format: Some(1),
            content_type: Some("text/é".into()),
            response_topic: Some("r/1".into()),
            correlation_data: Some(Bytes::from_static(&[0, 0xff, 7])),
            user_properties: vec![("k".into(), "v".into()), ("k2".into(), "".into())],
            expires_at_ms: Some(1_800_000_000_123),
        };
        for (payload, props) in [
            (Bytes::from_static(b"plain text"), None),
            (Bytes::from_static(&[0xff, 0xfe, 0, 1]), None),
            (Bytes::from(vec![0xffu8; 1000]), props.clone().boxed()),
            (Bytes::new(), props.boxed()),
        ] {
            let r = MessageRecord {
                payload,
                props,
                ..record(None)
            };
            assert_eq!(message_item_size(&r), item_size(&message_item(&r)));
        }
        // A 300 KiB binary payload weighs 400 KiB once base64-encoded: over the limit.
        let big = MessageRecord {
            payload: Bytes::from(vec![0x80u8; 300 * 1024]),
            ..record(None)
        };
        assert!(message_item_size(&big) > MAX_ITEM_BYTES);
    }

    #[test]
    fn wrong_property_types_are_errors() {
        let mut item = message_item(&record(None));
        item.insert("correlation_data".into(), s("not bytes"));
        assert!(message_from(Table::Msg, &item).is_err());
        let mut item = message_item(&record(None));
        item.insert("payload_format".into(), n(300));
        assert!(message_from(Table::Msg, &item).is_err());
    }
}
