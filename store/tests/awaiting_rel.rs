//! QoS 2 packet ids kept in the store (issue 9 section 2), on both stores: mqtt_client's
//! `awaiting_rel` gets an id with its message (one durable group), loses it at release, is
//! written whole by the connect's put, survives a restart and a disconnect, and a session
//! lookup returns it unless the session expired.

mod common;

use std::collections::BTreeSet;

use bytes::Bytes;
use common::{Kind, Place};
use dynamq_store::actions::PublishedMessage;
use dynamq_store::record::MessageProps;
use dynamq_store::store::Store;

fn qos2<'a>(sender: &'a str, payload: &'a Bytes) -> PublishedMessage<'a> {
    PublishedMessage {
        topic: "q2/t",
        sender,
        qos: 2,
        retain: false,
        payload,
        props: MessageProps::default(),
    }
}

async fn stored_ids(b: &dynamq_store::Actions, client: &str) -> BTreeSet<u16> {
    b.store()
        .client(client)
        .await
        .expect("read")
        .expect("client item")
        .awaiting_rel
}

async fn ids_kept_until_released(kind: Kind) {
    let place = Place::new(kind, "awrel").await;
    let b = place.actions().await;
    assert!(b.keeps_awaiting_rel());
    b.client_connected("p", "n", 1_000, BTreeSet::new())
        .await
        .expect("connected");
    let payload = Bytes::from_static(b"x");
    for id in [7, 65535] {
        let durable = b
            .message_published(qos2("p", &payload), b.next_msgid(), true, Some(id))
            .expect("publish")
            .expect("a durable group");
        durable.await.expect("stored");
    }
    // Durable means in the store: read without a flush.
    assert_eq!(stored_ids(&b, "p").await, BTreeSet::from([7, 65535]));
    let released = b
        .awaiting_rel_released("p", 7, true)
        .expect("release")
        .expect("durable");
    released.await.expect("stored");
    assert_eq!(stored_ids(&b, "p").await, BTreeSet::from([65535]));
    let rec = b.store().client("p").await.expect("read").expect("item");
    assert_eq!((rec.node.as_str(), rec.connect_state), ("n", 1));
    // The broker is killed (no disconnect) and restarts: the lookup finds the id.
    b.close().await.expect("close");
    let b = place.actions().await;
    let s = b.session_created("p", 2_000, true).await.expect("lookup");
    assert_eq!(s.awaiting_rel, BTreeSet::from([65535]));
    assert!(s.subscriptions.is_empty());
    // Not asked for: not read.
    let s = b.session_created("p", 2_000, false).await.expect("lookup");
    assert!(s.awaiting_rel.is_empty());
    // The connect's put carries what the session keeps; a disconnect leaves it.
    b.client_connected("p", "n", 2_000, s.awaiting_rel.clone())
        .await
        .expect("connected");
    b.client_connected("p", "n", 2_001, BTreeSet::from([65535]))
        .await
        .expect("connected");
    b.client_disconnected("p", 2_002, Some(100)).expect("left");
    b.flush().await.expect("flush");
    let rec = b.store().client("p").await.expect("read").expect("item");
    assert_eq!(rec.awaiting_rel, BTreeSet::from([65535]));
    assert_eq!(
        (rec.connect_state, rec.session_expires_at),
        (0, Some(2_102))
    );
    // Expired by the time it comes back: nothing restored.
    let s = b.session_created("p", 3_000, true).await.expect("lookup");
    assert!(s.awaiting_rel.is_empty());
    // A session that ends forgets its ids; a put without ids (Clean Start) drops them too.
    b.awaiting_rel_forgotten("p", &[65535]).expect("forget");
    b.flush().await.expect("flush");
    assert!(stored_ids(&b, "p").await.is_empty());
    b.message_published(qos2("p", &payload), b.next_msgid(), false, Some(3))
        .expect("publish");
    b.flush().await.expect("flush");
    assert_eq!(stored_ids(&b, "p").await, BTreeSet::from([3]));
    b.client_connected("p", "n", 3_001, BTreeSet::new())
        .await
        .expect("connected");
    b.flush().await.expect("flush");
    assert!(stored_ids(&b, "p").await.is_empty());
    b.close().await.expect("close");
}

both_stores! {
    ids_kept_until_released_ => ids_kept_until_released;
}
