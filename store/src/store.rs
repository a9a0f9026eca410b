//! The store interface both stores implement ([`crate::dynamo::DynamoStore`],
//! [`crate::embedded::EmbeddedStore`]; [`crate::any::AnyStore`] is either).
//!
//! Batch-first: writes arrive as a batch of ops on distinct keys (the writer coalesces before
//! calling), at most 25 whole-item writes plus the UpdateItem-style ops, so DynamoDB can use one
//! BatchWriteItem and the embedded store one transaction (group commit). Reads are what the
//! actions await: they go straight to the store.

use std::future::Future;

use crate::error::StoreError;
use crate::msgid::MsgId;
use crate::op::WriteOp;
use crate::record::{ClientRecord, MessageRecord, RetainRecord, SubRecord};

/// Ops of a batch that did not apply, and why. Ops not listed in any failure applied.
#[derive(Debug)]
pub struct WriteFailure {
    pub ops: Vec<WriteOp>,
    pub error: StoreError,
}

/// A store (DynamoDB or embedded). Native `async fn`s with `Send` futures; [`crate::any::AnyStore`] gives one
/// concrete type.
pub trait Store: Send + Sync + 'static {
    /// Applies a batch of ops on distinct keys; returns the ops that failed (empty: all
    /// applied and durable).
    fn write(&self, ops: Vec<WriteOp>) -> impl Future<Output = Vec<WriteFailure>> + Send;

    /// mqtt_client item by clientid.
    fn client(
        &self,
        clientid: &str,
    ) -> impl Future<Output = Result<Option<ClientRecord>, StoreError>> + Send;

    /// Every mqtt_client item (Scan), to find sessions that expired while the broker was
    /// down.
    fn clients_all(&self) -> impl Future<Output = Result<Vec<ClientRecord>, StoreError>> + Send;

    /// mqtt_sub items of a client (Query by the hash key).
    fn subscriptions(
        &self,
        clientid: &str,
    ) -> impl Future<Output = Result<Vec<SubRecord>, StoreError>> + Send;

    /// Every mqtt_retain item (Scan), to build the retained index at start.
    fn retained_all(&self) -> impl Future<Output = Result<Vec<RetainRecord>, StoreError>> + Send;

    /// mqtt_retain item by topic.
    fn retained(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<Option<RetainRecord>, StoreError>> + Send;

    /// The ids in `mqtt_topic_msg_map[topic].MsgId` (empty if no item). Ids that do not decode
    /// are skipped with a warning.
    fn map_msgids(
        &self,
        topic: &str,
    ) -> impl Future<Output = Result<Vec<MsgId>, StoreError>> + Send;

    /// Every mqtt_topic_msg_map item as (topic, ids): one Scan, to build the stored-message
    /// index at start.
    fn map_all(&self)
    -> impl Future<Output = Result<Vec<(String, Vec<MsgId>)>, StoreError>> + Send;

    /// mqtt_msg items by id (BatchGetItem, 100 keys per call). Missing ids are left out; the
    /// order of the result is unspecified.
    fn messages(
        &self,
        ids: &[MsgId],
    ) -> impl Future<Output = Result<Vec<MessageRecord>, StoreError>> + Send;

    /// mqtt_acked[topic, clientid].msgid.
    fn acked(
        &self,
        topic: &str,
        clientid: &str,
    ) -> impl Future<Output = Result<Option<MsgId>, StoreError>> + Send;
}
