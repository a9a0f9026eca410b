//! Stored messages are never evicted while a subscriber needs them (issue 9 §5): a topic's
//! ids spread over the tutorial's mqtt_topic_msg_map item (the newest `map_cap_per_topic`)
//! and overflow items `"<topic>#<n>"`; only `max_stored_per_topic` evicts. And a message
//! whose DynamoDB item would pass 400 KB is refused, not accepted and lost. Both stores.

mod common;

use std::collections::BTreeSet;

use aws_sdk_dynamodb::types::AttributeValue;
use bytes::Bytes;
use common::{Kind, Place};
use dynamq_store::actions::{Actions, ActionsConfig, ActionsError, PublishedMessage};
use dynamq_store::binding::default_bindings;
use dynamq_store::msgid::MsgId;
use dynamq_store::op::WriteOp;
use dynamq_store::record::MessageRecord;
use dynamq_store::store::Store;

fn message<'a>(topic: &'a str, qos: u8, retain: bool, payload: &'a Bytes) -> PublishedMessage<'a> {
    PublishedMessage {
        topic,
        sender: "pub1",
        qos,
        retain,
        payload,
        props: Default::default(),
    }
}

async fn publish(b: &Actions, topic: &str, payload: &[u8]) -> MsgId {
    common::publish(
        b,
        message(topic, 1, false, &Bytes::copy_from_slice(payload)),
    )
    .expect("publish")
}

async fn open(place: &Place, tune: impl FnOnce(&mut ActionsConfig)) -> Actions {
    let mut config = place.config();
    tune(&mut config);
    Actions::new(config, default_bindings())
        .await
        .expect("actions")
}

/// The ids of one mqtt_topic_msg_map item, read as a user would: on DynamoDB with the SDK's
/// GetItem (the `MsgId` string set, decoded), on the embedded store through the store.
async fn item_ids(place: &Place, b: &Actions, key: &str) -> BTreeSet<MsgId> {
    match place.kind {
        Kind::Embedded => b
            .store()
            .map_msgids(key)
            .await
            .expect("read")
            .into_iter()
            .collect(),
        Kind::Dynamo => {
            let out = common::shared()
                .client()
                .await
                .sdk()
                .get_item()
                .table_name(format!("{}mqtt_topic_msg_map", place.prefix))
                .key("topic", AttributeValue::S(key.to_owned()))
                .consistent_read(true)
                .send()
                .await
                .expect("GetItem");
            match out.item.as_ref().and_then(|i| i.get("MsgId")) {
                Some(AttributeValue::Ss(ids)) => ids
                    .iter()
                    .map(|s| MsgId::decode(s).expect("an encoded msgid"))
                    .collect(),
                None => BTreeSet::new(),
                Some(other) => panic!("MsgId is not SS: {other:?}"),
            }
        }
    }
}

/// The keys of every mqtt_topic_msg_map item that holds ids (a DynamoDB Scan, as
/// `aws dynamodb scan --table-name mqtt_topic_msg_map` shows them).
async fn map_keys(place: &Place, b: &Actions) -> Vec<String> {
    let mut keys: Vec<String> = match place.kind {
        Kind::Embedded => b
            .store()
            .map_all()
            .await
            .expect("read")
            .into_iter()
            .filter(|(_, ids)| !ids.is_empty())
            .map(|(k, _)| k)
            .collect(),
        Kind::Dynamo => common::shared()
            .client()
            .await
            .sdk()
            .scan()
            .table_name(format!("{}mqtt_topic_msg_map", place.prefix))
            .send()
            .await
            .expect("Scan")
            .items
            .unwrap_or_default()
            .into_iter()
            .filter(|i| i.contains_key("MsgId"))
            .filter_map(|i| match i.get("topic") {
                Some(AttributeValue::S(t)) => Some(t.clone()),
                _ => None,
            })
            .collect(),
    };
    keys.sort();
    keys
}

fn ids_of(ms: &[MessageRecord]) -> Vec<MsgId> {
    ms.iter().map(|m| m.msgid).collect()
}

/// The issue's case: a persistent subscriber away while 6,000 QoS 1 messages arrive on one
/// topic gets all 6,000 back after a restart, in order, none twice. The tutorial's item holds
/// exactly the newest 5,000; acks remove ids from whichever item holds them.
async fn away_subscriber_gets_everything_after_restart(kind: Kind) {
    let place = Place::new(kind, "overflow").await;
    let b = place.actions().await;
    let now = dynamq_store::msgid::now_micros() / 1_000_000;
    b.client_connected("sub1", "n", now, Default::default())
        .await
        .expect("connected");
    assert!(
        b.subscribed("sub1", "ov/#", 1, true)
            .await
            .expect("sub")
            .is_empty()
    );
    b.client_disconnected("sub1", now, None)
        .expect("disconnected");
    let mut ids = Vec::with_capacity(6_000);
    for i in 0..6_000 {
        ids.push(publish(&b, "ov/t", format!("m{i}").as_bytes()).await);
    }
    // Messages are indexed (and moved) once their writes leave the delay line.
    b.flush().await.expect("flush");
    let stats = b.stats();
    assert_eq!((stats.evicted, stats.moved_to_overflow), (0, 1_000));
    b.close().await.expect("close");

    // Restart.
    let b = place.actions().await;
    assert_eq!(
        b.stats().moved_to_overflow,
        0,
        "nothing left to finish at start"
    );
    assert_eq!(b.stats().stored_topics, 1, "ov/t#1 is not a topic");
    assert_eq!(map_keys(&place, &b).await, ["ov/t", "ov/t#1"]);
    let newest: BTreeSet<MsgId> = ids[1_000..].iter().copied().collect();
    let oldest: BTreeSet<MsgId> = ids[..1_000].iter().copied().collect();
    assert_eq!(item_ids(&place, &b, "ov/t").await, newest);
    assert_eq!(item_ids(&place, &b, "ov/t#1").await, oldest);

    b.client_connected("sub1", "n", now + 1, Default::default())
        .await
        .expect("connected");
    let got = b.subscribed("sub1", "ov/#", 1, true).await.expect("sub");
    assert_eq!(ids_of(&got), ids, "all 6,000, in order, none twice");
    assert_eq!(got[0].payload, "m0");
    assert_eq!(got[5_999].payload, "m5999");

    // Acks remove an id from the overflow item and one from the tutorial's item.
    b.message_acked("sub1", "ov/t", ids[0]).expect("ack");
    b.message_acked("sub1", "ov/t", ids[5_999]).expect("ack");
    b.flush().await.expect("flush");
    assert!(!item_ids(&place, &b, "ov/t#1").await.contains(&ids[0]));
    assert_eq!(item_ids(&place, &b, "ov/t#1").await.len(), 999);
    assert!(!item_ids(&place, &b, "ov/t").await.contains(&ids[5_999]));
    assert!(
        b.store()
            .messages(&[ids[0], ids[5_999]])
            .await
            .expect("read")
            .is_empty()
    );
    b.close().await.expect("close");

    // Another restart: the acked ones are gone from the replay, the rest all there.
    let b = place.actions().await;
    b.client_connected("sub2", "n", now, Default::default())
        .await
        .expect("connected");
    b.client_disconnected("sub2", now, None).expect("left");
    b.flush().await.expect("flush");
    b.client_connected("sub2", "n", now + 1, Default::default())
        .await
        .expect("connected");
    let got = b.subscribed("sub2", "ov/t", 1, true).await.expect("sub");
    assert_eq!(ids_of(&got), ids[1..5_999].to_vec());
    b.close().await.expect("close");
}

/// A crash between the two halves of a move leaves an id in the tutorial's item and an
/// overflow item; a tutorial's item may also be left over the cap. Both read once, and the
/// start finishes the moves.
async fn interrupted_moves_are_finished_at_start(kind: Kind) {
    let place = Place::new(kind, "interrupted").await;
    let b = open(&place, |c| c.map_cap_per_topic = 3).await;
    let ids: Vec<MsgId> = (0..5).map(|_| b.next_msgid()).collect();
    for (i, id) in ids.iter().enumerate() {
        b.write(WriteOp::PutMsg(MessageRecord {
            msgid: *id,
            topic: "x/t".into(),
            sender: "s".into(),
            qos: 1,
            retain: false,
            payload: Bytes::from(format!("{i}")),
            arrived: id.timestamp_secs(),
            props: None,
        }))
        .expect("write");
    }
    // All five in the tutorial's item, the oldest also in x/t#1 (its move was cut short).
    b.write(WriteOp::MapAdd {
        topic: "x/t".into(),
        msgids: ids.clone(),
    })
    .expect("write");
    b.write(WriteOp::MapAdd {
        topic: "x/t#1".into(),
        msgids: vec![ids[0]],
    })
    .expect("write");
    b.close().await.expect("close");

    let b = open(&place, |c| c.map_cap_per_topic = 3).await;
    assert_eq!(
        b.stats().moved_to_overflow,
        1,
        "x/t held 4 after the dedupe"
    );
    b.flush().await.expect("flush");
    let main = item_ids(&place, &b, "x/t").await;
    let over = item_ids(&place, &b, "x/t#1").await;
    assert_eq!(main, ids[2..].iter().copied().collect());
    assert_eq!(over, ids[..2].iter().copied().collect());
    let got = b.subscribed("c", "x/#", 1, true).await.expect("sub");
    assert_eq!(ids_of(&got), ids);
    b.close().await.expect("close");
}

/// Only the per-topic budget evicts: the oldest ids, wherever they are, counted, their
/// messages deleted; no map item holds more than the cap, none an id twice.
async fn budget_evicts_the_oldest(kind: Kind) {
    let place = Place::new(kind, "budget").await;
    let b = open(&place, |c| {
        c.map_cap_per_topic = 4;
        c.max_stored_per_topic = 10;
    })
    .await;
    let mut ids = Vec::new();
    for i in 0..14 {
        ids.push(publish(&b, "bu/t", format!("{i}").as_bytes()).await);
    }
    b.flush().await.expect("flush");
    assert_eq!(b.stats().evicted, 4);
    assert_eq!(
        item_ids(&place, &b, "bu/t").await,
        ids[10..].iter().copied().collect()
    );
    let mut all = Vec::new();
    for key in map_keys(&place, &b).await {
        let held = item_ids(&place, &b, &key).await;
        assert!(held.len() <= 4, "{key} holds {}", held.len());
        all.extend(held);
    }
    all.sort();
    assert_eq!(all, ids[4..].to_vec(), "the newest 10, each in one item");
    assert!(
        b.store()
            .messages(&ids[..4])
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(b.store().messages(&ids[4..]).await.expect("read").len(), 10);
    b.close().await.expect("close");

    // 0: unlimited.
    let b = open(&place, |c| {
        c.map_cap_per_topic = 4;
        c.max_stored_per_topic = 0;
    })
    .await;
    for i in 0..6 {
        publish(&b, "bu/t", format!("more {i}").as_bytes()).await;
    }
    b.flush().await.expect("flush");
    assert_eq!(b.stats().evicted, 0);
    let c = b.subscribed("c", "bu/t", 1, true).await.expect("sub");
    assert_eq!(c.len(), 16);
    b.close().await.expect("close");
}

/// A 300 KiB binary payload is 400 KiB in base64: DynamoDB cannot hold its item, so the
/// publish is refused with the error (in `sync` mode too) and counted, and nothing of it is
/// written. The embedded store has no such limit and keeps it.
async fn item_too_large(kind: Kind) {
    let place = Place::new(kind, "large").await;
    let b = place.actions().await;
    let payload = Bytes::from(vec![0x80u8; 300 * 1024]);
    let queued = b.next_msgid();
    let res = b.message_published(message("big/q", 1, false, &payload), queued, false, None);
    let retained = b.next_msgid();
    let res_retained =
        b.message_published(message("big/r", 1, true, &payload), retained, true, None);
    let synced = b.next_msgid();
    let res_sync = b.message_published(message("big/s", 1, false, &payload), synced, true, None);
    match kind {
        Kind::Dynamo => {
            for r in [res, res_retained, res_sync] {
                match r {
                    Err(ActionsError::TooLarge { bytes, limit }) => {
                        assert_eq!(limit, 400 * 1024);
                        assert!(bytes > limit, "{bytes}");
                    }
                    other => panic!("expected TooLarge, got {other:?}"),
                }
            }
            assert_eq!(b.stats().too_large, 3);
            b.flush().await.expect("flush");
            assert!(item_ids(&place, &b, "big/q").await.is_empty());
            assert!(
                b.store()
                    .messages(&[queued, synced])
                    .await
                    .expect("read")
                    .is_empty()
            );
            assert!(b.store().retained("big/r").await.expect("read").is_none());
            // A payload that fits (UTF-8, stored as is) is still accepted.
            let fits = Bytes::from(vec![b'a'; 300 * 1024]);
            b.message_published(
                message("big/q", 1, false, &fits),
                b.next_msgid(),
                false,
                None,
            )
            .expect("fits");
        }
        Kind::Embedded => {
            res.expect("accepted");
            res_retained.expect("accepted");
            let durable = res_sync.expect("accepted").expect("has writes");
            durable.await.expect("stored");
            assert_eq!(b.stats().too_large, 0);
            // The async message's writes may still wait in the coalescing window.
            b.flush().await.expect("flush");
            let got = b.store().messages(&[queued, synced]).await.expect("read");
            assert_eq!(got.len(), 2);
            assert!(got.iter().all(|m| m.payload == payload));
            assert_eq!(
                b.store()
                    .retained("big/r")
                    .await
                    .expect("read")
                    .expect("kept")
                    .payload,
                payload
            );
        }
    }
    b.close().await.expect("close");
}

both_stores! {
    away_subscriber_ => away_subscriber_gets_everything_after_restart;
    interrupted_moves_ => interrupted_moves_are_finished_at_start;
    budget_ => budget_evicts_the_oldest;
    too_large_ => item_too_large;
}
