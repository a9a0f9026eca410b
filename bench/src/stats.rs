//! Counters shared by every client task, the payload clock, and the progress line.
//!
//! Tasks add to the atomic counters once per read or write batch, not per message, so the
//! counters cost nothing measurable; latencies go into each subscriber's own histogram,
//! merged at the end.

use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio_util::sync::CancellationToken;

/// The time base of the timestamp in each payload.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Clock {
    /// Nanoseconds since a process-wide `Instant`: exact when publishers and subscribers
    /// live in the same process (`run` mode).
    Monotonic,
    /// Nanoseconds since the Unix epoch: lets `pub` and `sub` run as separate processes on
    /// one machine, at the price of wall-clock steps.
    Wall,
}

/// The process-wide base of [`Clock::Monotonic`].
pub(crate) fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

impl Clock {
    pub(crate) fn now_ns(self) -> u64 {
        match self {
            Clock::Monotonic => base().elapsed().as_nanos() as u64,
            Clock::Wall => SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64),
        }
    }
}

/// Nanoseconds since [`base`], for the time of the last delivery.
pub(crate) fn mono_ns() -> u64 {
    base().elapsed().as_nanos() as u64
}

#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// PUBLISH packets written.
    pub sent: AtomicU64,
    /// QoS 1/2 publishes the broker has acknowledged (PUBACK, PUBCOMP).
    pub acked: AtomicU64,
    /// PUBLISH packets delivered to our subscribers, duplicates included.
    pub received: AtomicU64,
    /// Deliveries of a (publisher, sequence) a subscriber had already seen.
    pub duplicates: AtomicU64,
    /// Clients with a CONNACK, currently or in the past.
    pub connected: AtomicU64,
    /// Clients that failed.
    pub errors: AtomicU64,
    /// `mono_ns()` at the last delivery: the end of the receive window.
    pub last_recv_ns: AtomicU64,
    /// The first failure, quoted in the summary.
    first_error: Mutex<Option<String>>,
}

impl Stats {
    pub(crate) fn error(&self, err: impl std::fmt::Display) {
        self.errors.fetch_add(1, Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| err.to_string());
        }
    }

    pub(crate) fn first_error(&self) -> Option<String> {
        self.first_error.lock().ok().and_then(|e| e.clone())
    }

    /// Unique deliveries so far.
    pub(crate) fn unique_received(&self) -> u64 {
        self.received
            .load(Relaxed)
            .saturating_sub(self.duplicates.load(Relaxed))
    }
}

/// Prints one progress line a second on stderr until `stop`.
pub(crate) async fn progress(stats: &Stats, stop: CancellationToken) {
    let start = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut sent, mut received) = (0, 0);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let now_sent = stats.sent.load(Relaxed);
        let now_received = stats.received.load(Relaxed);
        eprintln!(
            "[{:>4}s] conns {:>6}  sent {:>10} ({:>8}/s)  recv {:>10} ({:>8}/s)  acked {:>10}  errors {}",
            start.elapsed().as_secs(),
            stats.connected.load(Relaxed),
            now_sent,
            now_sent - sent,
            now_received,
            now_received - received,
            stats.acked.load(Relaxed),
            stats.errors.load(Relaxed),
        );
        (sent, received) = (now_sent, now_received);
    }
}
