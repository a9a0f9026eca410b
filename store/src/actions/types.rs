//! The types of the [`super::Actions`] API: its configuration, its inputs and outputs, its
//! errors and counters.

use std::path::PathBuf;

use bytes::Bytes;

use crate::dynamo::DynamoConfig;
use crate::error::StoreError;
use crate::record::MessageProps;
use crate::writer::{WriterClosed, WriterConfig, WriterMetrics, WriterStats};

/// Which store, and where.
#[derive(Debug, Clone)]
pub enum StoreConfig {
    /// redb file `dynamq.redb` in this directory (created if missing).
    Embedded {
        data_dir: PathBuf,
    },
    Dynamo(DynamoConfig),
}

/// What the writer does with writes that do not fit its memory buffer
/// (`ActionsConfig::buffer_bytes`). Neither ever makes the event's caller wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OverflowPolicy {
    /// Spill them to the journal in the data directory (replayed in order when the store
    /// answers again, and at start); only when the journal is full
    /// (`ActionsConfig::journal_bytes`) are they dropped, counted
    /// (`WriterStats::dropped_journal_full`) and logged. The name is the config value
    /// `overflow = "wait"`, kept for existing files: writes wait in the journal, not the
    /// publisher.
    #[default]
    Wait,
    /// Never journal: drop them, count them (`WriterStats::dropped_buffer_full`) and log
    /// them (rate-limited).
    Drop,
}

/// The default of [`ActionsConfig::coalesce`]: 100 ms, longer than nearly every
/// acknowledgement of a subscriber that keeps up (p99 of a 1→1 QoS 1 flood: a few ms), short
/// against what `--durability async` already risks at a crash.
pub const DEFAULT_COALESCE: std::time::Duration = std::time::Duration::from_millis(100);

/// Everything [`super::Actions::new`] needs besides the hooks.
#[derive(Debug, Clone)]
pub struct ActionsConfig {
    pub store: StoreConfig,
    /// This broker node's name: mixed into msgids (EMQX's node+pid hash).
    pub node: String,
    /// `None`: defaults for the store (DynamoDB: 25 per batch, `pool_size` requests in
    /// flight; embedded: 512 per transaction, 2 transactions in flight) with `buffer_bytes`
    /// and the journal below. `Some`: exactly this (its own `buffer_bytes` and `journal`).
    pub writer: Option<WriterConfig>,
    pub overflow: OverflowPolicy,
    /// The writer's memory budget in bytes (ops estimated by `WriteOp::approx_bytes`).
    pub buffer_bytes: u64,
    /// Where the writer's journal lives (the broker's data directory), whatever the store;
    /// `None`: no journal (over the budget, writes are dropped).
    pub journal_dir: Option<PathBuf>,
    /// Most bytes the journal file holds.
    pub journal_bytes: u64,
    /// How long a write waits in memory so that later writes of the same item fold into it
    /// (`WriterConfig::hold`): a stored message acknowledged within it is never written.
    pub coalesce: std::time::Duration,
    /// Most ids kept in one mqtt_topic_msg_map item: the tutorial's item holds a topic's
    /// newest ids, older ones move to overflow items `"<topic>#<n>"` of as many ids each (see
    /// `topic_ids`). 5,000 ids of ~47 bytes stay well under DynamoDB's 400 KB item.
    pub map_cap_per_topic: usize,
    /// Most msgids remembered per subscription to avoid replaying a stored message twice.
    pub delivered_cap_per_subscription: usize,
    /// Most stored ids per topic, over all its map items: beyond it the oldest are evicted
    /// (their messages deleted), counted in `evicted` and logged. 0: unlimited. It bounds
    /// what one topic costs: ~16 bytes of memory per id in the index, ~47 bytes per id in
    /// the map items and a message item each in the store.
    pub max_stored_per_topic: usize,
}

impl ActionsConfig {
    /// Defaults: 64 MiB of memory buffer, a 1 GiB journal in the embedded store's data
    /// directory (none for DynamoDB unless `journal_dir` is set).
    pub fn new(store: StoreConfig, node: impl Into<String>) -> ActionsConfig {
        let journal_dir = match &store {
            StoreConfig::Embedded { data_dir } => Some(data_dir.clone()),
            StoreConfig::Dynamo(_) => None,
        };
        ActionsConfig {
            journal_dir,
            buffer_bytes: crate::writer::DEFAULT_BUFFER_BYTES,
            journal_bytes: 1 << 30,
            coalesce: DEFAULT_COALESCE,
            store,
            node: node.into(),
            writer: None,
            overflow: OverflowPolicy::Wait,
            map_cap_per_topic: 5_000,
            delivered_cap_per_subscription: 10_000,
            max_stored_per_topic: 100_000,
        }
    }
}

/// Errors the actions return to the broker.
#[derive(Debug, thiserror::Error)]
pub enum ActionsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    WriterClosed(#[from] WriterClosed),
    /// The message's mqtt_msg / mqtt_retain item would pass DynamoDB's item size limit
    /// (payload base64-encoded when not UTF-8, attribute names counted): nothing of it was
    /// written, and it is counted in `too_large`. The broker refuses the publish: v5
    /// PUBACK / PUBREC 0x97 (Quota exceeded; they have no 0x95), v3 closes the
    /// connection (a v3 PUBACK cannot refuse). Never returned by the embedded store.
    #[error("message item of {bytes} bytes passes DynamoDB's {limit}-byte item limit")]
    TooLarge { bytes: usize, limit: usize },
}

/// A message published by a client, as [`super::Actions::message_published`] needs it.
#[derive(Debug, Clone)]
pub struct PublishedMessage<'a> {
    pub topic: &'a str,
    /// The publisher's client id.
    pub sender: &'a str,
    pub qos: u8,
    pub retain: bool,
    pub payload: &'a Bytes,
    /// The v5 properties stored with the message (default for v3).
    pub props: MessageProps,
}

/// Counters of the actions (the writer's are in `writer`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ActionsStats {
    pub writer: WriterStats,
    /// Ids evicted beyond `max_stored_per_topic` (their messages deleted).
    pub evicted: u64,
    /// Ids dropped because they were older than a fetch's `time_range`.
    pub expired: u64,
    /// Stored or retained messages found past their Message Expiry Interval: not
    /// delivered, and deleted.
    pub message_expired: u64,
    /// Ids found in a map item without their mqtt_msg item (removed from the map).
    pub dangling: u64,
    /// Stored messages not replayed because this subscription already got them.
    pub duplicates_skipped: u64,
    /// Stored-message replays that failed on a store read (logged; SUBSCRIBE still served).
    pub read_errors: u64,
    /// Stored sessions found expired when their client came back, and deleted.
    pub sessions_expired: u64,
    /// Topics with stored messages in the index.
    pub stored_topics: u64,
    /// Messages refused because their DynamoDB item would pass 400 KB
    /// ([`ActionsError::TooLarge`]).
    pub too_large: u64,
    /// Ids moved from a topic's tutorial item to its overflow items.
    pub moved_to_overflow: u64,
}

impl super::Actions {
    /// The writer's histograms and failures by error code (what does not fit the `Copy`
    /// [`ActionsStats`]).
    pub fn writer_metrics(&self) -> WriterMetrics {
        self.writer.metrics()
    }
}
