//! Rate limits for log lines about events that can come in floods (denials, store
//! timeouts): at most one line a second, saying how many were not logged.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// At most one log line a second for an event, counting the ones not logged.
#[derive(Debug)]
pub(crate) struct LogLimit {
    start: Instant,
    /// Second (since `start`) of the last line logged, plus one; 0: never.
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit {
            start: Instant::now(),
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }
}

impl LogLimit {
    /// Whether to log now; `Some(n)`: yes, `n` events were not logged since the last line.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = self.start.elapsed().as_secs() + 1;
        let last = self.last.load(Ordering::Relaxed);
        if last != now
            && self
                .last
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_a_second_counting_the_rest() {
        let d = LogLimit::default();
        assert_eq!(d.admit(), Some(0));
        assert_eq!(d.admit(), None);
        assert_eq!(d.admit(), None);
        assert_eq!(d.suppressed.load(Ordering::Relaxed), 2);
    }
}
