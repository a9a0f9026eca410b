//! Each action against both stores: the embedded store in a tempdir and dynalite.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{Kind, Place};
use dynamq_store::actions::{Actions, PublishedMessage};
use dynamq_store::binding::{Action, Binding, Event, default_bindings};
use dynamq_store::msgid::{MsgId, now_micros};
use dynamq_store::op::WriteOp;
use dynamq_store::record::MessageRecord;
use dynamq_store::store::Store;

async fn publish(b: &Actions, topic: &str, qos: u8, retain: bool, payload: &[u8]) -> MsgId {
    common::publish(
        b,
        PublishedMessage {
            topic,
            sender: "pub1",
            qos,
            retain,
            payload: &Bytes::copy_from_slice(payload),
            props: Default::default(),
        },
    )
    .expect("publish")
}

fn payloads(ms: &[MessageRecord]) -> Vec<String> {
    ms.iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

/// The retained messages the store gives the broker at start, in topic order.
async fn retained_payloads(b: &Actions) -> Vec<String> {
    let mut got = b
        .retained_messages()
        .await
        .expect("read")
        .expect("on_retain_lookup is bound");
    got.sort_by(|a, b| a.topic.cmp(&b.topic));
    payloads(&got)
}

fn hook(event: Event, action: Action, topic: Option<&str>) -> Binding {
    Binding {
        event,
        seq: 1,
        topic_filter: topic.map(str::to_owned),
        action,
        pool: None,
        max_returned_count: None,
        time_range: None,
    }
}

async fn client_connect_disconnect(kind: Kind) {
    let place = Place::new(kind, "client").await;
    let b = place.actions().await;
    b.client_connected("c1", "node-a", 1000, Default::default())
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
    b.client_disconnected("c1", 1500, None)
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
    b.client_connected("c2", "node-a", 10, Default::default())
        .await
        .expect("connected");
    b.client_disconnected("c2", 11, None).expect("disconnected");
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
    let b = place.actions().await;
    b.subscribed("c1", "a/b", 1, true).await.expect("sub");
    b.subscribed("c1", "x/#", 0, true).await.expect("sub");
    b.subscribed("c2", "other", 2, true).await.expect("sub");
    b.flush().await.expect("flush");
    let mut subs = b
        .session_created("c1", 0, false)
        .await
        .expect("lookup")
        .subscriptions;
    subs.sort();
    assert_eq!(subs, vec![("a/b".to_owned(), 1), ("x/#".to_owned(), 0)]);
    b.unsubscribed("c1", "a/b").expect("unsub");
    b.flush().await.expect("flush");
    assert_eq!(
        b.session_created("c1", 0, false)
            .await
            .expect("lookup")
            .subscriptions,
        vec![("x/#".to_owned(), 0)]
    );
    b.close().await.expect("close");
    // Without on_subscribe_lookup nothing is stored or looked up.
    let b2 = place
        .actions_with(vec![hook(
            Event::SessionSubscribed,
            Action::OnRetainLookup,
            Some("#"),
        )])
        .await;
    b2.subscribed("c3", "y", 1, true).await.expect("sub");
    b2.flush().await.expect("flush");
    assert!(
        b2.session_created("c1", 0, false)
            .await
            .expect("lookup")
            .subscriptions
            .is_empty()
    );
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
    let b = place.actions().await;
    publish(&b, "r/1", 0, true, b"one").await;
    publish(&b, "r/2/x", 1, true, b"two").await;
    publish(&b, "s/1", 0, true, b"other").await;
    b.flush().await.expect("flush");
    // on_retain_lookup: every retained message is read back for the broker's index, which
    // serves subscriptions (wildcards included); a subscription gets none from the store.
    assert_eq!(retained_payloads(&b).await, ["one", "two", "other"]);
    assert!(
        b.subscribed("c1", "r/#", 1, true)
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
    assert_eq!(retained_payloads(&b).await, ["two", "other"]);
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
    assert_eq!(retained_payloads(&b).await, ["three", "other"]);
    publish(&b, "r/2/x", 1, true, b"").await;
    b.flush().await.expect("flush");
    assert_eq!(retained_payloads(&b).await, ["other"]);
    assert!(
        b.subscribed("c11", "r/#", 1, true)
            .await
            .expect("sub")
            .is_empty()
    );
    // Without on_retain_lookup the store is not read for retained messages.
    b.close().await.expect("close");
    let b2 = place
        .actions_with(vec![hook(
            Event::MessagePublish,
            Action::OnMessageRetain,
            None,
        )])
        .await;
    assert!(b2.retained_messages().await.expect("read").is_none());
}

async fn queue_fetch_and_ack(kind: Kind) {
    let place = Place::new(kind, "queue").await;
    let b = place.actions().await;
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
    let got_ids: Vec<MsgId> = got.iter().map(|m| m.msgid).collect();
    assert_eq!(got_ids, vec![m1, m2, m3], "msgid order across topics");
    assert!(got.iter().all(|m| !m.retain));
    assert_eq!(
        &got[2].payload[..],
        &[0xff, 0xfe, 0x00],
        "binary payload round trip"
    );
    assert_eq!(got[1].qos, 2);
    // The broker queued m1 and m2, not m3 (its session queue was full): m3 is offered
    // again to the same subscription, the others are not.
    b.replayed("c1", "q/#", &[m1, m2]);
    let got = b.subscribed("c1", "q/#", 1, true).await.expect("sub");
    assert_eq!(got.iter().map(|m| m.msgid).collect::<Vec<_>>(), vec![m3]);
    assert_eq!(b.stats().duplicates_skipped, 2);
    b.replayed("c1", "q/#", &[m3]);
    // The same subscription again (a restored one racing the client's own): no duplicates.
    assert!(
        b.subscribed("c1", "q/#", 1, true)
            .await
            .expect("sub")
            .is_empty()
    );
    assert_eq!(b.stats().duplicates_skipped, 5);

    // Ack m1: acked row, message and map entry gone.
    b.message_acked("c1", "q/a", m1).expect("ack");
    b.flush().await.expect("flush");
    assert_eq!(b.store().acked("q/a", "c1").await.expect("acked"), Some(m1));
    assert!(b.store().messages(&[m1]).await.expect("read").is_empty());
    assert_eq!(b.store().map_msgids("q/a").await.expect("map"), vec![m3]);
    let got = b.subscribed("c2", "q/a", 1, true).await.expect("sub");
    assert_eq!(got.iter().map(|m| m.msgid).collect::<Vec<_>>(), vec![m3]);

    // on_acked_delete: unsubscribing the wildcard filter deletes the acked rows it covers.
    b.unsubscribed("c1", "q/#").expect("unsub");
    b.flush().await.expect("flush");
    // q/a is still a stored topic (m3), so its acked row was found through the index.
    assert_eq!(b.store().acked("q/a", "c1").await.expect("acked"), None);
}

/// Offline messages are those published while the client was away: a client never seen
/// before gets no history; a returning one gets what arrived since it went offline.
async fn replay_only_what_arrived_while_offline(kind: Kind) {
    let place = Place::new(kind, "offline").await;
    let b = place.actions().await;
    let old = publish(&b, "o/a", 1, false, b"before").await;
    b.flush().await.expect("flush");
    b.client_connected("fresh", "n", 1, Default::default())
        .await
        .expect("connected");
    assert!(
        b.subscribed("fresh", "o/#", 1, true)
            .await
            .expect("sub")
            .is_empty()
    );

    // "back" was connected and left; a message arrives while it is away.
    b.client_connected("back", "n", 1, Default::default())
        .await
        .expect("connected");
    b.client_disconnected("back", 0, None)
        .expect("disconnected");
    b.flush().await.expect("flush");
    let offline_at = old.timestamp_secs() + 1;
    b.write(WriteOp::ClientOffline {
        clientid: "back".into(),
        offline_at,
        session_expires_at: None,
    })
    .expect("write");
    b.flush().await.expect("flush");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let new = publish(&b, "o/a", 1, false, b"while away").await;
    assert!(new.timestamp_secs() >= offline_at);
    b.flush().await.expect("flush");
    b.client_connected("back", "n", offline_at + 5, Default::default())
        .await
        .expect("connected");
    let got = b.subscribed("back", "o/#", 1, true).await.expect("sub");
    assert_eq!(got.iter().map(|m| m.msgid).collect::<Vec<_>>(), vec![new]);
}

async fn acked_delete_exact(kind: Kind) {
    let place = Place::new(kind, "ackdel").await;
    let b = place.actions().await;
    let m = publish(&b, "e/t", 1, false, b"x").await;
    b.message_acked("c1", "e/t", m).expect("ack");
    b.flush().await.expect("flush");
    assert_eq!(b.store().acked("e/t", "c1").await.expect("acked"), Some(m));
    b.unsubscribed("c1", "e/t").expect("unsub");
    b.flush().await.expect("flush");
    assert_eq!(b.store().acked("e/t", "c1").await.expect("acked"), None);
}

async fn pubsub_cursor(kind: Kind) {
    let place = Place::new(kind, "pubsub").await;
    let hooks = vec![
        hook(Event::MessagePublish, Action::OnMessagePublish, Some("#")),
        hook(
            Event::SessionSubscribed,
            Action::OnMessageFetchForPubsub,
            Some("#"),
        ),
    ];
    let b = place.actions_with(hooks).await;
    let m1 = publish(&b, "p/t", 1, false, b"1").await;
    let m2 = publish(&b, "p/t", 1, false, b"2").await;
    let m3 = publish(&b, "p/t", 1, false, b"3").await;
    b.flush().await.expect("flush");
    let got = b.subscribed("a", "p/#", 1, true).await.expect("sub");
    assert_eq!(
        got.iter().map(|m| m.msgid).collect::<Vec<_>>(),
        vec![m1, m2, m3]
    );
    b.message_acked("a", "p/t", m1).expect("ack");
    b.message_acked("a", "p/t", m2).expect("ack");
    b.client_disconnected("a", 1, None).expect("disc");
    b.flush().await.expect("flush");
    // Messages stay for others; the cursor moved.
    assert_eq!(
        b.store().messages(&[m1, m2, m3]).await.expect("read").len(),
        3
    );
    assert_eq!(b.store().acked("p/t", "a").await.expect("acked"), Some(m2));
    let got = b.subscribed("a", "p/#", 1, true).await.expect("sub");
    assert_eq!(got.iter().map(|m| m.msgid).collect::<Vec<_>>(), vec![m3]);
    let got = b.subscribed("b", "p/t", 1, true).await.expect("sub");
    assert_eq!(got.len(), 3);
}

async fn max_count_and_time_range(kind: Kind) {
    let place = Place::new(kind, "limits").await;
    let mut fetch = hook(
        Event::SessionSubscribed,
        Action::OnMessageFetchForQueue,
        Some("#"),
    );
    fetch.max_returned_count = Some(2);
    fetch.time_range = Some(Duration::from_secs(3600));
    let hooks = vec![
        hook(Event::MessagePublish, Action::OnMessagePublish, Some("#")),
        fetch,
    ];
    let b = place.actions_with(hooks).await;
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
        props: Default::default(),
    }))
    .expect("write");
    b.write(WriteOp::MapAdd {
        topic: "l/t".into(),
        msgids: vec![old],
    })
    .expect("write");
    b.flush().await.expect("flush");
    b.refresh_indexes().await.expect("refresh");
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(publish(&b, "l/t", 1, false, format!("n{i}").as_bytes()).await);
    }
    b.flush().await.expect("flush");
    let got = b.subscribed("c", "l/#", 1, true).await.expect("sub");
    assert_eq!(payloads(&got), ["n2", "n3"], "newest two");
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

/// The per-topic cap bounds the tutorial's item, not what is kept: the oldest ids move to
/// the overflow item `cap/t#1` (map_overflow.rs tests this at scale and after restarts).
async fn map_cap_moves_oldest_to_overflow(kind: Kind) {
    let place = Place::new(kind, "cap").await;
    let mut config = place.config();
    config.map_cap_per_topic = 3;
    let b = Actions::new(config, default_bindings())
        .await
        .expect("actions");
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(publish(&b, "cap/t", 1, false, format!("{i}").as_bytes()).await);
    }
    b.flush().await.expect("flush");
    let mut in_map = b.store().map_msgids("cap/t").await.expect("map");
    in_map.sort();
    assert_eq!(in_map, ids[2..].to_vec());
    let mut overflow = b.store().map_msgids("cap/t#1").await.expect("map");
    overflow.sort();
    assert_eq!(overflow, ids[..2].to_vec());
    assert_eq!(b.store().messages(&ids).await.expect("read").len(), 5);
    assert_eq!((b.stats().evicted, b.stats().moved_to_overflow), (0, 2));
}

async fn message_store_and_hook_filters(kind: Kind) {
    let place = Place::new(kind, "filters").await;
    let hooks = vec![
        hook(
            Event::MessagePublish,
            Action::OnMessageStore,
            Some("keep/#"),
        ),
        hook(
            Event::MessagePublish,
            Action::OnMessageRetain,
            Some("keep/#"),
        ),
    ];
    let b = place.actions_with(hooks).await;
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
    b.client_connected("c", "n", 1, Default::default())
        .await
        .expect("not configured: no-op");
    b.flush().await.expect("flush");
    assert!(b.store().client("c").await.expect("read").is_none());
}

async fn restart_keeps_state(kind: Kind) {
    let place = Place::new(kind, "restart").await;
    let b = place.actions().await;
    publish(&b, "st/r", 0, true, b"retained").await;
    let m = publish(&b, "st/q", 1, false, b"stored").await;
    b.subscribed("c1", "st/#", 1, true).await.expect("sub");
    b.close().await.expect("close");

    let b = place.actions().await;
    assert_eq!(
        b.session_created("c1", 0, false)
            .await
            .expect("lookup")
            .subscriptions,
        vec![("st/#".to_owned(), 1)]
    );
    assert_eq!(retained_payloads(&b).await, ["retained"]);
    let got = b.subscribed("c1", "st/#", 1, true).await.expect("sub");
    assert_eq!(payloads(&got), ["stored"]);
    assert_eq!(got[0].msgid, m);
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
    map_cap_moves_oldest_to_overflow_ => map_cap_moves_oldest_to_overflow;
    message_store_and_hook_filters_ => message_store_and_hook_filters;
    restart_keeps_state_ => restart_keeps_state;
}
