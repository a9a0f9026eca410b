//! Sessions: the state that outlives a connection (subscriptions, the queue of messages for
//! the client, unacknowledged deliveries), and the registry that maps client ids to them.
//!
//! A `Session` is shared: publishers push into its queue (a short per-session lock, never a
//! global one), and at most one connection owns it at a time. While a connection owns it, the
//! connection keeps the in-flight state in its own task and hands it back when it ends, so
//! acknowledgements take no lock.

pub mod inflight;
pub mod registry;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use dynamq_codec::{QoS, SubscriptionOptions};
use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::message::{ClientId, Delivery, Message};
pub use inflight::Inflight;
pub use registry::Registry;

/// One subscription of a session, as the client asked for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub options: SubscriptionOptions,
    /// The v5 Subscription Identifier given with the SUBSCRIBE, if any.
    pub id: Option<u32>,
}

/// What a connection hands back to the session when it ends, so that the next connection
/// can resend unacknowledged messages [MQTT-4.4.0-1].
#[derive(Debug, Default)]
pub struct Carried {
    pub inflight: Inflight,
    /// Packet ids of QoS 2 publishes received and not yet released by PUBREL [MQTT-4.3.3-9].
    pub awaiting_rel: HashSet<u16>,
}

/// A will that waits for its Will Delay Interval (v5) before being published.
#[derive(Debug)]
pub struct PendingWill {
    pub msg: Arc<Message>,
    /// Cancelled when the will is no longer the timer's to publish: the client came back
    /// before the delay ran out [MQTT-3.1.3-9], or the session ended and the will went out.
    pub cancel: CancellationToken,
}

/// The connection that owns a session, as seen by one that wants to take it over.
#[derive(Debug, Clone)]
pub struct ConnHandle {
    pub conn_id: u64,
    /// Cancelled to make the connection close (takeover, shutdown).
    pub kick: CancellationToken,
    /// Cancelled by the connection once it has handed its state back to the session.
    pub done: CancellationToken,
}

#[derive(Debug, Default)]
struct Owner {
    conn: Option<ConnHandle>,
    /// Set once the session has ended; a connection that finds it set looks again.
    destroyed: bool,
    /// Counts detaches, so that an expiry timer knows whether the client came back meanwhile.
    detaches: u64,
}

/// Mutable session state behind the per-session lock.
#[derive(Debug, Default)]
pub struct SessionState {
    /// Messages waiting to be sent, oldest first.
    pub queue: VecDeque<Delivery>,
    /// Topic filter (as subscribed, including any `$share/` prefix) -> subscription.
    pub subscriptions: HashMap<String, Subscription>,
    /// In-flight state while no connection holds it.
    pub carried: Carried,
    /// Seconds the session outlives its connection; `u32::MAX` never expires.
    pub expiry_interval: u32,
    pub pending_will: Option<PendingWill>,
    /// Set when the queue overflowed, so the overflow is logged once per episode.
    overflowing: bool,
}

/// The session ended between a lookup and a claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionEnded;

/// Why a message was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnqueueResult {
    Queued,
    /// The session's queue is full; the message is dropped (counted by the caller).
    QueueFull {
        /// True for the first drop of an overflow episode: log it.
        first: bool,
    },
    /// QoS 0 messages are not queued for a client that is away (as in Mosquitto's default).
    Offline,
}

#[derive(Debug)]
pub struct Session {
    pub client_id: ClientId,
    state: Mutex<SessionState>,
    /// Wakes the owning connection when the queue gets a message.
    pub notify: Notify,
    online: AtomicBool,
    owner: Mutex<Owner>,
    /// Messages dropped because the queue was full.
    pub dropped: AtomicU64,
}

impl Session {
    pub fn new(client_id: ClientId) -> Session {
        Session {
            client_id,
            state: Mutex::new(SessionState::default()),
            notify: Notify::new(),
            online: AtomicBool::new(false),
            owner: Mutex::new(Owner::default()),
            dropped: AtomicU64::new(0),
        }
    }

    pub fn is_online(&self) -> bool {
        self.online.load(Ordering::Acquire)
    }

    /// Runs `f` with the state locked. Never held across an `.await`.
    pub fn with_state<R>(&self, f: impl FnOnce(&mut SessionState) -> R) -> R {
        f(&mut self.state.lock())
    }

    /// Queues a message for this session, bounded by `max`.
    pub fn enqueue(&self, d: Delivery, max: usize) -> EnqueueResult {
        if d.qos == QoS::AtMostOnce && !self.is_online() {
            return EnqueueResult::Offline;
        }
        let (result, wake) = {
            let mut st = self.state.lock();
            let wake = st.queue.is_empty();
            let result = if st.queue.len() >= max {
                let first = !st.overflowing;
                st.overflowing = true;
                EnqueueResult::QueueFull { first }
            } else {
                st.queue.push_back(d);
                EnqueueResult::Queued
            };
            (result, wake)
        };
        match result {
            // The owner takes from the queue whenever it wakes for any reason, so it only
            // needs waking when the queue was empty (it may be waiting on nothing else).
            EnqueueResult::Queued if wake => self.notify.notify_one(),
            EnqueueResult::Queued => {}
            EnqueueResult::QueueFull { .. } => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
            EnqueueResult::Offline => {}
        }
        result
    }

    /// Moves up to `n` queued messages into `out`, oldest first, taking at most `qos_room`
    /// QoS 1/2 messages: order is kept, so a QoS 1/2 message with no room stops the take.
    pub fn take_queued_within(&self, n: usize, mut qos_room: usize, out: &mut Vec<Delivery>) {
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
                out.push(d);
            }
        }
        if st.queue.is_empty() {
            st.overflowing = false;
        }
    }

    /// Makes `handle` the owner. Returns the previous owner (to be kicked and awaited), or
    /// `Err(SessionEnded)` if the session has ended and the caller must look it up again.
    pub fn claim(&self, handle: ConnHandle) -> Result<Option<ConnHandle>, SessionEnded> {
        let mut o = self.owner.lock();
        if o.destroyed {
            return Err(SessionEnded);
        }
        let prev = o.conn.replace(handle);
        drop(o);
        self.online.store(true, Ordering::Release);
        Ok(prev)
    }

    /// Gives up ownership if `conn_id` still owns the session. Returns whether it did, and
    /// the detach count to hand to an expiry timer.
    pub fn release(&self, conn_id: u64) -> Option<u64> {
        let mut o = self.owner.lock();
        if o.conn.as_ref().is_some_and(|c| c.conn_id == conn_id) {
            o.conn = None;
            o.detaches += 1;
            self.online.store(false, Ordering::Release);
            Some(o.detaches)
        } else {
            None
        }
    }

    /// The current owner, for shutdown.
    pub fn owner(&self) -> Option<ConnHandle> {
        self.owner.lock().conn.clone()
    }

    /// True if nobody reattached since the detach numbered `detaches`.
    pub fn still_detached(&self, detaches: u64) -> bool {
        let o = self.owner.lock();
        !o.destroyed && o.conn.is_none() && o.detaches == detaches
    }

    /// Marks the session ended and removes it from the registry (if it is still the one
    /// registered). Returns the subscriptions it had, for the caller to remove from the
    /// router, and a delayed will that must now be published: a session that ends publishes
    /// its will at once [MQTT-3.1.3-9].
    pub fn end(
        self: &Arc<Self>,
        registry: &Registry,
    ) -> (HashMap<String, Subscription>, Option<Arc<Message>>) {
        {
            let mut o = self.owner.lock();
            o.destroyed = true;
            registry.remove_if_same(self);
        }
        self.online.store(false, Ordering::Release);
        let mut st = self.state.lock();
        st.queue.clear();
        let will = st.pending_will.take().map(|w| {
            w.cancel.cancel();
            w.msg
        });
        (std::mem::take(&mut st.subscriptions), will)
    }
}
