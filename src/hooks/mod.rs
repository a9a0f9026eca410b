//! Hooks: broker events (client connected, session subscribed, message published, ...)
//! turned into the configured store actions.
//!
//! With no store configured every hook is a no-op, and the broker behaves as a plain
//! in-memory broker.

use std::sync::Arc;

use dynamq_codec::QoS;

use crate::message::{ClientId, Message};

#[derive(Default)]
pub struct Hooks {}

impl Hooks {
    /// No actions: an in-memory broker.
    pub fn none() -> Hooks {
        Hooks {}
    }

    /// client.connected
    pub async fn client_connected(&self, _client: &ClientId) {}

    /// client.disconnected
    pub async fn client_disconnected(&self, _client: &ClientId) {}

    /// session.created: the subscriptions to restore (on_subscribe_lookup).
    pub async fn session_created(&self, _client: &ClientId) -> Vec<(String, QoS)> {
        Vec::new()
    }

    /// session.subscribed: stored messages to deliver (on_message_fetch_for_queue).
    pub async fn session_subscribed(
        &self,
        _client: &ClientId,
        _filter: &str,
        _qos: QoS,
        _is_new: bool,
    ) -> Vec<Arc<Message>> {
        Vec::new()
    }

    /// session.unsubscribed
    pub async fn session_unsubscribed(&self, _client: &ClientId, _filter: &str) {}

    /// message.publish
    pub async fn message_published(&self, _msg: &Arc<Message>) {}

    /// message.acked
    pub async fn message_acked(&self, _client: &ClientId, _msg: &Arc<Message>) {}

    /// Waits until every store write submitted so far is durable (shutdown).
    pub async fn flush(&self) {}
}
