//! Flow control on publishers: a publisher whose QoS 1/2 message went over a connected
//! subscriber's queue bound stops being read (its packets wait in its socket, so TCP slows
//! it down) until that queue is below the bound again. The message itself was queued: a
//! burst that subscribers can absorb on average loses nothing.
//!
//! The pause is checked every `flow_control_ms`. A subscriber that took messages from its
//! queue meanwhile is slow but alive, and the publisher waits on: that is the back-pressure.
//! One that took nothing has stalled: it is marked so (`Session::mark_stalled`), messages
//! over its bound are dropped and counted until it drains, and no publisher waits for it
//! meanwhile. One subscriber that stops reading thus costs each of its publishers one pause
//! at most, not a stall; it is disconnected later (`slow_consumer_timeout_ms`, see
//! `Conn::check_slow_consumer`).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::Conn;
use super::error::ConnError;
use crate::broker::Broker;
use crate::session::Session;

/// Why a connection is not read: the subscribers' queues it waits for, and until when.
#[derive(Debug)]
pub(super) struct Pause {
    /// Each queue with the progress of its client when the pause began (or was renewed).
    sessions: Vec<(Arc<Session>, u64)>,
    until: Instant,
}

/// Resolves when every queue the pause waits for has been below the bound (or nobody will
/// drain it) at least once since the pause began, or when the pause runs out; never without
/// a pause. Each queue is let go as soon as it drains: with many publishers, the queues of
/// busy subscribers go over and under the bound all the time, and need not all be under it
/// at the same moment.
pub(super) async fn ready(broker: &Broker, pause: Option<&mut Pause>) {
    let Some(p) = pause else {
        return std::future::pending().await;
    };
    let max = broker.queue_bound();
    loop {
        let notified = broker.flow.notified();
        tokio::pin!(notified);
        // Registered before the look below, so that a drain in between is not missed.
        notified.as_mut().enable();
        p.sessions.retain(|(s, _)| !s.drained_below(max));
        if p.sessions.is_empty() {
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
        let sessions = congested
            .into_iter()
            .map(|s| {
                let p = s.progress();
                (s, p)
            })
            .collect();
        self.paused = Some(Box::new(Pause {
            sessions,
            until: self.pause_deadline(),
        }));
    }

    fn pause_deadline(&self) -> Instant {
        Instant::now() + Duration::from_millis(self.broker.config.mqtt.flow_control_ms)
    }

    /// `ready` resolved: every queue drained, or the pause ran out. Queues that have not
    /// drained since and whose client took nothing from them meanwhile belong to stalled
    /// subscribers;
    /// if others still over it made progress, the pause goes on for them. The client's
    /// packets were not read meanwhile, so its keepalive starts again from now.
    pub(super) fn end_pause(&mut self) {
        let Some(mut p) = self.paused.take() else {
            return;
        };
        let max = self.broker.queue_bound();
        p.sessions.retain_mut(|(s, before)| {
            if s.drained_below(max) {
                return false;
            }
            let now = s.progress();
            if now != *before {
                *before = now;
                return true;
            }
            s.mark_stalled();
            self.broker.metrics.inc_flow_control_timeouts();
            tracing::warn!(
                client = %s.client_id,
                publisher = %self.client_id,
                wait_ms = self.broker.config.mqtt.flow_control_ms,
                "subscriber stalled: it took nothing from its full queue while a publisher waited; messages over its bound are dropped until it drains"
            );
            false
        });
        let now = Instant::now();
        self.deadline = self
            .deadline
            .max(now + super::keepalive_window(self.neg.keep_alive));
        self.active_at = now;
        if !p.sessions.is_empty() {
            p.until = self.pause_deadline();
            self.paused = Some(p);
        }
    }

    /// Watches this client's own queue: while it is full, the client must take messages
    /// from it. One that takes nothing for `slow_consumer_timeout_ms` is a slow consumer:
    /// `Err`, and the connection ends (v5: DISCONNECT 0x97 Quota exceeded); its session
    /// keeps the queue, within the bound, for when it comes back. Returns when to look
    /// again while the queue is full.
    pub(super) fn check_slow_consumer(&mut self) -> Result<Option<Instant>, ConnError> {
        let limit = self.broker.config.mqtt.slow_consumer_timeout_ms;
        if limit == 0 {
            return Ok(None);
        }
        let Some(progress) = self.session.progress_if_full(self.broker.queue_bound()) else {
            self.slow = None;
            return Ok(None);
        };
        let now = Instant::now();
        let since = match self.slow {
            Some((since, before)) if before == progress => since,
            _ => {
                self.slow = Some((now, progress));
                now
            }
        };
        let at = since + Duration::from_millis(limit);
        if now < at {
            return Ok(Some(at));
        }
        self.broker.metrics.inc_slow_consumer_disconnects();
        tracing::warn!(
            client = %self.client_id,
            peer = %self.peer,
            timeout_ms = limit,
            "disconnecting a slow consumer: its queue stayed full and it took nothing from it"
        );
        Err(ConnError::SlowConsumer(limit))
    }
}
