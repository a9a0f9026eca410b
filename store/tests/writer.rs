//! The writer against a scripted in-memory store: batch sizes, coalescing, per-key ordering,
//! retries, permanent failures, the memory budget, and what `push_durable` resolves to.

mod fake_store;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use dynamq_store::msgid::MsgId;
use dynamq_store::op::{OpKey, WriteOp};
use dynamq_store::record::ClientRecord;
use dynamq_store::writer::{NotStored, Writer, WriterConfig};
use fake_store::{FakeStore, msg};

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
    w.push(WriteOp::DeleteRetain {
        topic: "first".into(),
    })
    .expect("submit");
    // Let the batcher send that one: it blocks at the gate while the rest accumulate.
    tokio::time::sleep(Duration::from_millis(30)).await;
    for i in 0..60 {
        w.push(WriteOp::PutMsg(msg(i, "x"))).expect("submit");
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

fn client(clientid: &str, awaiting_rel: &[u16]) -> ClientRecord {
    ClientRecord {
        clientid: clientid.into(),
        node: "n".into(),
        connect_state: 1,
        online_at: 5,
        offline_at: 0,
        session_expires_at: None,
        awaiting_rel: awaiting_rel.iter().copied().collect(),
    }
}

fn rel(add: bool, clientid: &str, ids: &[u16]) -> WriteOp {
    let (clientid, packet_ids) = (clientid.into(), ids.to_vec());
    if add {
        WriteOp::AwaitingRelAdd {
            clientid,
            packet_ids,
        }
    } else {
        WriteOp::AwaitingRelRemove {
            clientid,
            packet_ids,
        }
    }
}

/// A client's `awaiting_rel` adds and removes coalesce like a map's (the last op on an id
/// wins, into two disjoint sets), fold into a pending `PutClient` (which writes the whole
/// item, so nothing may be written beside it), and are kept beside a pending
/// `ClientOffline` (other attributes: the updates commute).
#[tokio::test]
async fn awaiting_rel_ops_coalesce_per_client() {
    let store = Arc::new(FakeStore::gated());
    let w = Writer::spawn(store.clone(), config(1));
    w.push(WriteOp::DeleteRetain {
        topic: "first".into(),
    })
    .expect("submit");
    tokio::time::sleep(Duration::from_millis(30)).await;
    // "a": sets only.
    w.push(rel(true, "a", &[1, 2])).expect("submit");
    w.push(rel(false, "a", &[2, 3])).expect("submit");
    w.push(rel(true, "a", &[3])).expect("submit");
    // "b": a put, then set changes folded into it.
    w.push(WriteOp::PutClient(client("b", &[9])))
        .expect("submit");
    w.push(rel(true, "b", &[4])).expect("submit");
    w.push(rel(false, "b", &[9])).expect("submit");
    // "c": changes, an offline beside them, then more changes.
    w.push(rel(true, "c", &[5])).expect("submit");
    w.push(WriteOp::ClientOffline {
        clientid: "c".into(),
        offline_at: 7,
        session_expires_at: Some(67),
    })
    .expect("submit");
    w.push(rel(false, "c", &[6])).expect("submit");
    // "d": a put after changes replaces them.
    w.push(rel(true, "d", &[8])).expect("submit");
    w.push(WriteOp::PutClient(client("d", &[])))
        .expect("submit");
    store.open_gate();
    w.flush().await.expect("flush");
    let batches = store.batches.lock().clone();
    assert_eq!(batches.len(), 2, "{batches:?}");
    let mut second = batches[1].clone();
    second.sort_by_key(|op| format!("{op:?}"));
    let mut expected = vec![
        rel(true, "a", &[1, 3]),
        rel(false, "a", &[2]),
        WriteOp::PutClient(client("b", &[4])),
        WriteOp::ClientOffline {
            clientid: "c".into(),
            offline_at: 7,
            session_expires_at: Some(67),
        },
        rel(true, "c", &[5]),
        rel(false, "c", &[6]),
        WriteOp::PutClient(client("d", &[])),
    ];
    expected.sort_by_key(|op| format!("{op:?}"));
    assert_eq!(second, expected);
}

#[tokio::test]
async fn same_key_ops_coalesce_last_write_wins() {
    let store = Arc::new(FakeStore::gated());
    let w = Writer::spawn(store.clone(), config(1));
    w.push(WriteOp::DeleteRetain {
        topic: "first".into(),
    })
    .expect("submit");
    // Let the batcher send that one: it blocks at the gate while the rest accumulate.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let mut r = msg(1, "a");
    r.topic = "x".into();
    w.push(WriteOp::PutRetain(r.clone())).expect("submit");
    w.push(WriteOp::DeleteRetain { topic: "x".into() })
        .expect("submit");
    r.payload = Bytes::from_static(b"b");
    w.push(WriteOp::PutRetain(r.clone())).expect("submit");
    w.push(WriteOp::MapAdd {
        topic: "t".into(),
        msgids: vec![id(1), id(2), id(3)],
    })
    .expect("submit");
    w.push(WriteOp::MapRemove {
        topic: "t".into(),
        msgids: vec![id(2), id(9)],
    })
    .expect("submit");
    w.push(WriteOp::MapAdd {
        topic: "t".into(),
        msgids: vec![id(4)],
    })
    .expect("submit");
    w.push(WriteOp::PutClient(ClientRecord {
        clientid: "c".into(),
        node: "n".into(),
        connect_state: 1,
        online_at: 5,
        offline_at: 0,
        session_expires_at: None,
        awaiting_rel: Default::default(),
    }))
    .expect("submit");
    w.push(WriteOp::ClientOffline {
        clientid: "c".into(),
        offline_at: 7,
        session_expires_at: Some(67),
    })
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
    // id 2 was added in the same pending entry, never written: its remove cancels the add
    // (a msgid is added once, so the item never held it); 9 is removed.
    assert!(second.contains(&WriteOp::MapRemove {
        topic: "t".into(),
        msgids: vec![id(9)]
    }));
    assert!(second.contains(&WriteOp::PutClient(ClientRecord {
        clientid: "c".into(),
        node: "n".into(),
        connect_state: 0,
        online_at: 5,
        offline_at: 7,
        session_expires_at: Some(67),
        awaiting_rel: Default::default(),
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
        w.push(WriteOp::PutRetain(r)).expect("submit");
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
        w.push(WriteOp::PutMsg(msg(i, "x"))).expect("submit");
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
    w.push(WriteOp::PutMsg(msg(1, "x"))).expect("submit");
    w.flush().await.expect("flush");
    w.push(WriteOp::PutMsg(msg(2, "y"))).expect("submit");
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
    w.push(WriteOp::PutMsg(msg(1, "x"))).expect("submit");
    w.flush().await.expect("flush");
    let s = w.stats();
    assert_eq!((s.failed, s.retries), (1, 2), "{s:?}");
}

/// Resolves `d` within 5 s (the test fails otherwise).
async fn resolve(d: dynamq_store::Durable) -> Result<(), NotStored> {
    tokio::time::timeout(Duration::from_secs(5), d)
        .await
        .expect("Durable resolved within 5 s")
}

#[tokio::test]
async fn push_durable_resolves_when_those_ops_are_applied() {
    let store = Arc::new(FakeStore::gated());
    let w = Writer::spawn(store.clone(), config(2));
    let mut d = w
        .push_durable([WriteOp::PutMsg(msg(1, "a")), WriteOp::PutMsg(msg(2, "b"))])
        .expect("push");
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(
        futures_util::FutureExt::now_or_never(&mut d).is_none(),
        "resolved while the store holds the writes at its gate"
    );
    store.open_gate();
    assert_eq!(resolve(d).await, Ok(()));
    assert_eq!(store.state.lock().len(), 2);
    // Nothing to wait for: resolves at once.
    assert_eq!(resolve(w.push_durable([]).expect("push")).await, Ok(()));
}

#[tokio::test]
async fn push_durable_reports_a_permanent_failure_with_its_code() {
    let store = Arc::new(FakeStore {
        fail_first: AtomicUsize::new(1),
        retryable: false,
        ..FakeStore::default()
    });
    let w = Writer::spawn(store.clone(), config(1));
    let d = w
        .push_durable([WriteOp::PutMsg(msg(1, "a"))])
        .expect("push");
    assert_eq!(
        resolve(d).await,
        Err(NotStored::Failed {
            code: "ValidationException".into()
        })
    );
    // The next write is stored, and its own Durable says so.
    let d = w
        .push_durable([WriteOp::PutMsg(msg(2, "b"))])
        .expect("push");
    assert_eq!(resolve(d).await, Ok(()));
}

#[tokio::test]
async fn without_a_journal_ops_over_the_budget_are_dropped_and_counted() {
    let store = Arc::new(FakeStore::gated());
    let op_bytes = WriteOp::PutMsg(msg(0, "x")).approx_bytes();
    let w = Writer::spawn(
        store.clone(),
        WriterConfig {
            buffer_bytes: op_bytes * 10,
            ..config(1)
        },
    );
    for i in 0..10 {
        w.push(WriteOp::PutMsg(msg(i, "x"))).expect("push");
    }
    let d = w
        .push_durable([WriteOp::PutMsg(msg(99, "x"))])
        .expect("push");
    assert_eq!(resolve(d).await, Err(NotStored::Dropped));
    for i in 10..20 {
        w.push(WriteOp::PutMsg(msg(i, "x"))).expect("push");
    }
    let s = w.stats();
    assert_eq!((s.submitted, s.dropped_buffer_full), (21, 11), "{s:?}");
    assert!(s.buffered_bytes <= op_bytes * 10, "{s:?}");
    store.open_gate();
    w.flush().await.expect("flush");
    assert_eq!(store.state.lock().len(), 10);
    let s = w.stats();
    assert_eq!(
        (s.written, s.buffered_bytes, s.pending),
        (10, 0, 0),
        "{s:?}"
    );
}

#[tokio::test]
async fn histograms_and_failures_by_code_are_recorded() {
    let store = Arc::new(FakeStore {
        fail_first: AtomicUsize::new(2),
        retryable: true,
        ..FakeStore::default()
    });
    let w = Writer::spawn(store.clone(), config(1));
    for i in 0..3 {
        w.push(WriteOp::PutMsg(msg(i, "x"))).expect("push");
    }
    w.flush().await.expect("flush");
    let m = w.metrics();
    let calls = m.write_latency.count;
    assert_eq!(m.batch_size.count, calls);
    assert!(calls >= 3, "{m:?}");
    let throttled = m.failures_by_code.get("ThrottlingException").copied();
    assert!(throttled.is_some_and(|n| n >= 2), "{m:?}");
    // Cumulative buckets end at the count.
    assert!(m.batch_size.buckets.windows(2).all(|b| b[0].1 <= b[1].1));
    assert!(
        m.batch_size
            .buckets
            .last()
            .is_some_and(|b| b.1 == m.batch_size.count)
    );
    // The three ops were pushed before the batcher ran: one batch of 3, sent 3 times.
    assert_eq!((calls, m.batch_size.sum), (3, 9.0), "{m:?}");
}

/// A stored message acknowledged before its put was written (a subscriber that keeps up):
/// neither the put nor the delete reaches the store, and a sync publisher waiting on the put
/// is told it is done. A put on its own, and a delete whose put was already written, go out.
#[tokio::test]
async fn a_message_deleted_before_its_put_was_written_is_not_written() {
    let store = Arc::new(FakeStore::gated());
    let w = Writer::spawn(store.clone(), config(1));
    let (first, acked, kept) = (msg(1, "first"), msg(2, "acked at once"), msg(3, "kept"));
    w.push(WriteOp::PutMsg(first.clone())).expect("push");
    // Let the batcher send that one: it blocks at the gate while the rest accumulate.
    tokio::time::sleep(Duration::from_millis(30)).await;
    let durable = w
        .push_durable([WriteOp::PutMsg(acked.clone())])
        .expect("push");
    w.push(WriteOp::DeleteMsg { msgid: acked.msgid })
        .expect("push");
    w.push(WriteOp::PutMsg(kept.clone())).expect("push");
    w.push(WriteOp::DeleteMsg { msgid: first.msgid })
        .expect("push");
    store.open_gate();
    durable.await.expect("the put was superseded: done");
    w.flush().await.expect("flush");
    let written: Vec<WriteOp> = store.batches.lock().iter().flatten().cloned().collect();
    assert_eq!(
        written,
        vec![
            WriteOp::PutMsg(first.clone()),
            WriteOp::PutMsg(kept),
            WriteOp::DeleteMsg { msgid: first.msgid },
        ]
    );
}

/// `WriterConfig::hold`: ops wait until they are `hold` old, so a delete folds into its put
/// and neither is written; a `push_durable` op, or a flush, is not held.
#[tokio::test]
async fn hold_lets_a_delete_cancel_its_put_and_writes_the_rest_when_due() {
    let store = Arc::new(FakeStore::default());
    let hold = Duration::from_millis(300);
    let w = Writer::spawn(store.clone(), WriterConfig { hold, ..config(2) });
    w.push(WriteOp::PutMsg(msg(1, "acked"))).expect("push");
    w.push(WriteOp::PutMsg(msg(2, "kept"))).expect("push");
    w.push(WriteOp::DeleteMsg {
        msgid: msg(1, "acked").msgid,
    })
    .expect("push");
    tokio::time::sleep(hold / 3).await;
    assert!(
        store.batches.lock().is_empty(),
        "nothing written before the hold"
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while store.batches.lock().is_empty() {
        assert!(tokio::time::Instant::now() < deadline, "never written");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        store.batches.lock().concat(),
        vec![WriteOp::PutMsg(msg(2, "kept"))]
    );
    // A durable op goes at once, and so does what waits with it when it is pushed.
    w.push(WriteOp::PutMsg(msg(3, "held"))).expect("push");
    let durable = w
        .push_durable(vec![WriteOp::PutMsg(msg(4, "sync"))])
        .expect("push");
    tokio::time::timeout(hold / 2, durable)
        .await
        .expect("not held")
        .expect("stored");
    // A flush writes what waits at once.
    w.push(WriteOp::PutMsg(msg(5, "flushed"))).expect("push");
    tokio::time::timeout(hold / 2, w.flush())
        .await
        .expect("not held")
        .expect("flush");
    let written: Vec<WriteOp> = store.batches.lock().concat();
    for i in [3, 4, 5] {
        assert!(
            written
                .iter()
                .any(|op| op.key() == OpKey::Msg(msg(i, "").msgid)),
            "{i} written: {written:?}"
        );
    }
    assert_eq!(w.stats().pending, 0);
}
