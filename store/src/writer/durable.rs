//! What [`super::Writer::push_durable`] returns: a future that resolves when *those* ops are
//! applied (or known not to be), and the tracker the batcher moves along with the ops.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::oneshot;

/// Why ops pushed with [`super::Writer::push_durable`] are not known to be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotStored {
    #[error("store writer has stopped")]
    WriterClosed,
    /// The store refused an op for good (a non-retryable error, or `max_attempts` reached).
    #[error("the store refused the write: {code}")]
    Failed {
        /// The store's error code (the AWS code for DynamoDB).
        code: String,
    },
    /// The op was dropped: the memory buffer and the journal were full (or the journal
    /// failed).
    #[error("the store write was dropped: buffer and journal full")]
    Dropped,
}

/// Resolves once the ops given to [`super::Writer::push_durable`] are applied and durable in
/// the store (DynamoDB answered; the embedded store's transaction committed), with the first
/// reason one of them was not.
#[derive(Debug)]
pub struct Durable(oneshot::Receiver<Result<(), NotStored>>);

impl Durable {
    /// Already resolved with `result` (no ops, or all dropped before queueing).
    pub(super) fn ready(result: Result<(), NotStored>) -> Durable {
        let (tx, rx) = oneshot::channel();
        let _ = tx.send(result);
        Durable(rx)
    }
}

impl std::future::Future for Durable {
    type Output = Result<(), NotStored>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(NotStored::WriterClosed)))
    }
}

/// Shared by the ops of one `push_durable` call: counts those not yet applied and resolves
/// the [`Durable`] when none is left, or at the first failure. An op coalesced into a pending
/// entry hands its tracker to the entry. Dropping every clone unresolved (the writer stopped)
/// resolves it to `WriterClosed`.
#[derive(Debug, Clone)]
pub(super) struct Tracker(Arc<Mutex<TrackerState>>);

#[derive(Debug)]
struct TrackerState {
    remaining: usize,
    tx: Option<oneshot::Sender<Result<(), NotStored>>>,
}

impl Tracker {
    pub(super) fn new(ops: usize) -> (Tracker, Durable) {
        let (tx, rx) = oneshot::channel();
        let tracker = Tracker(Arc::new(Mutex::new(TrackerState {
            remaining: ops,
            tx: Some(tx),
        })));
        (tracker, Durable(rx))
    }

    /// One of its ops was applied.
    pub(super) fn applied(&self) {
        let mut s = self.0.lock();
        s.remaining = s.remaining.saturating_sub(1);
        if s.remaining == 0
            && let Some(tx) = s.tx.take()
        {
            let _ = tx.send(Ok(()));
        }
    }

    /// One of its ops will never be applied.
    pub(super) fn not_stored(&self, why: NotStored) {
        if let Some(tx) = self.0.lock().tx.take() {
            let _ = tx.send(Err(why));
        }
    }
}
