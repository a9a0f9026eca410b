//! dynamq-store: dynamq's persistent state, the six tables of EMQX's DynamoDB backend
//! (mqtt_client, mqtt_sub, mqtt_retain, mqtt_msg, mqtt_topic_msg_map, mqtt_acked), on DynamoDB
//! or on an embedded redb file, with the same data model.
//!
//! # Modules, bottom up
//! - [`msgid`]: the EMQX-compatible 128-bit [`MsgId`] and its generator and encoding.
//! - [`record`]: the items of the tables; [`op`]: the write ops and the key each addresses.
//! - [`store`]: the batch-first [`Store`] trait; [`any`]: [`AnyStore`], the enum of the two
//!   stores ([`dynamo::DynamoStore`], [`embedded::EmbeddedStore`]).
//! - [`writer`]: one task per store that queues (bounded), coalesces, batches (25 for
//!   DynamoDB's BatchWriteItem), runs `pool_size` requests, retries with backoff and counts.
//! - [`tables`]: `create_tables` / `check_tables` for `dynamq tables create|check`.
//! - [`users`]: users and ACL rules in the store (mqtt_user, mqtt_acl), for `dynamq user|acl`
//!   and the broker's `auth.user_store` / `auth.acl_store`.
//! - [`binding`]: which [`Event`] runs which [`Action`] ([`Binding`]: EMQX's "hook");
//!   [`backend_conf`]: the tutorial's `backend.dynamo.*` file, read into bindings.
//! - [`actions`]: [`Actions`], what the broker calls on each event.
//! - [`secret`]: [`Secret`], the type of the credentials, whose `Debug` redacts them.
//!
//! # The broker's API: [`Actions`]
//! ```text
//! let conf = BackendConf::from_file(path)?;               // optional: tutorial-format hooks
//! let bindings = if conf.bindings.is_empty() { default_bindings() } else { conf.bindings.clone() };
//! let store = StoreConfig::Dynamo(conf.dynamo_config("pool1")?)   // or Embedded { data_dir }
//! let actions = Arc::new(Actions::new(ActionsConfig::new(store, node_name), bindings).await?);
//! ```
//! Call from the connection/session tasks (every method takes `&self`; share an `Arc`):
//!
//! | event | call | returns |
//! |---|---|---|
//! | client.connected | `client_connected(clientid, node, now_secs)` | `()`; with a fetch function configured it first reads the client's mqtt_client item: stored messages older than its last disconnect (all, for a client never seen) are not replayed to it |
//! | client.disconnected | `client_disconnected(clientid, now_secs)` | `()` |
//! | session.created (clean start = false, or any new session) | `session_created(clientid)` | `Vec<(filter, qos)>` to restore |
//! | start | `retained_messages()` | with on_retain_lookup, every retained message, for the broker's retained index (which serves subscriptions) |
//! | session.subscribed | `subscribed(clientid, filter, qos, is_new)` | the stored messages to replay now, in order |
//! | (after queueing them) | `replayed(clientid, filter, msgids)` | `()`: these are not replayed to the subscription again |
//! | session.unsubscribed | `unsubscribed(clientid, filter)` | `()` |
//! | message.publish | `message_published(PublishedMessage{topic, sender, qos, retain, payload, props})` | the message's [`MsgId`] |
//! | message.acked (PUBACK / PUBCOMP) | `message_acked(clientid, topic, msgid)` | `()` |
//! | shutdown | `flush()` then `close()` | |
//!
//! - For each restored subscription from `session_created`, call `subscribed(.., is_new:
//!   true)`: it replays stored messages; calling it again when the client re-subscribes is
//!   safe (no duplicate replay of what `replayed` was told was queued).
//! - Keep the [`MsgId`] returned by `message_published` with the message and hand it back in
//!   `message_acked` (with the message's topic) when a subscriber acknowledges it.
//! - Send replayed messages ([`record::MessageRecord`]: topic, payload, qos, sender, msgid)
//!   at min(subscription qos, message qos), without the RETAIN flag.
//! - Writes return once queued (they wait only when the queue is full, see
//!   [`actions::OverflowPolicy`]); lookups are awaited. `stats()` gives the counters to export.
//! - The stored-message index is a cache: `refresh_indexes()` reloads it (multi-node).
//!
//! Errors are [`actions::ActionsError`]: a failed lookup (store unreachable) or a stopped
//! writer. Write failures are never returned to the event's caller: the writer retries, and
//! counts and logs what it gives up on.

pub mod actions;
pub mod any;
pub mod backend_conf;
pub mod binding;
pub mod dynamo;
pub mod embedded;
pub mod error;
pub mod msgid;
pub mod op;
pub mod record;
pub mod secret;
mod shrink;
pub mod store;
pub mod tables;
pub mod users;
pub mod writer;

pub use actions::{
    Actions, ActionsConfig, ActionsError, ActionsStats, OverflowPolicy, PublishedMessage,
    StoreConfig,
};
pub use any::AnyStore;
pub use binding::{Action, Binding, Event, default_bindings};
pub use error::StoreError;
pub use msgid::{MsgId, MsgIdGen};
pub use secret::Secret;
pub use store::Store;
pub use writer::{Durable, NotStored, Writer, WriterConfig, WriterStats};
