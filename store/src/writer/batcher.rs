//! The writer's task: takes ops in push order, keeps them in memory or spills them to the
//! journal (the modes and why they are safe are in the parent module's doc), coalesces per
//! key, dispatches batches, and resolves flushes and `Durable`s.

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info};

use super::durable::{NotStored, Tracker};
use super::journal::{self, Cmd, ReadBatch, Recovery, Reply};
use super::pending::{Pending, PendingEntry};
use super::{Counters, Msg, WriterConfig};
use crate::op::{OpKey, WriteOp};
use crate::shrink::Shrink;
use crate::store::Store;

mod spill;

use spill::recv_reply;

/// Most messages taken from the channel per turn, so batches go out under a flood.
const ACCEPT_PER_TURN: usize = 4096;
/// Least bytes asked of the journal per read (it reads at least one record anyway).
const MIN_READ: u64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// New ops go to pending.
    Memory,
    /// New ops go to the journal; pending is refilled from it.
    Spill,
    /// Every journal record was read; new ops are held in memory until every record is
    /// applied and the journal is cut.
    Draining,
}

/// An op held while Draining, in push order.
struct Held {
    seq: u64,
    op: WriteOp,
    bytes: u64,
    tracker: Option<Tracker>,
}

/// A key of a batch in flight and what its entry owes.
struct InflightKey {
    key: OpKey,
    min_seq: u64,
    bytes: u64,
    n_ops: usize,
    trackers: Vec<Tracker>,
}

/// The batcher's side of the journal.
struct JournalState {
    tx: std::sync::mpsc::Sender<Cmd>,
    rx: mpsc::UnboundedReceiver<Reply>,
    max_bytes: u64,
    /// False until the thread opened and checked the file (no op is taken before).
    opened: bool,
    /// Bytes of the file plus groups being written and the group being built.
    reserved: u64,
    /// The group being built: encoded records, how many, and their ops' memory bytes.
    buf: Vec<u8>,
    buf_records: u64,
    buf_mem: u64,
    /// The group being written: records, memory bytes, its last seq, its file bytes.
    appending: Option<(u64, u64, u64, u64)>,
    /// Seq of the last record whose group was synced.
    synced_seq: Option<u64>,
    /// Records synced and not yet read back.
    unread: u64,
    reading: bool,
    /// No op at or above this seq is applied while records are unread (a lower bound of
    /// the next record's seq), for flushes.
    floor: Option<u64>,
    /// Seq of the last record appended since the file was last cut.
    last_seq: Option<u64>,
    /// Trackers of journaled ops, by seq, until their record is read back.
    tracked: VecDeque<(u64, Tracker)>,
    truncating: bool,
    retry_truncate_at: Option<Instant>,
    /// Records found at start still to replay (for the log line when they are done).
    startup_left: u64,
}

impl JournalState {
    /// Nothing is waiting in or on the way to the journal.
    fn is_drained(&self) -> bool {
        self.buf_records == 0 && self.appending.is_none() && self.unread == 0 && !self.reading
    }
}

pub(super) struct Batcher<S> {
    store: Arc<S>,
    config: WriterConfig,
    counters: Arc<Counters>,
    pending: HashMap<OpKey, PendingEntry>,
    /// Keys in arrival order, for fairness: each key of `pending` appears once.
    order: VecDeque<OpKey>,
    inflight_keys: HashSet<OpKey>,
    /// Per batch task: its keys, released on completion (even if the task panicked).
    inflight: HashMap<tokio::task::Id, Vec<InflightKey>>,
    /// `min_seq` of every pending or in-flight entry: ops below the smallest are done.
    outstanding: BTreeSet<u64>,
    next_seq: u64,
    waiters: Vec<(u64, oneshot::Sender<()>)>,
    tasks: JoinSet<Vec<(OpKey, String)>>,
    /// Bytes of the pending and in-flight entries.
    mem_bytes: u64,
    mode: Mode,
    journal: Option<JournalState>,
    held: VecDeque<Held>,
    held_bytes: u64,
    /// What the journal held at start (answered to `Writer::recovery`).
    recovery: Recovery,
    /// The journal found at start was applied and cut (logged once).
    startup_done: bool,
    /// Pending entries with a `Durable` waiting: while any is, nothing is held.
    urgent: usize,
    /// When the oldest entry held back by `WriterConfig::hold` is due.
    next_due: Option<Instant>,
    /// The channel closed: write everything now.
    closing: bool,
}

impl<S: Store> Batcher<S> {
    pub(super) fn new(store: Arc<S>, config: WriterConfig, counters: Arc<Counters>) -> Self {
        let journal = config.journal.as_ref().and_then(|jc| {
            let (reply_tx, rx) = mpsc::unbounded_channel();
            match journal::spawn(jc, reply_tx) {
                Ok(tx) => Some(JournalState {
                    tx,
                    rx,
                    max_bytes: jc.max_bytes,
                    opened: false,
                    reserved: 0,
                    buf: Vec::new(),
                    buf_records: 0,
                    buf_mem: 0,
                    appending: None,
                    synced_seq: None,
                    unread: 0,
                    reading: false,
                    floor: None,
                    last_seq: None,
                    tracked: VecDeque::new(),
                    truncating: false,
                    retry_truncate_at: None,
                    startup_left: 0,
                }),
                Err(e) => {
                    error!(error = %e, dir = %jc.dir.display(),
                        "store journal thread cannot start: running without a journal");
                    None
                }
            }
        });
        Batcher {
            store,
            config,
            counters,
            pending: HashMap::new(),
            order: VecDeque::new(),
            inflight_keys: HashSet::new(),
            inflight: HashMap::new(),
            outstanding: BTreeSet::new(),
            next_seq: 0,
            waiters: Vec::new(),
            tasks: JoinSet::new(),
            mem_bytes: 0,
            mode: Mode::Memory,
            journal,
            held: VecDeque::new(),
            held_bytes: 0,
            recovery: Recovery::default(),
            startup_done: false,
            urgent: 0,
            next_due: None,
            closing: false,
        }
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        let mut closed = false;
        loop {
            self.dispatch();
            self.advance_journal();
            self.update_gauges();
            self.wake_flushers();
            self.shrink_after_burst();
            if closed
                && self.mode == Mode::Memory
                && self.pending.is_empty()
                && self.tasks.is_empty()
            {
                break;
            }
            let opened = self.journal.as_ref().is_none_or(|j| j.opened);
            let journal_busy = self.mode == Mode::Spill
                && self
                    .journal
                    .as_ref()
                    .is_some_and(|j| j.buf_mem > self.config.buffer_bytes / 2);
            let can_accept = !closed && opened && !journal_busy;
            let retry_at = self.journal.as_ref().and_then(|j| j.retry_truncate_at);
            tokio::select! {
                biased;
                Some(done) = self.tasks.join_next_with_id(), if !self.tasks.is_empty() => {
                    match done {
                        Ok((id, failed)) => self.complete(id, Some(failed)),
                        Err(e) => {
                            error!(error = %e, "store writer batch task failed");
                            self.complete(e.id(), None);
                        }
                    }
                }
                reply = recv_reply(&mut self.journal), if self.journal.is_some() => match reply {
                    Some(reply) => self.on_reply(reply),
                    None => self.journal_gone(),
                },
                msg = rx.recv(), if can_accept => match msg {
                    None => {
                        closed = true;
                        self.closing = true;
                    }
                    Some(msg) => {
                        self.accept(msg);
                        // Take what is already queued, so batches fill under load.
                        for _ in 0..ACCEPT_PER_TURN {
                            match rx.try_recv() {
                                Ok(msg) => self.accept(msg),
                                Err(_) => break,
                            }
                        }
                    }
                },
                () = tokio::time::sleep_until(self.next_due.unwrap_or_else(Instant::now)), if self.next_due.is_some() => {
                    self.next_due = None;
                }
                () = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    if let Some(j) = self.journal.as_mut() {
                        j.retry_truncate_at = None;
                    }
                }
                // Unreachable: with no task in flight, dispatch() emptied `pending`.
                else => break,
            }
        }
        self.wake_flushers();
    }

    fn accept(&mut self, msg: Msg) {
        let (op, bytes, tracker) = match msg {
            Msg::Op { op, bytes, tracker } => (op, bytes, tracker),
            Msg::Flush(tx) => {
                self.waiters.push((self.next_seq, tx));
                return;
            }
            Msg::Recovery(tx) => {
                let _ = tx.send(self.recovery.clone());
                return;
            }
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        match self.mode {
            Mode::Memory => {
                let over =
                    self.counters.buffered_bytes.load(Ordering::Relaxed) > self.config.buffer_bytes;
                if over && self.journal.is_some() {
                    info!(
                        buffer_bytes = self.config.buffer_bytes,
                        "store writer memory buffer full: new writes go to the journal"
                    );
                    self.mode = Mode::Spill;
                    self.spill(seq, op, bytes, tracker);
                } else {
                    self.insert_pending(seq, op, bytes, tracker.into_iter().collect(), false);
                }
            }
            Mode::Spill => self.spill(seq, op, bytes, tracker),
            Mode::Draining => {
                self.held_bytes += bytes;
                self.held.push_back(Held {
                    seq,
                    op,
                    bytes,
                    tracker,
                });
                let truncating = self.journal.as_ref().is_some_and(|j| j.truncating);
                if !truncating && self.held_bytes > self.config.buffer_bytes / 2 {
                    // The store is not keeping up: back to the journal, after its records.
                    self.mode = Mode::Spill;
                    self.held_bytes = 0;
                    for h in std::mem::take(&mut self.held) {
                        self.spill(h.seq, h.op, h.bytes, h.tracker);
                    }
                }
            }
        }
    }

    /// Puts an op in pending: a new entry, or folded into its key's entry. `bytes` (counted
    /// since `push`) is replaced by what the entry holds. `replayed`: the op was read back
    /// from the journal (it may have been applied before a crash).
    pub(super) fn insert_pending(
        &mut self,
        seq: u64,
        op: WriteOp,
        bytes: u64,
        trackers: Vec<Tracker>,
        replayed: bool,
    ) {
        let (before, after) = match self.pending.entry(op.key()) {
            MapEntry::Occupied(mut e) => {
                let entry = e.get_mut();
                let before = entry.bytes;
                entry.may_cancel &= !replayed;
                entry.value.coalesce(op, entry.may_cancel);
                entry.bytes = entry.value.approx_bytes();
                if entry.trackers.is_empty() && !trackers.is_empty() {
                    self.urgent += 1;
                }
                entry.trackers.extend(trackers);
                self.counters.coalesced.fetch_add(1, Ordering::Relaxed);
                (before, entry.bytes)
            }
            MapEntry::Vacant(v) => {
                self.order.push_back(v.key().clone());
                self.outstanding.insert(seq);
                let value = Pending::new(op);
                let entry_bytes = value.approx_bytes();
                if !trackers.is_empty() {
                    self.urgent += 1;
                }
                v.insert(PendingEntry {
                    min_seq: seq,
                    value,
                    bytes: entry_bytes,
                    trackers,
                    since: Instant::now(),
                    may_cancel: !replayed,
                });
                (0, entry_bytes)
            }
        };
        self.mem_bytes = self.mem_bytes + after - before;
        let b = &self.counters.buffered_bytes;
        b.fetch_add(after, Ordering::Relaxed);
        b.fetch_sub(before + bytes, Ordering::Relaxed);
    }

    /// Entries that arrived after this instant wait (`WriterConfig::hold`); `None`: nothing
    /// waits (no hold configured, a `Durable` or a flush is waiting, memory holds half the
    /// budget, the journal is in use, or the writer is closing).
    fn hold_cutoff(&self) -> Option<Instant> {
        let hold = self.config.hold;
        if hold.is_zero()
            || self.closing
            || self.urgent > 0
            || !self.waiters.is_empty()
            || self.mode != Mode::Memory
            || self.counters.buffered_bytes.load(Ordering::Relaxed) > self.config.buffer_bytes / 2
        {
            return None;
        }
        Instant::now().checked_sub(hold)
    }

    /// An entry whose ops cancelled out: done without a write.
    fn settle_empty(&mut self, entry: PendingEntry) {
        self.outstanding.remove(&entry.min_seq);
        self.mem_bytes = self.mem_bytes.saturating_sub(entry.bytes);
        self.counters
            .buffered_bytes
            .fetch_sub(entry.bytes, Ordering::Relaxed);
        entry.trackers.iter().for_each(Tracker::applied);
    }

    /// Starts batches while the pool has room and there are keys not already in flight.
    /// Entries younger than `WriterConfig::hold` wait (see [`Self::hold_cutoff`]); `order`
    /// is in arrival order, so the first young entry ends the batch and sets `next_due`.
    fn dispatch(&mut self) {
        let cutoff = self.hold_cutoff();
        self.next_due = None;
        'batches: while self.tasks.len() < self.config.pool_size && !self.order.is_empty() {
            let mut ops = Vec::new();
            let mut keys = Vec::new();
            let mut deferred = Vec::new();
            let mut young = false;
            while keys.len() < self.config.max_batch {
                let Some(key) = self.order.pop_front() else {
                    break;
                };
                if self.inflight_keys.contains(&key) {
                    deferred.push(key);
                    continue;
                }
                if let (Some(cutoff), Some(e)) = (cutoff, self.pending.get(&key))
                    && e.since > cutoff
                {
                    self.next_due = Some(e.since + self.config.hold);
                    self.order.push_front(key);
                    young = true;
                    break;
                }
                let Some(entry) = self.pending.remove(&key) else {
                    continue;
                };
                if !entry.trackers.is_empty() {
                    self.urgent -= 1;
                }
                if matches!(entry.value, Pending::Nothing) {
                    self.settle_empty(entry);
                    continue;
                }
                let entry_ops = entry.value.into_ops();
                let n_ops = entry_ops.len();
                ops.extend(entry_ops);
                self.inflight_keys.insert(key.clone());
                keys.push(InflightKey {
                    key,
                    min_seq: entry.min_seq,
                    bytes: entry.bytes,
                    n_ops,
                    trackers: entry.trackers,
                });
            }
            for key in deferred.into_iter().rev() {
                self.order.push_front(key);
            }
            if keys.is_empty() {
                break;
            }
            let last = young;
            let store = self.store.clone();
            let config = self.config.clone();
            let counters = self.counters.clone();
            let handle = self.tasks.spawn(async move {
                super::retry::write_with_retry(&*store, ops, &config, &counters).await
            });
            self.inflight.insert(handle.id(), keys);
            if last {
                break 'batches;
            }
        }
    }

    /// A batch ended: `failed` has the keys that failed for good (`None`: the task
    /// panicked, all failed).
    fn complete(&mut self, id: tokio::task::Id, failed: Option<Vec<(OpKey, String)>>) {
        let Some(keys) = self.inflight.remove(&id) else {
            return;
        };
        let failed: HashMap<OpKey, String> = failed
            .unwrap_or_else(|| {
                keys.iter()
                    .map(|k| (k.key.clone(), "WriterTaskFailed".to_owned()))
                    .collect()
            })
            .into_iter()
            .collect();
        for k in keys {
            self.inflight_keys.remove(&k.key);
            self.outstanding.remove(&k.min_seq);
            self.mem_bytes = self.mem_bytes.saturating_sub(k.bytes);
            self.counters
                .buffered_bytes
                .fetch_sub(k.bytes, Ordering::Relaxed);
            match failed.get(&k.key) {
                None => k.trackers.iter().for_each(Tracker::applied),
                Some(code) => {
                    for t in &k.trackers {
                        t.not_stored(NotStored::Failed { code: code.clone() });
                    }
                }
            }
        }
    }

    /// Gives back the room a burst of writes grew the tables to (see [`crate::shrink`]):
    /// 10,000 clients connecting at once leave 10,000 entries here for a moment.
    fn shrink_after_burst(&mut self) {
        self.pending.shrink_after_burst();
        self.order.shrink_after_burst();
        self.held.shrink_after_burst();
        self.inflight.shrink_after_burst();
        self.inflight_keys.shrink_after_burst();
        self.waiters.shrink_after_burst();
    }

    fn wake_flushers(&mut self) {
        let mut done_below = self.outstanding.first().copied().unwrap_or(u64::MAX);
        if let Some(floor) = self.journal.as_ref().and_then(|j| j.floor) {
            done_below = done_below.min(floor);
        }
        if let Some(h) = self.held.front() {
            done_below = done_below.min(h.seq);
        }
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.waiters)
            .into_iter()
            .partition(|(seq, _)| *seq <= done_below);
        self.waiters = waiting;
        for (_, tx) in ready {
            let _ = tx.send(());
        }
    }

    fn update_gauges(&self) {
        let inflight: usize = self
            .inflight
            .values()
            .flat_map(|keys| keys.iter().map(|k| k.n_ops))
            .sum();
        let c = &self.counters;
        c.pending.store(
            (self.pending.len() + inflight + self.held.len()) as u64,
            Ordering::Relaxed,
        );
        let (ops, bytes) = self.journal.as_ref().map_or((0, 0), |j| {
            (
                j.unread + j.buf_records + j.appending.map_or(0, |a| a.0),
                j.reserved,
            )
        });
        c.journal_ops.store(ops, Ordering::Relaxed);
        c.journal_bytes.store(bytes, Ordering::Relaxed);
    }
}
