//! The delay line: the writes of a stored message (its mqtt_msg put and its map add) wait
//! here for `ActionsConfig::coalesce` before they go to the writer. A message its subscriber
//! acknowledges within that time is taken out, and neither its writes nor the delete and
//! map remove of the acknowledgement are ever made: the common case of a subscriber that
//! keeps up costs the store nothing but the mqtt_acked cursor.
//!
//! Order: a message's ops reach the writer before any later op on the same msgid, because
//! the line is drained in arrival order *while its lock is held* (the writer's `push`
//! never waits), and an acknowledgement that does not find its message here (it was
//! drained) pushes its delete after that. Map adds and removes of different ids commute
//! (set operations), so only the same id's order matters. Moves to overflow items take the
//! oldest ids of a topic: the broker drains the whole line before it moves any
//! ([`DelayLine::drain_all`]).
//!
//! The mqtt_acked cursors wait here too: each acknowledgement replaces the cursor of its
//! (topic, client) in a map drained to the writer every `coalesce / 4`, so a subscriber
//! acknowledging thousands of messages a second makes one write per drain, not one op per
//! acknowledgement. A cursor delete (unsubscribe) takes the waiting put out and is pushed
//! under the same lock, after any put already drained.
//!
//! A waiting message is not in the stored-message index either: when its writes leave the
//! line, its (message, msgid) is appended to [`DelayLine::unindexed`], under the line's lock,
//! and the actions fold that list into the index before they read or change it
//! (`Actions::catch_up`). So the common case (acknowledged within the window) never touches
//! the index, and a reader of the index never misses an id whose map add was pushed.
//!
//! Bounds: at most [`MAX_ENTRIES`] messages wait; past it the oldest go to the writer at
//! once. Not used for `--durability sync` (its acknowledgement waits for the writes) nor
//! for retained messages.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use parking_lot::Mutex;

use super::publication::{Deferred, Publication};
use crate::msgid::{MsgId, now_micros};
use crate::op::WriteOp;
use crate::record::AckedRecord;
use crate::shrink::Shrink;
use crate::writer::{Writer, WriterClosed};

/// Most messages waiting in the line (about 300 B each with a small payload).
pub(super) const MAX_ENTRIES: usize = 65_536;

/// The waiting msgids' map: a msgid's low bits are a sequence, so a fast non-keyed hash
/// spreads them well, and nothing a client sends chooses them.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

/// Maps keyed by what clients choose (topics, client ids): foldhash with a per-process seed.
type KeyedMap<K, V> = HashMap<K, V, foldhash::quality::RandomState>;

/// Messages whose map add left the line, to be indexed (see the module doc).
pub(super) type Unindexed = Vec<(Arc<dyn Publication>, MsgId)>;

#[derive(Debug)]
struct Entry {
    /// The message's arrival (its msgid's time): it waits until `hold` after it.
    msgid: MsgId,
    /// `None` once taken out by an acknowledgement.
    pending: Option<Deferred>,
}

#[derive(Debug, Default)]
struct Line {
    queue: VecDeque<Entry>,
    /// Position (since start) of `queue[0]`.
    head: u64,
    /// Waiting msgids and their position.
    live: FastMap<MsgId, u64>,
}

/// See the module doc. Shared by the actions and a ticker task that drains what is due.
#[derive(Debug)]
pub(super) struct DelayLine {
    hold: Duration,
    writer: Writer,
    line: Mutex<Line>,
    /// Waiting mqtt_acked cursors: topic -> clientid -> msgid.
    acked: Mutex<KeyedMap<String, KeyedMap<String, MsgId>>>,
    /// Drained messages with a map add, not yet in the index (taken by `Actions::catch_up`;
    /// lock order: `line`, then this).
    pub(super) unindexed: Mutex<Unindexed>,
    /// True while `unindexed` may hold something (a hint for the publish path).
    has_unindexed: AtomicBool,
}

impl DelayLine {
    /// A line that holds ops for `hold`, with a task draining what is due every `hold / 4`
    /// (it ends when the line is dropped). `hold` zero: ops go to the writer at once.
    pub(super) fn spawn(writer: Writer, hold: Duration) -> Arc<DelayLine> {
        let line = Arc::new(DelayLine {
            hold,
            writer,
            line: Mutex::new(Line::default()),
            acked: Mutex::new(KeyedMap::default()),
            unindexed: Mutex::new(Vec::new()),
            has_unindexed: AtomicBool::new(false),
        });
        if !hold.is_zero() {
            let weak: Weak<DelayLine> = Arc::downgrade(&line);
            let tick = (hold / 4).max(Duration::from_millis(1));
            tokio::spawn(async move {
                let mut interval = tokio::time::interval(tick);
                interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    interval.tick().await;
                    let Some(line) = weak.upgrade() else { break };
                    if line.drain_due().and_then(|()| line.drain_acked()).is_err() {
                        break;
                    }
                }
            });
        }
        line
    }

    /// True if the line holds messages (a hold above zero): without one, the caller pushes
    /// a message's writes and indexes it itself.
    pub(super) fn holds(&self) -> bool {
        !self.hold.is_zero()
    }

    /// Queues a message's writes (the line must hold, see [`DelayLine::holds`]).
    pub(super) fn defer(&self, msgid: MsgId, pending: Deferred) -> Result<(), WriterClosed> {
        let mut line = self.line.lock();
        let pos = line.head + line.queue.len() as u64;
        line.queue.push_back(Entry {
            msgid,
            pending: Some(pending),
        });
        line.live.insert(msgid, pos);
        if line.queue.len() <= MAX_ENTRIES {
            return Ok(());
        }
        self.drain_locked(&mut line, |_, len| len > MAX_ENTRIES)
    }

    /// True if drained messages may wait to be indexed.
    pub(super) fn has_unindexed(&self) -> bool {
        self.has_unindexed.load(Ordering::Acquire)
    }

    /// Takes the drained messages waiting to be indexed; the caller indexes them while it
    /// holds the returned guard (so a reader that takes it next sees them indexed).
    pub(super) fn unindexed(&self) -> parking_lot::MutexGuard<'_, Unindexed> {
        let guard = self.unindexed.lock();
        self.has_unindexed.store(false, Ordering::Release);
        guard
    }

    /// Takes a message's writes out if they are still waiting: true if they were (they will
    /// never be made, and the caller makes no delete for it either).
    pub(super) fn cancel(&self, msgid: MsgId) -> bool {
        if self.hold.is_zero() {
            return false;
        }
        let mut line = self.line.lock();
        let Some(pos) = line.live.remove(&msgid) else {
            return false;
        };
        let idx = (pos - line.head) as usize;
        match line.queue.get_mut(idx) {
            Some(e) if e.msgid == msgid => e.pending.take().is_some(),
            _ => false,
        }
    }

    /// Pushes every waiting message's writes and cursor to the writer (before a flush, a
    /// move to an overflow item, or at close).
    pub(super) fn drain_all(&self) -> Result<(), WriterClosed> {
        {
            let mut line = self.line.lock();
            self.drain_locked(&mut line, |_, _| true)?;
        }
        self.drain_acked()
    }

    /// Sets the mqtt_acked cursor of (topic, clientid): written at the next drain.
    pub(super) fn ack(
        &self,
        topic: &str,
        clientid: &str,
        msgid: MsgId,
    ) -> Result<(), WriterClosed> {
        if self.hold.is_zero() {
            return self.writer.push(acked_put(topic, clientid, msgid));
        }
        let mut acked = self.acked.lock();
        match acked.get_mut(topic) {
            Some(clients) => match clients.get_mut(clientid) {
                Some(id) => *id = msgid,
                None => {
                    clients.insert(clientid.to_owned(), msgid);
                }
            },
            None => {
                let mut clients = KeyedMap::default();
                clients.insert(clientid.to_owned(), msgid);
                acked.insert(topic.to_owned(), clients);
            }
        }
        Ok(())
    }

    /// Deletes the mqtt_acked cursor of (topic, clientid), after any put of it.
    pub(super) fn delete_acked(&self, topic: String, clientid: String) -> Result<(), WriterClosed> {
        let mut acked = self.acked.lock();
        if let Some(clients) = acked.get_mut(&topic) {
            clients.remove(&clientid);
            if clients.is_empty() {
                acked.remove(&topic);
            }
        }
        self.writer.push(WriteOp::DeleteAcked { topic, clientid })
    }

    /// Pushes the waiting cursors, under the lock (see the module doc).
    fn drain_acked(&self) -> Result<(), WriterClosed> {
        let mut acked = self.acked.lock();
        for (topic, clients) in std::mem::take(&mut *acked) {
            for (clientid, msgid) in clients {
                self.writer.push(WriteOp::PutAcked(AckedRecord {
                    topic: topic.clone(),
                    clientid,
                    msgid,
                }))?;
            }
        }
        Ok(())
    }

    /// Pushes the writes of the messages that waited `hold`.
    fn drain_due(&self) -> Result<(), WriterClosed> {
        let due = now_micros().saturating_sub(self.hold.as_micros() as u64);
        let mut line = self.line.lock();
        self.drain_locked(&mut line, |e, _| e.msgid.timestamp_micros() <= due)
    }

    /// Pops entries from the front while `take(entry, queue length)` says so, pushing their
    /// writes in order, under the lock (see the module doc).
    fn drain_locked(
        &self,
        line: &mut Line,
        take: impl Fn(&Entry, usize) -> bool,
    ) -> Result<(), WriterClosed> {
        while let Some(front) = line.queue.front() {
            if !take(front, line.queue.len()) {
                break;
            }
            let Some(entry) = line.queue.pop_front() else {
                break;
            };
            line.head += 1;
            if let Some(pending) = entry.pending {
                line.live.remove(&entry.msgid);
                for op in pending.ops(entry.msgid) {
                    self.writer.push(op)?;
                }
                if pending.map_add {
                    self.unindexed.lock().push((pending.msg, entry.msgid));
                    self.has_unindexed.store(true, Ordering::Release);
                }
            }
        }
        line.live.shrink_after_burst();
        line.queue.shrink_after_burst();
        Ok(())
    }

    /// Writes waiting (for the pending-ops gauge): messages and cursors.
    pub(super) fn len(&self) -> usize {
        let cursors: usize = self.acked.lock().values().map(HashMap::len).sum();
        self.line.lock().live.len() + cursors
    }
}

fn acked_put(topic: &str, clientid: &str, msgid: MsgId) -> WriteOp {
    WriteOp::PutAcked(AckedRecord {
        topic: topic.to_owned(),
        clientid: clientid.to_owned(),
        msgid,
    })
}
