//! Flow control and slow consumers (issue 11 section 3): a publisher is paused, not its
//! messages dropped, while a subscriber's queue is over the bound and that subscriber takes
//! messages from it; a subscriber that takes nothing is marked stalled (its publishers go on,
//! messages over its bound are dropped and counted), and after `slow_consumer_timeout_ms` it
//! is disconnected (v5: 0x97) while its session keeps its queue. A full queue drops its QoS 0
//! messages before any QoS 1/2 one.

mod common;

use std::time::Duration;

use common::queue::{nothing_left, numbered, publish_numbered, receive_until};
use common::{Next, start};
use dynamq_codec::{ConnectProperties, Packet, QoS, ReasonCode};

const QUEUE: usize = 10;

/// Flow control: a subscriber that reads slower than its publisher does not lose QoS 1
/// messages to the burst. Its queue goes over the bound, the publisher is paused (not read)
/// until it drains, and every message arrives, in order, none dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_pauses_the_publisher_instead_of_dropping() {
    const PUBLISHED: usize = 200;
    let b = start(|c| {
        c.mqtt.max_queued_messages = QUEUE;
        c.mqtt.flow_control_ms = 5_000;
    })
    .await;
    let props = ConnectProperties {
        receive_maximum: Some(2),
        ..ConnectProperties::default()
    };
    let (mut sub, _) = b.connect_v5("fc-sub", true, props).await;
    sub.subscribe("fc/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = b.connect_v311("fc-pub", true).await;
    let publish = tokio::spawn(async move {
        publish_numbered(&mut publisher, "fc/t", PUBLISHED).await;
        publisher
    });
    // The subscriber reads nothing until its queue is over the bound and the publisher
    // paused; then it acknowledges as it receives (receive_until does), two at a time.
    common::wait_until("the publisher to be paused", || {
        b.metric(|m| &m.flow_control_pauses) > 0
    })
    .await;
    let delivered = numbered(&receive_until(&mut sub, |n| n >= PUBLISHED).await);
    let mut publisher = publish.await.expect("publisher task");
    assert_eq!(
        delivered,
        (0..PUBLISHED).collect::<Vec<_>>(),
        "all, in order"
    );
    nothing_left(&mut publisher, &mut sub, "fc/t").await;
    assert_eq!(b.metric(|m| &m.dropped_queue_full), 0);
    assert!(
        b.metric(|m| &m.flow_control_pauses) > 0,
        "the bound was reached"
    );
    assert_eq!(b.metric(|m| &m.flow_control_timeouts), 0);
    b.stop().await;
}

/// A subscriber that stops reading costs its publisher one pause of `flow_control_ms` at
/// most: then it counts as stalled, messages over its bound are dropped and counted, and the
/// publisher and another subscriber of the same topic go on. Nothing disappears uncounted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_does_not_stall_its_publisher() {
    const PUBLISHED: usize = 60;
    let b = start(|c| {
        c.mqtt.max_queued_messages = QUEUE;
        c.mqtt.flow_control_ms = 300;
    })
    .await;
    let props = ConnectProperties {
        receive_maximum: Some(2),
        ..ConnectProperties::default()
    };
    // Subscribes, then never reads nor acknowledges again.
    let (mut stalled, _) = b.connect_v5("st-stalled", true, props).await;
    stalled.subscribe("st/t", QoS::AtLeastOnce).await;
    let (mut other, _) = b.connect_v311("st-other", true).await;
    other.subscribe("st/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = b.connect_v311("st-pub", true).await;

    let started = std::time::Instant::now();
    let publish = tokio::spawn(async move {
        publish_numbered(&mut publisher, "st/t", PUBLISHED).await;
        publisher
    });
    let got = numbered(&receive_until(&mut other, |n| n >= PUBLISHED).await);
    let _publisher = publish.await.expect("publisher task");
    let took = started.elapsed();
    assert_eq!(
        got,
        (0..PUBLISHED).collect::<Vec<_>>(),
        "the other subscriber gets all"
    );
    // One pause of 300 ms, not one per message (60 x 300 ms).
    assert!(took < std::time::Duration::from_secs(3), "took {took:?}");
    assert_eq!(b.metric(|m| &m.flow_control_timeouts), 1);
    // The stalled one holds 2 in flight and at most twice its bound queued; the rest of its
    // copies are dropped and counted.
    let dropped = b.metric(|m| &m.dropped_queue_full) as usize;
    assert!(
        (PUBLISHED - 2 - 2 * QUEUE..=PUBLISHED - 2 - QUEUE).contains(&dropped),
        "{dropped} dropped"
    );
    drop(stalled);
    b.stop().await;
}

/// A subscriber slower than its publishers, but that keeps taking messages, is not stalled
/// however long the burst lasts: its queue stays over the bound for many times
/// `flow_control_ms` (each of ten publishers puts one message over it before it is paused),
/// the publishers stay paused, pause after pause, and nothing is dropped. Before, a pause
/// that ran out marked the subscriber stalled whatever its progress, and a burst on a busy
/// machine lost messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_subscriber_that_progresses_is_not_stalled() {
    const PUBLISHERS: usize = 10;
    const EACH: usize = 6;
    let b = start(|c| {
        c.mqtt.max_queued_messages = 12;
        c.mqtt.flow_control_ms = 100;
    })
    .await;
    let props = ConnectProperties {
        receive_maximum: Some(1),
        ..ConnectProperties::default()
    };
    let (mut sub, _) = b.connect_v5("sp-sub", true, props).await;
    sub.subscribe("sp/t", QoS::AtLeastOnce).await;
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let (mut c, _) = b.connect_v311(&format!("sp-pub{p}"), true).await;
        publishers.push(tokio::spawn(async move {
            for i in 0..EACH {
                c.publish(
                    "sp/t",
                    format!("{p}-{i}").as_bytes(),
                    QoS::AtLeastOnce,
                    false,
                )
                .await;
            }
        }));
    }
    // One message every 30 ms: the 60 take 1.8 s, eighteen times the pause of 100 ms, and
    // the queue (12, and up to 10 more over it: twice the bound is the most flow control
    // lets in) needs more than 100 ms to go below the bound.
    let mut next = [0usize; PUBLISHERS];
    for n in 0..PUBLISHERS * EACH {
        match sub.next(common::WAIT).await {
            Next::Packet(Packet::Publish(m)) => {
                tokio::time::sleep(Duration::from_millis(30)).await;
                sub.ack(&m).await;
                let text = String::from_utf8_lossy(&m.payload).into_owned();
                let (p, i) = text.split_once('-').expect("numbered payload");
                let (p, i): (usize, usize) = (p.parse().expect("p"), i.parse().expect("i"));
                // Each publisher's messages in its order [MQTT-4.6.0-6], none twice.
                assert_eq!(i, next[p], "publisher {p}");
                next[p] += 1;
            }
            other => panic!(
                "expected PUBLISH, got {other:?} after {n}; pauses {} timeouts {} dropped {}",
                b.metric(|m| &m.flow_control_pauses),
                b.metric(|m| &m.flow_control_timeouts),
                b.metric(|m| &m.dropped_queue_full)
            ),
        }
    }
    for p in publishers {
        p.await.expect("publisher task");
    }
    assert_eq!(next, [EACH; PUBLISHERS]);
    assert!(b.metric(|m| &m.flow_control_pauses) > 0, "never paused");
    assert_eq!(b.metric(|m| &m.flow_control_timeouts), 0, "marked stalled");
    assert_eq!(b.metric(|m| &m.dropped_queue_full), 0);
    assert!(sub.ping().await.is_empty(), "more than was published");
    b.stop().await;
}

/// A subscriber that stops taking messages is disconnected once its full queue has seen no
/// progress for `slow_consumer_timeout_ms`, with DISCONNECT 0x97 Quota exceeded (v5), while
/// another subscriber of the same topic gets every message. Its session keeps its queue:
/// when it comes back it gets what was kept, in order, and every message it misses was
/// counted as dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_subscriber_is_disconnected_and_keeps_its_queue() {
    const PUBLISHED: usize = 40;
    let b = start(|c| {
        c.mqtt.max_queued_messages = QUEUE;
        c.mqtt.flow_control_ms = 100;
        c.mqtt.slow_consumer_timeout_ms = 500;
    })
    .await;
    let props = ConnectProperties {
        receive_maximum: Some(2),
        session_expiry_interval: Some(60),
        ..ConnectProperties::default()
    };
    let (mut stuck, _) = b.connect_v5("sc-stuck", true, props.clone()).await;
    stuck.subscribe("sc/t", QoS::AtLeastOnce).await;
    let (mut other, _) = b.connect_v311("sc-other", true).await;
    other.subscribe("sc/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = b.connect_v311("sc-pub", true).await;
    let publish = tokio::spawn(async move {
        publish_numbered(&mut publisher, "sc/t", PUBLISHED).await;
        publisher
    });
    let got = numbered(&receive_until(&mut other, |n| n >= PUBLISHED).await);
    assert_eq!(
        got,
        (0..PUBLISHED).collect::<Vec<_>>(),
        "the other gets all"
    );
    let _publisher = publish.await.expect("publisher task");

    // It reads (two PUBLISHes fill its window) but never acknowledges.
    let before = stuck.expect_disconnect(ReasonCode::QuotaExceeded).await;
    let in_flight = before
        .iter()
        .filter(|p| matches!(p, Packet::Publish(_)))
        .count();
    assert_eq!(in_flight, 2, "{before:?}");
    assert_eq!(b.metric(|m| &m.slow_consumer_disconnects), 1);
    common::wait_until("the session to be offline", || {
        !b.session_online("sc-stuck")
    })
    .await;

    let (mut back, ack) = b.connect_v5("sc-stuck", false, props).await;
    assert!(ack.session_present, "the session was kept");
    let dropped = b.metric(|m| &m.dropped_queue_full) as usize;
    let kept = numbered(&receive_until(&mut back, |n| n + dropped >= PUBLISHED).await);
    assert_eq!(
        kept.len() + dropped,
        PUBLISHED,
        "kept {kept:?}, dropped {dropped}"
    );
    assert!(kept.len() >= 2 + QUEUE, "kept {kept:?}");
    assert!(back.ping().await.is_empty(), "more than was published");
    b.stop().await;
}

/// A full queue drops QoS 0 first: a QoS 1 message that finds it full takes the place of the
/// oldest queued QoS 0 message (`dropped_qos0_evicted`); only a queue of QoS 1/2 messages
/// alone drops the QoS 1 one (`dropped_queue_full`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_drops_qos0_first() {
    let b = start(|c| {
        c.mqtt.max_queued_messages = 4;
        c.mqtt.flow_control_ms = 0;
    })
    .await;
    let props = ConnectProperties {
        receive_maximum: Some(1),
        ..ConnectProperties::default()
    };
    let (mut sub, _) = b.connect_v5("q0-sub", true, props).await;
    sub.subscribe("q0/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = b.connect_v311("q0-pub", true).await;
    publisher
        .publish("q0/t", b"m0", QoS::AtLeastOnce, false)
        .await;
    // m0 fills the window of one; what follows waits in the queue, in order.
    let m0 = sub.expect_publish().await;
    assert_eq!(&m0.payload[..], b"m0");
    for (payload, qos) in [
        ("m1", QoS::AtLeastOnce),
        ("q2", QoS::AtMostOnce),
        ("q3", QoS::AtMostOnce),
        ("q4", QoS::AtMostOnce),
        // The queue holds 4: each of these takes the place of the oldest QoS 0 one...
        ("m5", QoS::AtLeastOnce),
        ("m6", QoS::AtLeastOnce),
        ("m7", QoS::AtLeastOnce),
        // ...and this one finds only QoS 1 messages: it is dropped.
        ("m8", QoS::AtLeastOnce),
    ] {
        publisher
            .publish("q0/t", payload.as_bytes(), qos, false)
            .await;
    }
    assert_eq!(b.metric(|m| &m.dropped_qos0_evicted), 3);
    assert_eq!(b.metric(|m| &m.dropped_queue_full), 1);
    sub.ack(&m0).await;
    let got = receive_until(&mut sub, |n| n >= 4).await;
    let got: Vec<&[u8]> = got.iter().map(Vec::as_slice).collect();
    assert_eq!(got, [&b"m1"[..], b"m5", b"m6", b"m7"]);
    nothing_left(&mut publisher, &mut sub, "q0/t").await;
    b.stop().await;
}
