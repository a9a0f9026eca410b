//! A scripted in-memory [`Store`] for the writer's tests: records every batch, can hold
//! writes at a gate, fail the first calls, and checks that no key is ever written by two
//! batches at once.

#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dynamq_store::error::StoreError;
use dynamq_store::msgid::MsgId;
use dynamq_store::op::{OpKey, WriteOp};
use dynamq_store::record::{ClientRecord, MessageRecord, RetainRecord, SubRecord};
use dynamq_store::store::{Store, WriteFailure};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// Records every batch; can hold the first write at a gate, fail the first calls, and checks
/// that no key is ever written by two batches at once.
#[derive(Default)]
pub struct FakeStore {
    pub batches: Mutex<Vec<Vec<WriteOp>>>,
    /// Key -> last op applied.
    pub state: Mutex<BTreeMap<OpKey, WriteOp>>,
    pub inflight: Mutex<HashSet<OpKey>>,
    pub overlap: AtomicBool,
    pub gate: Option<Semaphore>,
    pub fail_first: AtomicUsize,
    pub retryable: bool,
    pub delay: Duration,
}

impl FakeStore {
    pub fn gated() -> FakeStore {
        FakeStore {
            gate: Some(Semaphore::new(0)),
            ..FakeStore::default()
        }
    }
    pub fn open_gate(&self) {
        if let Some(g) = &self.gate {
            g.add_permits(1_000_000);
        }
    }
}

impl Store for FakeStore {
    async fn write(&self, ops: Vec<WriteOp>) -> Vec<WriteFailure> {
        if let Some(g) = &self.gate {
            let _permit = g.acquire().await;
        }
        let keys: Vec<OpKey> = ops.iter().map(WriteOp::key).collect();
        {
            let mut inflight = self.inflight.lock();
            for k in &keys {
                if !inflight.insert(k.clone()) {
                    self.overlap.store(true, Ordering::SeqCst);
                }
            }
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        {
            let mut inflight = self.inflight.lock();
            for k in &keys {
                inflight.remove(k);
            }
        }
        if self
            .fail_first
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
        {
            return vec![WriteFailure {
                ops,
                error: StoreError::Dynamo {
                    operation: "BatchWriteItem",
                    table: "mqtt_msg".into(),
                    code: if self.retryable {
                        "ThrottlingException"
                    } else {
                        "ValidationException"
                    }
                    .into(),
                    message: "scripted".into(),
                    retryable: self.retryable,
                },
            }];
        }
        self.batches.lock().push(ops.clone());
        let mut state = self.state.lock();
        for op in ops {
            state.insert(op.key(), op);
        }
        Vec::new()
    }
    async fn client(&self, _: &str) -> Result<Option<ClientRecord>, StoreError> {
        Ok(None)
    }
    async fn clients_all(&self) -> Result<Vec<ClientRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn subscriptions(&self, _: &str) -> Result<Vec<SubRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn retained_all(&self) -> Result<Vec<RetainRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn retained(&self, _: &str) -> Result<Option<RetainRecord>, StoreError> {
        Ok(None)
    }
    async fn map_msgids(&self, _: &str) -> Result<Vec<MsgId>, StoreError> {
        Ok(Vec::new())
    }
    async fn map_all(&self) -> Result<Vec<(String, Vec<MsgId>)>, StoreError> {
        Ok(Vec::new())
    }
    async fn messages(&self, _: &[MsgId]) -> Result<Vec<MessageRecord>, StoreError> {
        Ok(Vec::new())
    }
    async fn acked(&self, _: &str, _: &str) -> Result<Option<MsgId>, StoreError> {
        Ok(None)
    }
}

pub fn msg(i: u128, payload: &str) -> MessageRecord {
    MessageRecord {
        msgid: MsgId((1_700_000_000_000_000u128 << 64) | i),
        topic: "t".into(),
        sender: "s".into(),
        qos: 1,
        retain: false,
        payload: Bytes::copy_from_slice(payload.as_bytes()),
        arrived: 1_700_000_000,
        props: Default::default(),
    }
}

impl FakeStore {
    /// Per key, the ops applied, in the order the store applied them.
    pub fn history(&self) -> BTreeMap<OpKey, Vec<WriteOp>> {
        let mut h: BTreeMap<OpKey, Vec<WriteOp>> = BTreeMap::new();
        for batch in self.batches.lock().iter() {
            for op in batch {
                h.entry(op.key()).or_default().push(op.clone());
            }
        }
        h
    }
}

/// Size of the journal file in `dir` (0 if there is none).
pub fn journal_len(dir: &std::path::Path) -> u64 {
    std::fs::metadata(dir.join(dynamq_store::writer::journal::JOURNAL_FILE)).map_or(0, |m| m.len())
}

/// The writer has taken every op pushed so far (in memory, or synced to the journal file).
pub fn settled(s: &dynamq_store::writer::WriterStats, dir: &std::path::Path, budget: u64) -> bool {
    let taken = s.dropped_buffer_full
        + s.dropped_journal_full
        + s.coalesced
        + s.written
        + s.pending
        + s.journal_ops;
    taken == s.submitted && journal_len(dir) == s.journal_bytes && s.buffered_bytes <= budget
}

/// Polls until the writer has taken what was pushed (10 ms steps, at most 5 s).
pub async fn wait_settled(
    stats: impl Fn() -> dynamq_store::writer::WriterStats,
    dir: &std::path::Path,
    budget: u64,
) {
    for _ in 0..500 {
        if settled(&stats(), dir, budget) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the writer did not take the ops: {:?}", stats());
}
