//! MQTT v5 properties and message expiry through the actions, on both stores: what a stored
//! or retained message keeps, across a restart of the store, and what expiry removes.

mod common;

use bytes::Bytes;
use common::{Kind, Place};
use dynamq_store::actions::{Actions, PublishedMessage};
use dynamq_store::msgid::MsgId;
use dynamq_store::record::{MessageProps, now_millis};
use dynamq_store::store::Store;

/// Every v5 property a stored message keeps, with an expiry `expires_in_ms` from now
/// (negative: already past).
fn v5_props(tag: &str, expires_in_ms: i64) -> MessageProps {
    MessageProps {
        payload_format: Some(1),
        content_type: Some(format!("application/{tag}+json")),
        response_topic: Some(format!("reply/{tag}")),
        correlation_data: Some(Bytes::from(vec![0x00, 0xff, 0x80, 0x0a, b'c'])),
        // Order kept, a name repeated, an empty value, non-ASCII.
        user_properties: vec![
            ("z".into(), "1".into()),
            ("a".into(), "".into()),
            ("z".into(), "2 – é".into()),
        ],
        expires_at_ms: Some(now_millis().saturating_add_signed(expires_in_ms)),
    }
}

async fn publish_props(
    b: &Actions,
    topic: &str,
    qos: u8,
    retain: bool,
    payload: &[u8],
    props: &MessageProps,
) -> MsgId {
    common::publish(
        b,
        PublishedMessage {
            topic,
            sender: "pub5",
            qos,
            retain,
            payload: &Bytes::copy_from_slice(payload),
            props: props.clone(),
        },
    )
    .expect("publish")
}

/// Retained and stored messages keep their v5 properties and absolute expiry across a
/// restart of the store; expired ones are never returned, and are deleted.
async fn v5_properties_and_expiry(kind: Kind) {
    let place = Place::new(kind, "v5props").await;
    let b = place.actions().await;
    let hour = 3_600_000;
    let retained = v5_props("r", hour);
    let stored = v5_props("q", hour);
    publish_props(&b, "p/r", 1, true, b"retained", &retained).await;
    publish_props(&b, "p/old", 1, true, b"gone", &v5_props("o", -1_000)).await;
    let live = publish_props(&b, "p/q", 1, false, &[0xde, 0xad], &stored).await;
    let dead = publish_props(&b, "p/q", 2, false, b"gone", &v5_props("d", -1_000)).await;
    // A v3 message next to them has no properties.
    let plain = publish_props(&b, "p/q", 1, false, b"plain", &MessageProps::default()).await;
    b.close().await.expect("close");

    let b = place.actions().await;
    let rec = b
        .store()
        .retained("p/r")
        .await
        .expect("read")
        .expect("kept");
    assert_eq!(rec.props.as_deref(), Some(&retained));
    let got = b
        .retained_messages()
        .await
        .expect("read")
        .expect("on_retain_lookup is bound");
    assert_eq!(got.len(), 1, "the expired retained message is left out");
    assert_eq!(
        (got[0].topic.as_str(), &got[0].payload[..]),
        ("p/r", &b"retained"[..])
    );
    assert_eq!(got[0].props.as_deref(), Some(&retained));
    assert_eq!(b.stats().message_expired, 1);
    b.flush().await.expect("flush");
    assert!(b.store().retained("p/old").await.expect("read").is_none());

    let replay = b.subscribed("c1", "p/#", 1, true).await.expect("sub");
    let ids: Vec<MsgId> = replay.iter().map(|m| m.msgid).collect();
    assert_eq!(ids, [live, plain], "the expired stored message is left out");
    assert_eq!(&replay[0].payload[..], &[0xde, 0xad]);
    assert_eq!(replay[0].props.as_deref(), Some(&stored));
    assert!(replay[1].props.is_none());
    assert_eq!(b.stats().message_expired, 2);
    b.flush().await.expect("flush");
    assert!(b.store().messages(&[dead]).await.expect("read").is_empty());
    assert_eq!(
        b.store().map_msgids("p/q").await.expect("read").len(),
        2,
        "the expired id left the map"
    );
    b.close().await.expect("close");
}

both_stores! {
    v5_properties_and_expiry_ => v5_properties_and_expiry;
}
