//! Counters of what the broker did and dropped. Each overflow policy has one here, so that a
//! drop is never silent.

use std::sync::atomic::{AtomicU64, Ordering};

macro_rules! counters {
    ($($name:ident, $inc:ident, $doc:literal;)*) => {
        #[derive(Debug, Default)]
        pub struct Metrics {
            $(#[doc = $doc] pub $name: AtomicU64,)*
        }
        impl Metrics {
            $(pub fn $inc(&self) { self.$name.fetch_add(1, Ordering::Relaxed); })*
            /// (name, help, value) for each counter, for the metrics endpoint.
            pub fn snapshot(&self) -> Vec<(&'static str, &'static str, u64)> {
                vec![$((stringify!($name), $doc, self.$name.load(Ordering::Relaxed)),)*]
            }
        }
    };
}

counters! {
    connections_accepted, inc_connections_accepted, "TCP or WebSocket connections accepted.";
    connects, inc_connects, "CONNECTs accepted (CONNACK 0).";
    connects_refused, inc_connects_refused, "CONNECTs refused with an error CONNACK.";
    protocol_errors, inc_protocol_errors, "Connections closed for a malformed packet or a protocol violation.";
    messages_received, inc_messages_received, "PUBLISH packets received from clients.";
    messages_sent, inc_messages_sent, "PUBLISH packets sent to clients.";
    dropped_queue_full, inc_dropped_queue_full, "Messages dropped because a session queue was full.";
    dropped_qos0_evicted, inc_dropped_qos0_evicted, "QoS 0 messages dropped from a full session queue to make room for a QoS 1/2 message.";
    dropped_qos0_offline, inc_dropped_qos0_offline, "QoS 0 messages not queued for a client that is away.";
    dropped_expired, inc_dropped_expired, "Messages dropped because their expiry interval ran out.";
    dropped_too_large, inc_dropped_too_large, "Messages not sent because they exceed the client's Maximum Packet Size.";
    wills_published, inc_wills_published, "Will messages published.";
    takeovers, inc_takeovers, "Connections closed because the same client id connected again.";
    flow_control_pauses, inc_flow_control_pauses, "Times a publisher was paused because a subscriber's queue was full (flow control).";
    flow_control_timeouts, inc_flow_control_timeouts, "Flow-control pauses that ran out (flow_control_ms) with the subscriber taking nothing from its queue: it was marked stalled.";
    slow_consumer_disconnects, inc_slow_consumer_disconnects, "Subscribers disconnected because their full queue saw no progress for slow_consumer_timeout_ms.";
    limit_refusals, inc_limit_refusals, "PUBLISH or SUBSCRIBE refused by a configured limit (topic levels, subscriptions per session).";
    publishes_not_stored, inc_publishes_not_stored, "QoS 1/2 messages the store refused (for good in sync durability: v5 PUBACK 0x80; too large for a DynamoDB item: v5 0x97) and not acknowledged as taken; a v3 client's connection is closed unacknowledged.";
    store_read_timeouts, inc_store_read_timeouts, "Store reads (session lookup at CONNECT, stored-message fetch on SUBSCRIBE) that missed store.read_timeout_ms: the CONNACK or SUBACK went without them, and they were acted on when they completed.";
    hibernations, inc_hibernations, "Times an idle connection hibernated (gave up its task until woken).";
    auth_failures, inc_auth_failures, "CONNECTs refused for a wrong or unknown user name or password.";
    tls_handshake_failures, inc_tls_handshake_failures, "TLS handshakes that failed (no client certificate or one the CA does not sign where one is required, not TLS, timed out).";
    auth_anonymous_refused, inc_auth_anonymous_refused, "CONNECTs without a user name refused (anonymous clients not allowed).";
    acl_denied_publish, inc_acl_denied_publish, "PUBLISHes the ACL did not let their client write (dropped; v5: reason 0x87).";
    acl_denied_subscribe, inc_acl_denied_subscribe, "Subscriptions the ACL refused (SUBACK 0x80 / v5 0x87).";
    acl_denied_deliveries, inc_acl_denied_deliveries, "Messages not delivered to a subscriber the ACL does not let read their topic.";
    acl_denied_wills, inc_acl_denied_wills, "Will messages not published: the ACL does not let their client write the topic.";
    shared_redispatched, inc_shared_redispatched, "Messages a member of a shared subscription left unfinished (queued, or QoS 1 unacknowledged) and that were queued for another member of its group.";
    shared_dropped_no_member, inc_shared_dropped_no_member, "Messages a member of a shared subscription left unfinished when its session ended, dropped because its group had no other member.";
    shared_qos2_lost, inc_shared_qos2_lost, "QoS 2 messages sent to a member of a shared subscription whose session ended before its PUBREC: not sent to another member [MQTT-4.8.2-5].";
    clients_kicked, inc_clients_kicked, "Clients disconnected (and their sessions ended) through the HTTP API.";
    bytes_received, inc_bytes_received, "Bytes read from connected clients (after CONNECT).";
    bytes_sent, inc_bytes_sent, "Bytes written to connected clients (after CONNACK, but the last packets of a closing connection).";
}

impl Metrics {
    /// Adds `n` to `counter` (one of this struct's).
    pub fn add(&self, counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` bytes read from a client.
    pub fn add_bytes_received(&self, n: usize) {
        self.bytes_received.fetch_add(n as u64, Ordering::Relaxed);
    }

    /// Counts `n` bytes written to a client.
    pub fn add_bytes_sent(&self, n: usize) {
        self.bytes_sent.fetch_add(n as u64, Ordering::Relaxed);
    }
}
