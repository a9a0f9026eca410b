//! The writer's distributions (batch sizes, write latency), its failures by error code, and
//! the rate-limited log of dropped ops: what does not fit the `Copy` counters of
//! [`super::WriterStats`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Upper bounds of the batch-size buckets (ops per `Store::write` call).
pub const BATCH_SIZE_BUCKETS: [f64; 10] =
    [1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 512.0, 1024.0];
/// Upper bounds of the write-latency buckets, in seconds.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// A fixed-bucket histogram, updated without locks.
#[derive(Debug)]
pub(super) struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative); the last one is `+Inf`.
    counts: Vec<AtomicU64>,
    /// Sum of the observations, in micro-units (µs, or ops × 10⁶) so it stays an integer.
    sum_micro: AtomicU64,
}

impl Histogram {
    pub(super) fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_micro: AtomicU64::new(0),
        }
    }

    pub(super) fn observe(&self, value: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| value <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get(i) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micro
            .fetch_add((value * 1e6) as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(self.bounds.len());
        for (b, c) in self.bounds.iter().zip(&self.counts) {
            cumulative += c.load(Ordering::Relaxed);
            buckets.push((*b, cumulative));
        }
        let count = cumulative + self.counts.last().map_or(0, |c| c.load(Ordering::Relaxed));
        HistogramSnapshot {
            buckets,
            count,
            sum: self.sum_micro.load(Ordering::Relaxed) as f64 / 1e6,
        }
    }
}

/// A histogram as Prometheus exports it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramSnapshot {
    /// `(le, cumulative count)` per bucket, `+Inf` not included (it is `count`).
    pub buckets: Vec<(f64, u64)>,
    pub count: u64,
    pub sum: f64,
}

/// The writer's distributions and failures by code, at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterMetrics {
    /// Ops per `Store::write` call (retries included).
    pub batch_size: HistogramSnapshot,
    /// Seconds per `Store::write` call.
    pub write_latency: HistogramSnapshot,
    /// Ops whose write attempt failed, by the store's error code (the AWS code for
    /// DynamoDB), retried or not.
    pub failures_by_code: BTreeMap<String, u64>,
}

#[derive(Debug)]
pub(super) struct Distributions {
    pub(super) batch_size: Histogram,
    pub(super) write_latency: Histogram,
    failures_by_code: Mutex<BTreeMap<String, u64>>,
}

impl Default for Distributions {
    fn default() -> Self {
        Distributions {
            batch_size: Histogram::new(&BATCH_SIZE_BUCKETS),
            write_latency: Histogram::new(&LATENCY_BUCKETS),
            failures_by_code: Mutex::new(BTreeMap::new()),
        }
    }
}

impl Distributions {
    pub(super) fn failed(&self, code: &str, ops: u64) {
        let mut m = self.failures_by_code.lock();
        match m.get_mut(code) {
            Some(n) => *n += ops,
            None => {
                m.insert(code.to_owned(), ops);
            }
        }
    }

    pub(super) fn snapshot(&self) -> WriterMetrics {
        WriterMetrics {
            batch_size: self.batch_size.snapshot(),
            write_latency: self.write_latency.snapshot(),
            failures_by_code: self.failures_by_code.lock().clone(),
        }
    }
}

/// Logs dropped ops at most once per interval, with how many since the last line.
#[derive(Debug)]
pub(super) struct DropLog {
    cause: &'static str,
    since_last: AtomicU64,
    last: Mutex<Option<Instant>>,
}

const DROP_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl DropLog {
    pub(super) fn new(cause: &'static str) -> DropLog {
        DropLog {
            cause,
            since_last: AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }

    pub(super) fn dropped(&self, op: &crate::op::WriteOp) {
        self.since_last.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut last = self.last.lock();
        if last.is_some_and(|t| now.duration_since(t) < DROP_LOG_INTERVAL) {
            return;
        }
        *last = Some(now);
        drop(last);
        let count = self.since_last.swap(0, Ordering::Relaxed);
        tracing::error!(cause = self.cause, count, table = op.table().base_name(), op = ?op.key(),
            "store writes dropped (count since the last such line; at most one line per 10 s)");
    }
}
