//! The DynamoDB backend, through the official `aws-sdk-dynamodb`.
//!
//! Writes: whole-item puts and deletes go in BatchWriteItem calls of at most 25 requests
//! (UnprocessedItems retried here a few times, then handed back to the writer); `ClientOffline`
//! and map adds/removes are UpdateItems, run concurrently. Reads: GetItem (strongly consistent
//! where a just-written value matters), Query, Scan and BatchGetItem, all paginated.
//!
//! An item holds at most 400 KB ([`MAX_ITEM_BYTES`], names and values counted;
//! [`message_item_size`] weighs a message's item without building it): the actions refuse a
//! message over it, and spread a topic's map ids over several items (`actions::topic_ids`).

mod client;
mod error;
pub(crate) mod item;
pub(crate) mod write;
pub use item::{MAX_ITEM_BYTES, item_size, message_item_size};
pub(crate) use write::BATCH_WRITE_MAX;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, KeysAndAttributes};

use crate::error::StoreError;
use crate::msgid::MsgId;
use crate::op::{Table, WriteOp};
use crate::record::{ClientRecord, MessageRecord, RetainRecord, SubRecord};
use crate::secret::Secret;
use crate::store::{Store, WriteFailure};
pub use client::{DynamoClient, Target, connect};
pub(crate) use error::{build_error as build_error_pub, sdk_error};
use item::Item;

/// How to reach DynamoDB. The credentials are [`Secret`]s: `Debug` redacts them.
/// Deserializes from the broker's `[store.dynamo]` TOML section (unknown keys are errors).
#[derive(Clone, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DynamoConfig {
    /// AWS region, e.g. `us-west-2` (required by the SDK even for a local server).
    pub region: String,
    /// Endpoint URL with its scheme, e.g. `http://127.0.0.1:8000`, for DynamoDB Local or
    /// dynalite; `None` for AWS.
    pub endpoint: Option<String>,
    /// Concurrent write requests (the tutorial's `pool_size`).
    pub pool_size: usize,
    /// Static credentials; when `None`, the standard chain (environment, profile, IMDS, ...).
    pub access_key_id: Option<Secret>,
    pub secret_access_key: Option<Secret>,
    /// Prepended to the six table names (default empty).
    pub table_prefix: String,
}

impl Default for DynamoConfig {
    fn default() -> Self {
        DynamoConfig {
            region: "us-west-2".into(),
            endpoint: None,
            pool_size: 8,
            access_key_id: None,
            secret_access_key: None,
            table_prefix: String::new(),
        }
    }
}

/// The DynamoDB store. Cloning shares the SDK client (and its connection pool).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: DynamoClient,
    names: TableNames,
}

/// The six table names with the prefix applied.
#[derive(Clone, Debug)]
pub struct TableNames {
    names: [String; 6],
}

impl TableNames {
    pub fn new(prefix: &str) -> TableNames {
        TableNames {
            names: Table::ALL.map(|t| format!("{prefix}{}", t.base_name())),
        }
    }

    pub fn get(&self, table: Table) -> &str {
        &self.names[table as usize]
    }
}

impl DynamoStore {
    pub async fn connect(config: &DynamoConfig) -> DynamoStore {
        DynamoStore::with_client(connect(config).await, &config.table_prefix)
    }

    pub fn with_client(client: DynamoClient, table_prefix: &str) -> DynamoStore {
        DynamoStore {
            client,
            names: TableNames::new(table_prefix),
        }
    }

    /// The client, for table administration ([`crate::tables`]).
    pub fn dynamo_client(&self) -> &DynamoClient {
        &self.client
    }

    pub fn table_names(&self) -> &TableNames {
        &self.names
    }

    fn name(&self, table: Table) -> &str {
        self.names.get(table)
    }

    async fn get_item(
        &self,
        table: Table,
        key: Item,
        consistent: bool,
    ) -> Result<Option<Item>, StoreError> {
        let name = self.name(table);
        let out = self
            .client
            .sdk()
            .get_item()
            .table_name(name)
            .set_key(Some(key))
            .consistent_read(consistent)
            .send()
            .await
            .map_err(|e| sdk_error(self.client.target(), "GetItem", name, e))?;
        Ok(out.item)
    }

    async fn scan_all(&self, table: Table) -> Result<Vec<Item>, StoreError> {
        let name = self.name(table);
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .sdk()
                .scan()
                .table_name(name)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(self.client.target(), "Scan", name, e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }
}

/// BatchGetItem accepts at most this many keys per call.
const BATCH_GET_MAX: usize = 100;
/// Rounds of UnprocessedKeys retries before giving up on a read.
const UNPROCESSED_READ_ROUNDS: u32 = 8;

impl Store for DynamoStore {
    async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteFailure> {
        write::write(&self.client, &self.names, ops).await
    }

    async fn client(&self, clientid: &str) -> Result<Option<ClientRecord>, StoreError> {
        let key = item::key1("clientid", clientid);
        match self.get_item(Table::Client, key, false).await? {
            Some(i) => item::client_from(&i).map(Some),
            None => Ok(None),
        }
    }

    async fn clients_all(&self) -> Result<Vec<ClientRecord>, StoreError> {
        let items = self.scan_all(Table::Client).await?;
        items.iter().map(item::client_from).collect()
    }

    async fn subscriptions(&self, clientid: &str) -> Result<Vec<SubRecord>, StoreError> {
        let name = self.name(Table::Sub);
        let mut subs = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .sdk()
                .query()
                .table_name(name)
                .key_condition_expression("#c = :c")
                .expression_attribute_names("#c", "clientid")
                .expression_attribute_values(":c", item::s(clientid))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(self.client.target(), "Query", name, e))?;
            for i in out.items.unwrap_or_default() {
                subs.push(item::sub_from(&i)?);
            }
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(subs),
            }
        }
    }

    async fn retained_all(&self) -> Result<Vec<RetainRecord>, StoreError> {
        let items = self.scan_all(Table::Retain).await?;
        items
            .iter()
            .map(|i| item::message_from(Table::Retain, i))
            .collect()
    }

    async fn retained(&self, topic: &str) -> Result<Option<RetainRecord>, StoreError> {
        let key = item::key1("topic", topic);
        match self.get_item(Table::Retain, key, true).await? {
            Some(i) => item::message_from(Table::Retain, &i).map(Some),
            None => Ok(None),
        }
    }

    async fn map_msgids(&self, topic: &str) -> Result<Vec<MsgId>, StoreError> {
        let key = item::key1("topic", topic);
        Ok(self
            .get_item(Table::TopicMsgMap, key, true)
            .await?
            .map(|i| item::map_ids_from(&i))
            .unwrap_or_default())
    }

    async fn map_all(&self) -> Result<Vec<(String, Vec<MsgId>)>, StoreError> {
        let items = self.scan_all(Table::TopicMsgMap).await?;
        let mut out = Vec::with_capacity(items.len());
        for i in &items {
            let topic = match i.get("topic") {
                Some(AttributeValue::S(t)) => t.clone(),
                _ => continue,
            };
            out.push((topic, item::map_ids_from(i)));
        }
        Ok(out)
    }

    async fn messages(&self, ids: &[MsgId]) -> Result<Vec<MessageRecord>, StoreError> {
        let name = self.name(Table::Msg).to_owned();
        let mut out = Vec::with_capacity(ids.len());
        let mut unique: Vec<MsgId> = ids.to_vec();
        unique.sort();
        unique.dedup();
        for chunk in unique.chunks(BATCH_GET_MAX) {
            let keys: Vec<Item> = chunk
                .iter()
                .map(|id| item::key1("msgid", id.encode()))
                .collect();
            let mut request = KeysAndAttributes::builder()
                .set_keys(Some(keys))
                .consistent_read(true)
                .build()
                .map_err(|e| error::build_error("BatchGetItem", &name, e))?;
            let mut round = 0;
            loop {
                let out_page = self
                    .client
                    .sdk()
                    .batch_get_item()
                    .set_request_items(Some(HashMap::from([(name.clone(), request)])))
                    .send()
                    .await
                    .map_err(|e| sdk_error(self.client.target(), "BatchGetItem", &name, e))?;
                if let Some(mut responses) = out_page.responses
                    && let Some(items) = responses.remove(&name)
                {
                    for i in &items {
                        out.push(item::message_from(Table::Msg, i)?);
                    }
                }
                match out_page.unprocessed_keys.and_then(|mut u| u.remove(&name)) {
                    Some(rest) if !rest.keys.is_empty() => {
                        round += 1;
                        if round > UNPROCESSED_READ_ROUNDS {
                            return Err(StoreError::Unprocessed {
                                count: rest.keys.len(),
                            });
                        }
                        tokio::time::sleep(Duration::from_millis(20 << round.min(6))).await;
                        request = rest;
                    }
                    _ => break,
                }
            }
        }
        Ok(out)
    }

    async fn acked(&self, topic: &str, clientid: &str) -> Result<Option<MsgId>, StoreError> {
        let key = item::key2("topic", topic, "clientid", clientid);
        match self.get_item(Table::Acked, key, true).await? {
            Some(i) => item::acked_msgid_from(&i).map(Some),
            None => Ok(None),
        }
    }
}
