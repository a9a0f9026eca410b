//! Helpers for the tests of the session queue and flow control: receiving and acknowledging
//! until a count, numbered payloads and their order.

use dynamq_codec::{Packet, QoS};

use super::{Client, Next};

/// Receives and acknowledges PUBLISHes until `done(how many so far)`; returns their
/// payloads. Panics if that takes longer than `WAIT`.
pub(crate) async fn receive_until(
    c: &mut Client,
    mut done: impl FnMut(usize) -> bool,
) -> Vec<Vec<u8>> {
    let deadline = tokio::time::Instant::now() + super::WAIT;
    let mut got = Vec::new();
    while !done(got.len()) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match c.next(left).await {
            Next::Packet(Packet::Publish(p)) => {
                c.ack(&p).await;
                got.push(p.payload.to_vec());
            }
            other => panic!(
                "expected PUBLISH, got {other:?} after {} payloads",
                got.len()
            ),
        }
    }
    got
}

/// Publishes `end` and checks it is the next message `c` gets: the queue is sent in order,
/// so nothing else was left in it.
pub(crate) async fn nothing_left(publisher: &mut Client, c: &mut Client, topic: &str) {
    publisher
        .publish(topic, b"end", QoS::AtLeastOnce, false)
        .await;
    let p = c.expect_publish().await;
    assert_eq!(&p.payload[..], b"end", "a message was left over: {p:?}");
    c.ack(&p).await;
}

/// Payloads "0", "1", ... as numbers, checking they are in the order published
/// [MQTT-4.6.0-6].
pub(crate) fn numbered(payloads: &[Vec<u8>]) -> Vec<usize> {
    let nums: Vec<usize> = payloads
        .iter()
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("unexpected payload {p:?}"))
        })
        .collect();
    assert!(
        nums.windows(2).all(|w| w[0] < w[1]),
        "out of order: {nums:?}"
    );
    nums
}

/// Publishes QoS 1 messages with payloads "0", "1", ... `n - 1` on `topic`.
pub(crate) async fn publish_numbered(p: &mut Client, topic: &str, n: usize) {
    for i in 0..n {
        p.publish(topic, i.to_string().as_bytes(), QoS::AtLeastOnce, false)
            .await;
    }
}
