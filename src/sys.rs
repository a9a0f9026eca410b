//! The `$SYS/broker/...` topics: the broker's figures, published every `mqtt.sys_interval`
//! seconds as retained QoS 0 messages, under Mosquitto's names where Mosquitto has one.
//!
//! They go through `Broker::publish`, the path of every application message, so a
//! subscriber gets them like any topic, and an ACL decides who may read them. A figure is
//! published only when its value changed since the last publication (as Mosquitto does),
//! so `version` goes out once and `uptime` every time. The `$` topics are not matched by
//! `#` or `+/...` subscriptions [MQTT-4.7.2-1]: only a subscription that names `$SYS`
//! gets them.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dynamq_codec::{PublishProperties, QoS};

use crate::broker::Broker;
use crate::message::{ClientId, Message};
use dynamq_store::msgid::MsgId;

/// The publisher of the `$SYS` messages (their `sender`, for No Local and the store).
const SENDER: &str = "$SYS";

/// What the `$SYS` task remembers between two publications.
#[derive(Debug)]
pub(crate) struct SysState {
    /// When the broker started serving, for `uptime`.
    started: Instant,
    /// Most clients connected at once, as seen at each publication (`clients/maximum`).
    max_connected: u64,
    /// The payload last published on each topic: unchanged figures are not published again.
    last: HashMap<&'static str, String>,
}

impl SysState {
    pub(crate) fn new(started: Instant) -> SysState {
        SysState {
            started,
            max_connected: 0,
            last: HashMap::new(),
        }
    }

    /// The figures whose value changed since the last call, as (topic, payload); remembers
    /// them as published.
    pub(crate) fn changed(&mut self, broker: &Broker) -> Vec<(&'static str, String)> {
        let all = self.figures(broker);
        let mut out = Vec::new();
        for (topic, value) in all {
            if self.last.get(topic) != Some(&value) {
                self.last.insert(topic, value.clone());
                out.push((topic, value));
            }
        }
        out
    }

    /// Every figure, as (topic, payload).
    fn figures(&mut self, broker: &Broker) -> Vec<(&'static str, String)> {
        let sessions = broker.registry.all();
        let connected = sessions.iter().filter(|s| s.is_online()).count() as u64;
        self.max_connected = self.max_connected.max(connected);
        let subscriptions: usize = sessions
            .iter()
            .map(|s| s.with_state(|st| st.subscriptions.len()))
            .sum();
        let m = &broker.metrics;
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed).to_string();
        let mut figures = vec![
            (
                "$SYS/broker/version",
                format!("dynamq {}", env!("CARGO_PKG_VERSION")),
            ),
            (
                "$SYS/broker/uptime",
                format!("{} seconds", self.started.elapsed().as_secs()),
            ),
            ("$SYS/broker/clients/connected", connected.to_string()),
            (
                "$SYS/broker/clients/disconnected",
                (sessions.len() as u64 - connected).to_string(),
            ),
            ("$SYS/broker/clients/total", sessions.len().to_string()),
            (
                "$SYS/broker/clients/maximum",
                self.max_connected.to_string(),
            ),
            ("$SYS/broker/messages/received", load(&m.messages_received)),
            ("$SYS/broker/messages/sent", load(&m.messages_sent)),
            ("$SYS/broker/bytes/received", load(&m.bytes_received)),
            ("$SYS/broker/bytes/sent", load(&m.bytes_sent)),
            ("$SYS/broker/subscriptions/count", subscriptions.to_string()),
            (
                "$SYS/broker/retained messages/count",
                broker.router.retained.len().to_string(),
            ),
            (
                "$SYS/broker/store/errors",
                broker.persistence.errors().to_string(),
            ),
        ];
        if let Some(s) = broker.persistence.stats() {
            figures.push(("$SYS/broker/store/pending", s.writer.pending.to_string()));
            figures.push(("$SYS/broker/store/failed", s.writer.failed.to_string()));
        }
        figures
    }
}

/// A retained QoS 0 message from the broker.
fn message(topic: &str, payload: String, msgid: Option<MsgId>) -> Arc<Message> {
    Arc::new(Message {
        topic: Bytes::copy_from_slice(topic.as_bytes()),
        payload: Bytes::from(payload),
        qos: QoS::AtMostOnce,
        retain: true,
        properties: PublishProperties::default(),
        expires_at: None,
        sender: ClientId::new(SENDER),
        msgid,
    })
}

/// Publishes the changed figures every `interval` until the broker shuts down.
pub(crate) async fn run(broker: Arc<Broker>, interval: Duration) {
    let mut state = SysState::new(Instant::now());
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = broker.shutdown.cancelled() => return,
        }
        for (topic, payload) in state.changed(&broker) {
            broker.publish(message(topic, payload, broker.persistence.new_msgid()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::persistence::Persistence;

    #[test]
    fn only_changed_figures_are_published_again() {
        let broker = Broker::new(Config::default(), Persistence::none());
        let mut state = SysState::new(Instant::now());
        let first = state.changed(&broker);
        let version = first
            .iter()
            .find(|(t, _)| *t == "$SYS/broker/version")
            .map(|(_, v)| v.clone());
        assert_eq!(
            version,
            Some(format!("dynamq {}", env!("CARGO_PKG_VERSION")))
        );
        assert!(
            first
                .iter()
                .any(|(t, v)| *t == "$SYS/broker/clients/connected" && v == "0")
        );
        // Nothing changed (the uptime is still 0 seconds).
        assert!(state.changed(&broker).is_empty());
        broker.metrics.inc_messages_received();
        let again = state.changed(&broker);
        assert_eq!(
            again,
            vec![("$SYS/broker/messages/received", "1".to_string())]
        );
    }
}
