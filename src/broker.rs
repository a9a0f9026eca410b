//! The broker's shared state, and the operations that touch several parts of it: delivering
//! a message to a session (the one path every enqueue takes), publishing a message (retained
//! index, router, persistence) and ending a session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Auth;
use crate::config::Config;
use crate::connection::Parker;
use crate::message::{ClientId, Delivery, Message};
use crate::metrics::Metrics;
use crate::persistence::Persistence;
use crate::router::Router;
use crate::session::{EnqueueResult, Orphans, QueueBound, Registry, Session};

/// Everything the connections share. One per process.
pub struct Broker {
    pub config: Config,
    pub(crate) router: Router,
    pub(crate) registry: Registry,
    pub metrics: Metrics,
    pub persistence: Persistence,
    /// Password file, anonymous clients, ACL.
    pub auth: Auth,
    /// Cancelled when the broker shuts down.
    pub(crate) shutdown: CancellationToken,
    /// Connection and timer tasks, awaited on shutdown.
    pub(crate) tasks: TaskTracker,
    /// Where idle connections hibernate.
    pub(crate) parker: Parker,
    /// Wakes publishers paused by flow control when a queue they wait for drains.
    pub(crate) flow: Notify,
    /// Rate limit of the log lines for failed TLS handshakes, which a scanner can flood.
    pub(crate) tls_failure_log: crate::log_limit::LogLimit,
    next_conn_id: AtomicU64,
}

/// What one publish did.
#[derive(Debug, Default)]
pub(crate) struct RouteOutcome {
    /// Sessions the message was queued for.
    pub(crate) queued: usize,
    /// Sessions whose queue was full.
    pub(crate) dropped: usize,
    /// Sessions it was queued for over their bound: the publisher waits for them to drain.
    pub(crate) congested: Vec<Arc<Session>>,
    /// In `sync` durability: resolves once the message's writes are stored; its
    /// acknowledgement waits for it.
    pub(crate) stored: Option<dynamq_store::Durable>,
}

impl Broker {
    /// A broker that lets every client connect and do anything (`Auth::open`).
    pub fn new(config: Config, persistence: Persistence) -> Arc<Broker> {
        Broker::with_auth(config, persistence, Auth::open())
    }

    pub fn with_auth(config: Config, persistence: Persistence, auth: Auth) -> Arc<Broker> {
        Arc::new(Broker {
            config,
            router: Router::new(),
            registry: Registry::default(),
            metrics: Metrics::default(),
            persistence,
            auth,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            parker: Parker::default(),
            flow: Notify::new(),
            tls_failure_log: Default::default(),
            next_conn_id: AtomicU64::new(1),
        })
    }

    pub(crate) fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Queues one delivery for one session: every message a session gets, live or replayed
    /// on subscribe, comes through here. Applies the queue bound (`max_queued_messages`):
    /// a message that does not fit is dropped, counted (`dropped_queue_full`) and logged once
    /// per overflow episode of that session, but a QoS 1/2 one first takes the place of the
    /// oldest queued QoS 0 message if there is one (`dropped_qos0_evicted`); a QoS 0 message
    /// for a client that is away is not queued (`dropped_qos0_offline`). With flow control on (`flow_control_ms`), a QoS
    /// 1/2 message for a connected client over its bound is queued all the same
    /// (`QueuedOverBound`): its publisher waits for the queue to drain. Wakes a hibernating
    /// owner.
    pub(crate) fn deliver(&self, session: &Session, d: Delivery) -> EnqueueResult {
        let bound = self.queue_bound();
        let flow = self.config.mqtt.flow_control_ms > 0;
        let result = session.enqueue(d, bound, flow);
        // What to wake, and whether this drop begins an overflow episode (logged once).
        let (wake, dropped) = match result {
            EnqueueResult::Queued { wake_parked }
            | EnqueueResult::QueuedOverBound { wake_parked } => (wake_parked, None),
            EnqueueResult::QueuedInPlaceOfQos0 { wake_parked, first } => {
                self.metrics.inc_dropped_qos0_evicted();
                (wake_parked, Some(first))
            }
            EnqueueResult::QueueFull { first } => {
                self.metrics.inc_dropped_queue_full();
                (None, Some(first))
            }
            EnqueueResult::Offline => {
                self.metrics.inc_dropped_qos0_offline();
                (None, None)
            }
            EnqueueResult::Duplicate => (None, None),
        };
        if let Some(slot) = wake {
            self.parker.wake(slot);
        }
        if dropped == Some(true) {
            tracing::warn!(
                client = %session.client_id,
                max_messages = bound.messages,
                max_bytes = bound.bytes,
                "session queue full: dropping messages (queued QoS 0 ones first, to make room for QoS 1/2 ones) until it drains"
            );
        }
        result
    }

    /// How much a session's queue holds (`max_queued_messages`, `max_queued_bytes`).
    pub(crate) fn queue_bound(&self) -> QueueBound {
        QueueBound {
            messages: self.config.mqtt.max_queued_messages,
            bytes: self.config.mqtt.max_queued_bytes,
        }
    }

    /// Publishes an application message: updates the retained index if it is retained,
    /// queues it for every matching subscription, then hands its writes to the store (which
    /// never waits: the message was given its msgid when it was built).
    pub(crate) fn publish(&self, msg: Arc<Message>) -> RouteOutcome {
        self.publish_received(msg, None)
    }

    /// Like `publish`, for a QoS 2 message from a client whose session keeps its packet id
    /// in the store until PUBREL (`awaiting_rel`): the id is stored with the message.
    pub(crate) fn publish_received(
        &self,
        msg: Arc<Message>,
        awaiting_rel: Option<u16>,
    ) -> RouteOutcome {
        if msg.retain {
            self.router.retained.set(&msg);
        }
        let mut out = RouteOutcome::default();
        let mut tally = |session: &Arc<Session>, result| match result {
            // A duplicate: the subscriber has the message already (replayed from the store).
            EnqueueResult::Queued { .. }
            | EnqueueResult::QueuedInPlaceOfQos0 { .. }
            | EnqueueResult::Duplicate => out.queued += 1,
            EnqueueResult::QueuedOverBound { .. } => {
                out.queued += 1;
                out.congested.push(session.clone());
            }
            EnqueueResult::QueueFull { .. } => out.dropped += 1,
            EnqueueResult::Offline => {}
        };
        match self.auth.delivery_check() {
            // No ACL: nothing is checked per delivery.
            None => self
                .router
                .route(&msg, |session, d| tally(session, self.deliver(session, d))),
            // The subscriber must be allowed to read the topic, whatever filter matched it
            // (Mosquitto checks read access per message at delivery).
            Some(check) => {
                let topic = msg.topic_str();
                self.router.route(&msg, |session, d| {
                    if check.may_read(session, topic) {
                        tally(session, self.deliver(session, d));
                    } else {
                        self.metrics.inc_acl_denied_deliveries();
                    }
                });
            }
        }
        out.stored = self.persistence.message_published(&msg, awaiting_rel);
        out
    }

    /// Ends a session: removes it from the registry and its subscriptions from the router
    /// (and the store), and publishes a will that was waiting for its delay.
    /// What it had not finished through shared subscriptions goes to other members of their
    /// groups (see `router::shared`), or is dropped and counted if nobody is left.
    pub(crate) async fn end_session(&self, session: &Arc<Session>) {
        let ended = session.end(&self.registry);
        let subs = ended.subscriptions;
        for filter in subs.keys() {
            self.router.unsubscribe(session, filter);
        }
        self.redispatch_orphans(session, ended.orphans);
        self.auth.forget(session);
        self.persistence.session_ended(
            &session.client_id,
            subs.keys().map(String::as_str),
            &ended.awaiting_rel,
        );
        if let Some(will) = ended.will {
            self.metrics.inc_wills_published();
            self.publish(will);
        }
    }

    /// A member of shared subscriptions left, and its session outlives its connection: what
    /// it had not finished through them goes to other members that are online; if a group
    /// has none, the session keeps that group's deliveries (see `router::shared`).
    pub(crate) fn redispatch_shared(&self, leaver: &Arc<Session>) {
        if !leaver.holds_shared() {
            return;
        }
        let kept = self.router.redispatch(
            leaver,
            |has_other_online| leaver.take_shared(has_other_online),
            |member, d| self.hand_over(member, d),
        );
        // Taken because their group had another member, which stays while the router is
        // locked: none should come back. If one does, it goes back to the session.
        for d in kept {
            let _ = self.deliver(leaver, d);
        }
    }

    /// The shared deliveries an ending session had not finished: to another member of their
    /// groups, online or not; dropped and counted if the session was the last member.
    fn redispatch_orphans(&self, leaver: &Arc<Session>, orphans: Orphans) {
        if orphans.qos2_lost > 0 {
            self.metrics
                .add(&self.metrics.shared_qos2_lost, orphans.qos2_lost);
            tracing::info!(client = %leaver.client_id, messages = orphans.qos2_lost, "session ended with QoS 2 shared-subscription messages unanswered: not sent to another member [MQTT-4.8.2-5]");
        }
        if orphans.deliveries.is_empty() {
            return;
        }
        let dropped = self.router.redispatch(
            leaver,
            |_| orphans.deliveries,
            |member, d| self.hand_over(member, d),
        );
        if !dropped.is_empty() {
            self.metrics
                .add(&self.metrics.shared_dropped_no_member, dropped.len());
            tracing::info!(client = %leaver.client_id, messages = dropped.len(), "session ended with shared-subscription messages and no other member in their group: dropped");
        }
    }

    /// Queues for `member` a delivery another member left unfinished, as a publish would
    /// (the ACL's read check included); counts it if it was queued.
    fn hand_over(&self, member: &Arc<Session>, d: Delivery) {
        if let Some(check) = self.auth.delivery_check()
            && !check.may_read(member, d.msg.topic_str())
        {
            self.metrics.inc_acl_denied_deliveries();
            return;
        }
        if self.deliver(member, d).is_queued() {
            self.metrics.inc_shared_redispatched();
        }
    }

    /// Tells every connection to end (v5 clients get DISCONNECT 0x8B) and wakes the
    /// hibernating ones so that they can; returns at once. `server::shutdown` also waits.
    pub fn begin_shutdown(&self) {
        self.shutdown.cancel();
        self.parker.wake_all_and_stop();
    }

    /// Connections hibernating now (the `dynamq_connections_hibernating` gauge).
    pub fn hibernating(&self) -> usize {
        self.parker.len()
    }

    /// True if a connection owns the session of `client_id` now.
    pub fn client_online(&self, client_id: &str) -> bool {
        self.registry
            .get(&ClientId::new(client_id))
            .is_some_and(|s| s.is_online())
    }

    /// Connection and timer tasks still running.
    pub fn tasks_running(&self) -> usize {
        self.tasks.len()
    }

    /// After a connection leaves a session that outlives it: ends the session when its expiry
    /// interval runs out, unless a client reattached meanwhile.
    pub(crate) fn schedule_expiry(
        self: &Arc<Self>,
        session: Arc<Session>,
        detaches: u64,
        secs: u32,
    ) {
        if secs == u32::MAX {
            return;
        }
        let broker = self.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(u64::from(secs))) => {}
                _ = broker.shutdown.cancelled() => return,
            }
            if session.still_detached(detaches) {
                tracing::debug!(client = %session.client_id, "session expired");
                broker.end_session(&session).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Subscription;
    use dynamq_codec::{QoS, SubscriptionOptions};

    /// A broker without flow control: messages over the bound are dropped.
    fn broker(max_queued_messages: usize) -> Arc<Broker> {
        let mut config = Config::default();
        config.mqtt.max_queued_messages = max_queued_messages;
        config.mqtt.flow_control_ms = 0;
        Broker::new(config, Persistence::none())
    }

    fn msg(topic: &str, qos: QoS) -> Arc<Message> {
        Message::for_test(topic, qos, "p")
    }

    fn dropped_queue_full(b: &Broker) -> u64 {
        b.metrics.dropped_queue_full.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn full_queue_drops_and_counts() {
        let b = broker(2);
        let s = Arc::new(Session::new(ClientId::new("a")));
        s.claim(1).expect("a new session has not ended");
        let sub = Subscription {
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            id: None,
        };
        b.router.subscribe(&s, "t", &sub);
        let mut outcomes = Vec::new();
        for _ in 0..3 {
            outcomes.push(b.publish(msg("t", QoS::AtLeastOnce)));
        }
        assert_eq!((outcomes[0].queued, outcomes[0].dropped), (1, 0));
        assert_eq!((outcomes[2].queued, outcomes[2].dropped), (0, 1));
        assert_eq!(dropped_queue_full(&b), 1);
        let mut out = Vec::new();
        let _ = s.take_queued_within(10, 10, b.queue_bound(), &mut out);
        assert_eq!(out.len(), 2);
    }

    /// A member of `$share/g/t` at QoS 1, online.
    fn shared_member(b: &Broker, id: &str) -> Arc<Session> {
        let s = Arc::new(Session::new(ClientId::new(id)));
        s.claim(1).expect("a new session has not ended");
        let sub = Subscription {
            options: SubscriptionOptions::qos(QoS::AtLeastOnce),
            id: None,
        };
        b.router.subscribe(&s, "$share/g/t", &sub);
        s.with_state(|st| st.subscriptions.insert("$share/g/t".into(), sub));
        s
    }

    fn counter(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn shared_deliveries_follow_the_members_that_stay_and_end_with_the_last() {
        let b = broker(100);
        let (x, y) = (shared_member(&b, "x"), shared_member(&b, "y"));
        for _ in 0..4 {
            assert_eq!(b.publish(msg("t", QoS::AtLeastOnce)).queued, 1);
        }
        assert_eq!((x.queued_len(), y.queued_len()), (2, 2));
        // x leaves, its session outliving the connection: y, online, gets x's two.
        assert!(x.release(1).is_some());
        b.redispatch_shared(&x);
        assert_eq!((x.queued_len(), y.queued_len()), (0, 4));
        assert_eq!(counter(&b.metrics.shared_redispatched), 2);
        // y's session ends while x is away: x's session is the only other member; it keeps
        // them for its client.
        assert!(y.release(1).is_some());
        b.redispatch_shared(&y);
        assert_eq!(y.queued_len(), 4, "no other member online: kept");
        b.end_session(&y).await;
        assert_eq!(x.queued_len(), 4);
        assert_eq!(counter(&b.metrics.shared_redispatched), 6);
        // x's ends too: nobody is left in the group; dropped and counted.
        b.end_session(&x).await;
        assert_eq!(counter(&b.metrics.shared_dropped_no_member), 4);
        assert_eq!(b.router.filter_count(), 0);
    }

    #[test]
    fn qos0_for_a_client_away_is_counted() {
        let b = broker(10);
        let s = Session::new(ClientId::new("away"));
        let d = Delivery {
            msg: msg("t", QoS::AtMostOnce),
            qos: QoS::AtMostOnce,
            retain: false,
            sub_ids: Vec::new(),
            shared: None,
        };
        assert_eq!(b.deliver(&s, d), EnqueueResult::Offline);
        assert_eq!(b.metrics.dropped_qos0_offline.load(Ordering::Relaxed), 1);
    }
}
