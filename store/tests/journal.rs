//! The writer's journal against a gated in-memory store: spill over the memory budget with
//! per-key order kept across memory -> journal -> memory, the journal cut once drained,
//! replay at reopen after a crash, a corrupt record quarantined, a full journal dropping
//! (counted, and `push_durable` told).

mod fake_store;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use dynamq_store::op::{OpKey, WriteOp};
use dynamq_store::writer::journal::{JOURNAL_FILE, QUARANTINE_PREFIX};
use dynamq_store::writer::{JournalConfig, NotStored, Writer, WriterConfig};
use fake_store::{FakeStore, journal_len, msg, wait_settled};

fn journal_config(dir: &Path, buffer_bytes: u64, max_bytes: u64) -> WriterConfig {
    WriterConfig {
        buffer_bytes,
        journal: Some(JournalConfig {
            dir: dir.to_owned(),
            max_bytes,
        }),
        pool_size: 2,
        backoff_initial: Duration::from_millis(5),
        backoff_max: Duration::from_millis(20),
        ..WriterConfig::default()
    }
}

/// Polls `cond` every 10 ms for up to 5 s.
async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Pushes `ops` five at a time, waiting after each five until the writer has put them in
/// memory or synced them to the journal: producers never wait, so a test that pushes
/// faster than the journal syncs would fill memory to its drop bound (twice the budget).
async fn push_paced(w: &Writer, dir: &Path, budget: u64, ops: impl IntoIterator<Item = WriteOp>) {
    let ops: Vec<WriteOp> = ops.into_iter().collect();
    // The journal is open (its records, if any, queued first).
    w.recovery().await.expect("recovery");
    for chunk in ops.chunks(5) {
        for op in chunk {
            w.push(op.clone()).expect("push");
        }
        wait_settled(|| w.stats(), dir, budget).await;
    }
}

/// A retained message on one of 50 topics whose payload is its push index.
fn retain_op(i: u128) -> WriteOp {
    let mut r = msg(i, &i.to_string());
    r.topic = format!("k{}", i % 50);
    WriteOp::PutRetain(r)
}

fn payload_index(op: &WriteOp) -> u128 {
    match op {
        WriteOp::PutRetain(r) | WriteOp::PutMsg(r) => std::str::from_utf8(&r.payload)
            .expect("utf-8")
            .parse()
            .expect("index"),
        other => panic!("unexpected op {other:?}"),
    }
}

/// Every key's ops were applied in push order (strictly increasing indexes).
fn assert_in_push_order(store: &FakeStore) {
    for (key, ops) in store.history() {
        let idx: Vec<u128> = ops.iter().map(payload_index).collect();
        assert!(
            idx.windows(2).all(|w| w[0] < w[1]),
            "{key:?} applied out of order: {idx:?}"
        );
    }
}

#[tokio::test]
async fn spills_over_budget_keeps_per_key_order_and_cuts_the_journal_when_drained() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FakeStore::gated());
    let op_bytes = retain_op(100).approx_bytes();
    let budget = op_bytes * 20;
    let w = Writer::spawn(store.clone(), journal_config(dir.path(), budget, 1 << 20));
    push_paced(&w, dir.path(), budget, (0..300).map(retain_op)).await;
    let s = w.stats();
    assert!(s.spilled >= 200, "{s:?}");
    assert!(s.buffered_bytes <= op_bytes * 40, "{s:?}");
    store.open_gate();
    w.flush().await.expect("flush");
    assert_in_push_order(&store);
    let state = store.state.lock().clone();
    for k in 0..50u128 {
        let last = 250 + k;
        assert_eq!(
            state.get(&OpKey::Retain(format!("k{k}"))),
            Some(&retain_op(last))
        );
    }
    wait_for("the journal to be cut", || journal_len(dir.path()) == 0).await;
    let s = w.stats();
    assert_eq!(s.replayed, s.spilled, "{s:?}");
    assert_eq!((s.journal_ops, s.dropped_journal_full), (0, 0), "{s:?}");
    wait_for("the buffer gauge to empty", || {
        w.stats().buffered_bytes == 0
    })
    .await;
    // Back in memory mode: new writes do not touch the journal.
    let spilled = s.spilled;
    for i in 300..310 {
        w.push(retain_op(i)).expect("push");
    }
    w.flush().await.expect("flush");
    assert_eq!(w.stats().spilled, spilled);
    assert_eq!(journal_len(dir.path()), 0);
    assert_in_push_order(&store);
}

/// Pushes `n` ops on distinct keys (plus every tenth on one retained topic) into a writer
/// whose store never answers, waits until the spilled ones are synced, and kills the task
/// as a crash would. Returns how many were spilled.
async fn crash_with_journal(dir: &Path, n: u128, op_bytes: u64) -> u64 {
    let store = Arc::new(FakeStore::gated());
    let budget = op_bytes * 10;
    let (w, task) = Writer::spawn_with_handle(store, journal_config(dir, budget, 1 << 20));
    let ops = (0..n).map(|i| {
        let mut r = msg(i, &i.to_string());
        if i % 10 == 0 {
            r.topic = "same".into();
            WriteOp::PutRetain(r)
        } else {
            WriteOp::PutMsg(r)
        }
    });
    push_paced(&w, dir, budget, ops).await;
    let s = w.stats();
    assert_eq!(s.journal_ops, s.spilled, "{s:?}");
    assert_eq!(s.dropped_buffer_full + s.dropped_journal_full, 0, "{s:?}");
    let spilled = s.spilled;
    task.abort();
    let _ = task.await;
    spilled
}

/// The push index of every message the store holds, in key order.
fn stored_indexes(store: &FakeStore) -> Vec<u128> {
    let mut v: Vec<u128> = store.state.lock().values().map(payload_index).collect();
    v.sort_unstable();
    v
}

#[tokio::test]
async fn a_journal_left_by_a_crash_is_replayed_in_order_at_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let op_bytes = WriteOp::PutMsg(msg(100, "100")).approx_bytes();
    let n = 200;
    let spilled = crash_with_journal(dir.path(), n, op_bytes).await as u128;
    assert!(spilled > 100, "{spilled}");

    let store = Arc::new(FakeStore::default());
    let w = Writer::spawn(store.clone(), journal_config(dir.path(), 1 << 20, 1 << 20));
    let recovery = w.recovery().await.expect("recovery");
    assert_eq!(recovery.records as u128, spilled);
    assert_eq!(recovery.quarantined, None);
    // A write pushed after the reopen comes after the replayed ones, on its key too.
    let mut later = msg(n, &n.to_string());
    later.topic = "same".into();
    w.push(WriteOp::PutRetain(later.clone())).expect("push");
    w.flush().await.expect("flush");
    assert_in_push_order(&store);
    // The journal is the suffix of the pushed ops: the last `spilled` ones (those on
    // "same" collapse into one retained message).
    let first = n - spilled;
    let mut expected: Vec<u128> = (first..n).filter(|i| i % 10 != 0).collect();
    expected.push(n);
    expected.sort_unstable();
    assert_eq!(stored_indexes(&store), expected);
    assert_eq!(
        store.state.lock().get(&OpKey::Retain("same".into())),
        Some(&WriteOp::PutRetain(later))
    );
    // The later op went through the journal too if it arrived while the replay was on.
    let replayed = w.stats().replayed as u128;
    assert!(
        replayed == spilled || replayed == spilled + 1,
        "{replayed} {spilled}"
    );
    wait_for("the journal to be cut", || journal_len(dir.path()) == 0).await;
}

/// Offsets of the records of a journal file.
fn record_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut offsets = Vec::new();
    let mut at = 0;
    while at + 8 <= bytes.len() {
        offsets.push(at);
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        at += 8 + len;
    }
    offsets
}

fn quarantine_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(QUARANTINE_PREFIX))
        })
        .collect()
}

#[tokio::test]
async fn a_corrupt_record_stops_the_replay_and_the_rest_is_quarantined() {
    let dir = tempfile::tempdir().expect("tempdir");
    let op_bytes = WriteOp::PutMsg(msg(100, "100")).approx_bytes();
    let n = 100;
    let spilled = crash_with_journal(dir.path(), n, op_bytes).await as usize;
    let path = dir.path().join(JOURNAL_FILE);
    let mut bytes = std::fs::read(&path).expect("journal");
    let offsets = record_offsets(&bytes);
    assert_eq!(offsets.len(), spilled);
    let bad = spilled / 2;
    let at = offsets[bad];
    // Flip a payload byte: the checksum no longer holds.
    bytes[at + 10] ^= 0xff;
    std::fs::write(&path, &bytes).expect("write journal");

    let store = Arc::new(FakeStore::default());
    let w = Writer::spawn(store.clone(), journal_config(dir.path(), 1 << 20, 1 << 20));
    let recovery = w.recovery().await.expect("recovery");
    assert_eq!(recovery.records as usize, bad);
    let (offset, qpath) = recovery.quarantined.clone().expect("quarantined");
    assert_eq!(offset as usize, at);
    assert_eq!(quarantine_files(dir.path()), vec![qpath.clone()]);
    assert_eq!(std::fs::read(&qpath).expect("quarantine"), &bytes[at..]);
    w.flush().await.expect("flush");
    // Only the records before the corrupt one were replayed.
    let first = n as usize - spilled;
    let expected: Vec<u128> = (first..first + bad).map(|i| i as u128).collect::<Vec<_>>();
    let mut got = stored_indexes(&store);
    // The retained "same" topic holds only its last replayed index.
    let same = store
        .state
        .lock()
        .get(&OpKey::Retain("same".into()))
        .map(payload_index);
    got.retain(|i| Some(*i) != same);
    let expected_msgs: Vec<u128> = expected.iter().copied().filter(|i| i % 10 != 0).collect();
    assert_eq!(got, expected_msgs);
    assert_eq!(same, expected.iter().copied().filter(|i| i % 10 == 0).max());
    assert_eq!(w.stats().replayed as usize, bad);
    wait_for("the journal to be cut", || journal_len(dir.path()) == 0).await;
}

#[tokio::test]
async fn a_full_journal_drops_counts_and_tells_push_durable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FakeStore::gated());
    let op_bytes = WriteOp::PutMsg(msg(100, "100")).approx_bytes();
    let max = 2_000;
    let budget = op_bytes * 5;
    let w = Writer::spawn(store.clone(), journal_config(dir.path(), budget, max));
    push_paced(
        &w,
        dir.path(),
        budget,
        (0..200).map(|i| WriteOp::PutMsg(msg(i, &i.to_string()))),
    )
    .await;
    let d = w
        .push_durable([WriteOp::PutMsg(msg(500, "500"))])
        .expect("push");
    let r = tokio::time::timeout(Duration::from_secs(5), d)
        .await
        .expect("resolved");
    assert_eq!(r, Err(NotStored::Dropped));
    let s = w.stats();
    assert!(s.dropped_journal_full > 0, "{s:?}");
    assert!(s.journal_bytes <= max, "{s:?}");
    wait_for("the journal to be synced", || {
        journal_len(dir.path()) == w.stats().journal_bytes
    })
    .await;
    assert!(journal_len(dir.path()) <= max);
    store.open_gate();
    w.flush().await.expect("flush");
    let s = w.stats();
    // Everything pushed was either written or dropped (distinct keys: nothing coalesced).
    assert_eq!(s.dropped_buffer_full, 0, "{s:?}");
    assert_eq!(s.written + s.dropped_journal_full, 201, "{s:?}");
    assert_eq!(s.replayed, s.spilled, "{s:?}");
    assert_in_push_order(&store);
}

#[tokio::test]
async fn push_durable_of_a_spilled_op_resolves_once_it_is_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(FakeStore::gated());
    let op_bytes = WriteOp::PutMsg(msg(100, "100")).approx_bytes();
    let budget = op_bytes * 5;
    let w = Writer::spawn(store.clone(), journal_config(dir.path(), budget, 1 << 20));
    push_paced(
        &w,
        dir.path(),
        budget,
        (0..20).map(|i| WriteOp::PutMsg(msg(i, &i.to_string()))),
    )
    .await;
    let spilled = w.stats().spilled;
    assert!(spilled > 0);
    let mut d = w
        .push_durable([WriteOp::PutMsg(msg(20, "20"))])
        .expect("push");
    wait_for("the op to be journaled", || {
        w.stats().spilled == spilled + 1
    })
    .await;
    assert!(futures_util::FutureExt::now_or_never(&mut d).is_none());
    store.open_gate();
    let r = tokio::time::timeout(Duration::from_secs(5), d)
        .await
        .expect("resolved");
    assert_eq!(r, Ok(()));
    assert!(
        store
            .state
            .lock()
            .contains_key(&OpKey::Msg(msg(20, "20").msgid))
    );
}
