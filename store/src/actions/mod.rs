//! The hook actions: broker events in, store ops and lookups out ([`Backend`]).
//!
//! Each method runs only the functions configured for its event (the hook's topic filter is
//! matched against the message topic, or the subscription filter for session events), as in
//! DESIGN.md's action table. Writes go through the [`Writer`]; reads are awaited.

mod fetch;
mod index;
mod types;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::dynamo::DynamoStore;
use crate::embedded::EmbeddedStore;
use crate::hooks::{HookEvent, HookFunction, HookSpec};
use crate::msgid::{MsgId, MsgIdGen};
use crate::op::WriteOp;
use crate::record::{AckedRecord, ClientRecord, MessageRecord, SubRecord};
use crate::store::{AnyStore, Store};
use crate::writer::{SubmitError, Writer, WriterClosed, WriterConfig};
use index::TopicIndex;
pub use types::{
    BackendConfig, BackendError, BackendStats, Delivery, OverflowPolicy, PublishedMessage,
    StoreConfig,
};

#[derive(Debug, Default)]
struct Counters {
    evicted: AtomicU64,
    expired: AtomicU64,
    dangling: AtomicU64,
    duplicates_skipped: AtomicU64,
    dropped_full: AtomicU64,
    read_errors: AtomicU64,
}

/// The actions and their state. Share it with `Arc<Backend>`.
#[derive(Debug)]
pub struct Backend {
    store: AnyStore,
    writer: Writer,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    hooks: Vec<HookSpec>,
    ids: MsgIdGen,
    overflow: OverflowPolicy,
    map_cap: usize,
    delivered_cap: usize,
    /// mqtt_retain, by topic.
    retained: RwLock<TopicIndex<Arc<MessageRecord>>>,
    /// mqtt_topic_msg_map, by topic: the ids, in msgid (time) order.
    stored: RwLock<TopicIndex<BTreeSet<MsgId>>>,
    /// Stored msgids already replayed, per client and subscription filter (cleared on
    /// unsubscribe and disconnect).
    delivered: Mutex<HashMap<String, HashMap<String, BTreeSet<MsgId>>>>,
    /// Per connected client: stored messages older than this (µs) are not replayed to it,
    /// because they were published before it went offline (or, for a client never seen
    /// before, before it first connected). Set by client.connected from mqtt_client.
    replay_since: Mutex<HashMap<String, u64>>,
    counters: Counters,
}

impl Backend {
    /// Opens the store, loads the indexes and starts the writer.
    pub async fn new(config: BackendConfig, hooks: Vec<HookSpec>) -> Result<Backend, BackendError> {
        let (store, default_writer) = match &config.store {
            StoreConfig::Embedded { data_dir } => (
                AnyStore::Embedded(EmbeddedStore::open(data_dir).await?),
                WriterConfig {
                    pool_size: 2,
                    max_batch: 512,
                    ..WriterConfig::default()
                },
            ),
            StoreConfig::Dynamo(dc) => (
                AnyStore::Dynamo(DynamoStore::connect(dc).await),
                WriterConfig {
                    pool_size: dc.pool_size.max(1),
                    max_batch: crate::dynamo::BATCH_WRITE_MAX,
                    ..WriterConfig::default()
                },
            ),
        };
        let writer_config = config.writer.clone().unwrap_or(default_writer);
        Backend::with_store(store, writer_config, &config, hooks).await
    }

    /// Like [`Backend::new`] with an already opened store.
    pub async fn with_store(
        store: AnyStore,
        writer_config: WriterConfig,
        config: &BackendConfig,
        hooks: Vec<HookSpec>,
    ) -> Result<Backend, BackendError> {
        let (writer, task) = Writer::spawn_with_handle(Arc::new(store.clone()), writer_config);
        let backend = Backend {
            store,
            writer,
            writer_task: Mutex::new(Some(task)),
            hooks,
            ids: MsgIdGen::new(&config.node),
            overflow: config.overflow,
            map_cap: config.map_cap_per_topic.max(1),
            delivered_cap: config.delivered_cap_per_subscription.max(1),
            retained: RwLock::new(TopicIndex::default()),
            stored: RwLock::new(TopicIndex::default()),
            delivered: Mutex::new(HashMap::new()),
            replay_since: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        };
        backend.refresh_indexes().await?;
        Ok(backend)
    }

    /// Reloads the retained and stored-message indexes from the store (at start; and when
    /// other nodes write the same tables).
    pub async fn refresh_indexes(&self) -> Result<(), BackendError> {
        let retained = self.store.retained_all().await?;
        let maps = self.store.map_all().await?;
        let mut r = TopicIndex::default();
        for rec in retained {
            r.insert(rec.topic.clone(), Arc::new(rec));
        }
        let mut s = TopicIndex::default();
        for (topic, ids) in maps {
            if !ids.is_empty() {
                s.insert(topic, ids.into_iter().collect::<BTreeSet<_>>());
            }
        }
        *self.retained.write() = r;
        *self.stored.write() = s;
        Ok(())
    }

    /// The store, for direct reads.
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// The hooks in force.
    pub fn hooks(&self) -> &[HookSpec] {
        &self.hooks
    }

    /// A fresh msgid from this node's generator.
    pub fn next_msgid(&self) -> MsgId {
        self.ids.next_id()
    }

    /// The first hook binding `function` whose filter matches `topic` (`None` filter: any).
    fn hook(&self, function: HookFunction, topic: &str) -> Option<&HookSpec> {
        self.hooks.iter().find(|h| {
            h.function == function
                && h.topic_filter
                    .as_deref()
                    .is_none_or(|f| dynamq_codec::topic::matches(f, topic))
        })
    }

    fn configured(&self, function: HookFunction) -> bool {
        self.hooks.iter().any(|h| h.function == function)
    }

    async fn submit(&self, op: WriteOp) -> Result<(), BackendError> {
        match self.overflow {
            OverflowPolicy::Wait => Ok(self.writer.submit(op).await?),
            OverflowPolicy::Drop => match self.writer.try_submit(op) {
                Ok(()) => Ok(()),
                Err(SubmitError::Full(op)) => {
                    self.counters.dropped_full.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(table = op.table().base_name(), op = ?op.key(),
                        "store write queue full: op dropped");
                    Ok(())
                }
                Err(SubmitError::Closed(_)) => Err(WriterClosed.into()),
            },
        }
    }

    /// client.connected: on_client_connected puts mqtt_client {connect_state 1, online_at now,
    /// offline_at 0}.
    pub async fn client_connected(
        &self,
        clientid: &str,
        node: &str,
        now: u64,
    ) -> Result<(), BackendError> {
        if self.configured(HookFunction::OnMessageFetchForQueue)
            || self.configured(HookFunction::OnMessageFetchForPubsub)
        {
            // Offline messages are those published while the client was away: read when it
            // left before this connection's record replaces it. A client never seen before
            // gets no history, as with any MQTT broker.
            let since = match self.store.client(clientid).await {
                Ok(Some(rec)) if rec.connect_state == 0 => rec.offline_at.saturating_mul(1_000_000),
                // Recorded online: the broker stopped before recording the disconnect.
                Ok(Some(rec)) => rec.online_at.saturating_mul(1_000_000),
                Ok(None) => crate::msgid::now_micros(),
                Err(e) => {
                    self.replay_since
                        .lock()
                        .insert(clientid.to_owned(), crate::msgid::now_micros());
                    return Err(e.into());
                }
            };
            self.replay_since.lock().insert(clientid.to_owned(), since);
        }
        if self.configured(HookFunction::OnClientConnected) {
            self.submit(WriteOp::PutClient(ClientRecord {
                clientid: clientid.to_owned(),
                node: node.to_owned(),
                connect_state: 1,
                online_at: now,
                offline_at: 0,
            }))
            .await?;
        }
        Ok(())
    }

    /// client.disconnected: on_client_disconnected sets connect_state 0 and offline_at. The
    /// client's replay-dedup memory is dropped (a new connection may replay again).
    pub async fn client_disconnected(&self, clientid: &str, now: u64) -> Result<(), BackendError> {
        self.delivered.lock().remove(clientid);
        self.replay_since.lock().remove(clientid);
        if self.configured(HookFunction::OnClientDisconnected) {
            self.submit(WriteOp::ClientOffline {
                clientid: clientid.to_owned(),
                offline_at: now,
            })
            .await?;
        }
        Ok(())
    }

    /// session.created: with on_subscribe_lookup, the client's stored subscriptions
    /// (filter, qos) for the broker to restore (empty otherwise).
    pub async fn session_created(&self, clientid: &str) -> Result<Vec<(String, u8)>, BackendError> {
        if !self.configured(HookFunction::OnSubscribeLookup) {
            return Ok(Vec::new());
        }
        let subs = self.store.subscriptions(clientid).await?;
        Ok(subs.into_iter().map(|s| (s.topic, s.qos)).collect())
    }

    /// session.subscribed. Stores the subscription (when on_subscribe_lookup is configured)
    /// and returns what to deliver, in order: retained messages matching the filter
    /// (on_retain_lookup; not for `$share/` filters), then stored messages
    /// (on_message_fetch_for_queue / _for_pubsub; only for a new subscription with QoS > 0),
    /// in msgid order, each at most once per (client, filter). A failed replay read is
    /// counted (`read_errors`) and logged, and the retained messages are still returned.
    pub async fn subscribed(
        &self,
        clientid: &str,
        filter: &str,
        qos: u8,
        is_new: bool,
    ) -> Result<Vec<Delivery>, BackendError> {
        if self.configured(HookFunction::OnSubscribeLookup) {
            self.submit(WriteOp::PutSub(SubRecord {
                clientid: clientid.to_owned(),
                topic: filter.to_owned(),
                qos,
            }))
            .await?;
        }
        let shared = dynamq_codec::topic::parse_shared(filter);
        let real = shared.map_or(filter, |(_, f)| f);
        let mut out = Vec::new();
        if shared.is_none() && self.hook(HookFunction::OnRetainLookup, real).is_some() {
            let mut retained: Vec<MessageRecord> = self
                .retained
                .read()
                .matching(real)
                .into_iter()
                .map(|(_, rec)| (**rec).clone())
                .collect();
            retained.sort_by_key(|m| m.msgid);
            out.extend(retained.into_iter().map(|message| Delivery {
                message,
                retained: true,
            }));
        }
        if qos > 0 && is_new {
            // A failed replay must not fail the SUBSCRIBE: deliver the retained messages, count
            // and log; the messages stay stored for the next subscription.
            let stored = match self.fetch_stored(clientid, real).await {
                Ok(stored) => stored,
                Err(e) => {
                    self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(clientid, filter, error = %e, "stored message replay failed");
                    Vec::new()
                }
            };
            let fresh = self.remember_delivered(clientid, filter, &out, stored);
            out.extend(fresh.into_iter().map(|message| Delivery {
                message,
                retained: false,
            }));
        }
        Ok(out)
    }

    /// Keeps the stored messages this subscription has not had yet (and not just delivered as
    /// retained), and remembers them.
    fn remember_delivered(
        &self,
        clientid: &str,
        filter: &str,
        retained: &[Delivery],
        stored: Vec<MessageRecord>,
    ) -> Vec<MessageRecord> {
        if stored.is_empty() {
            return stored;
        }
        let mut all = self.delivered.lock();
        let seen = all
            .entry(clientid.to_owned())
            .or_default()
            .entry(filter.to_owned())
            .or_default();
        let mut fresh = Vec::with_capacity(stored.len());
        for m in stored {
            let dup =
                seen.contains(&m.msgid) || retained.iter().any(|d| d.message.msgid == m.msgid);
            if dup {
                self.counters
                    .duplicates_skipped
                    .fetch_add(1, Ordering::Relaxed);
            } else {
                seen.insert(m.msgid);
                fresh.push(m);
            }
        }
        while seen.len() > self.delivered_cap {
            seen.pop_first();
        }
        fresh
    }

    /// session.unsubscribed: deletes the stored subscription (when on_subscribe_lookup is
    /// configured) and, with on_acked_delete, mqtt_acked[filter, clientid] (and, for a
    /// wildcard filter, the rows of the stored topics it matches).
    pub async fn unsubscribed(&self, clientid: &str, filter: &str) -> Result<(), BackendError> {
        if let Some(subs) = self.delivered.lock().get_mut(clientid) {
            subs.remove(filter);
        }
        if self.configured(HookFunction::OnSubscribeLookup) {
            self.submit(WriteOp::DeleteSub {
                clientid: clientid.to_owned(),
                topic: filter.to_owned(),
            })
            .await?;
        }
        let real = dynamq_codec::topic::parse_shared(filter).map_or(filter, |(_, f)| f);
        if self.hook(HookFunction::OnAckedDelete, real).is_some() {
            let mut topics = vec![real.to_owned()];
            if real.contains(['+', '#']) {
                topics.extend(
                    self.stored
                        .read()
                        .matching(real)
                        .into_iter()
                        .map(|(t, _)| t.to_owned()),
                );
            }
            for topic in topics {
                self.submit(WriteOp::DeleteAcked {
                    topic,
                    clientid: clientid.to_owned(),
                })
                .await?;
            }
        }
        Ok(())
    }

    /// message.publish. Gives the message its msgid (returned: keep it with the message and
    /// pass it to [`Backend::message_acked`]) and runs on_message_publish (QoS > 0: mqtt_msg +
    /// map), on_message_store (mqtt_msg), on_message_retain / on_retain_delete (retain flag;
    /// empty payload deletes). An empty retained message is never stored.
    pub async fn message_published(
        &self,
        msg: PublishedMessage<'_>,
    ) -> Result<MsgId, BackendError> {
        let msgid = self.ids.next_id();
        let record = || MessageRecord {
            msgid,
            topic: msg.topic.to_owned(),
            sender: msg.sender.to_owned(),
            qos: msg.qos,
            retain: msg.retain,
            payload: msg.payload.clone(),
            arrived: msgid.timestamp_secs(),
        };
        let empty_retained = msg.retain && msg.payload.is_empty();
        if msg.retain {
            if !empty_retained
                && self
                    .hook(HookFunction::OnMessageRetain, msg.topic)
                    .is_some()
            {
                let rec = record();
                self.retained
                    .write()
                    .insert(msg.topic.to_owned(), Arc::new(rec.clone()));
                self.submit(WriteOp::PutRetain(rec)).await?;
            } else if empty_retained && self.hook(HookFunction::OnRetainDelete, msg.topic).is_some()
            {
                self.retained.write().remove(msg.topic);
                self.submit(WriteOp::DeleteRetain {
                    topic: msg.topic.to_owned(),
                })
                .await?;
            }
        }
        if empty_retained {
            return Ok(msgid);
        }
        // A retained message reaches new subscribers through mqtt_retain (on_retain_lookup).
        // Queueing it too would replay it a second time, and replay it after it was replaced
        // or deleted: so only non-retained messages are queued.
        let queue = msg.qos > 0
            && !msg.retain
            && self
                .hook(HookFunction::OnMessagePublish, msg.topic)
                .is_some();
        if queue || self.hook(HookFunction::OnMessageStore, msg.topic).is_some() {
            self.submit(WriteOp::PutMsg(record())).await?;
        }
        if queue {
            self.submit(WriteOp::MapAdd {
                topic: msg.topic.to_owned(),
                msgids: vec![msgid],
            })
            .await?;
            let evicted = {
                let mut stored = self.stored.write();
                let ids = stored.entry(msg.topic);
                ids.insert(msgid);
                let mut evicted = Vec::new();
                while ids.len() > self.map_cap {
                    if let Some(old) = ids.pop_first() {
                        evicted.push(old);
                    }
                }
                evicted
            };
            if !evicted.is_empty() {
                let n = evicted.len() as u64;
                let before = self.counters.evicted.fetch_add(n, Ordering::Relaxed);
                // Logged at the first eviction and then once per 10,000: under a steady
                // overload every publish evicts, and a line each would flood the log.
                if before == 0 || before / 10_000 != (before + n) / 10_000 {
                    tracing::warn!(
                        topic = msg.topic,
                        cap = self.map_cap,
                        evicted_total = before + n,
                        "stored messages over the per-topic cap: oldest evicted"
                    );
                }
                self.remove_stored(msg.topic, evicted).await?;
            }
        }
        Ok(msgid)
    }

    /// Removes ids from a topic's map (store and index) and deletes their messages.
    async fn remove_stored(&self, topic: &str, ids: Vec<MsgId>) -> Result<(), BackendError> {
        if ids.is_empty() {
            return Ok(());
        }
        {
            let mut stored = self.stored.write();
            if let Some(set) = stored.get_mut(topic) {
                for id in &ids {
                    set.remove(id);
                }
                if set.is_empty() {
                    stored.remove(topic);
                }
            }
        }
        for id in &ids {
            self.submit(WriteOp::DeleteMsg { msgid: *id }).await?;
        }
        self.submit(WriteOp::MapRemove {
            topic: topic.to_owned(),
            msgids: ids,
        })
        .await
    }

    /// message.acked (PUBACK / PUBCOMP from a subscriber) for a message with this msgid.
    /// on_message_acked_for_queue: put mqtt_acked, delete the message and its map entry.
    /// Without it but with on_message_fetch_for_pubsub configured, only the mqtt_acked cursor
    /// is written (the message stays for other subscribers).
    pub async fn message_acked(
        &self,
        clientid: &str,
        topic: &str,
        msgid: MsgId,
    ) -> Result<(), BackendError> {
        let queue = self
            .hook(HookFunction::OnMessageAckedForQueue, topic)
            .is_some();
        if queue || self.configured(HookFunction::OnMessageFetchForPubsub) {
            self.submit(WriteOp::PutAcked(AckedRecord {
                topic: topic.to_owned(),
                clientid: clientid.to_owned(),
                msgid,
            }))
            .await?;
        }
        if queue {
            self.remove_stored(topic, vec![msgid]).await?;
        }
        Ok(())
    }

    /// Queues a raw store op (for tools and tests; the actions above are the normal path).
    /// The in-memory indexes are not updated: call [`Backend::refresh_indexes`] if needed.
    pub async fn write(&self, op: WriteOp) -> Result<(), BackendError> {
        self.submit(op).await
    }

    /// Waits until every write submitted so far is durable (or counted as failed).
    pub async fn flush(&self) -> Result<(), BackendError> {
        Ok(self.writer.flush().await?)
    }

    /// Flushes, stops the writer and waits for it, releasing the store (the embedded file's
    /// lock is free once this returns and every clone of the store is dropped).
    pub async fn close(self) -> Result<(), BackendError> {
        self.flush().await?;
        let task = self.writer_task.lock().take();
        let Backend { writer, store, .. } = self;
        drop(writer);
        drop(store);
        if let Some(task) = task {
            let _ = task.await;
        }
        Ok(())
    }

    pub fn stats(&self) -> BackendStats {
        let c = &self.counters;
        BackendStats {
            writer: self.writer.stats(),
            evicted: c.evicted.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            dangling: c.dangling.load(Ordering::Relaxed),
            duplicates_skipped: c.duplicates_skipped.load(Ordering::Relaxed),
            dropped_full: c.dropped_full.load(Ordering::Relaxed),
            read_errors: c.read_errors.load(Ordering::Relaxed),
            retained: self.retained.read().len() as u64,
            stored_topics: self.stored.read().len() as u64,
        }
    }

    /// Hook specs of an event, in order (for the broker's diagnostics).
    pub fn hooks_for(&self, event: HookEvent) -> impl Iterator<Item = &HookSpec> {
        self.hooks.iter().filter(move |h| h.event == event)
    }
}
