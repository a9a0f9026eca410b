//! The coalescing window (`ActionsConfig::coalesce`, the actions' delay line and the
//! writer's hold): a stored message acknowledged within it is never written, one that is
//! not is written once it is due (no flush needed), the acknowledgement cursors are written
//! once per drain, and a cursor delete is never overtaken by an older put. On both stores.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Kind, Place};
use dynamq_store::actions::{Actions, ActionsConfig, PublishedMessage};
use dynamq_store::binding::default_bindings;
use dynamq_store::msgid::MsgId;
use dynamq_store::store::Store;

const HOLD: Duration = Duration::from_millis(200);

async fn actions(place: &Place, hold: Duration) -> Actions {
    let config = ActionsConfig {
        coalesce: hold,
        ..place.config()
    };
    Actions::new(config, default_bindings())
        .await
        .expect("actions")
}

fn publish(b: &Actions, topic: &str, payload: &str) -> MsgId {
    common::publish(
        b,
        PublishedMessage {
            topic,
            sender: "pub1",
            qos: 1,
            retain: false,
            payload: &Bytes::copy_from_slice(payload.as_bytes()),
            props: Default::default(),
        },
    )
    .expect("publish")
}

/// Polls `check` every 20 ms for at most 5 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !check().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Acknowledged within the window: no mqtt_msg put, no map add, no delete, no remove is
/// ever written; the cursor is.
async fn acked_within_the_window_is_never_written(kind: Kind) {
    let place = Place::new(kind, "delay-acked").await;
    let b = actions(&place, HOLD).await;
    let before = b.stats().writer.submitted;
    let ids: Vec<MsgId> = (0..100)
        .map(|i| publish(&b, "d/a", &format!("m{i}")))
        .collect();
    for id in &ids {
        b.message_acked("c1", "d/a", *id).expect("ack");
    }
    // The cursor is written at the next drain, without a flush.
    let last = *ids.last().expect("ids");
    eventually("the cursor is written", || async {
        b.store().acked("d/a", "c1").await.expect("acked") == Some(last)
    })
    .await;
    tokio::time::sleep(HOLD * 2).await;
    b.flush().await.expect("flush");
    let w = b.stats().writer;
    assert_eq!(
        w.submitted - before,
        1,
        "only the cursor reached the writer: {w:?}"
    );
    assert!(b.store().messages(&ids).await.expect("read").is_empty());
    assert!(b.store().map_msgids("d/a").await.expect("map").is_empty());
    assert_eq!(b.stats().writer.pending, 0);
}

/// Not acknowledged: written once due, without a flush; acknowledged later: deleted.
async fn unacked_is_written_when_due(kind: Kind) {
    let place = Place::new(kind, "delay-due").await;
    let b = actions(&place, HOLD).await;
    let id = publish(&b, "d/b", "kept");
    assert!(b.stats().writer.pending >= 1, "waiting in the line");
    eventually("the message is written", || async {
        b.store().messages(&[id]).await.expect("read").len() == 1
    })
    .await;
    assert_eq!(b.store().map_msgids("d/b").await.expect("map"), vec![id]);
    b.message_acked("c1", "d/b", id).expect("ack");
    b.flush().await.expect("flush");
    assert!(b.store().messages(&[id]).await.expect("read").is_empty());
    assert!(b.store().map_msgids("d/b").await.expect("map").is_empty());
    assert_eq!(b.store().acked("d/b", "c1").await.expect("acked"), Some(id));
}

/// A flush writes what waits at once; a cursor deleted at unsubscribe stays deleted even
/// though a put of it was waiting.
async fn flush_and_cursor_delete(kind: Kind) {
    let place = Place::new(kind, "delay-flush").await;
    // A long window: only the flush can write these.
    let b = actions(&place, Duration::from_secs(60)).await;
    let id = publish(&b, "d/c", "x");
    b.flush().await.expect("flush");
    assert_eq!(b.store().messages(&[id]).await.expect("read").len(), 1);
    b.message_acked("c1", "d/c", id).expect("ack");
    b.flush().await.expect("flush");
    assert_eq!(b.store().acked("d/c", "c1").await.expect("acked"), Some(id));
    let id2 = publish(&b, "d/c", "y");
    b.message_acked("c1", "d/c", id2).expect("ack");
    b.unsubscribed("c1", "d/c").expect("unsubscribe");
    b.flush().await.expect("flush");
    assert_eq!(b.store().acked("d/c", "c1").await.expect("acked"), None);
    // id2 was acknowledged while waiting: never written.
    assert!(b.store().messages(&[id2]).await.expect("read").is_empty());
    assert!(b.store().map_msgids("d/c").await.expect("map").is_empty());
}

/// Zero: every write goes to the writer at once (the previous behaviour).
async fn zero_window_writes_at_once(kind: Kind) {
    let place = Place::new(kind, "delay-zero").await;
    let b = actions(&place, Duration::ZERO).await;
    let before = b.stats().writer.submitted;
    let id = publish(&b, "d/z", "z");
    b.message_acked("c1", "d/z", id).expect("ack");
    b.flush().await.expect("flush");
    // put, map add, cursor, delete, map remove.
    assert_eq!(b.stats().writer.submitted - before, 5);
    assert!(b.store().messages(&[id]).await.expect("read").is_empty());
    assert_eq!(b.store().acked("d/z", "c1").await.expect("acked"), Some(id));
}

/// Messages that arrive faster than the window lets go: past the line's bound the oldest
/// go to the writer at once, and nothing is lost.
async fn a_long_unacked_burst_is_all_stored(kind: Kind) {
    let place = Place::new(kind, "delay-burst").await;
    let b = actions(&place, Duration::from_secs(60)).await;
    let n = 70_000;
    let ids: Vec<MsgId> = (0..n)
        .map(|i| publish(&b, "d/burst", &i.to_string()))
        .collect();
    b.flush().await.expect("flush");
    // The topic's ids, over the tutorial's item and its overflow items "d/burst#<n>".
    let mut stored = b.store().map_msgids("d/burst").await.expect("map");
    for item in 1..=n / 5_000 + 1 {
        let key = format!("d/burst#{item}");
        stored.extend(b.store().map_msgids(&key).await.expect("map"));
    }
    stored.sort();
    assert_eq!(stored, ids, "every id once, in one of the topic's items");
    let found = b.store().messages(&ids).await.expect("read");
    assert_eq!(found.len(), n);
}

both_stores! {
    acked_within_window => acked_within_the_window_is_never_written;
    unacked_written_when_due => unacked_is_written_when_due;
    flush_and_delete => flush_and_cursor_delete;
    zero_window => zero_window_writes_at_once;
}

mod burst {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn embedded() {
        super::a_long_unacked_burst_is_all_stored(super::Kind::Embedded).await;
    }
}
