//! dynamq: an MQTT 3.1.1 / 5.0 broker whose state lives in DynamoDB or an embedded store.
//!
//! The layers, each a module, depend downwards only:
//! - `dynamq_codec` (its own crate): packets to and from bytes, no I/O.
//! - `transport`: TCP, TLS and WebSocket listeners; a WebSocket becomes a byte stream; a
//!   verified client certificate's CN can be the connection's user name.
//! - `connection`: one task per client: CONNECT handshake, keepalive, QoS flows, batched
//!   writes, will messages.
//! - `session`: what outlives a connection: subscriptions, the bounded message queue,
//!   in-flight messages; and the registry of sessions by client id.
//! - `router`: the subscription trie and the retained messages; it hands what matches to its
//!   caller and knows nothing of connections.
//! - `persistence`: broker events handed to the store's actions, and what the store gives
//!   back.
//! - `broker`: the shared state and the operations that span modules (deliver, publish, end
//!   session).
//! - `server`: listeners up, shutdown down.
//! - `http`: the HTTP endpoints: metrics, health, and the REST API (`/api/v5`: clients,
//!   subscriptions, retained messages, publish).
//! - `sys`: the `$SYS/broker/...` topics, published through the broker like any message.
//! - `config`: the TOML configuration; `secrets`: the warning for a file that holds a
//!   secret and that other users can read.
//! - `auth`: who may connect (a Mosquitto password file) and what they may publish and
//!   read (a Mosquitto ACL file).

pub mod auth;
pub mod broker;
pub mod config;
pub(crate) mod connection;
pub(crate) mod http;
pub(crate) mod log_limit;
pub(crate) mod message;
pub mod metrics;
pub mod persistence;
pub(crate) mod router;
pub mod secrets;
pub mod server;
pub(crate) mod session;
pub(crate) mod sys;
pub(crate) mod transport;
