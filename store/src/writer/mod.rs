//! The write pipeline of one store: a memory buffer bounded in bytes, a journal on disk
//! for what does not fit, one batcher task that coalesces and groups ops, `pool_size`
//! concurrent batch requests, and retries with backoff and jitter.
//!
//! ```text
//! push / push_durable -> channel -> batcher
//!   Memory mode:  pending (key -> coalesced op) -> up to `pool_size` batches -> Store::write
//!   Spill mode:   every new op -> journal (append, fsync per group); pending is refilled
//!                 from the journal, in order, whenever memory falls under half the budget
//!   -> retryable failures: backoff + jitter, retry the failed ops only; others: counted,
//!      logged, and their `Durable`s resolve to `Failed`
//! ```
//! Ordering: a key never has two batches in flight, so ops on one key apply in push order;
//! ops on a key that is in flight wait (and keep coalescing) in `pending`.
//!
//! # Memory, journal, and why a crash leaves a journal that is safe to replay
//! Every op is counted at its estimated size ([`WriteOp::approx_bytes`]) from `push` until
//! it is applied or dropped (channel, pending, in flight, and groups not yet synced to the
//! journal). Over `buffer_bytes` the writer switches to Spill mode: from then on *every* new
//! op, from any producer, is appended to the journal, so the journal holds a suffix of the
//! op stream, in order. Pending is refilled from the journal's records in order, after the
//! ops already pending (which are older), so per-key order holds across memory -> journal
//! -> memory. A record is read back only once its group is synced, so the store never has
//! an op whose record a crash could lose while keeping older records of the same key.
//! When every record has been read, new ops are held in memory (Draining) until every
//! record is *applied*; then the file is cut to empty, and only once that is synced do the
//! held ops and new ones go to pending again (Memory mode). So at any moment, no op pushed
//! after the journal's first record has reached the store except through the journal, in
//! order. At a crash, the journal is such a suffix and some prefix of it (per key) may
//! already be applied; replaying it whole, in order, ends with the same state of every key
//! it touches as if it had been applied once: puts and deletes are absolute (last wins),
//! `ClientOffline` sets absolute values, and map adds and removes are set operations where
//! the last op on an id wins. Ops that were only in memory at a crash are lost, as they
//! would be without a journal (`--durability async`; `sync` acknowledges only what is
//! applied).
//!
//! Bounds: the journal holds at most `journal.max_bytes`; beyond, ops that would go to it
//! are dropped (`dropped_journal_full`). Producers never wait: an op that arrives while
//! memory holds twice the budget (the journal cannot keep up), or over the budget without a
//! journal, is dropped at `push` (`dropped_buffer_full`). Drops are logged at most once per
//! 10 s with their count, and a dropped `push_durable` op resolves its [`Durable`] to
//! [`NotStored::Dropped`].
//!
//! At start, a journal with records puts the writer in Spill mode and replays them first,
//! before any new op; a corrupt record stops the replay there ([`journal`]).
//!
//! `flush()` resolves once every op pushed before it has been applied or has failed for
//! good (counted in `failed` and logged), journaled ones included. With `max_attempts` unset
//! a retryable failure (outage, throttling) is retried until it succeeds.

mod batcher;
mod durable;
pub mod journal;
pub mod metrics;
mod pending;
mod record_form;
mod retry;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::op::WriteOp;
use crate::store::Store;
use durable::Tracker;
pub use durable::{Durable, NotStored};
pub use journal::{JournalConfig, Recovery};
pub use metrics::{HistogramSnapshot, WriterMetrics};

/// How the writer buffers, batches and retries.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Bytes of ops (estimated) held in memory before new ops go to the journal (or, without
    /// one, are dropped).
    pub buffer_bytes: u64,
    /// Where ops go when memory is full; `None`: they are dropped (counted).
    pub journal: Option<JournalConfig>,
    /// Batches in flight at once (the tutorial's `pool_size`).
    pub pool_size: usize,
    /// Distinct keys per batch: 25 for DynamoDB (the BatchWriteItem limit); larger for the
    /// embedded store, where a batch is one transaction.
    pub max_batch: usize,
    /// First retry delay; doubles per attempt up to `backoff_max`, plus up to 50% jitter.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Give up on a retryable failure after this many attempts (counted in `failed`).
    /// `None`: retry until it succeeds.
    pub max_attempts: Option<u32>,
    /// How long an op waits in memory before it is written, so that later ops of the same
    /// key fold into it: a stored message acknowledged within `hold` is never written (its
    /// put and delete cancel), and a topic's map adds and removes cancel the same way. Not
    /// applied while a `Durable` or a flush waits, while memory holds half the budget, in a
    /// spill, or at shutdown. Zero: write as soon as the pool has room.
    pub hold: Duration,
}

/// The default memory budget: 64 MiB.
pub const DEFAULT_BUFFER_BYTES: u64 = 64 << 20;

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            buffer_bytes: DEFAULT_BUFFER_BYTES,
            journal: None,
            pool_size: 8,
            max_batch: 25,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            max_attempts: None,
            hold: Duration::ZERO,
        }
    }
}

/// The writer task has stopped (only after every handle was dropped, or a panic).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("store writer has stopped")]
pub struct WriterClosed;

/// Counters since start (monotonic except the gauges `pending`, `buffered_bytes`,
/// `journal_ops`, `journal_bytes`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Ops accepted by push (dropped ones included).
    pub submitted: u64,
    /// Ops folded into an earlier op on the same key (never sent on their own).
    pub coalesced: u64,
    /// Ops applied by the store (after coalescing; map add/remove count one per set).
    pub written: u64,
    /// Ops given up on (non-retryable error, or `max_attempts` reached). Each is logged.
    pub failed: u64,
    /// Batch retries after a failure.
    pub retries: u64,
    /// Store write calls made (first attempts).
    pub batches: u64,
    /// Ops queued, held or in flight in memory, not yet applied (a gauge).
    pub pending: u64,
    /// Estimated bytes of ops in memory (a gauge; see `WriterConfig::buffer_bytes`).
    pub buffered_bytes: u64,
    /// Journal records not yet read back (a gauge).
    pub journal_ops: u64,
    /// Size of the journal file, with groups being written (a gauge).
    pub journal_bytes: u64,
    /// Ops appended to the journal.
    pub spilled: u64,
    /// Ops read back from the journal (at start and after a spill).
    pub replayed: u64,
    /// Ops dropped because the journal was full.
    pub dropped_journal_full: u64,
    /// Ops dropped because memory was full (twice the budget with a journal, the budget
    /// without).
    pub dropped_buffer_full: u64,
    /// Ops lost to journal I/O errors or corrupt records found while running (logged).
    pub dropped_journal_error: u64,
}

#[derive(Debug)]
struct Counters {
    submitted: AtomicU64,
    coalesced: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    batches: AtomicU64,
    pending: AtomicU64,
    buffered_bytes: AtomicU64,
    journal_ops: AtomicU64,
    journal_bytes: AtomicU64,
    spilled: AtomicU64,
    replayed: AtomicU64,
    dropped_journal_full: AtomicU64,
    dropped_buffer_full: AtomicU64,
    dropped_journal_error: AtomicU64,
    dist: metrics::Distributions,
    buffer_full_log: metrics::DropLog,
    journal_full_log: metrics::DropLog,
}

impl Default for Counters {
    fn default() -> Self {
        Counters {
            submitted: AtomicU64::new(0),
            coalesced: AtomicU64::new(0),
            written: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            buffered_bytes: AtomicU64::new(0),
            journal_ops: AtomicU64::new(0),
            journal_bytes: AtomicU64::new(0),
            spilled: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            dropped_journal_full: AtomicU64::new(0),
            dropped_buffer_full: AtomicU64::new(0),
            dropped_journal_error: AtomicU64::new(0),
            dist: metrics::Distributions::default(),
            buffer_full_log: metrics::DropLog::new("memory buffer full"),
            journal_full_log: metrics::DropLog::new("journal full"),
        }
    }
}

/// What producers send the batcher.
enum Msg {
    Op {
        op: WriteOp,
        /// Its `approx_bytes`, counted in `buffered_bytes` since `push`.
        bytes: u64,
        tracker: Option<Tracker>,
    },
    Flush(oneshot::Sender<()>),
    Recovery(oneshot::Sender<Recovery>),
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Op { op, .. } => write!(f, "Op({op:?})"),
            Msg::Flush(_) => f.write_str("Flush"),
            Msg::Recovery(_) => f.write_str("Recovery"),
        }
    }
}

/// Handle to a store's writer task. Cloning is cheap; the task drains and stops when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Msg>,
    /// Bytes in memory beyond which `push` drops.
    drop_above: u64,
    counters: Arc<Counters>,
}

impl Writer {
    /// Starts the batcher task (and the journal's thread, if configured) on the current
    /// tokio runtime. The journal is opened and checked by its thread; ops pushed meanwhile
    /// wait until its records were queued first. A journal that cannot be opened is logged
    /// and the writer runs without one.
    pub fn spawn<S: Store>(store: Arc<S>, config: WriterConfig) -> Writer {
        Writer::spawn_with_handle(store, config).0
    }

    /// Like [`Writer::spawn`], also returning the task, which ends once every handle is dropped
    /// and everything queued is written (await it to know the store is released).
    pub fn spawn_with_handle<S: Store>(
        store: Arc<S>,
        config: WriterConfig,
    ) -> (Writer, tokio::task::JoinHandle<()>) {
        let config = WriterConfig {
            pool_size: config.pool_size.max(1),
            max_batch: config.max_batch.max(1),
            buffer_bytes: config.buffer_bytes.max(1),
            ..config
        };
        let drop_above = if config.journal.is_some() {
            config.buffer_bytes.saturating_mul(2)
        } else {
            config.buffer_bytes
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let counters = Arc::new(Counters::default());
        let batcher = batcher::Batcher::new(store, config, counters.clone());
        let task = tokio::spawn(batcher.run(rx));
        (
            Writer {
                tx,
                drop_above,
                counters,
            },
            task,
        )
    }

    /// Queues an op without ever waiting. Over the memory bound it is dropped and counted
    /// (`dropped_buffer_full`); the error is only for a stopped writer.
    pub fn push(&self, op: WriteOp) -> Result<(), WriterClosed> {
        self.send_op(op, None)
    }

    fn send_op(&self, op: WriteOp, tracker: Option<Tracker>) -> Result<(), WriterClosed> {
        let c = &self.counters;
        let bytes = op.approx_bytes();
        let before = c.buffered_bytes.fetch_add(bytes, Ordering::Relaxed);
        if before > 0 && before + bytes > self.drop_above {
            c.buffered_bytes.fetch_sub(bytes, Ordering::Relaxed);
            if self.tx.is_closed() {
                return Err(WriterClosed);
            }
            c.submitted.fetch_add(1, Ordering::Relaxed);
            c.dropped_buffer_full.fetch_add(1, Ordering::Relaxed);
            c.buffer_full_log.dropped(&op);
            if let Some(t) = tracker {
                t.not_stored(NotStored::Dropped);
            }
            return Ok(());
        }
        if self.tx.send(Msg::Op { op, bytes, tracker }).is_err() {
            c.buffered_bytes.fetch_sub(bytes, Ordering::Relaxed);
            return Err(WriterClosed);
        }
        c.submitted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Queues ops without waiting, and returns what resolves once *these* ops (or the
    /// pending writes they were coalesced into) are applied and durable in the store (for
    /// acknowledgements that promise it: `--durability sync`), or one of them failed for
    /// good or was dropped.
    pub fn push_durable(
        &self,
        ops: impl IntoIterator<Item = WriteOp>,
    ) -> Result<Durable, WriterClosed> {
        let ops: Vec<WriteOp> = ops.into_iter().collect();
        if ops.is_empty() {
            return if self.tx.is_closed() {
                Err(WriterClosed)
            } else {
                Ok(Durable::ready(Ok(())))
            };
        }
        let (tracker, durable) = Tracker::new(ops.len());
        for op in ops {
            self.send_op(op, Some(tracker.clone()))?;
        }
        Ok(durable)
    }

    /// Resolves when every op pushed before this call has been applied or counted as
    /// failed or dropped (journaled ops included). During an outage this waits for the
    /// store: wrap it in a timeout at shutdown.
    pub async fn flush(&self) -> Result<(), WriterClosed> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Flush(tx)).map_err(|_| WriterClosed)?;
        rx.await.map_err(|_| WriterClosed)
    }

    /// What the journal held when the writer started (default: no journal, or empty). Waits
    /// until the journal was opened and checked.
    pub async fn recovery(&self) -> Result<Recovery, WriterClosed> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Recovery(tx)).map_err(|_| WriterClosed)?;
        rx.await.map_err(|_| WriterClosed)
    }

    pub fn stats(&self) -> WriterStats {
        let c = &self.counters;
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        WriterStats {
            submitted: l(&c.submitted),
            coalesced: l(&c.coalesced),
            written: l(&c.written),
            failed: l(&c.failed),
            retries: l(&c.retries),
            batches: l(&c.batches),
            pending: l(&c.pending),
            buffered_bytes: l(&c.buffered_bytes),
            journal_ops: l(&c.journal_ops),
            journal_bytes: l(&c.journal_bytes),
            spilled: l(&c.spilled),
            replayed: l(&c.replayed),
            dropped_journal_full: l(&c.dropped_journal_full),
            dropped_buffer_full: l(&c.dropped_buffer_full),
            dropped_journal_error: l(&c.dropped_journal_error),
        }
    }

    /// Batch-size and write-latency histograms, and failures by error code.
    pub fn metrics(&self) -> WriterMetrics {
        self.counters.dist.snapshot()
    }
}
