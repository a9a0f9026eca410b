//! Each action against both stores: the embedded store in a tempdir and dynalite.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Kind, Place};
use dynamq_store::actions::{Backend, Delivery, PublishedMessage};
use dynamq_store::hooks::{HookEvent, HookFunction, HookSpec, default_hooks};
use dynamq_store::msgid::{MsgId, now_micros};
use dynamq_store::op::WriteOp;
use dynamq_store::record::MessageRecord;
use dynamq_store::store::Store;

async fn publish(b: &Backend, topic: &str, qos: u8, retain: bool, payload: &[u8]) -> MsgId {
    b.message_published(PublishedMessage {
        topic,
        sender: "pub1",
        qos,
        retain,
        payload: &Bytes::copy_from_slice(payload),
    })
    .await
    .expect("publish")
}

fn payloads(ds: &[Delivery]) -> Vec<(String, bool)> {
    ds.iter()
        .map(|d| {
            (
                String::from_utf8_lossy(&d.message.payload).into_owned(),
                d.retained,
            )
        })
        .collect()
}

fn hook(event: HookEvent, function: HookFunction, topic: Option<&str>) -> HookSpec {
    HookSpec {
        event,
        seq: 1,
        topic_filter: topic.map(str::to_owned),
        function,
        pool: None,
        max_returned_count: None,
        time_range: None,
    }
}

async fn client_connect_disconnect(kind: Kind) {
    let place = Place::new(kind, "client").await;
    let b = place.backend().await;
    b.client_connected("c1", "node-a", 1000)
        .await
        .expect("connected");
    b.flush().await.expect("flush");
    let rec = b.store().client("c1").await.expect("read").expect("exists");
    assert_eq!(
        (
            rec.node.as_str(),
            rec.connect_state,
            rec.online_at,
            rec.offline_at
        ),
        ("node-a", 1, 1000, 0)
    );
    b.client_disconnected("c1", 1500)
        .await
        .expect("disconnected");
    b.flush().await.expect("flush");
    let rec = b.store().client("c1").await.expect("read").expect("exists");
    assert_eq!(
        (
            rec.node.as_str(),
            rec.connect_state,
            rec.online_at,
            rec.offline_at
        ),
        ("node-a", 0, 1000, 1500)
    );
    // Connected and disconnected within one batch window fold into one put.
    b.client_connected("c2", "node-a", 10)
        .await
        .expect("connected");
    b.client_disconnected("c2", 11).await.expect("disconnected");
    b.flush().await.expect("flush");
    let rec = b.store().client("c2").await.expect("read").expect("exists");
    assert_eq!(
        (rec.connect_state, rec.online_at, rec.offline_at),
        (0, 10, 11)
    );
    assert!(b.store().client("nobody").await.expect("read").is_none());
}

async fn subscriptions_restored(kind: Kind) {
    let place = Place::new(kind, "subs").await;
    let b = place.backend().await;
    b.subscribed("c1", "a/b", 1, true).await.expect("sub");
    b.subscribed("c1", "x/#", 0, true).await.expect("sub");
    b.subscribed("c2", "other", 2, true).await.expect("sub");
    b.flush().await.expect("flush");
    let mut subs = b.session_created("c1").await.expect("lookup");
    subs.sort();
    assert_eq!(subs, vec![("a/b".to_owned(), 1), ("x/#".to_owned(), 0)]);
    b.unsubscribed("c1", "a/b").await.expect("unsub");
    b.flush().await.expect("flush");
    assert_eq!(
        b.session_created("c1").await.expect("lookup"),
        vec![("x/#".to_owned(), 0)]
    );
    b.close().await.expect("close");
    // Without on_subscribe_lookup nothing is stored or looked up.
    let b2 = place
        .backend_with(vec![hook(
            HookEvent::SessionSubscribed,
            HookFunction::OnRetainLookup,
            Some("#"),
        )])
        .await;
    b2.subscribed("c3", "y", 1, true).await.expect("sub");
    b2.flush().await.expect("flush");
    assert!(b2.session_created("c1").await.expect("lookup").is_empty());
    assert!(
        b2.store()
            .subscriptions("c3")
            .await
            .expect("query")
            .is_empty()
    );
}

async fn retained_lookup(kind: Kind) {
    let place = Place::new(kind, "retain").await;
    let b = place.backend().await;
    publish(&b, "r/1", 0, true, b"one").await;
    publish(&b, "r/2/x", 1, true, b"two").await;
    publish(&b, "s/1", 0, true, b"other").await;
    b.flush().await.expect("flush");
    let got = b.subscribed("c1", "r/#", 0, true).await.expect("sub");
    assert_eq!(payloads(&got), [("one".into(), true), ("two".into(), true)]);
    let got = b.subscribed("c1", "+/1", 0, true).await.expect("sub");
    assert_eq!(
        payloads(&got),
        [("one".into(), true), ("other".into(), true)]
    );
    let got = b.subscribed("c1", "r/1", 0, true).await.expect("sub");
    assert_eq!(payloads(&got), [("one".into(), true)]);
    // Shared subscriptions get no retained messages.
    assert!(
        b.subscribed("c1", "$share/g/r/#", 0, true)
            .await
            .expect("sub")
            .is_empty()
    );
    // An empty retained publish deletes.
    publish(&b, "r/1", 0, true, b"").await;
    b.flush().await.expect("flush");
    assert!(b.store().retained("r/1").await.expect("read").is_none());
    let rec = b
        .store()
        .retained("r/2/x")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(
        (rec.sender.as_str(), rec.qos, rec.retain, &rec.payload[..]),
        ("pub1", 1, true, &b"two"[..])
    );
    assert_eq!(rec.arrived, rec.msgid.timestamp_secs());
    let got = b.subscribed("c1", "r/#", 0, true).await.expect("sub");
    assert_eq!(payloads(&got), [("two".into(), true)]);
    // A QoS 1 retained message is delivered once, as retained.
    let got = b.subscribed("c9", "r/#", 1, true).await.expect("sub");
    assert_eq!(payloads(&got), [("two".into(), true)]);
    // Retained messages are not queued in mqtt_topic_msg_map: a replaced or deleted one is
    // never replayed as a stored message.
    publish(&b, "r/2/x", 1, true, b"three").await;
    b.flush().await.expect("flush");
    assert!(
        b.store()
            .map_msgids("r/2/x")
            .await
            .expect("read")
            .is_empty()
    );
    let got = b.subscribed("c10", "r/#", 1, true).await.expect("sub");
    assert_eq!(payloads(&got), [("three".into(), true)]);
    publish(&b, "r/2/x", 1, true, b"").await;
    b.flush().await.expect("flush");
    assert!(
        b.subscribed("c11", "r/#", 1, true)
            .await
            .expect("sub")
            .is_empty()
    );
}

async fn queue_fetch_and_ack(kind: Kind) {
    let place = Place::new(kind, "queue").await;
    let b = place.backend().await;
    let m1 = publish(&b, "q/a", 1, false, b"m1").await;
    let m2 = publish(&b, "q/b", 2, false, b"m2").await;
    publish(&b, "q/a", 0, false, b"qos0").await;
    let m3 = publish(&b, "q/a", 1, false, &[0xff, 0xfe, 0x00]).await;
    b.flush().await.expect("flush");
    let mut ids = b.store().map_msgids("q/a").await.expect("map");
    ids.sort();
    assert_eq!(ids, vec![m1, m3]);

    // QoS 0 or an existing subscription: no replay.
    assert!(
        b.subscribed("c1", "q/#", 0, true)
            .await
            .expect("sub")
            .is_empty()
    );
    assert!(
        b.subscribed("c1", "q/#", 1, false)
            .await
            .expect("sub")
            .is_empty()
    );
    let got = b.subscribed("c1", "q/#", 1, true).await.expect("sub");
    let got_ids: Vec<MsgId> = got.iter().map(|d| d.message.msgid).collect();
    assert_eq!(got_ids, vec![m1, m2, m3], "msgid order across topics");
    assert!(got.iter().all(|d| !d.retained));
    assert_eq!(
        &got[2].message.payload[..],
        &[0xff, 0xfe, 0x00],
        "binary payload round trip"
    );
    assert_eq!(got[1].message.qos, 2);
    // The same subscription again (a restored one racing the client's own): no duplicates.
    assert!(
        b.subscribed("c1", "q/#", 1, true)
            .await
            .expect("sub")
            .is_empty()
    );
    assert_eq!(b.stats().duplicates_skipped, 3);

    // Ack m1: acked row, message and map entry gone.
    b.message_acked("c1", "q/a", m1).await.expect("ack");
    b.flush().await.expect("flush");
    assert_eq!(b.store().acked("q/a", "c1").await.expect("acked"), Some(m1));
    assert!(b.store().messages(&[m1]).await.expect("read").is_empty());
    assert_eq!(b.store().map_msgids("q/a").await.expect("map"), vec![m3]);
    let got = b.subscribed("c2", "q/a", 1, true).await.expect("sub");
    assert_eq!(
        got.iter().map(|d| d.message.msgid).collect::<Vec<_>>(),
        vec![m3]
    );

    // on_acked_delete: unsubscribing the wildcard filter deletes the acked rows it covers.
    b.unsubscribed("c1", "q/#").await.expect("unsub");
    b.flush().await.expect("flush");
    // q/a is still a stored topic (m3), so its acked row was found through the index.
    assert_eq!(b.store().acked("q/a", "c1").await.expect("acked"), None);
}

/// Offline messages are those published while the client was away: a client never seen
/// before gets no history; a returning one gets what arrived since it went offline.
async fn replay_only_what_arrived_while_offline(kind: Kind) {
    let place = Place::new(kind, "offline").await;
    let b = place.backend().await;
    let old = publish(&b, "o/a", 1, false, b"before").await;
    b.flush().await.expect("flush");
    b.client_connected("fresh", "n", 1)
        .await
        .expect("connected");
    assert!(
        b.subscribed("fresh", "o/#", 1, true)
            .await
            .expect("sub")
            .is_empty()
    );

    // "back" was connected and left; a message arrives while it is away.
    b.client_connected("back", "n", 1).await.expect("connected");
    b.client_disconnected("back", 0)
        .await
        .expect("disconnected");
    b.flush().await.expect("flush");
    let offline_at = old.timestamp_secs() + 1;
    b.write(WriteOp::ClientOffline {
        clientid: "back".into(),
        offline_at,
    })
    .await
    .expect("write");
    b.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = publish(&b, "o/a", 1, false, b"while away").await;
    assert!(new.timestamp_secs() >= offline_at);
    b.flush().await.expect("flush");
    b.client_connected("back", "n", offline_at + 5)
        .await
        .expect("connected");
    let got = b.subscribed("back", "o/#", 1, true).await.expect("sub");
    assert_eq!(
        got.iter().map(|d| d.message.msgid).collect::<Vec<_>>(),
        vec![new]
    );
}

async fn acked_delete_exact(kind: Kind) {
    let place = Place::new(kind, "ackdel").await;
    let b = place.backend().await;
    let m = publish(&b, "e/t", 1, false, b"x").await;
    b.message_acked("c1", "e/t", m).await.expect("ack");
    b.flush().await.expect("flush");
    assert_eq!(b.store().acked("e/t", "c1").await.expect("acked"), Some(m));
    b.unsubscribed("c1", "e/t").await.expect("unsub");
    b.flush().await.expect("flush");
    assert_eq!(b.store().acked("e/t", "c1").await.expect("acked"), None);
}

async fn pubsub_cursor(kind: Kind) {
    let place = Place::new(kind, "pubsub").await;
    let hooks = vec![
        hook(
            HookEvent::MessagePublish,
            HookFunction::OnMessagePublish,
            Some("#"),
        ),
        hook(
            HookEvent::SessionSubscribed,
            HookFunction::OnMessageFetchForPubsub,
            Some("#"),
        ),
    ];
    let b = place.backend_with(hooks).await;
    let m1 = publish(&b, "p/t", 1, false, b"1").await;
    let m2 = publish(&b, "p/t", 1, false, b"2").await;
    let m3 = publish(&b, "p/t", 1, false, b"3").await;
    b.flush().await.expect("flush");
    let got = b.subscribed("a", "p/#", 1, true).await.expect("sub");
    assert_eq!(
        got.iter().map(|d| d.message.msgid).collect::<Vec<_>>(),
        vec![m1, m2, m3]
    );
    b.message_acked("a", "p/t", m1).await.expect("ack");
    b.message_acked("a", "p/t", m2).await.expect("ack");
    b.client_disconnected("a", 1).await.expect("disc");
    b.flush().await.expect("flush");
    // Messages stay for others; the cursor moved.
    assert_eq!(
        b.store().messages(&[m1, m2, m3]).await.expect("read").len(),
        3
    );
    assert_eq!(b.store().acked("p/t", "a").await.expect("acked"), Some(m2));
    let got = b.subscribed("a", "p/#", 1, true).await.expect("sub");
    assert_eq!(
        got.iter().map(|d| d.message.msgid).collect::<Vec<_>>(),
        vec![m3]
    );
    let got = b.subscribed("b", "p/t", 1, true).await.expect("sub");
    assert_eq!(got.len(), 3);
}

async fn max_count_and_time_range(kind: Kind) {
    let place = Place::new(kind, "limits").await;
    let mut fetch = hook(
        HookEvent::SessionSubscribed,
        HookFunction::OnMessageFetchForQueue,
        Some("#"),
    );
    fetch.max_returned_count = Some(2);
    fetch.time_range = Some(Duration::from_secs(3600));
    let hooks = vec![
        hook(
            HookEvent::MessagePublish,
            HookFunction::OnMessagePublish,
            Some("#"),
        ),
        fetch,
    ];
    let b = place.backend_with(hooks).await;
    // An old message (two hours ago), written as raw ops.
    let old = MsgId::min_at_micros(now_micros() - 2 * 3600 * 1_000_000);
    b.write(WriteOp::PutMsg(MessageRecord {
        msgid: old,
        topic: "l/t".into(),
        sender: "x".into(),
        qos: 1,
        retain: false,
        payload: Bytes::from_static(b"old"),
        arrived: old.timestamp_secs(),
    }))
    .await
    .expect("write");
    b.write(WriteOp::MapAdd {
        topic: "l/t".into(),
        msgids: vec![old],
    })
    .await
    .expect("write");
    b.flush().await.expect("flush");
    b.refresh_indexes().await.expect("refresh");
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(publish(&b, "l/t", 1, false, format!("n{i}").as_bytes()).await);
    }
    b.flush().await.expect("flush");
    let got = b.subscribed("c", "l/#", 1, true).await.expect("sub");
    assert_eq!(
        payloads(&got),
        [("n2".into(), false), ("n3".into(), false)],
        "newest two"
    );
    assert_eq!(b.stats().expired, 1);
    b.flush().await.expect("flush");
    assert!(
        !b.store()
            .map_msgids("l/t")
            .await
            .expect("map")
            .contains(&old)
    );
    assert!(b.store().messages(&[old]).await.expect("read").is_empty());
}

async fn map_cap_evicts_oldest(kind: Kind) {
    let place = Place::new(kind, "cap").await;
    let mut config = place.config();
    config.map_cap_per_topic = 3;
    let b = Backend::new(config, default_hooks())
        .await
        .expect("backend");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish(&b, "cap/t", 1, false, format!("{i}").as_bytes()).await);
    }
    b.flush().await.expect("flush");
    let mut in_map = b.store().map_msgids("cap/t").await.expect("map");
    in_map.sort();
    assert_eq!(in_map, ids[2..].to_vec());
    assert!(
        b.store()
            .messages(&ids[..2])
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(b.stats().evicted, 2);
}

async fn message_store_and_hook_filters(kind: Kind) {
    let place = Place::new(kind, "filters").await;
    let hooks = vec![
        hook(
            HookEvent::MessagePublish,
            HookFunction::OnMessageStore,
            Some("keep/#"),
        ),
        hook(
            HookEvent::MessagePublish,
            HookFunction::OnMessageRetain,
            Some("keep/#"),
        ),
    ];
    let b = place.backend_with(hooks).await;
    let kept = publish(&b, "keep/a", 0, false, b"k").await;
    let dropped = publish(&b, "drop/a", 1, false, b"d").await;
    publish(&b, "drop/r", 0, true, b"r").await;
    b.flush().await.expect("flush");
    let found = b.store().messages(&[kept, dropped]).await.expect("read");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].msgid, kept);
    assert!(
        b.store()
            .map_msgids("keep/a")
            .await
            .expect("map")
            .is_empty(),
        "store only"
    );
    assert!(b.store().retained("drop/r").await.expect("read").is_none());
    assert!(b.store().client("c").await.expect("read").is_none());
    b.client_connected("c", "n", 1)
        .await
        .expect("not configured: no-op");
    b.flush().await.expect("flush");
    assert!(b.store().client("c").await.expect("read").is_none());
}

async fn restart_keeps_state(kind: Kind) {
    let place = Place::new(kind, "restart").await;
    let b = place.backend().await;
    publish(&b, "st/r", 0, true, b"retained").await;
    let m = publish(&b, "st/q", 1, false, b"stored").await;
    b.subscribed("c1", "st/#", 1, true).await.expect("sub");
    b.close().await.expect("close");

    let b = place.backend().await;
    assert_eq!(
        b.session_created("c1").await.expect("lookup"),
        vec![("st/#".to_owned(), 1)]
    );
    let got = b.subscribed("c1", "st/#", 1, true).await.expect("sub");
    assert_eq!(
        payloads(&got),
        [("retained".into(), true), ("stored".into(), false)]
    );
    assert_eq!(got[1].message.msgid, m);
    assert_eq!(b.stats().retained, 1);
    b.close().await.expect("close");
}

both_stores! {
    client_connect_disconnect_ => client_connect_disconnect;
    subscriptions_restored_ => subscriptions_restored;
    retained_lookup_ => retained_lookup;
    queue_fetch_and_ack_ => queue_fetch_and_ack;
    replay_only_what_arrived_while_offline_ => replay_only_what_arrived_while_offline;
    acked_delete_exact_ => acked_delete_exact;
    pubsub_cursor_ => pubsub_cursor;
    max_count_and_time_range_ => max_count_and_time_range;
    map_cap_evicts_oldest_ => map_cap_evicts_oldest;
    message_store_and_hook_filters_ => message_store_and_hook_filters;
    restart_keeps_state_ => restart_keeps_state;
}
