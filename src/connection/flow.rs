//! Flow control on publishers: a publisher whose QoS 1/2 message went over a connected
//! subscriber's queue bound stops being read (its packets wait in its socket, so TCP slows
//! it down) until that queue is below the bound again, for at most `flow_control_ms`. The
//! message itself was queued: a burst that subscribers can absorb on average loses nothing.
//!
//! A subscriber whose queue keeps a publisher waiting longer than that has stalled: it is
//! marked so (`Session::mark_stalled`), messages over its bound are dropped and counted until
//! it drains, and no publisher waits for it meanwhile. One subscriber that stops reading
//! thus costs each of its publishers one pause at most, not a stall.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::Conn;
use crate::broker::Broker;
use crate::session::Session;

/// Why a connection is not read: the subscribers' queues it waits for, and until when.
#[derive(Debug)]
pub(super) struct Pause {
    sessions: Vec<Arc<Session>>,
    until: Instant,
}

/// Resolves when every queue the pause waits for is below the bound (or nobody will drain
/// it), or when the pause runs out; never without a pause.
pub(super) async fn ready(broker: &Broker, pause: Option<&Pause>) {
    let Some(p) = pause else {
        return std::future::pending().await;
    };
    let max = broker.queue_bound();
    loop {
        let notified = broker.flow.notified();
        tokio::pin!(notified);
        // Registered before the look below, so that a drain in between is not missed.
        notified.as_mut().enable();
        if p.sessions.iter().all(|s| s.drained_below(max)) {
            return;
        }
        if tokio::time::timeout_at(p.until, notified).await.is_err() {
            return;
        }
    }
}

impl<R, W> Conn<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Stops reading this client until the `congested` queues drain (its own session's
    /// queue excepted: it is drained by this very connection, which needs to read the
    /// acknowledgements that free room in flight).
    pub(super) fn pause_for(&mut self, mut congested: Vec<Arc<Session>>) {
        congested.retain(|s| !Arc::ptr_eq(s, &self.session));
        if congested.is_empty() {
            return;
        }
        self.broker.metrics.inc_flow_control_pauses();
        let wait = Duration::from_millis(self.broker.config.mqtt.flow_control_ms);
        self.paused = Some(Box::new(Pause {
            sessions: congested,
            until: Instant::now() + wait,
        }));
    }

    /// The pause is over (see `ready`): queues still over the bound belong to stalled
    /// subscribers. The client's packets were not read meanwhile, so its keepalive starts
    /// again from now.
    pub(super) fn end_pause(&mut self) {
        let Some(p) = self.paused.take() else { return };
        let max = self.broker.queue_bound();
        for s in p.sessions.iter().filter(|s| !s.drained_below(max)) {
            s.mark_stalled();
            self.broker.metrics.inc_flow_control_timeouts();
            tracing::warn!(
                client = %s.client_id,
                publisher = %self.client_id,
                wait_ms = self.broker.config.mqtt.flow_control_ms,
                "subscriber stalled: its queue stayed full while a publisher waited; messages over its bound are dropped until it drains"
            );
        }
        let now = Instant::now();
        self.deadline = self
            .deadline
            .max(now + super::keepalive_window(self.neg.keep_alive));
        self.active_at = now;
    }
}
