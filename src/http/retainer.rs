//! The REST API on messages: the retained messages (`/api/v5/retainer/messages`,
//! `/api/v5/retainer/message/{topic}` to get or delete one) and `POST /api/v5/publish`.
//! Deleting and publishing go through `Broker::publish`, as a client's PUBLISH does, so
//! the store and the subscribers see them the same way.

use std::sync::Arc;
use std::time::Instant;

use dynamq_store::msgid::MsgId;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use dynamq_codec::{PublishProperties, QoS, topic};
use serde::Deserialize;
use serde_json::{Value, json};

use super::json::{self, Query};
use crate::broker::Broker;
use crate::message::{ClientId, Message};

/// The `sender` of messages published through the API (for No Local and the store).
const SENDER: &str = "http_api";

/// A retained message in EMQX's retainer shape; the payload in base64.
fn retained_json(m: &Message) -> Value {
    json!({
        "topic": m.topic_str(),
        "qos": m.qos as u8,
        "payload": B64.encode(&m.payload),
        "from_clientid": m.sender.as_str(),
        "msgid": m.msgid.map(|id| id.to_string()),
    })
}

/// `GET /api/v5/retainer/messages?page=&limit=`: sorted by topic.
pub(super) async fn list(State(broker): State<Arc<Broker>>, RawQuery(q): RawQuery) -> Response {
    let page = match Query::parse(q.as_deref()).page() {
        Ok(p) => p,
        Err(m) => return json::bad_request(&m),
    };
    let mut all = broker.router.retained.all();
    all.sort_unstable_by(|a, b| a.topic.cmp(&b.topic));
    let items = all.iter().map(|m| retained_json(m)).collect();
    json::reply(StatusCode::OK, &page.of(items))
}

fn not_found() -> Response {
    json::error(
        StatusCode::NOT_FOUND,
        "NOT_FOUND",
        "Viewed message not found",
    )
}

/// `GET /api/v5/retainer/message/{topic}` (the topic URL-encoded, `a%2Fb`, or as it is).
pub(super) async fn get_one(
    State(broker): State<Arc<Broker>>,
    Path(topic): Path<String>,
) -> Response {
    match broker.router.retained.get(&topic) {
        Some(m) if !m.is_expired(Instant::now()) => json::reply(StatusCode::OK, &retained_json(&m)),
        _ => not_found(),
    }
}

/// `DELETE /api/v5/retainer/message/{topic}`: as if an empty retained message were
/// published on the topic (the store deletes it too). 204, or 404 if there is none.
pub(super) async fn delete(
    State(broker): State<Arc<Broker>>,
    Path(topic): Path<String>,
) -> Response {
    if broker.router.retained.get(&topic).is_none() {
        return not_found();
    }
    let msgid = broker.persistence.new_msgid();
    broker.publish(message(&topic, Bytes::new(), QoS::AtMostOnce, true, msgid));
    StatusCode::NO_CONTENT.into_response()
}

fn message(
    topic: &str,
    payload: Bytes,
    qos: QoS,
    retain: bool,
    msgid: Option<MsgId>,
) -> Arc<Message> {
    Arc::new(Message {
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        payload,
        qos,
        retain,
        properties: PublishProperties::default(),
        expires_at: None,
        sender: ClientId::new(SENDER),
        msgid,
    })
}

/// The body of `POST /api/v5/publish` (EMQX's field names).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishRequest {
    topic: String,
    #[serde(default)]
    payload: String,
    #[serde(default)]
    qos: u8,
    #[serde(default)]
    retain: bool,
    /// `plain` (the default) or `base64`: how `payload` is written.
    #[serde(default)]
    payload_encoding: Option<String>,
}

/// `POST /api/v5/publish`: `{"topic", "payload", "qos", "retain", "payload_encoding"}`;
/// answers `{"id": MSGID}` (the store's id; `null` without a store).
pub(super) async fn publish(State(broker): State<Arc<Broker>>, body: Bytes) -> Response {
    let req: PublishRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return json::bad_request(&format!("invalid body: {e}")),
    };
    if !topic::valid_topic_name(&req.topic) {
        return json::bad_request("topic must be a non-empty topic name without + or #");
    }
    let Some(qos) = QoS::from_u8(req.qos) else {
        return json::bad_request("qos must be 0, 1 or 2");
    };
    let payload = match req.payload_encoding.as_deref() {
        None | Some("plain") => Bytes::from(req.payload),
        Some("base64") => match B64.decode(req.payload.as_bytes()) {
            Ok(p) => Bytes::from(p),
            Err(_) => return json::bad_request("payload is not valid base64"),
        },
        Some(_) => return json::bad_request("payload_encoding must be plain or base64"),
    };
    if payload.len() > broker.config.mqtt.max_packet_size as usize {
        return json::bad_request("payload larger than mqtt.max_packet_size");
    }
    let msg = message(
        &req.topic,
        payload,
        qos,
        req.retain,
        broker.persistence.new_msgid(),
    );
    broker.publish(msg.clone());
    let id = msg.msgid.map(|id| id.to_string());
    json::reply(StatusCode::OK, &json!({ "id": id }))
}
