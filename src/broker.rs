//! The broker's shared state, and the operations that touch several parts of it: publishing
//! a message (retained index, router, hooks) and ending a session.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use std::collections::HashMap;
use std::time::Instant;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::Config;
use crate::connection::Parker;
use crate::hooks::Hooks;
use crate::message::{ClientId, Message};
use crate::metrics::Metrics;
use crate::router::{RouteOutcome, Router};
use crate::session::{Registry, Session};

/// Ended sessions remembered (see `Broker::ended`) before old ones are pruned.
const ENDED_PRUNE_AT: usize = 65_536;
/// How long an ended session is remembered while store writes are pending.
const ENDED_KEEP: Duration = Duration::from_secs(600);

/// Everything the connections share. One per process.
pub struct Broker {
    pub config: Config,
    pub router: Router,
    pub registry: Registry,
    pub metrics: Metrics,
    pub hooks: Hooks,
    /// Cancelled when the broker shuts down.
    pub shutdown: CancellationToken,
    /// Connection and timer tasks, awaited on shutdown.
    pub tasks: TaskTracker,
    /// Where idle connections hibernate.
    pub parker: Parker,
    /// Clients whose session ended here, and when. Their subscriptions' deletion may still
    /// wait in the store's writer, so the store is not asked for their session when they
    /// come back (it would return the ended one). Taken when the client connects again.
    ended: Mutex<HashMap<ClientId, Instant>>,
    next_conn_id: AtomicU64,
}

impl Broker {
    pub fn new(config: Config, hooks: Hooks) -> Arc<Broker> {
        Arc::new(Broker {
            config,
            router: Router::new(),
            registry: Registry::default(),
            metrics: Metrics::default(),
            hooks,
            shutdown: CancellationToken::new(),
            tasks: TaskTracker::new(),
            parker: Parker::default(),
            ended: Mutex::default(),
            next_conn_id: AtomicU64::new(1),
        })
    }

    pub fn next_conn_id(&self) -> u64 {
        self.next_conn_id.fetch_add(1, Ordering::Relaxed)
    }

    /// Publishes an application message: updates the retained index if it is retained,
    /// queues it for every matching subscription, and runs the message hooks.
    pub async fn publish(&self, msg: Arc<Message>) -> RouteOutcome {
        // The hook first: it gives the message its msgid, which acknowledgements refer to.
        self.hooks.message_published(&msg).await;
        if msg.retain && !self.hooks.handles_retained_lookup() {
            self.router.retained.set(&msg);
        }
        self.router.route(
            &msg,
            self.config.mqtt.max_queued_messages,
            &self.metrics,
            &self.parker,
        )
    }

    /// Ends a session: removes it from the registry and its subscriptions from the router,
    /// and publishes a will that was waiting for its delay.
    pub async fn end_session(&self, session: &Arc<Session>) {
        let (subs, will) = session.end(&self.registry);
        self.remember_ended(&session.client_id);
        for filter in subs.keys() {
            self.router.unsubscribe(session, filter);
            // The session's subscriptions end with it, in the store too, so that a later
            // session of this client does not get them back [MQTT-3.1.2-6].
            self.hooks
                .session_unsubscribed(&session.client_id, filter)
                .await;
        }
        if let Some(will) = will {
            self.metrics.inc_wills_published();
            self.publish(will).await;
        }
    }

    fn remember_ended(&self, client: &ClientId) {
        let now = Instant::now();
        let mut ended = self.ended.lock();
        if ended.len() >= ENDED_PRUNE_AT {
            // Clients that never came back: forget those ended long ago, or all of them
            // once the store has written everything.
            let writes_pending = self.hooks.stats().is_some_and(|s| s.writer.pending > 0);
            ended.retain(|_, at| writes_pending && now.duration_since(*at) < ENDED_KEEP);
        }
        ended.insert(client.clone(), now);
    }

    /// True (once) if `client`'s session ended here since it last connected: the store's
    /// copy of it may be stale, and there is nothing newer to restore.
    pub fn take_ended(&self, client: &ClientId) -> bool {
        self.ended.lock().remove(client).is_some()
    }

    /// After a connection leaves a session that outlives it: ends the session when its expiry
    /// interval runs out, unless a client reattached meanwhile.
    pub fn schedule_expiry(self: &Arc<Self>, session: Arc<Session>, detaches: u64, secs: u32) {
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
