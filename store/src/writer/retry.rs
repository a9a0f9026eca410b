//! One batch's life: write, retry what failed retryably with exponential backoff and jitter,
//! and report what failed for good, so the batcher can tell the right waiters.

use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::Counters;
use super::WriterConfig;
use crate::op::{OpKey, WriteOp};
use crate::store::Store;
use std::sync::atomic::Ordering;

/// Writes `ops` (retrying retryable failures) and returns the keys of the ops that failed
/// for good, each with the store's error code.
pub(super) async fn write_with_retry<S: Store>(
    store: &S,
    mut ops: Vec<WriteOp>,
    config: &WriterConfig,
    counters: &Counters,
) -> Vec<(OpKey, String)> {
    counters.batches.fetch_add(1, Ordering::Relaxed);
    let mut failed_for_good = Vec::new();
    let mut attempt: u32 = 0;
    loop {
        let sent = ops.len() as u64;
        counters.dist.batch_size.observe(sent as f64);
        let started = Instant::now();
        let failures = store.write(ops).await;
        counters
            .dist
            .write_latency
            .observe(started.elapsed().as_secs_f64());
        let failed_now: u64 = failures.iter().map(|f| f.ops.len() as u64).sum();
        counters
            .written
            .fetch_add(sent.saturating_sub(failed_now), Ordering::Relaxed);
        let mut retry = Vec::new();
        for f in failures {
            counters.dist.failed(f.error.code(), f.ops.len() as u64);
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
                let code = f.error.code().to_owned();
                failed_for_good.extend(f.ops.iter().map(|op| (op.key(), code.clone())));
            }
        }
        if retry.is_empty() {
            return failed_for_good;
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
    // The precise clock's nanoseconds as the random part (the coarse one moves in ticks).
    let noise = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    exp + Duration::from_micros(noise % jitter_range)
}
