//! Sessions: the state that outlives a connection (subscriptions, the queue of messages for
//! the client, unacknowledged deliveries), and the registry that maps client ids to them.
//!
//! A `Session` is shared: publishers push into its queue (a short per-session lock, never a
//! global one), and at most one connection owns it at a time. While a connection owns it, the
//! connection keeps the in-flight state in its own task and hands it back when it ends, so
//! acknowledgements take no lock.

pub(crate) mod inflight;
mod leaving;
pub(crate) mod registry;
pub(crate) mod replay;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dynamq_codec::{QoS, SubscriptionOptions};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::message::{ClientId, Delivery, Message};
pub(crate) use inflight::Inflight;
pub(crate) use leaving::Orphans;
pub(crate) use registry::Registry;
use replay::ReplayWindows;
pub(crate) use replay::Window;

/// A session's subscriptions by topic filter (foldhash, as in the router: smaller and faster
/// than SipHash, seeded per process).
pub(crate) type Subscriptions = HashMap<String, Subscription, foldhash::fast::RandomState>;

/// One subscription of a session, as the client asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Subscription {
    pub options: SubscriptionOptions,
    /// The v5 Subscription Identifier given with the SUBSCRIBE, if any.
    pub id: Option<u32>,
}

/// What a connection hands back to the session when it ends, so that the next connection
/// can resend unacknowledged messages [MQTT-4.4.0-1].
#[derive(Debug, Default)]
pub(crate) struct Carried {
    pub inflight: Inflight,
    /// Packet ids of QoS 2 publishes received and not yet released by PUBREL [MQTT-4.3.3-9].
    pub awaiting_rel: HashSet<u16>,
}

impl Carried {
    pub(crate) fn is_empty(&self) -> bool {
        self.inflight.len() == 0 && self.awaiting_rel.is_empty()
    }
}

/// What an ended session leaves its caller to do (`Session::end`).
#[derive(Debug)]
pub(crate) struct Ended {
    /// Its subscriptions, to remove from the router (and the store).
    pub subscriptions: Subscriptions,
    /// A delayed will to publish now: a session that ends publishes its will at once
    /// [MQTT-3.1.3-9].
    pub will: Option<Arc<Message>>,
    /// QoS 2 packet ids it had not released, for the store to forget too.
    pub awaiting_rel: Vec<u16>,
    /// Deliveries through shared subscriptions it had not finished, for other members.
    pub orphans: Orphans,
}

/// A will that waits for its Will Delay Interval (v5) before being published.
#[derive(Debug)]
pub(crate) struct PendingWill {
    pub msg: Arc<Message>,
    /// Cancelled when the will is no longer the timer's to publish: the client came back
    /// before the delay ran out [MQTT-3.1.3-9], or the session ended and the will went out.
    pub cancel: CancellationToken,
}

#[derive(Debug, Default)]
struct Owner {
    /// The id of the connection that owns the session; 0: none (ids start at 1).
    conn: u64,
    /// While a takeover is under way: the connections still attached, in the order they
    /// claimed the session. Made by the first takeover and dropped when the last of them has
    /// released, so that a session does not carry it otherwise (then the owner, if any, is
    /// the only connection attached).
    handover: Option<Box<Handover>>,
    /// Set once the session has ended; a connection that finds it set looks again.
    destroyed: bool,
    /// Counts detaches, so that an expiry timer knows whether the client came back meanwhile.
    detaches: u64,
}

/// Connections attached to a session during a takeover. Each takes the in-flight state only
/// once every connection that claimed the session before it has put its own back: a
/// connection taken over while it still waited for its predecessor waits all the same, or
/// it would take an empty state and later put it back over its predecessor's.
#[derive(Debug, Default)]
struct Handover {
    /// Claim order; a connection leaves it when it releases the session.
    queue: Vec<u64>,
    /// Wakes the waiting connections when one releases.
    released: Arc<Notify>,
}

/// Mutable session state behind the per-session lock.
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    /// Messages waiting to be sent, oldest first.
    queue: VecDeque<Delivery>,
    /// Bytes of the queued messages (topic and payload), for `QueueBound::bytes`.
    queued_bytes: usize,
    /// Topic filter (as subscribed, including any `$share/` prefix) -> subscription.
    pub subscriptions: Subscriptions,
    /// In-flight state while no connection holds it (boxed: usually there is none, and
    /// every session, even an idle one, would pay for its inline size).
    carried: Option<Box<Carried>>,
    /// Seconds the session outlives its connection; `u32::MAX` never expires.
    pub expiry_interval: u32,
    pub pending_will: Option<Box<PendingWill>>,
    /// Set when the queue overflowed, so the overflow is logged once per episode.
    overflowing: bool,
    /// A QoS 1/2 message went over the bound while the client is connected: publishers wait
    /// for the queue to drain (see `Broker::deliver`). Cleared when it is below the bound.
    congested: bool,
    /// A publisher waited for this queue longer than `flow_control_ms` while the client took
    /// nothing from it: until the queue is below the bound again, messages over it are
    /// dropped rather than waited for, so that a subscriber that stopped reading cannot
    /// stall its publishers for ever.
    stalled: bool,
    /// QoS 0 messages in the queue: a QoS 1/2 message that finds the queue full takes the
    /// place of the oldest of them (QoS 0 is dropped first), and the queue is searched only
    /// when there is one to find.
    queued_qos0: usize,
    /// Messages taken from the queue to be sent, ever (wrapping): the client's progress.
    /// A publisher paused for this queue, or the slow-consumer timer, compares two readings.
    taken: u64,
    /// Open replay windows of new subscriptions: a message they get both live and from the
    /// store is queued once (see `replay`). None while no window is open.
    replay: Option<Box<ReplayWindows>>,
}

/// How much a session's queue holds before it is full: messages and bytes (topic and payload
/// of each message), whichever is reached first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct QueueBound {
    pub(crate) messages: usize,
    pub(crate) bytes: usize,
}

impl QueueBound {
    /// True if a queue of `len` messages and `bytes` bytes is at or over `times` the bound.
    fn reached(&self, len: usize, bytes: usize, times: usize) -> bool {
        len >= self.messages.saturating_mul(times) || bytes >= self.bytes.saturating_mul(times)
    }
}

/// What a delivery weighs against `QueueBound::bytes`.
fn weight(d: &Delivery) -> usize {
    d.msg.topic.len() + d.msg.payload.len()
}

impl EnqueueResult {
    /// The message is in the queue (within the bound or, by flow control, over it).
    pub(crate) fn is_queued(self) -> bool {
        matches!(
            self,
            EnqueueResult::Queued { .. }
                | EnqueueResult::QueuedOverBound { .. }
                | EnqueueResult::QueuedInPlaceOfQos0 { .. }
        )
    }
}

/// Set in the connection id with which the HTTP API claims a session to end its connection
/// (a kick); connection ids (`Broker::next_conn_id`) never reach it.
pub(crate) const ADMIN_CONN: u64 = 1 << 63;

/// `Session::parked` when the owner is awake.
const NOT_PARKED: usize = usize::MAX;

/// The session ended between a lookup and a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionEnded;

/// What became of a message offered to a session's queue. Every outcome but `Queued` is a
/// drop that the caller must count (see `Broker::deliver`, the one caller that does).
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EnqueueResult {
    Queued {
        /// The owner hibernates in this parker slot: the caller wakes it.
        wake_parked: Option<usize>,
    },
    /// Queued over the bound (a QoS 1/2 message for a connected client): the publisher is to
    /// wait until the queue drains below the bound (flow control).
    QueuedOverBound {
        /// As for `Queued`.
        wake_parked: Option<usize>,
    },
    /// The session's queue is full; the message is dropped.
    QueueFull {
        /// True for the first drop of an overflow episode: log it.
        first: bool,
    },
    /// QoS 0 messages are not queued for a client that is away (as in Mosquitto's default).
    Offline,
    /// A second copy of a message already queued while a replay window is open (a message
    /// both routed live and replayed from the store): not queued (see `replay`).
    Duplicate,
    /// The queue was full: this QoS 1/2 message took the place of the oldest queued QoS 0
    /// one, which is dropped (QoS 0 goes first).
    QueuedInPlaceOfQos0 {
        /// As for `Queued`.
        wake_parked: Option<usize>,
        /// As for `QueueFull`.
        first: bool,
    },
}

#[derive(Debug)]
pub(crate) struct Session {
    pub client_id: ClientId,
    state: Mutex<SessionState>,
    /// Wakes the owning connection when the queue gets a message, or when another
    /// connection took the session over.
    pub notify: Notify,
    owner: Mutex<Owner>,
    /// The owner's connection id (0: none), readable without the lock: a connection that
    /// is no longer the owner was taken over and must close [MQTT-3.1.4-3].
    owner_id: AtomicU64,
    /// Where the owning connection is parked while it hibernates (`NOT_PARKED` if not).
    parked: AtomicUsize,
}

impl Session {
    pub(crate) fn new(client_id: ClientId) -> Session {
        Session {
            client_id,
            state: Mutex::new(SessionState::default()),
            notify: Notify::new(),
            owner: Mutex::new(Owner::default()),
            owner_id: AtomicU64::new(0),
            parked: AtomicUsize::new(NOT_PARKED),
        }
    }

    /// True while connection `conn_id` owns the session.
    pub(crate) fn owned_by(&self, conn_id: u64) -> bool {
        self.owner_id.load(Ordering::SeqCst) == conn_id
    }

    /// The parker slot of the hibernating owner, if it hibernates.
    pub(crate) fn parked(&self) -> Option<usize> {
        match self.parked.load(Ordering::SeqCst) {
            NOT_PARKED => None,
            slot => Some(slot),
        }
    }

    /// Records where the owner hibernates (`None`: it is awake).
    pub(crate) fn set_parked(&self, slot: Option<usize>) {
        self.parked
            .store(slot.unwrap_or(NOT_PARKED), Ordering::SeqCst);
    }

    /// Leaves a connection's in-flight state in the session.
    pub(crate) fn put_carried(&self, carried: Carried) {
        let boxed = (!carried.is_empty()).then(|| Box::new(carried));
        self.state.lock().carried = boxed;
    }

    /// Takes the in-flight state left in the session.
    pub(crate) fn take_carried(&self) -> Carried {
        self.state
            .lock()
            .carried
            .take()
            .map(|b| *b)
            .unwrap_or_default()
    }

    /// True if a queued message could be sent now, with `qos_room` more QoS 1/2 messages
    /// allowed in flight (the queue is sent in order, see `take_queued_within`).
    pub(crate) fn has_sendable(&self, qos_room: usize) -> bool {
        self.state
            .lock()
            .queue
            .front()
            .is_some_and(|d| d.qos == QoS::AtMostOnce || qos_room > 0)
    }

    pub(crate) fn is_online(&self) -> bool {
        self.owner_id.load(Ordering::Acquire) != 0
    }

    /// True if the session's owner now is an administrative kick (see `ADMIN_CONN`): a
    /// connection that lost the session to it was kicked, not taken over.
    pub(crate) fn kicked(&self) -> bool {
        self.owner_id.load(Ordering::Acquire) & ADMIN_CONN != 0
    }

    /// Messages waiting in the queue now.
    pub(crate) fn queued_len(&self) -> usize {
        self.state.lock().queue.len()
    }

    /// Opens a replay window (see `replay`): call just after the new subscription is in
    /// the router, with a mark taken after that; close it with `close_replay` once its replay
    /// was queued (or will not be).
    pub(crate) fn open_replay(&self, w: Window) {
        ReplayWindows::open(&mut self.state.lock().replay, w);
    }

    /// Closes a window `open_replay` opened.
    pub(crate) fn close_replay(&self) {
        ReplayWindows::close(&mut self.state.lock().replay);
    }

    /// Runs `f` with the state locked. Never held across an `.await`.
    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut SessionState) -> R) -> R {
        f(&mut self.state.lock())
    }

    /// Queues a message for this session, bounded by `max`. With `flow` set, a QoS 1/2
    /// message for a connected client that is not stalled may go over the bound (up to twice
    /// it), and the result says so: its publisher then waits for the queue to drain. Only
    /// `Broker::deliver` calls this: it counts the drops and wakes a hibernating owner.
    pub(crate) fn enqueue(&self, d: Delivery, max: QueueBound, flow: bool) -> EnqueueResult {
        let online = self.is_online();
        if d.qos == QoS::AtMostOnce && !online {
            return EnqueueResult::Offline;
        }
        let (wake, over, evicted) = {
            let mut st = self.state.lock();
            let msgid = d.msg.msgid;
            if let (Some(ws), Some(id)) = (st.replay.as_mut(), msgid)
                && !ws.first_copy(id)
            {
                return EnqueueResult::Duplicate;
            }
            let (len, bytes) = (st.queue.len(), st.queued_bytes);
            let over = max.reached(len, bytes, 1);
            let may_exceed = flow
                && online
                && d.qos != QoS::AtMostOnce
                && !st.stalled
                && !max.reached(len, bytes, 2);
            let mut evicted = None;
            // QoS 0 is dropped first: the oldest one makes room (its weight may be less than
            // the new message's; the bound is met again on the next take).
            let oldest_qos0 = (over && d.qos != QoS::AtMostOnce && st.queued_qos0 > 0)
                .then(|| st.queue.iter().position(|q| q.qos == QoS::AtMostOnce))
                .flatten();
            if let Some(old) = oldest_qos0.and_then(|i| st.queue.remove(i)) {
                st.queued_bytes -= weight(&old);
                st.queued_qos0 -= 1;
                evicted = Some(!st.overflowing);
                st.overflowing = true;
            }
            let over = over && evicted.is_none();
            if over && !may_exceed {
                // Not queued: a copy that comes later is not a second one.
                if let (Some(ws), Some(id)) = (st.replay.as_mut(), msgid) {
                    ws.forget(id);
                }
                let first = !st.overflowing;
                st.overflowing = true;
                return EnqueueResult::QueueFull { first };
            }
            // The first message over the bound wakes the owner too: it starts watching for
            // a slow consumer (`progress_if_full`).
            let crossing = over && !st.congested;
            st.congested |= over;
            let was_empty = st.queue.is_empty();
            st.queued_bytes += weight(&d);
            st.queued_qos0 += usize::from(d.qos == QoS::AtMostOnce);
            st.queue.push_back(d);
            (was_empty || crossing, over, evicted)
        };
        // The owner takes from the queue whenever it wakes for any reason, so it only needs
        // waking when the queue was empty (it may be waiting on nothing else), or to notice
        // that the queue went over the bound.
        let mut wake_parked = None;
        if wake {
            self.notify.notify_one();
            wake_parked = self.parked();
        }
        if let Some(first) = evicted {
            EnqueueResult::QueuedInPlaceOfQos0 { wake_parked, first }
        } else if over {
            EnqueueResult::QueuedOverBound { wake_parked }
        } else {
            EnqueueResult::Queued { wake_parked }
        }
    }

    /// True if the queue is below `max`, or nobody will drain it (the client went away, or
    /// is stalled): a publisher waiting for it stops waiting.
    pub(crate) fn drained_below(&self, max: QueueBound) -> bool {
        let st = self.state.lock();
        !max.reached(st.queue.len(), st.queued_bytes, 1) || st.stalled || !self.is_online()
    }

    /// The client's progress (see `SessionState::taken`) if its queue is at or over `max`,
    /// `None` if it is below: a reading to compare with a later one.
    pub(crate) fn progress_if_full(&self, max: QueueBound) -> Option<u64> {
        let st = self.state.lock();
        max.reached(st.queue.len(), st.queued_bytes, 1)
            .then_some(st.taken)
    }

    /// The client's progress (see `SessionState::taken`), whatever the queue holds.
    pub(crate) fn progress(&self) -> u64 {
        self.state.lock().taken
    }

    /// A publisher waited for this queue too long, and the client took nothing from it
    /// meanwhile: until it drains below the bound, messages over the bound are dropped
    /// rather than waited for.
    pub(crate) fn mark_stalled(&self) {
        self.state.lock().stalled = true;
    }

    /// Moves up to `n` queued messages into `out`, oldest first, taking at most `qos_room`
    /// QoS 1/2 messages: order is kept, so a QoS 1/2 message with no room stops the take.
    /// Returns true if publishers wait for this queue (it was over the bound `max`) and it
    /// is now below it: the caller wakes them.
    pub(crate) fn take_queued_within(
        &self,
        n: usize,
        mut qos_room: usize,
        max: QueueBound,
        out: &mut Vec<Delivery>,
    ) -> bool {
        let mut st = self.state.lock();
        while out.len() < n {
            let Some(front) = st.queue.front() else { break };
            if front.qos != QoS::AtMostOnce {
                if qos_room == 0 {
                    break;
                }
                qos_room -= 1;
            }
            if let Some(d) = st.queue.pop_front() {
                st.queued_bytes -= weight(&d);
                st.queued_qos0 -= usize::from(d.qos == QoS::AtMostOnce);
                st.taken = st.taken.wrapping_add(1);
                out.push(d);
            }
        }
        if st.queue.is_empty() {
            st.overflowing = false;
        }
        if !max.reached(st.queue.len(), st.queued_bytes, 1) {
            st.stalled = false;
            return std::mem::take(&mut st.congested);
        }
        false
    }

    /// Makes connection `conn_id` the owner. Returns the previous owner (which sees that it
    /// lost the session when woken, see `owned_by`), or `Err(SessionEnded)` if the session
    /// has ended and the caller must look it up again. If another connection is still
    /// attached, the caller must `wait_handover` before it takes the in-flight state.
    pub(crate) fn claim(&self, conn_id: u64) -> Result<Option<u64>, SessionEnded> {
        let mut o = self.owner.lock();
        if o.destroyed {
            return Err(SessionEnded);
        }
        let prev = std::mem::replace(&mut o.conn, conn_id);
        let prev = (prev != 0).then_some(prev);
        match (&mut o.handover, prev) {
            (Some(h), _) => h.queue.push(conn_id),
            (None, Some(prev)) => {
                o.handover = Some(Box::new(Handover {
                    queue: vec![prev, conn_id],
                    released: Arc::default(),
                }));
            }
            (None, None) => {}
        }
        self.owner_id.store(conn_id, Ordering::SeqCst);
        drop(o);
        Ok(prev)
    }

    /// Waits until every connection that claimed the session before `conn_id` has released
    /// it (its in-flight state is back in the session), at most `limit`. It waits even if
    /// `conn_id` was itself taken over meanwhile: the connection after it waits for it in
    /// turn. Returns false on timeout.
    pub(crate) async fn wait_handover(&self, conn_id: u64, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let released = match &self.owner.lock().handover {
                Some(h) if h.queue.first().is_some_and(|&first| first != conn_id) => {
                    h.released.clone()
                }
                _ => return true,
            };
            let notified = released.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            // A release between the look above and `enable` must not be missed.
            let still_waiting = self
                .owner
                .lock()
                .handover
                .as_ref()
                .is_some_and(|h| h.queue.first().is_some_and(|&first| first != conn_id));
            if !still_waiting {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return false;
            }
        }
    }

    /// Connection `conn_id` lets go of the session. Returns the detach count to hand to an
    /// expiry timer if it was still the owner, `None` if it had been taken over.
    pub(crate) fn release(&self, conn_id: u64) -> Option<u64> {
        let mut o = self.owner.lock();
        let detached = if o.conn == conn_id {
            o.conn = 0;
            o.detaches += 1;
            self.owner_id.store(0, Ordering::SeqCst);
            Some(o.detaches)
        } else {
            None
        };
        let released = o.handover.as_mut().map(|h| {
            h.queue.retain(|&c| c != conn_id);
            h.released.clone()
        });
        if o.handover.as_ref().is_some_and(|h| h.queue.is_empty()) {
            o.handover = None;
        }
        drop(o);
        if let Some(r) = released {
            r.notify_waiters();
        }
        detached
    }

    /// True if nobody reattached since the detach numbered `detaches`.
    pub(crate) fn still_detached(&self, detaches: u64) -> bool {
        let o = self.owner.lock();
        !o.destroyed && o.conn == 0 && o.detaches == detaches
    }

    /// Marks the session ended and removes it from the registry (if it is still the one
    /// registered). Returns what the caller still has to do (see `Ended`).
    pub(crate) fn end(self: &Arc<Self>, registry: &Registry) -> Ended {
        {
            let mut o = self.owner.lock();
            o.destroyed = true;
            registry.remove_if_same(self);
        }
        let mut st = self.state.lock();
        let orphans = leaving::orphans(&mut st);
        st.queue.clear();
        st.queued_bytes = 0;
        st.queued_qos0 = 0;
        let will = st.pending_will.take().map(|w| {
            w.cancel.cancel();
            w.msg
        });
        let awaiting_rel = st
            .carried
            .take()
            .map(|c| c.awaiting_rel.into_iter().collect())
            .unwrap_or_default();
        Ended {
            subscriptions: std::mem::take(&mut st.subscriptions),
            will,
            awaiting_rel,
            orphans,
        }
    }
}
