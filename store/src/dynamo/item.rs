//! Records to and from DynamoDB items, with exactly the tutorial's attribute names and types
//! (see the table in DESIGN.md). Numbers are `N`, everything else `S`, the map's ids `SS`.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;

use crate::error::StoreError;
use crate::msgid::MsgId;
use crate::op::Table;
use crate::record::{
    AckedRecord, ClientRecord, MessageRecord, PAYLOAD_ENCODING_BASE64, SubRecord,
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
    HashMap::from([
        ("clientid".to_owned(), s(&r.clientid)),
        ("node".to_owned(), s(&r.node)),
        ("connect_state".to_owned(), n(r.connect_state)),
        ("online_at".to_owned(), n(r.online_at)),
        ("offline_at".to_owned(), n(r.offline_at)),
    ])
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
    item
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
