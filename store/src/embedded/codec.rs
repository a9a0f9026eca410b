//! Value encoding of the embedded tables: postcard (compact varints, no field names) over
//! private serde structs, so the on-disk shape is decoupled from the public record types.
//! Field order is the format: append new fields at the end only (with `#[serde(default)]`).

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::StoreError;
use crate::msgid::MsgId;
use crate::record::{ClientRecord, MessageRecord};

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

pub(super) fn encode_client(r: &ClientRecord) -> Vec<u8> {
    // Serializing these plain structs into a Vec cannot fail.
    postcard::to_stdvec(&ClientRef {
        node: &r.node,
        connect_state: r.connect_state,
        online_at: r.online_at,
        offline_at: r.offline_at,
    })
    .unwrap_or_default()
}

pub(super) fn decode_client(clientid: &str, bytes: &[u8]) -> Result<ClientRecord, StoreError> {
    let c: ClientOwned = postcard::from_bytes(bytes).map_err(|e| StoreError::BadItem {
        table: "mqtt_client".into(),
        reason: e.to_string(),
    })?;
    Ok(ClientRecord {
        clientid: clientid.to_owned(),
        node: c.node,
        connect_state: c.connect_state,
        online_at: c.online_at,
        offline_at: c.offline_at,
    })
}

pub(super) fn encode_msg(r: &MessageRecord) -> Vec<u8> {
    postcard::to_stdvec(&MsgRef {
        msgid: r.msgid.0,
        topic: &r.topic,
        sender: &r.sender,
        qos: r.qos,
        retain: r.retain,
        payload: &r.payload,
        arrived: r.arrived,
    })
    .unwrap_or_default()
}

pub(super) fn decode_msg(table: &str, bytes: &[u8]) -> Result<MessageRecord, StoreError> {
    let m: MsgOwned = postcard::from_bytes(bytes).map_err(|e| StoreError::BadItem {
        table: table.into(),
        reason: e.to_string(),
    })?;
    Ok(MessageRecord {
        msgid: MsgId(m.msgid),
        topic: m.topic,
        sender: m.sender,
        qos: m.qos,
        retain: m.retain,
        payload: Bytes::from(m.payload),
        arrived: m.arrived,
    })
}
