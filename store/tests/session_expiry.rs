//! Session expiry kept in the store (issue 10, section 2), on both stores: the disconnect
//! writes mqtt_client's `session_expires_at`, and a lookup after it is past (a broker restart
//! meanwhile) deletes the session's subscriptions and acked rows instead of restoring them;
//! so does the sweep at start, for clients that do not come back.

mod common;

use bytes::Bytes;
use common::{Kind, Place};
use dynamq_store::actions::PublishedMessage;
use dynamq_store::record::MessageProps;
use dynamq_store::store::Store;

async fn expired_session_is_deleted_at_lookup(kind: Kind) {
    let place = Place::new(kind, "sessexp").await;
    let b = place.actions().await;
    for client in ["gone", "kept", "forever"] {
        b.client_connected(client, "n", 1_000, Default::default())
            .await
            .expect("connected");
        b.subscribed(client, "s/t", 1, true).await.expect("sub");
    }
    let m = common::publish(
        &b,
        PublishedMessage {
            topic: "s/t",
            sender: "p",
            qos: 1,
            retain: false,
            payload: &Bytes::from_static(b"x"),
            props: MessageProps::default(),
        },
    )
    .expect("publish");
    b.message_acked("gone", "s/t", m).expect("ack");
    // Away from 2,000: "gone" for 60 s, "kept" for an hour, "forever" without expiry.
    b.client_disconnected("gone", 2_000, Some(60))
        .expect("disc");
    b.client_disconnected("kept", 2_000, Some(3_600))
        .expect("disc");
    b.client_disconnected("forever", 2_000, None).expect("disc");
    b.close().await.expect("close");

    // The broker restarts; the clients come back at 2,100.
    let b = place.actions().await;
    let rec = b.store().client("gone").await.expect("read").expect("kept");
    assert_eq!(rec.session_expires_at, Some(2_060));
    assert_eq!(
        b.store()
            .client("forever")
            .await
            .expect("read")
            .expect("kept")
            .session_expires_at,
        None
    );
    assert!(
        b.session_created("gone", 2_100, false)
            .await
            .expect("lookup")
            .subscriptions
            .is_empty(),
        "an expired session is not restored"
    );
    assert_eq!(b.stats().sessions_expired, 1);
    for client in ["kept", "forever"] {
        assert_eq!(
            b.session_created(client, 2_100, false)
                .await
                .expect("lookup")
                .subscriptions,
            vec![("s/t".to_owned(), 1)],
            "{client}"
        );
    }
    b.flush().await.expect("flush");
    assert!(
        b.store()
            .subscriptions("gone")
            .await
            .expect("read")
            .is_empty()
    );
    assert_eq!(b.store().acked("s/t", "gone").await.expect("read"), None);
    // A client connected again is not expired, whatever its last disconnect said.
    b.client_connected("kept", "n", 2_200, Default::default())
        .await
        .expect("connected");
    b.flush().await.expect("flush");
    assert_eq!(
        b.session_created("kept", 99_999, false)
            .await
            .expect("lookup")
            .subscriptions
            .len(),
        1
    );
    b.close().await.expect("close");
}

/// At start, the sessions that expired while their clients were away are deleted without
/// waiting for the clients to come back; the others stay.
async fn expired_sessions_are_swept_at_start(kind: Kind) {
    let place = Place::new(kind, "sessweep").await;
    let b = place.actions().await;
    for (client, expiry) in [
        ("a", Some(10)),
        ("b", Some(10)),
        ("c", Some(1_000)),
        ("d", None),
    ] {
        b.client_connected(client, "n", 1_000, Default::default())
            .await
            .expect("connected");
        b.subscribed(client, "w/#", 1, true).await.expect("sub");
        b.client_disconnected(client, 2_000, expiry).expect("disc");
    }
    b.close().await.expect("close");

    let b = place.actions().await;
    assert_eq!(b.expire_sessions(2_500).await.expect("sweep"), 2);
    b.flush().await.expect("flush");
    for (client, left) in [("a", 0), ("b", 0), ("c", 1), ("d", 1)] {
        let subs = b.store().subscriptions(client).await.expect("read");
        assert_eq!(subs.len(), left, "{client}");
    }
    // Nothing left to sweep.
    assert_eq!(b.expire_sessions(2_500).await.expect("sweep"), 0);
    b.close().await.expect("close");
}

both_stores! {
    expired_session_is_deleted_at_lookup_ => expired_session_is_deleted_at_lookup;
    expired_sessions_are_swept_at_start_ => expired_sessions_are_swept_at_start;
}
