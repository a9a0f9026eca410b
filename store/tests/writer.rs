//! The writer against a scripted in-memory store: batch sizes, coalescing, per-key ordering,
//! retries, permanent failures, backpressure.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dynamq_store::error::StoreError;
use dynamq_store::msgid::MsgId;
use dynamq_store::op::{OpKey, WriteOp};
use dynamq_store::record::{ClientRecord, MessageRecord, RetainRecord, SubRecord};
use dynamq_store::store::{Store, WriteFailure};
use dynamq_store::writer::{Writer, WriterConfig};
use parking_lot::Mutex;
use tokio::sync::Semaphore;

/// Records every batch; can hold the first write at a gate, fail the first calls, and checks
/// that no key is ever written by two batches at once.
#[derive(Default)]
struct FakeStore {
    batches: Mutex<Vec<Vec<WriteOp>>>,
    /// Key -> last op applied.
    state: Mutex<BTreeMap<OpKey, WriteOp>>,
    inflight: Mutex<HashSet<OpKey>>,
    overlap: AtomicBool,
    gate: Option<Semaphore>,
    fail_first: AtomicUsize,
    retryable: bool,
    delay: Duration,
}

impl FakeStore {
    fn gated() -> FakeStore {
        FakeStore {
            gate: Some(Semaphore::new(0)),
            ..FakeStore::default()
        }
    }
    fn open_gate(&self) {
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

fn msg(i: u128, payload: &str) -> MessageRecord {
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

fn config(pool_size: usize) -> WriterConfig {
    WriterConfig {
        pool_size,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..WriterConfig::default()
    }
}

fn id(i: u128) -> MsgId {
    MsgId(i)
}

#[tokio::test]
async fn batches_hold_at_most_25_keys() {
    let store = Arc::new(FakeStore::gated());
    let w = Writer::spawn(store.clone(), config(1));
    w.submit(WriteOp::DeleteRetain {
        topic: "first".into(),
    })
    .await
    .expect("submit");
    // Let the batcher send that one: it blocks at the gate while the rest accumulate.
    tokio::time::sleep(Duration::from_millis(30)).await;
    for i in 0..60 {
        w.submit(WriteOp::PutMsg(msg(i, "x")))
            .await
            .expect("submit");
    }
    store.open_gate();
    w.flush().await.expect("flush");
    let batches = store.batches.lock().clone();
    assert!(
        batches.iter().all(|b| b.len() <= 25),
        "{:?}",
        batches.iter().map(Vec::len).collect::<Vec<_>>()
    );
    assert_eq!(batches.iter().map(Vec::len).sum::<usize>(), 61);
    assert_eq!(
        batches.iter().map(Vec::len).collect::<Vec<_>>(),
        [1, 25, 25, 10]
    );
    let s = w.stats();
    assert_eq!(
        (s.submitted, s.written, s.failed, s.pending),
        (61, 61, 0, 0)
    );
}

#[tokio::test]
async fn same_key_ops_coalesce_last_write_wins() {
    let store = Arc::new(FakeStore::gated());
    let w = Writer::spawn(store.clone(), config(1));
    w.submit(WriteOp::DeleteRetain {
        topic: "first".into(),
    })
    .await
    .expect("submit");
    // Let the batcher send that one: it blocks at the gate while the rest accumulate.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut r = msg(1, "a");
    r.topic = "x".into();
    w.submit(WriteOp::PutRetain(r.clone()))
        .await
        .expect("submit");
    w.submit(WriteOp::DeleteRetain { topic: "x".into() })
        .await
        .expect("submit");
    r.payload = Bytes::from_static(b"b");
    w.submit(WriteOp::PutRetain(r.clone()))
        .await
        .expect("submit");
    w.submit(WriteOp::MapAdd {
        topic: "t".into(),
        msgids: vec![id(1), id(2), id(3)],
    })
    .await
    .expect("submit");
    w.submit(WriteOp::MapRemove {
        topic: "t".into(),
        msgids: vec![id(2), id(9)],
    })
    .await
    .expect("submit");
    w.submit(WriteOp::MapAdd {
        topic: "t".into(),
        msgids: vec![id(4)],
    })
    .await
    .expect("submit");
    w.submit(WriteOp::PutClient(ClientRecord {
        clientid: "c".into(),
        node: "n".into(),
        connect_state: 1,
        online_at: 5,
        offline_at: 0,
        session_expires_at: None,
    }))
    .await
    .expect("submit");
    w.submit(WriteOp::ClientOffline {
        clientid: "c".into(),
        offline_at: 7,
        session_expires_at: Some(67),
    })
    .await
    .expect("submit");
    store.open_gate();
    w.flush().await.expect("flush");
    let batches = store.batches.lock().clone();
    assert_eq!(batches.len(), 2, "{batches:?}");
    let second = &batches[1];
    assert!(second.contains(&WriteOp::PutRetain(r)));
    assert!(second.contains(&WriteOp::MapAdd {
        topic: "t".into(),
        msgids: vec![id(1), id(3), id(4)]
    }));
    assert!(second.contains(&WriteOp::MapRemove {
        topic: "t".into(),
        msgids: vec![id(2), id(9)]
    }));
    assert!(second.contains(&WriteOp::PutClient(ClientRecord {
        clientid: "c".into(),
        node: "n".into(),
        connect_state: 0,
        online_at: 5,
        offline_at: 7,
        session_expires_at: Some(67),
    })));
    assert_eq!(second.len(), 4);
    assert_eq!(w.stats().coalesced, 5);
}

#[tokio::test]
async fn per_key_order_holds_with_concurrent_batches() {
    let store = Arc::new(FakeStore {
        delay: Duration::from_millis(2),
        ..FakeStore::default()
    });
    let w = Writer::spawn(store.clone(), config(4));
    let mut last = BTreeMap::new();
    for i in 0..600u128 {
        let mut r = msg(i, &i.to_string());
        r.topic = format!("k{}", i % 7);
        last.insert(r.topic.clone(), r.clone());
        w.submit(WriteOp::PutRetain(r)).await.expect("submit");
        if i % 50 == 0 {
            tokio::task::yield_now().await;
        }
    }
    w.flush().await.expect("flush");
    assert!(
        !store.overlap.load(Ordering::SeqCst),
        "a key was in two batches at once"
    );
    let state = store.state.lock();
    for (topic, r) in last {
        assert_eq!(
            state.get(&OpKey::Retain(topic)),
            Some(&WriteOp::PutRetain(r))
        );
    }
}

#[tokio::test]
async fn retryable_failures_are_retried_until_durable() {
    let store = Arc::new(FakeStore {
        fail_first: AtomicUsize::new(3),
        retryable: true,
        ..FakeStore::default()
    });
    let w = Writer::spawn(store.clone(), config(2));
    for i in 0..10 {
        w.submit(WriteOp::PutMsg(msg(i, "x")))
            .await
            .expect("submit");
    }
    w.flush().await.expect("flush");
    assert_eq!(store.state.lock().len(), 10);
    let s = w.stats();
    assert!(s.retries >= 3, "{s:?}");
    assert_eq!((s.written, s.failed), (10, 0));
}

#[tokio::test]
async fn permanent_failures_are_counted_not_retried() {
    let store = Arc::new(FakeStore {
        fail_first: AtomicUsize::new(1),
        retryable: false,
        ..FakeStore::default()
    });
    let w = Writer::spawn(store.clone(), config(1));
    w.submit(WriteOp::PutMsg(msg(1, "x")))
        .await
        .expect("submit");
    w.flush().await.expect("flush");
    w.submit(WriteOp::PutMsg(msg(2, "y")))
        .await
        .expect("submit");
    w.flush().await.expect("flush");
    let s = w.stats();
    assert_eq!((s.failed, s.written, s.retries), (1, 1, 0), "{s:?}");
}

#[tokio::test]
async fn max_attempts_gives_up_and_counts() {
    let store = Arc::new(FakeStore {
        fail_first: AtomicUsize::new(100),
        retryable: true,
        ..FakeStore::default()
    });
    let mut cfg = config(1);
    cfg.max_attempts = Some(3);
    let w = Writer::spawn(store.clone(), cfg);
    w.submit(WriteOp::PutMsg(msg(1, "x")))
        .await
        .expect("submit");
    w.flush().await.expect("flush");
    let s = w.stats();
    assert_eq!((s.failed, s.retries), (1, 2), "{s:?}");
}
