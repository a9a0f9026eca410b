//! Hibernation: a TCP connection that has been quiet for `mqtt.hibernate_after_ms` gives up
//! its task and buffers and waits here, as a socket registered with one poller thread and a
//! small record of its state (`Parked`). It is woken, and gets a task again, when the client
//! sends something (or closes), when a message is queued for it, when another connection
//! takes its session over, when its keepalive runs out, or when the broker shuts down.
//!
//! An idle connection then costs its session and this record, not a task with its future
//! and buffers (the same idea as EMQX's `hibernate_after`, which compacts idle Erlang
//! processes).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use parking_lot::Mutex;
use slab::Slab;

use super::Parked;

/// The poller's own token, for wake requests from other threads.
const WAKER: Token = Token(usize::MAX);

/// Where hibernating connections wait. The poller thread starts with the first connection
/// that hibernates.
#[derive(Default)]
pub(crate) struct Parker {
    inner: OnceLock<Option<Arc<Inner>>>,
}

struct Inner {
    registry: mio::Registry,
    waker: Waker,
    state: Mutex<State>,
    stop: AtomicBool,
    runtime: tokio::runtime::Handle,
    /// Deadlines are kept as milliseconds since this instant (half the size of an Instant).
    epoch: Instant,
}

#[derive(Default)]
struct State {
    slots: Slab<Slot>,
    /// Keepalive deadlines, earliest first. An entry whose slot has since been woken (or
    /// reused) is skipped when it comes up.
    deadlines: BinaryHeap<Reverse<(Millis, u32)>>,
    /// Slots to wake, asked for by other threads.
    wakes: Vec<usize>,
}

struct Slot {
    socket: std::net::TcpStream,
    conn: Box<Parked>,
    /// The keepalive deadline, `NO_DEADLINE` if none.
    deadline: Millis,
}

/// Milliseconds since the poller's epoch.
type Millis = u64;
const NO_DEADLINE: Millis = Millis::MAX;

/// A slab key as the deadline heap keeps it. Keys stay below the number of parked
/// connections, far below `u32::MAX`; one that did not fit would only never match.
fn heap_key(key: usize) -> u32 {
    u32::try_from(key).unwrap_or(u32::MAX)
}

impl Parker {
    /// The poller, started on first use; `None` if it could not start (logged once).
    fn inner(&self) -> Option<&Arc<Inner>> {
        self.inner
            .get_or_init(|| match Inner::start() {
                Ok(inner) => Some(inner),
                Err(e) => {
                    tracing::error!(
                        "cannot start the hibernation poller ({e}); connections stay awake"
                    );
                    None
                }
            })
            .as_ref()
    }

    /// Parks a connection. Returns it if it cannot be parked. The caller checks afterwards
    /// whether something it must not miss happened meanwhile (`wake` then).
    pub(crate) fn park(
        &self,
        socket: std::net::TcpStream,
        conn: Box<Parked>,
        deadline: Option<Instant>,
    ) -> Result<usize, (std::net::TcpStream, Box<Parked>)> {
        let Some(inner) = self.inner() else {
            return Err((socket, conn));
        };
        let mut st = inner.state.lock();
        let key = st.slots.vacant_key();
        let fd = socket.as_raw_fd();
        if let Err(e) = inner
            .registry
            .register(&mut SourceFd(&fd), Token(key), Interest::READABLE)
        {
            tracing::warn!(client = %conn.session.client_id, "cannot hibernate: {e}");
            return Err((socket, conn));
        }
        conn.session.set_parked(Some(key));
        let deadline = deadline.map_or(NO_DEADLINE, |d| inner.millis(d));
        st.slots.insert(Slot {
            socket,
            conn,
            deadline,
        });
        if deadline != NO_DEADLINE {
            let d = deadline;
            let earliest = st.deadlines.peek().is_none_or(|Reverse((e, _))| d < *e);
            st.deadlines.push(Reverse((d, heap_key(key))));
            if earliest {
                // The poller may be sleeping until a later deadline.
                let _ = inner.waker.wake();
            }
        }
        Ok(key)
    }

    /// Wakes the connection parked in `slot` (if it is still there).
    pub(crate) fn wake(&self, slot: usize) {
        if let Some(Some(inner)) = self.inner.get() {
            if inner.stop.load(Ordering::SeqCst) {
                // The poller has stopped (shutdown): wake it from here.
                inner.unpark(slot);
                return;
            }
            inner.state.lock().wakes.push(slot);
            let _ = inner.waker.wake();
        }
    }

    /// Connections parked now.
    pub(crate) fn len(&self) -> usize {
        match self.inner.get() {
            Some(Some(inner)) => inner.state.lock().slots.len(),
            _ => 0,
        }
    }

    /// Wakes every parked connection and stops the poller (broker shutdown). The woken
    /// connections are tracked tasks when this returns.
    pub(crate) fn wake_all_and_stop(&self) {
        let Some(Some(inner)) = self.inner.get() else {
            return;
        };
        inner.stop.store(true, Ordering::SeqCst);
        let keys: Vec<usize> = inner.state.lock().slots.iter().map(|(k, _)| k).collect();
        for k in keys {
            inner.unpark(k);
        }
        let _ = inner.waker.wake();
    }
}

impl Inner {
    fn start() -> std::io::Result<Arc<Inner>> {
        let runtime = tokio::runtime::Handle::try_current()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        let poll = Poll::new()?;
        let waker = Waker::new(poll.registry(), WAKER)?;
        let inner = Arc::new(Inner {
            registry: poll.registry().try_clone()?,
            waker,
            state: Mutex::new(State::default()),
            stop: AtomicBool::new(false),
            runtime,
            epoch: Instant::now(),
        });
        let run = inner.clone();
        std::thread::Builder::new()
            .name("dynamq-hibernate".into())
            .spawn(move || run.run(poll))?;
        Ok(inner)
    }

    fn millis(&self, t: Instant) -> Millis {
        // Rounded up: a deadline is never earlier than asked.
        let ms = t
            .saturating_duration_since(self.epoch)
            .as_micros()
            .div_ceil(1000);
        Millis::try_from(ms).unwrap_or(NO_DEADLINE - 1)
    }

    fn instant(&self, ms: Millis) -> Instant {
        self.epoch + Duration::from_millis(ms)
    }

    /// The poller thread: waits for socket events, wake requests and keepalive deadlines.
    fn run(&self, mut poll: Poll) {
        let mut events = Events::with_capacity(1024);
        let mut due = Vec::new();
        while !self.stop.load(Ordering::SeqCst) {
            let timeout = self.state.lock().deadlines.peek().map(|Reverse((d, _))| {
                // Rounded up, so the deadline has passed when the poll returns.
                self.instant(*d).saturating_duration_since(Instant::now())
                    + Duration::from_millis(1)
            });
            if let Err(e) = poll.poll(&mut events, timeout) {
                if e.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!("hibernation poller failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
                continue;
            }
            due.extend(
                events
                    .iter()
                    .map(|e| e.token())
                    .filter(|t| *t != WAKER)
                    .map(|t| t.0),
            );
            {
                let mut st = self.state.lock();
                let st = &mut *st;
                due.append(&mut st.wakes);
                let now = self.millis(Instant::now());
                while let Some(Reverse((d, key))) = st.deadlines.peek().copied() {
                    if d > now {
                        break;
                    }
                    st.deadlines.pop();
                    let key = key as usize;
                    if st.slots.get(key).is_some_and(|s| s.deadline == d) {
                        due.push(key);
                    }
                }
                // Deadlines of connections woken early stay in the heap until they come up;
                // rebuild it when they outnumber the live ones.
                if st.deadlines.len() > 2 * st.slots.len() + 1024 {
                    st.deadlines = st
                        .slots
                        .iter()
                        .filter(|(_, s)| s.deadline != NO_DEADLINE)
                        .map(|(k, s)| Reverse((s.deadline, heap_key(k))))
                        .collect();
                }
            }
            for key in due.drain(..) {
                self.unpark(key);
            }
        }
    }

    /// Takes the connection out of `key` and gives it a task again.
    fn unpark(&self, key: usize) {
        let slot = {
            let mut st = self.state.lock();
            let Some(slot) = st.slots.try_remove(key) else {
                return;
            };
            slot.conn.session.set_parked(None);
            slot
        };
        let fd = slot.socket.as_raw_fd();
        if let Err(e) = self.registry.deregister(&mut SourceFd(&fd)) {
            tracing::debug!("deregistering a parked socket: {e}");
        }
        // Spawned from this thread through the runtime's handle.
        let _guard = self.runtime.enter();
        // Without a keepalive the deadline is not looked at.
        let deadline = match slot.deadline {
            NO_DEADLINE => Instant::now(),
            d => self.instant(d),
        };
        super::respawn(slot.conn, slot.socket, deadline, true);
    }
}
