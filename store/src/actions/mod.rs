//! The hook actions: broker events in, store ops and lookups out ([`Actions`]).
//!
//! Each method runs only the functions configured for its event (the hook's topic filter is
//! matched against the message topic, or the subscription filter for session events), as in
//! DESIGN.md's action table. Writes go through the [`Writer`]; reads are awaited.
//!
//! Stored messages (on_message_publish) are never evicted while a subscriber may need them,
//! up to a per-topic budget (`max_stored_per_topic`, default 100,000 ids; beyond it the
//! oldest are evicted and counted in `evicted`). mqtt_topic_msg_map keeps DynamoDB's 400 KB
//! item limit by spreading a topic's ids over several items: the tutorial's item holds the
//! newest `map_cap_per_topic` ids, older ones live in overflow items `"<topic>#<n>"` (layout
//! and crash-safety of the moves in [`topic_ids`]). The in-memory index knows every id of a
//! topic and which item holds it; every reader (start, replay, ack, eviction, unsubscribe)
//! goes through it, and its keys are real topics only, so an overflow item is never taken
//! for a topic nor matched by a wildcard filter.
//!
//! On DynamoDB, a message whose mqtt_msg / mqtt_retain item would pass 400 KB is refused
//! before anything is written ([`ActionsError::TooLarge`], counted in `too_large`).

mod delay;
mod fetch;
mod mover;
mod publication;
mod publish;
mod session;
mod stored;
mod topic_ids;
mod types;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use dynamq_codec::topic_map::TopicMap;

use crate::any::AnyStore;
use crate::binding::{Action, Binding};
use crate::dynamo::DynamoStore;
use crate::embedded::EmbeddedStore;
use crate::msgid::{MsgId, MsgIdGen};
use crate::op::WriteOp;
use crate::record::{ClientRecord, MessageRecord, RetainRecord, SubRecord};
use crate::shrink::Shrink;
use crate::store::Store;
use crate::writer::{Durable, JournalConfig, Writer, WriterConfig};
use delay::DelayLine;
use mover::Mover;
pub use publication::Publication;
pub use session::StoredSession;
use topic_ids::TopicIds;
pub use types::{
    ActionsConfig, ActionsError, ActionsStats, DEFAULT_COALESCE, OverflowPolicy, PublishedMessage,
    StoreConfig,
};

#[derive(Debug, Default)]
struct Counters {
    evicted: AtomicU64,
    expired: AtomicU64,
    message_expired: AtomicU64,
    dangling: AtomicU64,
    duplicates_skipped: AtomicU64,
    read_errors: AtomicU64,
    sessions_expired: AtomicU64,
    too_large: AtomicU64,
    moved_to_overflow: AtomicU64,
}

/// The actions and their state. Share it with `Arc<Actions>`.
#[derive(Debug)]
pub struct Actions {
    store: AnyStore,
    writer: Writer,
    writer_task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    bindings: Vec<Binding>,
    ids: MsgIdGen,
    /// Most ids in one map item: the tutorial's item holds the newest this many.
    map_cap: usize,
    delivered_cap: usize,
    /// Most ids per topic over all its map items (0: unlimited).
    max_stored: usize,
    /// mqtt_topic_msg_map, by (real) topic: every id of the topic and the item holding it.
    stored: RwLock<TopicMap<TopicIds>>,
    /// Finishes moves to overflow items: removes ids from the tutorial's item once their
    /// add to the overflow item is durable.
    mover: Mover,
    /// Stored messages' writes waiting `coalesce`, so that a quick acknowledgement cancels
    /// them.
    delay: Arc<DelayLine>,
    /// Stored msgids already replayed, per client and subscription filter (cleared on
    /// unsubscribe and disconnect).
    delivered: Mutex<HashMap<String, HashMap<String, BTreeSet<MsgId>>>>,
    /// Per connected client: stored messages older than this (µs) are not replayed to it,
    /// because they were published before it went offline (or, for a client never seen
    /// before, before it first connected). Set by client.connected from mqtt_client. Keyed
    /// by the broker's own shared client id (no copy of the string per client), and shrunk
    /// when a burst of clients has gone (see [`crate::shrink`]): it is the one map of
    /// the store with an entry per connected client.
    replay_since: Mutex<HashMap<Arc<str>, u64>>,
    counters: Counters,
}

impl Actions {
    /// Opens the store, loads the indexes and starts the writer.
    pub async fn new(
        config: ActionsConfig,
        bindings: Vec<Binding>,
    ) -> Result<Actions, ActionsError> {
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
        let writer_config = config.writer.clone().unwrap_or_else(|| WriterConfig {
            buffer_bytes: config.buffer_bytes,
            hold: config.coalesce,
            journal: match (config.overflow, &config.journal_dir) {
                (OverflowPolicy::Wait, Some(dir)) => Some(JournalConfig {
                    dir: dir.clone(),
                    max_bytes: config.journal_bytes,
                }),
                _ => None,
            },
            ..default_writer
        });
        Actions::with_store(store, writer_config, &config, bindings).await
    }

    /// Like [`Actions::new`] with an already opened store.
    pub async fn with_store(
        store: AnyStore,
        writer_config: WriterConfig,
        config: &ActionsConfig,
        bindings: Vec<Binding>,
    ) -> Result<Actions, ActionsError> {
        let (writer, task) = Writer::spawn_with_handle(Arc::new(store.clone()), writer_config);
        let actions = Actions {
            store,
            writer: writer.clone(),
            writer_task: Mutex::new(Some(task)),
            bindings,
            ids: MsgIdGen::new(&config.node),
            map_cap: config.map_cap_per_topic.max(1),
            delivered_cap: config.delivered_cap_per_subscription.max(1),
            max_stored: config.max_stored_per_topic,
            stored: RwLock::new(TopicMap::default()),
            mover: Mover::spawn(writer.clone()),
            delay: DelayLine::spawn(writer.clone(), config.coalesce),
            delivered: Mutex::new(HashMap::new()),
            replay_since: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        };
        // Ops replayed from the journal come before anything the indexes would miss: wait
        // for them (during an outage this waits for the store, and says so).
        let recovery = actions.writer.recovery().await?;
        if recovery.records > 0 {
            let flush = actions.writer.flush();
            tokio::pin!(flush);
            let started = std::time::Instant::now();
            loop {
                match tokio::time::timeout(std::time::Duration::from_secs(10), &mut flush).await {
                    Ok(done) => break done?,
                    Err(_) => tracing::warn!(
                        records = recovery.records,
                        waited_secs = started.elapsed().as_secs(),
                        "still replaying the store journal before loading the indexes"
                    ),
                }
            }
        }
        actions.refresh_indexes().await?;
        Ok(actions)
    }

    /// The store, for direct reads.
    pub fn store(&self) -> &AnyStore {
        &self.store
    }

    /// The bindings in force.
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// The retained messages to deliver on subscribe (mqtt_retain, one Scan), if
    /// on_retain_lookup is bound: the broker keeps them in its retained index, which serves
    /// every subscription. `None` if it is not bound. Those whose Message Expiry Interval
    /// ran out (while stored, or while the broker was down) are left out and deleted
    /// [MQTT-3.3.2-5], and counted (`message_expired`).
    pub async fn retained_messages(&self) -> Result<Option<Vec<RetainRecord>>, ActionsError> {
        if !self.binds(Action::OnRetainLookup) {
            return Ok(None);
        }
        let mut all = self.store.retained_all().await?;
        let now = crate::record::now_millis();
        let mut expired = Vec::new();
        all.retain(|r| {
            let gone = r.is_expired(now);
            if gone {
                expired.push(r.topic.clone());
            }
            !gone
        });
        if !expired.is_empty() {
            self.counters
                .message_expired
                .fetch_add(expired.len() as u64, Ordering::Relaxed);
            tracing::info!(count = expired.len(), "expired retained messages deleted");
            // Read at start, before any client can publish a newer retained message on
            // these topics: the delete removes only the expired one.
            for topic in expired {
                self.submit(WriteOp::DeleteRetain { topic })?;
            }
        }
        Ok(Some(all))
    }

    /// The first hook binding `function` whose filter matches `topic` (`None` filter: any).
    fn binding(&self, action: Action, topic: &str) -> Option<&Binding> {
        self.bindings.iter().find(|h| {
            h.action == action
                && h.topic_filter
                    .as_deref()
                    .is_none_or(|f| dynamq_codec::topic::matches(f, topic))
        })
    }

    /// True if `action` is bound to its event (for any topic).
    pub fn binds(&self, action: Action) -> bool {
        self.bindings.iter().any(|h| h.action == action)
    }

    /// Queues a write; never waits (the writer buffers, journals or drops it: see
    /// [`OverflowPolicy`]).
    fn submit(&self, op: WriteOp) -> Result<(), ActionsError> {
        Ok(self.writer.push(op)?)
    }

    /// client.connected: on_client_connected puts mqtt_client {connect_state 1, online_at now,
    /// offline_at 0}, with `awaiting_rel`: the packet ids of QoS 2 messages the session has
    /// received and not released (the put replaces the whole item, so it carries those the
    /// broker keeps: see [`Actions::keeps_awaiting_rel`]; empty ones drop them). Pass the
    /// broker's shared client id (`Arc<str>`) to keep no copy of it while the client is
    /// connected; a `&str` works too (it is copied).
    pub async fn client_connected(
        &self,
        clientid: impl Into<Arc<str>>,
        node: &str,
        now: u64,
        awaiting_rel: BTreeSet<u16>,
    ) -> Result<(), ActionsError> {
        let shared: Arc<str> = clientid.into();
        let clientid = &*shared;
        if self.binds(Action::OnMessageFetchForQueue) || self.binds(Action::OnMessageFetchForPubsub)
        {
            // Offline messages are those published while the client was away: read when it
            // left before this connection's record replaces it. A client never seen before
            // gets no history, as with any MQTT broker.
            let since = match self.store.client(clientid).await {
                Ok(Some(rec)) if rec.connect_state == 0 => rec.offline_at.saturating_mul(1_000_000),
                // Recorded online: the broker stopped before recording the disconnect.
                Ok(Some(rec)) => rec.online_at.saturating_mul(1_000_000),
                // Now, as a mark between the ids given so far and those to come.
                Ok(None) => self.ids.mark_micros(),
                Err(e) => {
                    self.replay_since
                        .lock()
                        .insert(shared, self.ids.mark_micros());
                    return Err(e.into());
                }
            };
            self.replay_since.lock().insert(shared.clone(), since);
        }
        if self.binds(Action::OnClientConnected) {
            self.submit(WriteOp::PutClient(ClientRecord {
                clientid: clientid.to_owned(),
                node: node.to_owned(),
                connect_state: 1,
                online_at: now,
                offline_at: 0,
                session_expires_at: None,
                awaiting_rel,
            }))?;
        }
        Ok(())
    }

    /// client.disconnected: on_client_disconnected sets connect_state 0 and offline_at, and
    /// `session_expires_at` = now + `session_expiry` seconds (`None`: the session never
    /// expires). The client's replay-dedup memory is dropped (a new connection may replay
    /// again).
    pub fn client_disconnected(
        &self,
        clientid: &str,
        now: u64,
        session_expiry: Option<u32>,
    ) -> Result<(), ActionsError> {
        {
            let mut delivered = self.delivered.lock();
            delivered.remove(clientid);
            delivered.shrink_after_burst();
        }
        {
            let mut since = self.replay_since.lock();
            since.remove(clientid);
            since.shrink_after_burst();
        }
        if self.binds(Action::OnClientDisconnected) {
            self.submit(WriteOp::ClientOffline {
                clientid: clientid.to_owned(),
                offline_at: now,
                session_expires_at: session_expiry.map(|s| now.saturating_add(u64::from(s))),
            })?;
        }
        Ok(())
    }

    /// session.subscribed. Stores the subscription (when on_subscribe_lookup is bound) and
    /// returns the stored messages to replay (on_message_fetch_for_queue / _for_pubsub; only
    /// for a new subscription with QoS > 0), in msgid order, leaving out those this
    /// subscription already had. Tell [`Actions::replayed`] which of them were queued: only
    /// those count as had. A failed replay read is counted (`read_errors`) and logged, and
    /// nothing is replayed (the messages stay stored for the next subscription).
    pub async fn subscribed(
        &self,
        clientid: &str,
        filter: &str,
        qos: u8,
        is_new: bool,
    ) -> Result<Vec<MessageRecord>, ActionsError> {
        if self.binds(Action::OnSubscribeLookup) {
            self.submit(WriteOp::PutSub(SubRecord {
                clientid: clientid.to_owned(),
                topic: filter.to_owned(),
                qos,
            }))?;
        }
        if qos == 0 || !is_new {
            return Ok(Vec::new());
        }
        let real = dynamq_codec::topic::parse_shared(filter).map_or(filter, |(_, f)| f);
        let mut stored = match self.fetch_stored(clientid, real).await {
            Ok(stored) => stored,
            Err(e) => {
                self.counters.read_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(clientid, filter, error = %e, "stored message replay failed");
                return Ok(Vec::new());
            }
        };
        if let Some(seen) = self
            .delivered
            .lock()
            .get(clientid)
            .and_then(|subs| subs.get(filter))
        {
            let before = stored.len();
            stored.retain(|m| !seen.contains(&m.msgid));
            let skipped = (before - stored.len()) as u64;
            self.counters
                .duplicates_skipped
                .fetch_add(skipped, Ordering::Relaxed);
        }
        Ok(stored)
    }

    /// The stored messages of [`Actions::subscribed`] that the broker queued for this
    /// subscription: they are not replayed to it again (until it unsubscribes or the client
    /// disconnects). One not queued (its session queue was full) stays replayable.
    pub fn replayed(&self, clientid: &str, filter: &str, msgids: &[MsgId]) {
        if msgids.is_empty() {
            return;
        }
        let mut all = self.delivered.lock();
        let seen = all
            .entry(clientid.to_owned())
            .or_default()
            .entry(filter.to_owned())
            .or_default();
        seen.extend(msgids.iter().copied());
        while seen.len() > self.delivered_cap {
            seen.pop_first();
        }
    }

    /// session.unsubscribed: deletes the stored subscription (when on_subscribe_lookup is
    /// configured) and, with on_acked_delete, mqtt_acked[filter, clientid] (and, for a
    /// wildcard filter, the rows of the stored topics it matches: the index's real topics,
    /// never the `"<topic>#<n>"` overflow items).
    pub fn unsubscribed(&self, clientid: &str, filter: &str) -> Result<(), ActionsError> {
        if let Some(subs) = self.delivered.lock().get_mut(clientid) {
            subs.remove(filter);
        }
        if self.binds(Action::OnSubscribeLookup) {
            self.submit(WriteOp::DeleteSub {
                clientid: clientid.to_owned(),
                topic: filter.to_owned(),
            })?;
        }
        let real = dynamq_codec::topic::parse_shared(filter).map_or(filter, |(_, f)| f);
        if self.binding(Action::OnAckedDelete, real).is_some() {
            self.catch_up()?;
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
                self.delay.delete_acked(topic, clientid.to_owned())?;
            }
        }
        Ok(())
    }

    /// Queues a raw store op (for tools and tests; the actions above are the normal path).
    /// The in-memory indexes are not updated: call [`Actions::refresh_indexes`] if needed.
    pub fn write(&self, op: WriteOp) -> Result<(), ActionsError> {
        self.submit(op)
    }

    /// Waits until every write submitted so far is durable (or counted as failed),
    /// including the removals that finish moves to overflow items.
    pub async fn flush(&self) -> Result<(), ActionsError> {
        self.delay.drain_all()?;
        self.catch_up()?;
        self.mover.flush().await;
        Ok(self.writer.flush().await?)
    }

    /// Flushes, stops the writer and waits for it, releasing the store (the embedded file's
    /// lock is free once this returns and every clone of the store is dropped).
    pub async fn close(self) -> Result<(), ActionsError> {
        self.flush().await?;
        let task = self.writer_task.lock().take();
        let Actions {
            writer,
            store,
            mover,
            delay,
            ..
        } = self;
        // The delay line holds a writer handle too (drained by the flush above).
        drop(delay);
        // The mover holds a writer handle: it must end first for the writer to stop.
        mover.close().await;
        drop(writer);
        drop(store);
        if let Some(task) = task {
            let _ = task.await;
        }
        Ok(())
    }

    pub fn stats(&self) -> ActionsStats {
        let c = &self.counters;
        ActionsStats {
            writer: {
                let mut w = self.writer.stats();
                w.pending += self.delay.len() as u64;
                w
            },
            evicted: c.evicted.load(Ordering::Relaxed),
            expired: c.expired.load(Ordering::Relaxed),
            message_expired: c.message_expired.load(Ordering::Relaxed),
            dangling: c.dangling.load(Ordering::Relaxed),
            duplicates_skipped: c.duplicates_skipped.load(Ordering::Relaxed),
            read_errors: c.read_errors.load(Ordering::Relaxed),
            sessions_expired: c.sessions_expired.load(Ordering::Relaxed),
            stored_topics: self.stored.read().len() as u64,
            too_large: c.too_large.load(Ordering::Relaxed),
            moved_to_overflow: c.moved_to_overflow.load(Ordering::Relaxed),
        }
    }
}
