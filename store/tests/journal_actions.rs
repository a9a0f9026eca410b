//! The journal seen from the actions: a writer that crashes with writes spilled to its
//! journal loses none of them at the next start. The journal is replayed into the embedded
//! store before `Actions::new` loads its indexes, so the replayed messages are in mqtt_msg,
//! in their topic's map, and in the index a wildcard subscription reads.
//!
//! Ops are counted from `push`, and producers never wait: over twice `buffer_bytes` a push
//! is dropped (`dropped_buffer_full`) and never reaches the journal. So the tests pace their
//! pushes and check that nothing was dropped; only then is the journal exactly the suffix
//! of what was pushed that `spilled` says.

mod fake_store;

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use dynamq_store::actions::{Actions, ActionsConfig, PublishedMessage, StoreConfig};
use dynamq_store::msgid::MsgId;
use dynamq_store::op::WriteOp;
use dynamq_store::record::ClientRecord;
use dynamq_store::store::Store as _;
use dynamq_store::writer::{JournalConfig, Writer, WriterConfig, WriterStats};
use fake_store::{FakeStore, journal_len, msg, wait_settled};

const TOPIC: &str = "t/1";

fn embedded(dir: &Path) -> ActionsConfig {
    ActionsConfig::new(
        StoreConfig::Embedded {
            data_dir: dir.to_owned(),
        },
        "node",
    )
}

#[tokio::test]
async fn map_adds_spilled_before_a_crash_are_replayed_before_the_indexes_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ids: Vec<MsgId> = (0..60).map(|i| msg(i, "x").msgid).collect();
    let map_add = |id: MsgId| WriteOp::MapAdd {
        topic: TOPIC.into(),
        msgids: vec![id],
    };
    // Room for a few ops in memory; pushed one at a time, none passes the drop bound.
    let budget = map_add(ids[0]).approx_bytes() * 4;
    let store = Arc::new(FakeStore::gated());
    let config = WriterConfig {
        buffer_bytes: budget,
        journal: Some(JournalConfig {
            dir: dir.path().to_owned(),
            max_bytes: 1 << 20,
        }),
        pool_size: 2,
        ..WriterConfig::default()
    };
    let (w, task) = Writer::spawn_with_handle(store, config);
    w.recovery().await.expect("recovery");
    for id in &ids {
        w.push(map_add(*id)).expect("push");
        wait_settled(|| w.stats(), dir.path(), budget).await;
    }
    let s = w.stats();
    assert_eq!(s.dropped_buffer_full + s.dropped_journal_full, 0, "{s:?}");
    assert!(s.spilled > 10, "{s:?}");
    // A crash: the store never answered, the task dies without a flush.
    task.abort();
    let _ = task.await;

    let actions = Actions::new(embedded(dir.path()), dynamq_store::default_bindings())
        .await
        .expect("actions");
    assert_eq!(actions.stats().writer.replayed, s.spilled);
    // The journal held the last `spilled` ops pushed (nothing was dropped).
    let replayed = &ids[ids.len() - s.spilled as usize..];
    let mut stored = actions.store().map_msgids(TOPIC).await.expect("map");
    stored.sort_unstable();
    assert_eq!(stored, replayed);
    // The index was loaded after the replay: it knows the topic.
    assert_eq!(actions.stats().stored_topics, 1);
    actions.close().await.expect("close");
    assert_eq!(journal_len(dir.path()), 0);
}

/// What phase one of the end-to-end test saw before its crash.
struct BeforeCrash {
    /// The msgids published, in publish order (message k's payload is `k`).
    published: Vec<MsgId>,
    stats: WriterStats,
}

/// Opens the actions on the embedded store in `dir` with a small memory budget, makes the
/// store stop answering, publishes `n` QoS 1 messages on [`TOPIC`] (one at a time, each
/// taken by the writer before the next, as a paced publisher would), then crashes: the
/// runtime is dropped with the writer's task in it, nothing flushed.
///
/// The store stops answering because its writes run on tokio's blocking pool, which is
/// limited to one thread here, and a blocking task holds that thread until the crash. The
/// batches already handed to the store then apply (the store got them before the crash).
fn publish_then_crash(dir: &Path, n: usize, budget: u64) -> BeforeCrash {
    let rt = tokio::runtime::Builder::new_current_thread()
        .max_blocking_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let (actions, before) = rt.block_on(async {
        let mut config = embedded(dir);
        config.buffer_bytes = budget;
        let actions = Actions::new(config, dynamq_store::default_bindings())
            .await
            .expect("actions");
        // The subscriber of phase two, offline since before any message.
        actions
            .write(WriteOp::PutClient(ClientRecord {
                clientid: "sub".into(),
                node: "node".into(),
                connect_state: 0,
                online_at: 0,
                offline_at: 0,
                session_expires_at: None,
                awaiting_rel: Default::default(),
            }))
            .expect("write");
        actions.flush().await.expect("flush");
        let (held, holding) = tokio::sync::oneshot::channel();
        tokio::task::spawn_blocking(move || {
            let _ = held.send(());
            let _ = gate.recv();
        });
        holding.await.expect("the gate holds the store's thread");
        let mut published = Vec::new();
        for k in 0..n {
            let msgid = actions.next_msgid();
            let payload = Bytes::from(k.to_string());
            let message = PublishedMessage {
                topic: TOPIC,
                sender: "pub",
                qos: 1,
                retain: false,
                payload: &payload,
                props: Default::default(),
            };
            actions
                .message_published(message, msgid, false, None)
                .expect("publish");
            published.push(msgid);
            wait_settled(|| actions.stats().writer, dir, budget).await;
        }
        let stats = actions.stats().writer;
        (actions, BeforeCrash { published, stats })
    });
    // The crash: the writer's task is never polled again and is dropped with the runtime
    // (which waits for the store's thread once the gate lets it go).
    drop(release);
    drop(actions);
    drop(rt);
    before
}

#[test]
fn messages_spilled_to_the_journal_survive_a_crash_on_the_embedded_store() {
    let dir = tempfile::tempdir().expect("tempdir");
    let n = 100;
    // About six messages (PutMsg + MapAdd) in memory; the rest spill.
    let budget = 2_000;
    let BeforeCrash { published, stats } = publish_then_crash(dir.path(), n, budget);
    assert_eq!(
        stats.dropped_buffer_full + stats.dropped_journal_full,
        0,
        "{stats:?}"
    );
    // Only the subscriber's record, written before the store stopped answering.
    assert_eq!(stats.written, 1, "{stats:?}");
    assert!(stats.spilled as usize > n, "{stats:?}");
    // The journal is the suffix of the 2n ops pushed (PutMsg then MapAdd per message): the
    // messages from `first` on have both their ops in it.
    let first_op = 2 * n - stats.spilled as usize;
    let first = first_op.div_ceil(2);
    let journaled = &published[first..];

    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let actions = Actions::new(embedded(dir.path()), dynamq_store::default_bindings())
            .await
            .expect("actions");
        // Every record was replayed before the indexes were loaded.
        assert_eq!(actions.stats().writer.replayed, stats.spilled);
        assert_eq!(actions.stats().stored_topics, 1);
        let store = actions.store();
        let mut map = store.map_msgids(TOPIC).await.expect("map");
        map.sort_unstable();
        assert!(map.iter().all(|id| published.contains(id)), "{map:?}");
        assert!(journaled.iter().all(|id| map.contains(id)), "{map:?}");
        let messages = store.messages(journaled).await.expect("messages");
        let got: Vec<(MsgId, String)> = messages
            .iter()
            .map(|m| (m.msgid, String::from_utf8_lossy(&m.payload).into_owned()))
            .collect();
        let want: Vec<(MsgId, String)> = journaled
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, (first + i).to_string()))
            .collect();
        assert_eq!(got, want);

        // A wildcard subscription finds the topic through the index loaded after the replay
        // and gets the messages in publish order.
        actions
            .client_connected("sub", "node", 1, Default::default())
            .await
            .expect("connected");
        let replay = actions
            .subscribed("sub", "t/#", 1, true)
            .await
            .expect("subscribed");
        let order: Vec<usize> = replay
            .iter()
            .map(|m| {
                let k: usize = std::str::from_utf8(&m.payload)
                    .expect("utf-8")
                    .parse()
                    .expect("index");
                assert_eq!(m.msgid, published[k]);
                k
            })
            .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{order:?}");
        assert!((first..n).all(|k| order.contains(&k)), "{order:?}");
        actions.close().await.expect("close");
    });
    assert_eq!(journal_len(dir.path()), 0);
}
