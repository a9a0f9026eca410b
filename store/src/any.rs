//! [`AnyStore`]: the store the actions hold, one of the two stores. An enum rather than
//! `dyn Store`: static dispatch, and the trait can keep its `async fn`s. It lives apart from
//! the [`Store`] trait, so that the trait does not name its implementations.

use crate::dynamo::DynamoStore;
use crate::embedded::EmbeddedStore;
use crate::error::StoreError;
use crate::msgid::MsgId;
use crate::op::WriteOp;
use crate::record::{ClientRecord, MessageRecord, RetainRecord, SubRecord};
use crate::store::{Store, WriteFailure};

/// One of the two stores.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Dynamo(DynamoStore),
    Embedded(EmbeddedStore),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Dynamo($s) => $e,
            AnyStore::Embedded($s) => $e,
        }
    };
}

impl Store for AnyStore {
    async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteFailure> {
        delegate!(self, s => s.write(ops).await)
    }
    async fn client(&self, clientid: &str) -> Result<Option<ClientRecord>, StoreError> {
        delegate!(self, s => s.client(clientid).await)
    }
    async fn clients_all(&self) -> Result<Vec<ClientRecord>, StoreError> {
        delegate!(self, s => s.clients_all().await)
    }
    async fn subscriptions(&self, clientid: &str) -> Result<Vec<SubRecord>, StoreError> {
        delegate!(self, s => s.subscriptions(clientid).await)
    }
    async fn retained_all(&self) -> Result<Vec<RetainRecord>, StoreError> {
        delegate!(self, s => s.retained_all().await)
    }
    async fn retained(&self, topic: &str) -> Result<Option<RetainRecord>, StoreError> {
        delegate!(self, s => s.retained(topic).await)
    }
    async fn map_msgids(&self, topic: &str) -> Result<Vec<MsgId>, StoreError> {
        delegate!(self, s => s.map_msgids(topic).await)
    }
    async fn map_all(&self) -> Result<Vec<(String, Vec<MsgId>)>, StoreError> {
        delegate!(self, s => s.map_all().await)
    }
    async fn messages(&self, ids: &[MsgId]) -> Result<Vec<MessageRecord>, StoreError> {
        delegate!(self, s => s.messages(ids).await)
    }
    async fn acked(&self, topic: &str, clientid: &str) -> Result<Option<MsgId>, StoreError> {
        delegate!(self, s => s.acked(topic, clientid).await)
    }
}
