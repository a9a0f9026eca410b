//! Hibernation: an idle TCP connection gives up its task and waits in the poller
//! (`connection::hibernate`, `parked`). A client must not be able to tell: every way a
//! connection is woken (a message for it, a packet from it, its keepalive running out, a
//! takeover, the shutdown) is tested here against a broker that hibernates connections after
//! 50 ms, and each test first waits until the parker holds the connections it is about.

mod common;

use common::{TestBroker, connect_packet, session_expiry, start, will};
use dynamq_codec::{ConnectProperties, Protocol, QoS, ReasonCode};

async fn hibernating_broker() -> TestBroker {
    start(|c| c.mqtt.hibernate_after_ms = 50).await
}

/// A message queued for a hibernating subscriber wakes it; QoS 0, 1 and 2 arrive in the
/// order published [MQTT-4.6.0-6] at their QoS, and the subscriber hibernates again and is
/// woken again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_wakes_hibernating_subscriber() {
    let b = hibernating_broker().await;
    let (mut sub, _) = b
        .connect_v5("hb-sub", true, ConnectProperties::default())
        .await;
    sub.subscribe("hb/t", QoS::ExactlyOnce).await;
    let (mut publisher, _) = b.connect_v311("hb-pub", true).await;
    b.wait_hibernating(2).await;
    let hibernations = b.metric(|m| &m.hibernations);
    assert!(hibernations >= 2);

    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let payload = format!("q{}", qos as u8);
        publisher
            .publish("hb/t", payload.as_bytes(), qos, false)
            .await;
    }
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        let p = sub.expect_publish().await;
        assert_eq!(
            (p.qos, &p.payload[..]),
            (qos, format!("q{}", qos as u8).as_bytes())
        );
        sub.ack(&p).await;
    }

    b.wait_hibernating(2).await;
    assert!(
        b.metric(|m| &m.hibernations) > hibernations,
        "hibernated again"
    );
    publisher
        .publish("hb/t", b"again", QoS::AtLeastOnce, false)
        .await;
    let p = sub.expect_publish().await;
    assert_eq!(&p.payload[..], b"again");
    sub.ack(&p).await;
    b.stop().await;
}

/// A hibernating client that sends something is woken and answered: PINGREQ gets PINGRESP
/// [MQTT-3.12.4-1], a QoS 1 PUBLISH gets PUBACK [MQTT-4.3.2-2].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hibernating_client_is_answered() {
    let b = hibernating_broker().await;
    let (mut c, _) = b.connect_v311("hb-ping", true).await;
    b.wait_hibernating(1).await;
    assert!(c.ping().await.is_empty());
    b.wait_hibernating(1).await;
    let reason = c.publish("hb/nobody", b"x", QoS::AtLeastOnce, false).await;
    assert_eq!(
        reason,
        ReasonCode::Success,
        "3.1.1 PUBACK has no reason code"
    );
    b.stop().await;
}

/// The keepalive of a hibernating client still runs out: the poller wakes it at 1.5 times
/// the keepalive, the broker closes the connection [MQTT-3.1.2-24] (v5 [MQTT-3.1.2-22]:
/// DISCONNECT 0x8D) and publishes the will [MQTT-3.1.2-8].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keepalive_expiry_while_hibernating_publishes_will() {
    let b = hibernating_broker().await;
    let (mut watcher, _) = b
        .connect_v5("hb-watch", true, ConnectProperties::default())
        .await;
    watcher.subscribe("will/#", QoS::AtMostOnce).await;
    let mut c = connect_packet(Protocol::V5, "hb-silent", true);
    c.keep_alive = 1;
    c.will = Some(will("will/hb-silent", b"gone"));
    let (mut silent, _) = b.connect(c).await;
    b.wait_hibernating(2).await;
    assert_eq!(b.metric(|m| &m.wills_published), 0);

    silent.expect_disconnect(ReasonCode::KeepAliveTimeout).await;
    let w = watcher.expect_publish().await;
    assert_eq!(
        (&w.topic[..], &w.payload[..]),
        (&b"will/hb-silent"[..], &b"gone"[..])
    );
    assert_eq!(b.metric(|m| &m.wills_published), 1);
    b.stop().await;
}

/// A client id connecting again takes the session over from a hibernating connection: the
/// poller gives the old connection its task back, it is told DISCONNECT 0x8E
/// [MQTT-3.1.4-3], and the QoS 1 message it left unacknowledged (kept in the session while
/// it hibernated) is resent with DUP to the new one [MQTT-4.4.0-1].
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn takeover_of_hibernating_connection() {
    let b = hibernating_broker().await;
    let (mut publisher, _) = b
        .connect_v5("hb-tpub", true, ConnectProperties::default())
        .await;
    let (mut old, _) = b.connect_v5("hb-owner", false, session_expiry(300)).await;
    old.subscribe("hb/take", QoS::AtLeastOnce).await;
    publisher
        .publish("hb/take", b"m1", QoS::AtLeastOnce, false)
        .await;
    let first = old.expect_publish().await;
    b.wait_hibernating(2).await;

    let (mut new, ack) = b.connect_v5("hb-owner", false, session_expiry(300)).await;
    assert!(ack.session_present);
    old.expect_disconnect(ReasonCode::SessionTakenOver).await;
    let again = new.expect_publish().await;
    assert!(again.dup, "resent with DUP [MQTT-3.3.1-1]");
    assert_eq!(
        (again.packet_id, &again.payload[..]),
        (first.packet_id, &b"m1"[..])
    );
    new.ack(&again).await;
    assert_eq!(b.metric(|m| &m.takeovers), 1);
    b.stop().await;
}

/// Shutdown wakes hibernating connections to say goodbye: v5 clients get DISCONNECT 0x8B
/// (Server shutting down), 3.1.1 clients are just closed, and no connection task is left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_tells_hibernating_clients() {
    let b = hibernating_broker().await;
    let (mut v5, _) = b
        .connect_v5("hb-bye5", true, ConnectProperties::default())
        .await;
    let (mut v3, _) = b.connect_v311("hb-bye3", true).await;
    b.wait_hibernating(2).await;

    let broker = b.broker.clone();
    b.stop().await;
    assert_eq!(broker.tasks_running(), 0, "tasks left");
    let got = v5.expect_disconnect(ReasonCode::ServerShuttingDown).await;
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(v3.expect_closed().await.is_empty());
}
