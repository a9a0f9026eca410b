//! Delivery through the session queue: its bound (`mqtt.max_queued_messages`), where every
//! message beyond it is dropped and counted in `dropped_queue_full`, never lost silently; and
//! retained messages on subscribe, which come after the SUBACK and also go through the queue.

mod common;

use std::sync::{Arc, Mutex};

use common::queue::{nothing_left, numbered, publish_numbered, receive_until};
use common::{Client, TestBroker, start};
use dynamq_codec::{ConnectProperties, Packet, Protocol, QoS, SubscriptionOptions};

const QUEUE: usize = 10;

async fn small_queue_broker() -> TestBroker {
    start(|c| c.mqtt.max_queued_messages = QUEUE).await
}

/// Without flow control (`flow_control_ms = 0`), a connected subscriber that does not
/// acknowledge: with Receive Maximum 2 at most two messages are in flight to it
/// [MQTT-3.3.4-9], `QUEUE` more wait in its queue, and every other one is dropped and
/// counted: delivered + dropped == published, delivered at most 2 + `QUEUE`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_of_online_subscriber_drops_and_counts() {
    const PUBLISHED: usize = 50;
    let b = start(|c| {
        c.mqtt.max_queued_messages = QUEUE;
        c.mqtt.flow_control_ms = 0;
    })
    .await;
    let props = ConnectProperties {
        receive_maximum: Some(2),
        ..ConnectProperties::default()
    };
    let (mut sub, _) = b.connect_v5("ov-sub", true, props).await;
    sub.subscribe("ov/t", QoS::AtLeastOnce).await;
    let (mut publisher, _) = b.connect_v311("ov-pub", true).await;
    // Each publish is acknowledged after it was routed, so all are counted by now.
    publish_numbered(&mut publisher, "ov/t", PUBLISHED).await;
    let dropped = b.metric(|m| &m.dropped_queue_full) as usize;

    let delivered = numbered(&receive_until(&mut sub, |n| n + dropped >= PUBLISHED).await);
    nothing_left(&mut publisher, &mut sub, "ov/t").await;
    assert_eq!(
        delivered.len() + dropped,
        PUBLISHED,
        "delivered {delivered:?}, {dropped} dropped"
    );
    assert!(delivered.len() <= 2 + QUEUE, "delivered {delivered:?}");
    assert_eq!(b.metric(|m| &m.dropped_queue_full) as usize, dropped);
    b.stop().await;
}

/// A persistent session whose client is away keeps the first `QUEUE` QoS 1 messages
/// [MQTT-3.1.2-5] and drops (and counts) the rest; they are delivered, in order, when the
/// client comes back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_queue_of_offline_session_drops_and_counts() {
    const PUBLISHED: usize = 25;
    let b = small_queue_broker().await;
    let (mut sub, _) = b.connect_v311("ov-away", false).await;
    sub.subscribe("ov/away", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    common::wait_until("the session to be offline", || !b.session_online("ov-away")).await;

    let (mut publisher, _) = b.connect_v311("ov-pub2", true).await;
    publish_numbered(&mut publisher, "ov/away", PUBLISHED).await;
    assert_eq!(
        b.metric(|m| &m.dropped_queue_full) as usize,
        PUBLISHED - QUEUE
    );

    let (mut sub, ack) = b.connect_v311("ov-away", false).await;
    assert!(ack.session_present);
    let dropped = PUBLISHED - QUEUE;
    let delivered = numbered(&receive_until(&mut sub, |n| n + dropped >= PUBLISHED).await);
    assert_eq!(
        delivered,
        (0..QUEUE).collect::<Vec<_>>(),
        "the first ones are kept"
    );
    nothing_left(&mut publisher, &mut sub, "ov/away").await;
    assert_eq!(b.metric(|m| &m.dropped_queue_full) as usize, dropped);
    b.stop().await;
}

/// Publishes a retained QoS 1 message on each of `topics`.
async fn retain_all(b: &TestBroker, topics: &[String]) {
    let (mut publisher, _) = b.connect_v311("retainer", true).await;
    for t in topics {
        publisher
            .publish(t, t.as_bytes(), QoS::AtLeastOnce, true)
            .await;
    }
    publisher.disconnect().await;
}

/// A wildcard SUBSCRIBE is answered with SUBACK [MQTT-3.8.4-1] carrying its packet id
/// [MQTT-3.8.4-2] before any retained message: the spec would allow them first, dynamq
/// promises SUBACK first (see `on_subscribe`). Then every matching retained message, with
/// RETAIN 1 (3.1.1 [MQTT-3.3.1-8]; v5 [MQTT-3.3.1-9]).
async fn suback_before_retained(protocol: Protocol) {
    let b = start(|_| {}).await;
    let topics: Vec<String> = (1..=5).map(|i| format!("ret/{i}")).collect();
    retain_all(&b, &topics).await;

    let mut c = Client::open(b.addr, protocol).await;
    c.handshake(common::connect_packet(protocol, "ret-sub", true))
        .await;
    let id = c
        .send_subscribe("ret/+", SubscriptionOptions::qos(QoS::AtLeastOnce))
        .await;
    match c.expect_packet().await {
        Packet::SubAck(a) => assert_eq!(a.packet_id, id),
        other => panic!("expected SUBACK first, got {other:?}"),
    }
    let mut got = Vec::new();
    for _ in &topics {
        let p = c.expect_publish().await;
        assert!(p.retain, "RETAIN 1 on subscribe: {p:?}");
        c.ack(&p).await;
        got.push(String::from_utf8(p.topic.to_vec()).expect("UTF-8 topic"));
    }
    got.sort();
    assert_eq!(got, topics);
    assert!(c.ping().await.is_empty(), "no more retained messages");
    b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suback_before_retained_v5() {
    suback_before_retained(Protocol::V5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suback_before_retained_v311() {
    suback_before_retained(Protocol::V311).await;
}

/// A log that the test can read: what the broker logs while the test's subscriber is set.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("log lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl CapturedLog {
    fn lines_with(&self, needle: &str) -> usize {
        let log = self.0.lock().expect("log lock");
        String::from_utf8_lossy(&log)
            .lines()
            .filter(|l| l.contains(needle))
            .count()
    }
}

/// More retained messages match a SUBSCRIBE than the session queue holds: each of them is
/// delivered or counted in `dropped_queue_full`, none disappears silently, and the overflow
/// is logged once (STYLE.md: one enqueue path that applies the policy and counts). A
/// current-thread runtime, so that the broker's tasks log to this test's subscriber.
#[tokio::test]
async fn retained_beyond_queue_bound_are_delivered_or_counted() {
    const RETAINED: usize = 20;
    let log = CapturedLog::default();
    let writer = log.clone();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish(),
    );
    let b = start(|c| c.mqtt.max_queued_messages = 5).await;
    let topics: Vec<String> = (0..RETAINED).map(|i| format!("many/{i}")).collect();
    retain_all(&b, &topics).await;

    let (mut c, _) = b.connect_v311("many-sub", true).await;
    c.subscribe("#", QoS::AtLeastOnce).await;
    let dropped = || b.metric(|m| &m.dropped_queue_full) as usize;
    let got = receive_until(&mut c, |n| n + dropped() >= RETAINED).await;
    assert!(c.ping().await.is_empty(), "more than {RETAINED} messages");
    assert_eq!(
        got.len() + dropped(),
        RETAINED,
        "{} delivered, {} counted as dropped",
        got.len(),
        dropped()
    );
    assert!(dropped() > 0, "the queue bound was not reached");
    assert_eq!(log.lines_with("session queue full"), 1, "one log line");
    b.stop().await;
}

/// The queue is bounded in bytes too (`max_queued_bytes`, topic and payload of each
/// message): a session whose client is away keeps what fits and drops (and counts) the rest,
/// whichever of the two bounds is reached first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_bounded_in_bytes() {
    const PUBLISHED: usize = 20;
    // Each message weighs 4 (topic) + 100 (payload) bytes: 10 fit in 1,040 bytes.
    let b = start(|c| {
        c.mqtt.max_queued_messages = 1_000;
        c.mqtt.max_queued_bytes = 1_040;
    })
    .await;
    let (mut sub, _) = b.connect_v311("qb-away", false).await;
    sub.subscribe("qb/t", QoS::AtLeastOnce).await;
    sub.disconnect().await;
    common::wait_until("the session to be offline", || !b.session_online("qb-away")).await;

    let (mut publisher, _) = b.connect_v311("qb-pub", true).await;
    for i in 0..PUBLISHED {
        let payload = format!("{i:0>100}");
        publisher
            .publish("qb/t", payload.as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
    assert_eq!(b.metric(|m| &m.dropped_queue_full) as usize, PUBLISHED - 10);
    let (mut sub, _) = b.connect_v311("qb-away", false).await;
    let got = receive_until(&mut sub, |n| n >= 10).await;
    assert_eq!(got.len(), 10);
    nothing_left(&mut publisher, &mut sub, "qb/t").await;
    b.stop().await;
}
