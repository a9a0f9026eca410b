//! The embedded store: the six tables in one redb file (`<data_dir>/dynamq.redb`).
//!
//! One redb table per DynamoDB table, same keys: strings, a (hash, range) tuple for the two
//! composite keys, the decoded u128 for msgids (so mqtt_msg iterates in time order), and a
//! multimap topic -> msgid for mqtt_topic_msg_map. Values are postcard-encoded (see `codec.rs`).
//! A batch from the writer is one write transaction, committed durably (fsync): group commit.
//! redb is synchronous, so every call runs on tokio's blocking pool.

mod codec;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use redb::{
    Database, MultimapTableDefinition, ReadableDatabase, ReadableMultimapTable, ReadableTable,
    TableDefinition, WriteTransaction,
};

use crate::error::StoreError;
use crate::msgid::MsgId;
use crate::op::WriteOp;
use crate::record::{ClientRecord, MessageRecord, RetainRecord, SubRecord};
use crate::store::{Store, WriteFailure};
use codec::{decode_client, decode_msg, encode_client, encode_msg};

const CLIENT: TableDefinition<&str, &[u8]> = TableDefinition::new("mqtt_client");
const SUB: TableDefinition<(&str, &str), u8> = TableDefinition::new("mqtt_sub");
const RETAIN: TableDefinition<&str, &[u8]> = TableDefinition::new("mqtt_retain");
const MSG: TableDefinition<u128, &[u8]> = TableDefinition::new("mqtt_msg");
const MAP: MultimapTableDefinition<&str, u128> = MultimapTableDefinition::new("mqtt_topic_msg_map");
const ACKED: TableDefinition<(&str, &str), u128> = TableDefinition::new("mqtt_acked");

/// The database file's name inside the data dir.
pub const DB_FILE: &str = "dynamq.redb";

/// redb's page cache, in bytes (redb's default is 1 GiB). redb keeps every page it writes
/// in this cache after the commit, so with the default the cache grows with everything the
/// broker ever wrote: 10,000 clients connecting once left ~1.6 MB of pages resident, about
/// 160 B per connected client (BENCHMARKS.md, issue 9). The OS page cache holds the file
/// anyway; what this cache must hold is a write transaction's dirty pages (half of it is
/// the write buffer: a smaller one writes pages out mid-transaction and reads them back)
/// and the hot upper pages of the six B-trees. Measured (4 runs each, on a busy box): with
/// 0, a QoS 1 delivery cost ~1.6x the broker CPU of the default; with this value, the same
/// within the noise. A larger cache is memory that grows with the clients connected.
const CACHE_BYTES: usize = 256 * 1024;

/// The embedded store. Cloning shares the open database.
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    path: Arc<PathBuf>,
}

impl std::fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedStore")
            .field("path", &self.path)
            .finish()
    }
}

impl EmbeddedStore {
    /// Opens (or creates) the store in `data_dir`, creating the directory if missing.
    ///
    /// An existing file is opened with redb's integrity check, so a damaged or foreign file is
    /// an error naming the path, never silently reinitialised.
    pub async fn open(data_dir: impl AsRef<Path>) -> Result<EmbeddedStore, StoreError> {
        let dir = data_dir.as_ref().to_path_buf();
        tokio::task::spawn_blocking(move || Self::open_blocking(&dir))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }

    fn open_blocking(dir: &Path) -> Result<EmbeddedStore, StoreError> {
        let path = dir.join(DB_FILE);
        let open_err = |message: String| StoreError::EmbeddedOpen {
            path: path.clone(),
            message,
        };
        std::fs::create_dir_all(dir).map_err(|e| StoreError::EmbeddedOpen {
            path: dir.to_path_buf(),
            message: format!("cannot create data dir: {e}"),
        })?;
        let db = if path.exists() {
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .set_check_integrity_on_open(true)
                .open(&path)
                .map_err(|e| match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => {
                        open_err("already open (by another dynamq process or store)".into())
                    }
                    e => open_err(format!(
                        "not a valid dynamq database ({e}); move it away to start afresh"
                    )),
                })?
        } else {
            Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(&path)
                .map_err(|e| open_err(e.to_string()))?
        };
        // Create the six tables up front, so read transactions always find them.
        let txn = db.begin_write().map_err(|e| open_err(e.to_string()))?;
        {
            let create = |r: Result<(), redb::TableError>| r.map_err(|e| open_err(e.to_string()));
            create(txn.open_table(CLIENT).map(drop))?;
            create(txn.open_table(SUB).map(drop))?;
            create(txn.open_table(RETAIN).map(drop))?;
            create(txn.open_table(MSG).map(drop))?;
            create(txn.open_multimap_table(MAP).map(drop))?;
            create(txn.open_table(ACKED).map(drop))?;
        }
        txn.commit().map_err(|e| open_err(e.to_string()))?;
        Ok(EmbeddedStore {
            db: Arc::new(db),
            path: Arc::new(path),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || f(&db))
            .await
            .map_err(|e| StoreError::Task(e.to_string()))?
    }
}

fn err(operation: &'static str, table: &'static str) -> impl Fn(redb::Error) -> StoreError {
    move |e| StoreError::Embedded {
        operation,
        table,
        message: e.to_string(),
    }
}

/// What an UpdateItem of a client that has no item starts from: the key alone.
fn blank_client(clientid: &str) -> ClientRecord {
    ClientRecord {
        clientid: clientid.to_owned(),
        node: String::new(),
        connect_state: 0,
        online_at: 0,
        offline_at: 0,
        session_expires_at: None,
        awaiting_rel: Default::default(),
    }
}

fn apply(txn: &WriteTransaction, ops: &[WriteOp]) -> Result<(), redb::Error> {
    for op in ops {
        match op {
            WriteOp::PutClient(r) => {
                txn.open_table(CLIENT)?
                    .insert(r.clientid.as_str(), encode_client(r).as_slice())?;
            }
            WriteOp::ClientOffline {
                clientid,
                offline_at,
                session_expires_at,
            } => {
                let mut t = txn.open_table(CLIENT)?;
                let existing = t.get(clientid.as_str())?.map(|v| v.value().to_vec());
                // As UpdateItem does: update in place, or create an item with what we know.
                let mut rec = existing
                    .and_then(|bytes| decode_client(clientid, &bytes).ok())
                    .unwrap_or_else(|| blank_client(clientid));
                rec.connect_state = 0;
                rec.offline_at = *offline_at;
                rec.session_expires_at = *session_expires_at;
                t.insert(clientid.as_str(), encode_client(&rec).as_slice())?;
            }
            WriteOp::AwaitingRelAdd {
                clientid,
                packet_ids,
            }
            | WriteOp::AwaitingRelRemove {
                clientid,
                packet_ids,
            } => {
                let mut t = txn.open_table(CLIENT)?;
                let existing = t.get(clientid.as_str())?.map(|v| v.value().to_vec());
                // As UpdateItem does: update in place, or create an item with what we know.
                let mut rec = existing
                    .and_then(|bytes| decode_client(clientid, &bytes).ok())
                    .unwrap_or_else(|| blank_client(clientid));
                if matches!(op, WriteOp::AwaitingRelAdd { .. }) {
                    rec.awaiting_rel.extend(packet_ids.iter().copied());
                } else {
                    for id in packet_ids {
                        rec.awaiting_rel.remove(id);
                    }
                }
                t.insert(clientid.as_str(), encode_client(&rec).as_slice())?;
            }
            WriteOp::PutSub(r) => {
                txn.open_table(SUB)?
                    .insert((r.clientid.as_str(), r.topic.as_str()), r.qos)?;
            }
            WriteOp::DeleteSub { clientid, topic } => {
                txn.open_table(SUB)?
                    .remove((clientid.as_str(), topic.as_str()))?;
            }
            WriteOp::PutRetain(r) => {
                txn.open_table(RETAIN)?
                    .insert(r.topic.as_str(), encode_msg(r).as_slice())?;
            }
            WriteOp::DeleteRetain { topic } => {
                txn.open_table(RETAIN)?.remove(topic.as_str())?;
            }
            WriteOp::PutMsg(r) => {
                txn.open_table(MSG)?
                    .insert(r.msgid.0, encode_msg(r).as_slice())?;
            }
            WriteOp::DeleteMsg { msgid } => {
                txn.open_table(MSG)?.remove(msgid.0)?;
            }
            WriteOp::MapAdd { topic, msgids } => {
                let mut t = txn.open_multimap_table(MAP)?;
                for id in msgids {
                    t.insert(topic.as_str(), id.0)?;
                }
            }
            WriteOp::MapRemove { topic, msgids } => {
                let mut t = txn.open_multimap_table(MAP)?;
                for id in msgids {
                    t.remove(topic.as_str(), id.0)?;
                }
            }
            WriteOp::PutAcked(r) => {
                txn.open_table(ACKED)?
                    .insert((r.topic.as_str(), r.clientid.as_str()), r.msgid.0)?;
            }
            WriteOp::DeleteAcked { topic, clientid } => {
                txn.open_table(ACKED)?
                    .remove((topic.as_str(), clientid.as_str()))?;
            }
        }
    }
    Ok(())
}

impl Store for EmbeddedStore {
    async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteFailure> {
        let db = self.db.clone();
        let count = ops.len();
        let result = tokio::task::spawn_blocking(move || {
            let outcome = (|| -> Result<(), redb::Error> {
                let txn = db.begin_write()?;
                apply(&txn, &ops)?;
                txn.commit()?;
                Ok(())
            })();
            (ops, outcome)
        })
        .await;
        match result {
            Ok((_, Ok(()))) => Vec::new(),
            // The transaction was not committed: none of the batch applied.
            Ok((ops, Err(e))) => vec![WriteFailure {
                ops,
                error: err("write", "batch")(e),
            }],
            // The blocking task panicked and took the ops with it: nothing to hand back, but
            // the writer still logs the failure.
            Err(e) => vec![WriteFailure {
                ops: Vec::new(),
                error: StoreError::Task(format!("{count} ops lost: {e}")),
            }],
        }
    }

    async fn client(&self, clientid: &str) -> Result<Option<ClientRecord>, StoreError> {
        let clientid = clientid.to_owned();
        self.blocking(move |db| {
            let e = err("get", "mqtt_client");
            let txn = db.begin_read().map_err(|x| e(x.into()))?;
            let t = txn.open_table(CLIENT).map_err(|x| e(x.into()))?;
            match t.get(clientid.as_str()).map_err(|x| e(x.into()))? {
                None => Ok(None),
                Some(v) => decode_client(&clientid, v.value()).map(Some),
            }
        })
        .await
    }

    async fn clients_all(&self) -> Result<Vec<ClientRecord>, StoreError> {
        self.blocking(|db| {
            let e = err("scan", "mqtt_client");
            let txn = db.begin_read().map_err(|x| e(x.into()))?;
            let t = txn.open_table(CLIENT).map_err(|x| e(x.into()))?;
            let mut out = Vec::new();
            for row in t.iter().map_err(|x| e(x.into()))? {
                let (k, v) = row.map_err(|x| e(x.into()))?;
                out.push(decode_client(k.value(), v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn subscriptions(&self, clientid: &str) -> Result<Vec<SubRecord>, StoreError> {
        let clientid = clientid.to_owned();
        self.blocking(move |db| {
            let e = err("query", "mqtt_sub");
            let txn = db.begin_read().map_err(|x| e(x.into()))?;
            let t = txn.open_table(SUB).map_err(|x| e(x.into()))?;
            let mut out = Vec::new();
            for row in t
                .range((clientid.as_str(), "")..)
                .map_err(|x| e(x.into()))?
            {
                let (k, v) = row.map_err(|x| e(x.into()))?;
                let (cid, topic) = k.value();
                if cid != clientid {
                    break;
                }
                out.push(SubRecord {
                    clientid: cid.to_owned(),
                    topic: topic.to_owned(),
                    qos: v.value(),
                });
            }
            Ok(out)
        })
        .await
    }

    async fn retained_all(&self) -> Result<Vec<RetainRecord>, StoreError> {
        self.blocking(|db| {
            let e = err("scan", "mqtt_retain");
            let txn = db.begin_read().map_err(|x| e(x.into()))?;
            let t = txn.open_table(RETAIN).map_err(|x| e(x.into()))?;
            let mut out = Vec::new();
            for row in t.iter().map_err(|x| e(x.into()))? {
                let (_, v) = row.map_err(|x| e(x.into()))?;
                out.push(decode_msg("mqtt_retain", v.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn retained(&self, topic: &str) -> Result<Option<RetainRecord>, StoreError> {
        let topic = topic.to_owned();
        self.blocking(move |db| {
            let e = err("get", "mqtt_retain");
            let txn = db.begin_read().map_err(|x| e(x.into()))?;
            let t = txn.open_table(RETAIN).map_err(|x| e(x.into()))?;
            match t.get(topic.as_str()).map_err(|x| e(x.into()))? {
                None => Ok(None),
                Some(v) => decode_msg("mqtt_retain", v.value()).map(Some),
            }
        })
        .await
    }

    async fn map_msgids(&self, topic: &str) -> Result<Vec<MsgId>, StoreError> {
        let topic = topic.to_owned();
        self.blocking(move |db| {
            let e = err("get", "mqtt_topic_msg_map");
            let txn = db.begin_read().map_err(|x| e(x.into()))?;
            let t = txn.open_multimap_table(MAP).map_err(|x| e(x.into()))?;
            let mut out = Vec::new();
            for v in t.get(topic.as_str()).map_err(|x| e(x.into()))? {
                out.push(MsgId(v.map_err(|x| e(x.into()))?.value()));
            }
            Ok(out)
        })
        .await
    }

    async fn map_all(&self) -> Result<Vec<(String, Vec<MsgId>)>, StoreError> {
        self.blocking(|db| {
            let e = err("scan", "mqtt_topic_msg_map");
            let txn = db.begin_read().map_err(|x| e(x.into()))?;
            let t = txn.open_multimap_table(MAP).map_err(|x| e(x.into()))?;
            let mut out = Vec::new();
            for row in t.iter().map_err(|x| e(x.into()))? {
                let (k, vs) = row.map_err(|x| e(x.into()))?;
                let mut ids = Vec::new();
                for v in vs {
                    ids.push(MsgId(v.map_err(|x| e(x.into()))?.value()));
                }
                out.push((k.value().to_owned(), ids));
            }
            Ok(out)
        })
        .await
    }

    async fn messages(&self, ids: &[MsgId]) -> Result<Vec<MessageRecord>, StoreError> {
        let ids = ids.to_vec();
        self.blocking(move |db| {
            let e = err("batch_get", "mqtt_msg");
            let txn = db.begin_read().map_err(|x| e(x.into()))?;
            let t = txn.open_table(MSG).map_err(|x| e(x.into()))?;
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                if let Some(v) = t.get(id.0).map_err(|x| e(x.into()))? {
                    out.push(decode_msg("mqtt_msg", v.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn acked(&self, topic: &str, clientid: &str) -> Result<Option<MsgId>, StoreError> {
        let (topic, clientid) = (topic.to_owned(), clientid.to_owned());
        self.blocking(move |db| {
            let e = err("get", "mqtt_acked");
            let txn = db.begin_read().map_err(|x| e(x.into()))?;
            let t = txn.open_table(ACKED).map_err(|x| e(x.into()))?;
            Ok(t.get((topic.as_str(), clientid.as_str()))
                .map_err(|x| e(x.into()))?
                .map(|v| MsgId(v.value())))
        })
        .await
    }
}
