//! Hooks: broker events (client connected, session subscribed, message published, ...)
//! turned into the configured store actions of `dynamq_store::actions::Backend`.
//!
//! With no store (`store.kind = "none"`) every hook is a no-op and the broker is a plain
//! in-memory broker. A store error never reaches the client: it is logged with its cause and
//! counted (`store_errors`), and MQTT traffic goes on.
//!
//! Each store call is boxed: the store's futures are large (the AWS SDK's especially), and
//! inlined they would make every connection task that large, idle or not.

pub mod setup;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dynamq_codec::{PublishProperties, QoS};
use dynamq_store::actions::{Backend, BackendError, BackendStats, PublishedMessage};
use dynamq_store::hooks::HookFunction;
use dynamq_store::record::MessageRecord;

use crate::message::{ClientId, Message};

/// A message the store gave back to deliver on subscribe.
pub struct StoredDelivery {
    pub msg: Arc<Message>,
    /// From mqtt_retain (send with RETAIN set), as opposed to mqtt_msg.
    pub retained: bool,
}

#[derive(Default)]
pub struct Hooks {
    backend: Option<Arc<Backend>>,
    /// Written to mqtt_client.node.
    node: String,
    /// Store operations that failed (each also logged).
    errors: AtomicU64,
    /// on_retain_lookup is configured: the store delivers retained messages on subscribe.
    retained_lookup: bool,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Hooks {
    /// No actions: an in-memory broker.
    pub fn none() -> Hooks {
        Hooks::default()
    }

    pub fn with_backend(backend: Backend, node: &str) -> Hooks {
        let retained_lookup = backend
            .hooks()
            .iter()
            .any(|h| h.function == HookFunction::OnRetainLookup);
        Hooks {
            retained_lookup,
            backend: Some(Arc::new(backend)),
            node: node.to_string(),
            errors: AtomicU64::new(0),
        }
    }

    pub fn backend(&self) -> Option<&Arc<Backend>> {
        self.backend.as_ref()
    }

    /// True when retained messages are delivered on subscribe from the store
    /// (on_retain_lookup), so the broker's own retained index is neither kept nor read.
    pub fn handles_retained_lookup(&self) -> bool {
        self.retained_lookup
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Option<BackendStats> {
        self.backend.as_ref().map(|b| b.stats())
    }

    fn failed(&self, what: &str, client: &str, e: &BackendError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(client, "store action {what} failed: {e}");
    }

    /// client.connected
    pub async fn client_connected(&self, client: &ClientId) {
        let Some(b) = &self.backend else { return };
        if let Err(e) = Box::pin(b.client_connected(client.as_str(), &self.node, now_secs())).await
        {
            self.failed("client.connected", client.as_str(), &e);
        }
    }

    /// client.disconnected
    pub async fn client_disconnected(&self, client: &ClientId) {
        let Some(b) = &self.backend else { return };
        if let Err(e) = Box::pin(b.client_disconnected(client.as_str(), now_secs())).await {
            self.failed("client.disconnected", client.as_str(), &e);
        }
    }

    /// session.created: the stored subscriptions of the client (on_subscribe_lookup).
    pub async fn session_created(&self, client: &ClientId) -> Vec<(String, QoS)> {
        let Some(b) = &self.backend else {
            return Vec::new();
        };
        match Box::pin(b.session_created(client.as_str())).await {
            Ok(subs) => subs
                .into_iter()
                .filter_map(|(filter, qos)| QoS::from_u8(qos).map(|q| (filter, q)))
                .collect(),
            Err(e) => {
                self.failed("session.created", client.as_str(), &e);
                Vec::new()
            }
        }
    }

    /// session.subscribed: stores the subscription and returns the retained and stored
    /// messages to deliver, in order.
    pub async fn session_subscribed(
        &self,
        client: &ClientId,
        filter: &str,
        qos: QoS,
        is_new: bool,
    ) -> Vec<StoredDelivery> {
        let Some(b) = &self.backend else {
            return Vec::new();
        };
        match Box::pin(b.subscribed(client.as_str(), filter, qos as u8, is_new)).await {
            Ok(ds) => ds
                .into_iter()
                .map(|d| StoredDelivery {
                    msg: Arc::new(message_from_record(d.message)),
                    retained: d.retained,
                })
                .collect(),
            Err(e) => {
                self.failed("session.subscribed", client.as_str(), &e);
                Vec::new()
            }
        }
    }

    /// session.unsubscribed
    pub async fn session_unsubscribed(&self, client: &ClientId, filter: &str) {
        let Some(b) = &self.backend else { return };
        if let Err(e) = Box::pin(b.unsubscribed(client.as_str(), filter)).await {
            self.failed("session.unsubscribed", client.as_str(), &e);
        }
    }

    /// message.publish: stores the message as configured and gives it its msgid.
    pub async fn message_published(&self, msg: &Arc<Message>) {
        let Some(b) = &self.backend else { return };
        let published = PublishedMessage {
            topic: msg.topic_str(),
            sender: msg.sender.as_str(),
            qos: msg.qos as u8,
            retain: msg.retain,
            payload: &msg.payload,
        };
        match Box::pin(b.message_published(published)).await {
            Ok(id) => {
                let _ = msg.msgid.set(id);
            }
            Err(e) => self.failed("message.publish", msg.sender.as_str(), &e),
        }
    }

    /// message.acked: the client acknowledged a message that has a msgid.
    pub async fn message_acked(&self, client: &ClientId, msg: &Arc<Message>) {
        let Some(b) = &self.backend else { return };
        let Some(id) = msg.msgid.get() else { return };
        if let Err(e) = Box::pin(b.message_acked(client.as_str(), msg.topic_str(), *id)).await {
            self.failed("message.acked", client.as_str(), &e);
        }
    }

    /// Waits until every store write submitted so far is durable (shutdown).
    pub async fn flush(&self) {
        let Some(b) = &self.backend else { return };
        if let Err(e) = b.flush().await {
            self.failed("flush", "-", &e);
        }
    }
}

/// A stored message as the router carries it.
fn message_from_record(r: MessageRecord) -> Message {
    let msgid = std::sync::OnceLock::new();
    let _ = msgid.set(r.msgid);
    Message {
        topic: Bytes::from(r.topic),
        payload: r.payload,
        qos: QoS::from_u8(r.qos).unwrap_or(QoS::AtLeastOnce),
        retain: r.retain,
        properties: PublishProperties::default(),
        expires_at: None,
        sender: ClientId::new(&r.sender),
        msgid,
    }
}
