//! The write pipeline of one store: a bounded queue of ops, one batcher task that coalesces
//! and groups them, `pool_size` concurrent batch requests, and retries with backoff.
//!
//! ```text
//! submit / try_submit -> bounded mpsc -> batcher (pending: key -> coalesced op)
//!     -> up to `pool_size` batch tasks in flight, each <= `max_batch` keys -> Store::write
//!          -> retryable failures: backoff, retry the failed ops only; others: counted + logged
//! ```
//! Ordering: a key never has two batches in flight, so ops on one key apply in submission
//! order; ops on a key that is in flight wait (and keep coalescing) in `pending`.
//! Durability: `flush()` resolves once every op submitted before it has been applied (or has
//! failed for good, which is counted in `failed` and logged). With `max_attempts` unset a
//! retryable failure (outage, throttling) is retried until it succeeds: writes are delayed,
//! never dropped, and the bounded queue pushes back on `submit` (and fails `try_submit`).
//! This struct is the one interface to that policy, so a later buffering-on-outage mode can
//! live here.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::{error, warn};

use crate::msgid::MsgId;
use crate::op::{OpKey, WriteOp};
use crate::store::Store;

/// How the writer batches and retries.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Ops the queue holds before `submit` waits and `try_submit` fails; the batcher holds at
    /// most as many distinct keys again.
    pub queue_capacity: usize,
    /// Batches in flight at once (the tutorial's `pool_size`).
    pub pool_size: usize,
    /// Distinct keys per batch: 25 for DynamoDB (the BatchWriteItem limit); larger for the
    /// embedded store, where a batch is one transaction.
    pub max_batch: usize,
    /// First retry delay; doubles per attempt up to `backoff_max`.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// Give up on a retryable failure after this many attempts (counted in `failed`).
    /// `None`: retry until it succeeds.
    pub max_attempts: Option<u32>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            queue_capacity: 65_536,
            pool_size: 8,
            max_batch: 25,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            max_attempts: None,
        }
    }
}

/// Why an op was not queued. The op is handed back (boxed: ops are large, errors should not be).
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("store write queue is full")]
    Full(Box<WriteOp>),
    #[error("store writer has stopped")]
    Closed(Box<WriteOp>),
}

/// The writer task has stopped (only after every handle was dropped, or a panic).
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("store writer has stopped")]
pub struct WriterClosed;

/// Counters since start (monotonic except `pending`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Ops accepted by submit/try_submit.
    pub submitted: u64,
    /// Ops folded into an earlier op on the same key (never sent on their own).
    pub coalesced: u64,
    /// Ops applied by the store (after coalescing; map add/remove count one per set).
    pub written: u64,
    /// Ops given up on (non-retryable error, or `max_attempts` reached). Each is logged.
    pub failed: u64,
    /// Batch retries after a failure.
    pub retries: u64,
    /// `try_submit` calls refused because the queue was full.
    pub rejected_full: u64,
    /// Store write calls made (first attempts).
    pub batches: u64,
    /// Ops queued or in flight, not yet applied (a gauge).
    pub pending: u64,
}

#[derive(Debug, Default)]
struct Counters {
    submitted: AtomicU64,
    coalesced: AtomicU64,
    written: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    rejected_full: AtomicU64,
    batches: AtomicU64,
    pending: AtomicU64,
}

enum Msg {
    Op(WriteOp),
    Flush(oneshot::Sender<()>),
}

/// Why ops pushed with [`Writer::push_durable`] are not known to be stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotStored {
    #[error("store writer has stopped")]
    WriterClosed,
}

/// Resolves once the ops given to [`Writer::push_durable`] are applied and durable in the
/// store (DynamoDB answered; the embedded store's transaction committed).
#[derive(Debug)]
pub struct Durable(oneshot::Receiver<()>);

impl std::future::Future for Durable {
    type Output = Result<(), NotStored>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.map_err(|_| NotStored::WriterClosed))
    }
}

/// Handle to a store's writer task. Cloning is cheap; the task drains and stops when the last
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Msg>,
    capacity: usize,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Op(op) => write!(f, "Op({op:?})"),
            Msg::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl Msg {
    /// The op of a message that `send_op` sent (it sends nothing else).
    fn into_op(self) -> WriteOp {
        match self {
            Msg::Op(op) => op,
            Msg::Flush(_) => unreachable!("send_op only sends ops"),
        }
    }
}

impl Writer {
    /// Starts the batcher task on the current tokio runtime.
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
            queue_capacity: config.queue_capacity.max(1),
            pool_size: config.pool_size.max(1),
            max_batch: config.max_batch.max(1),
            ..config
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let capacity = config.queue_capacity;
        let counters = Arc::new(Counters::default());
        let batcher = Batcher {
            store,
            config,
            counters: counters.clone(),
            pending: HashMap::new(),
            order: VecDeque::new(),
            inflight_keys: HashSet::new(),
            inflight: HashMap::new(),
            outstanding: BTreeSet::new(),
            next_seq: 0,
            waiters: Vec::new(),
            tasks: JoinSet::new(),
        };
        let task = tokio::spawn(batcher.run(rx));
        (
            Writer {
                tx,
                capacity,
                counters,
            },
            task,
        )
    }

    /// Queues an op without ever waiting.
    pub fn push(&self, op: WriteOp) -> Result<(), WriterClosed> {
        self.send_op(op).map_err(|_| WriterClosed)
    }

    /// Sends an op to the batcher; hands it back if the batcher has stopped.
    fn send_op(&self, op: WriteOp) -> Result<(), Box<WriteOp>> {
        self.tx
            .send(Msg::Op(op))
            .map_err(|e| Box::new(e.0.into_op()))?;
        self.counters.submitted.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Queues ops without waiting, and returns what resolves once they are durable in the
    /// store (for acknowledgements that promise it: `--durability sync`).
    pub fn push_durable(
        &self,
        ops: impl IntoIterator<Item = WriteOp>,
    ) -> Result<Durable, WriterClosed> {
        for op in ops {
            self.push(op)?;
        }
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Flush(tx)).map_err(|_| WriterClosed)?;
        Ok(Durable(rx))
    }

    /// Queues an op (never waits; kept for callers in async code).
    pub async fn submit(&self, op: WriteOp) -> Result<(), WriterClosed> {
        self.push(op)
    }

    /// Queues an op unless `queue_capacity` ops wait already: then `Full` (counted in
    /// `rejected_full`).
    pub fn try_submit(&self, op: WriteOp) -> Result<(), SubmitError> {
        let c = &self.counters;
        let waiting = c.submitted.load(Ordering::Relaxed).saturating_sub(
            c.written.load(Ordering::Relaxed)
                + c.failed.load(Ordering::Relaxed)
                + c.coalesced.load(Ordering::Relaxed),
        );
        if waiting >= self.capacity as u64 {
            c.rejected_full.fetch_add(1, Ordering::Relaxed);
            return Err(SubmitError::Full(Box::new(op)));
        }
        self.send_op(op).map_err(SubmitError::Closed)
    }

    /// Resolves when every op submitted before this call has been applied or counted as
    /// failed. During an outage this waits for the store: wrap it in a timeout at shutdown.
    pub async fn flush(&self) -> Result<(), WriterClosed> {
        let (tx, rx) = oneshot::channel();
        self.tx.send(Msg::Flush(tx)).map_err(|_| WriterClosed)?;
        rx.await.map_err(|_| WriterClosed)
    }

    pub fn stats(&self) -> WriterStats {
        let c = &self.counters;
        WriterStats {
            submitted: c.submitted.load(Ordering::Relaxed),
            coalesced: c.coalesced.load(Ordering::Relaxed),
            written: c.written.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            retries: c.retries.load(Ordering::Relaxed),
            rejected_full: c.rejected_full.load(Ordering::Relaxed),
            batches: c.batches.load(Ordering::Relaxed),
            pending: c.pending.load(Ordering::Relaxed),
        }
    }
}

/// Ops waiting for one key, already coalesced.
enum Pending {
    Item(WriteOp),
    /// Disjoint sets: an add cancels a pending remove of the same id and vice versa, so the
    /// two UpdateItems can go in either order.
    Map {
        topic: String,
        add: BTreeSet<MsgId>,
        remove: BTreeSet<MsgId>,
    },
}

impl Pending {
    fn new(op: WriteOp) -> Pending {
        match op {
            WriteOp::MapAdd { topic, msgids } => Pending::Map {
                topic,
                add: msgids.into_iter().collect(),
                remove: BTreeSet::new(),
            },
            WriteOp::MapRemove { topic, msgids } => Pending::Map {
                topic,
                add: BTreeSet::new(),
                remove: msgids.into_iter().collect(),
            },
            op => Pending::Item(op),
        }
    }

    fn coalesce(&mut self, op: WriteOp) {
        match (self, op) {
            (Pending::Map { add, remove, .. }, WriteOp::MapAdd { msgids, .. }) => {
                for id in msgids {
                    remove.remove(&id);
                    add.insert(id);
                }
            }
            (Pending::Map { add, remove, .. }, WriteOp::MapRemove { msgids, .. }) => {
                for id in msgids {
                    add.remove(&id);
                    remove.insert(id);
                }
            }
            (
                Pending::Item(WriteOp::PutClient(rec)),
                WriteOp::ClientOffline {
                    offline_at,
                    session_expires_at,
                    ..
                },
            ) => {
                rec.connect_state = 0;
                rec.offline_at = offline_at;
                rec.session_expires_at = session_expires_at;
            }
            (this, op) => *this = Pending::new(op),
        }
    }

    fn into_ops(self) -> Vec<WriteOp> {
        match self {
            Pending::Item(op) => vec![op],
            Pending::Map { topic, add, remove } => {
                let mut ops = Vec::with_capacity(2);
                if !add.is_empty() {
                    ops.push(WriteOp::MapAdd {
                        topic: topic.clone(),
                        msgids: add.into_iter().collect(),
                    });
                }
                if !remove.is_empty() {
                    ops.push(WriteOp::MapRemove {
                        topic,
                        msgids: remove.into_iter().collect(),
                    });
                }
                ops
            }
        }
    }
}

struct PendingEntry {
    /// Sequence number of the oldest op folded in: the entry holds back flushes from there.
    min_seq: u64,
    value: Pending,
}

struct Batcher<S> {
    store: Arc<S>,
    config: WriterConfig,
    counters: Arc<Counters>,
    pending: HashMap<OpKey, PendingEntry>,
    /// Keys in arrival order, for fairness: each key of `pending` appears once.
    order: VecDeque<OpKey>,
    inflight_keys: HashSet<OpKey>,
    /// Per batch task: its keys with their entries' `min_seq`, released on completion (even
    /// if the task panicked).
    inflight: HashMap<tokio::task::Id, (Vec<(OpKey, u64)>, usize)>,
    /// `min_seq` of every pending or in-flight entry: ops below the smallest are done.
    outstanding: BTreeSet<u64>,
    next_seq: u64,
    waiters: Vec<(u64, oneshot::Sender<()>)>,
    tasks: JoinSet<()>,
}

impl<S: Store> Batcher<S> {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut closed = false;
        loop {
            self.dispatch();
            // Gauge first, so a flusher that wakes up reads a current `pending`.
            self.update_pending_gauge();
            self.wake_flushers();
            if closed && self.pending.is_empty() && self.tasks.is_empty() {
                break;
            }
            let can_accept = !closed && self.pending.len() < self.config.queue_capacity;
            tokio::select! {
                biased;
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    let id = match done {
                        Ok((id, ())) => id,
                        Err(e) => {
                            error!(error = %e, "store writer batch task failed");
                            e.id()
                        }
                    };
                    self.complete(id);
                }
                msg = rx.recv(), if can_accept => match msg {
                    None => closed = true,
                    Some(msg) => {
                        self.accept(msg);
                        // Take what is already queued, so batches fill under load.
                        while self.pending.len() < self.config.queue_capacity {
                            match rx.try_recv() {
                                Ok(msg) => self.accept(msg),
                                Err(_) => break,
                            }
                        }
                    }
                },
                // Unreachable: with no task in flight, dispatch() emptied `pending`.
                else => break,
            }
        }
        self.wake_flushers();
    }

    fn accept(&mut self, msg: Msg) {
        let op = match msg {
            Msg::Op(op) => op,
            Msg::Flush(tx) => {
                self.waiters.push((self.next_seq, tx));
                return;
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        match self.pending.entry(op.key()) {
            MapEntry::Occupied(mut e) => {
                e.get_mut().value.coalesce(op);
                self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
            }
            MapEntry::Vacant(v) => {
                self.order.push_back(v.key().clone());
                self.outstanding.insert(seq);
                v.insert(PendingEntry {
                    min_seq: seq,
                    value: Pending::new(op),
                });
            }
        }
    }

    /// Starts batches while the pool has room and there are keys not already in flight.
    fn dispatch(&mut self) {
        while self.tasks.len() < self.config.pool_size && !self.order.is_empty() {
            let mut ops = Vec::new();
            let mut keys = Vec::new();
            let mut deferred = Vec::new();
            while keys.len() < self.config.max_batch {
                let Some(key) = self.order.pop_front() else {
                    break;
                };
                if self.inflight_keys.contains(&key) {
                    deferred.push(key);
                    continue;
                }
                let Some(entry) = self.pending.remove(&key) else {
                    continue;
                };
                ops.extend(entry.value.into_ops());
                self.inflight_keys.insert(key.clone());
                keys.push((key, entry.min_seq));
            }
            for key in deferred.into_iter().rev() {
                self.order.push_front(key);
            }
            if keys.is_empty() {
                break;
            }
            let n_ops = ops.len();
            let store = self.store.clone();
            let config = self.config.clone();
            let counters = self.counters.clone();
            let handle = self
                .tasks
                .spawn(async move { write_with_retry(&*store, ops, &config, &counters).await });
            self.inflight.insert(handle.id(), (keys, n_ops));
        }
    }

    fn complete(&mut self, id: tokio::task::Id) {
        if let Some((keys, _)) = self.inflight.remove(&id) {
            for (key, min_seq) in keys {
                self.inflight_keys.remove(&key);
                self.outstanding.remove(&min_seq);
            }
        }
    }

    fn wake_flushers(&mut self) {
        let done_below = self.outstanding.first().copied().unwrap_or(u64::MAX);
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(seq, _)| *seq <= done_below);
        self.waiters = waiting;
        for (_, tx) in ready {
            let _ = tx.send(());
        }
    }

    fn update_pending_gauge(&self) {
        let inflight: usize = self.inflight.values().map(|(_, n)| n).sum();
        self.counters
            .pending
            .store((self.pending.len() + inflight) as u64, Ordering::Relaxed);
    }
}

/// One batch: write, then retry what failed retryably, with exponential backoff.
async fn write_with_retry<S: Store>(
    store: &S,
    mut ops: Vec<WriteOp>,
    config: &WriterConfig,
    counters: &Counters,
) {
    counters.batches.fetch_add(1, Ordering::Relaxed);
    let mut attempt: u32 = 0;
    loop {
        let sent = ops.len() as u64;
        let failures = store.write(ops).await;
        let failed_now: u64 = failures.iter().map(|f| f.ops.len() as u64).sum();
        counters
            .written
            .fetch_add(sent.saturating_sub(failed_now), Ordering::Relaxed);
        let mut retry = Vec::new();
        for f in failures {
            let can_retry =
                f.error.is_retryable() && config.max_attempts.is_none_or(|max| attempt + 1 < max);
            if can_retry {
                // Log the first failure and then every tenth, not every attempt of an outage.
                if attempt.is_multiple_of(10) {
                    warn!(code = f.error.code(), error = %f.error, ops = f.ops.len(), attempt,
                        "store write failed, retrying");
                }
                retry.extend(f.ops);
            } else {
                counters
                    .failed
                    .fetch_add(f.ops.len() as u64, Ordering::Relaxed);
                error!(code = f.error.code(), error = %f.error, ops = f.ops.len(), attempt,
                    first_op = ?f.ops.first(), "store write failed, ops dropped");
            }
        }
        if retry.is_empty() {
            return;
        }
        counters.retries.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(backoff(config, attempt)).await;
        attempt = attempt.saturating_add(1);
        ops = retry;
    }
}

fn backoff(config: &WriterConfig, attempt: u32) -> Duration {
    let exp = config
        .backoff_initial
        .saturating_mul(1u32 << attempt.min(16))
        .min(config.backoff_max);
    // Up to +50% jitter so writers retrying after one outage do not stampede together.
    let jitter_range = (exp.as_micros() as u64 / 2).max(1);
    exp + Duration::from_micros(crate::msgid::now_micros() % jitter_range)
}
