//! Store reads that missed their deadline (`store.read_timeout_ms`): the session lookup at
//! CONNECT and the stored-message fetch on SUBSCRIBE.
//!
//! A CONNACK or SUBACK never waits longer than the deadline. A read that misses it is counted
//! (`store_read_timeouts`) and logged, and kept running here; when it completes, the
//! connection acts on it then: subscriptions found late are restored, stored messages found
//! late are replayed. A connection with a late read does not hibernate.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use dynamq_codec::QoS;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinSet;

use super::Conn;
use super::inbound::{Backlog, NewSubs};
use crate::auth::Want;
use crate::message::{Delivery, Message, ShareKey};
use crate::persistence::StoredSession;
use crate::session::Window;

/// What a late read found.
pub(super) enum LateRead {
    /// The session lookup of the CONNECT (the store's subscriptions of this client).
    Session {
        stored: StoredSession,
        clean_start: bool,
    },
    /// The stored messages to replay to a new subscription.
    Replay {
        filter: String,
        qos: QoS,
        sub_id: Option<u32>,
        msgs: Vec<Arc<Message>>,
        /// The subscription's replay window (see `session::replay`), open until this is
        /// acted on.
        window: Option<Window>,
    },
}

type Read = Pin<Box<dyn Future<Output = LateRead> + Send>>;

/// The reads still running, each in its own task (aborted if the connection ends first).
#[derive(Default)]
pub(super) struct LateReads {
    reads: JoinSet<LateRead>,
    /// QoS 2 packet ids the client released (PUBREL) while the session lookup was late and
    /// the ids it would find were not known yet: those it finds are not taken back, and are
    /// removed from the store.
    pub(super) released: Vec<u16>,
    /// Replay windows (see `session::replay`) held open by the stored-message fetches still
    /// running: closed as each is acted on, or when the connection ends (`close_windows`).
    pub(super) replay_windows: usize,
}

impl LateReads {
    /// The next read to complete (pending forever when there is none). A read that panicked
    /// is logged and skipped.
    pub(super) async fn next(late: Option<&mut LateReads>) -> Option<LateRead> {
        let l = match late {
            Some(l) if !l.reads.is_empty() => l,
            _ => return std::future::pending().await,
        };
        match l.reads.join_next().await {
            Some(Ok(r)) => Some(r),
            Some(Err(e)) => {
                tracing::error!(error = %e, "a late store read failed");
                None
            }
            None => None,
        }
    }
}

/// Runs `read` for at most `deadline`; `Err(read)` with the read still running if it did not
/// finish in time.
pub(super) async fn with_deadline<T>(
    mut read: Pin<Box<dyn Future<Output = T> + Send>>,
    deadline: std::time::Duration,
) -> Result<T, Pin<Box<dyn Future<Output = T> + Send>>> {
    tokio::select! {
        biased;
        r = &mut read => Ok(r),
        _ = tokio::time::sleep(deadline) => Err(read),
    }
}

impl<R, W> Conn<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Keeps a read that missed its deadline; its result comes back to `on_late_read`.
    pub(super) fn add_late_read(&mut self, what: &str, read: Read) {
        self.broker.metrics.inc_store_read_timeouts();
        self.broker
            .persistence
            .log_read_timeout(what, self.client_id.as_str());
        self.late.get_or_insert_with(Box::default).reads.spawn(read);
    }

    /// Closes the replay windows of the fetches still running (the connection ends: they
    /// will not be acted on).
    pub(super) fn close_late_windows(&mut self) {
        let open = self
            .late
            .as_mut()
            .map_or(0, |l| std::mem::take(&mut l.replay_windows));
        for _ in 0..open {
            self.session.close_replay();
        }
    }

    /// QoS 2 packet ids the store kept, found after the CONNACK: taken into the session,
    /// except those the client released meanwhile (its PUBREL was answered 0x92 and it
    /// will not send it again), which are removed from the store.
    fn restore_awaiting_rel_late(&mut self, ids: std::collections::BTreeSet<u16>) {
        let released = self
            .late
            .as_mut()
            .map(|l| std::mem::take(&mut l.released))
            .unwrap_or_default();
        for id in ids {
            if released.contains(&id) {
                self.broker
                    .persistence
                    .forget_awaiting_rel(&self.client_id, &[id]);
            } else {
                self.carried.awaiting_rel.insert(id);
            }
        }
    }

    /// A late read completed: act on it as the CONNECT or SUBSCRIBE would have.
    pub(super) async fn on_late_read(&mut self, read: Option<LateRead>) {
        let Some(read) = read else {
            self.drop_idle_late();
            return;
        };
        self.act_on_late_read(read).await;
        self.drop_idle_late();
    }

    /// Forgets the late reads once none is running (acting on one may have started another).
    fn drop_idle_late(&mut self) {
        if self.late.as_ref().is_some_and(|l| l.reads.is_empty()) {
            self.late = None;
        }
    }

    async fn act_on_late_read(&mut self, read: LateRead) {
        match read {
            LateRead::Session {
                stored,
                clean_start: true,
            } => {
                // Clean Start: what the store kept of an earlier session is deleted
                // [MQTT-3.1.2-4].
                for (filter, _) in stored.subscriptions {
                    self.broker
                        .persistence
                        .session_unsubscribed(&self.client_id, &filter);
                }
            }
            LateRead::Session { stored, .. } => {
                self.restore_awaiting_rel_late(stored.awaiting_rel);
                // Subscriptions the client made meanwhile are newer: they stay as they are.
                let missing = self.session.with_state(|st| {
                    stored
                        .subscriptions
                        .into_iter()
                        .filter(|(f, _)| !st.subscriptions.contains_key(f))
                        .collect::<Vec<_>>()
                });
                tracing::info!(client = %self.client_id, subscriptions = missing.len(), "stored session found late: subscriptions restored");
                self.restore_subscriptions(missing).await;
            }
            LateRead::Replay {
                filter,
                qos,
                sub_id,
                msgs,
                window,
            } => {
                if window.is_some()
                    && let Some(l) = self.late.as_mut()
                {
                    l.replay_windows = l.replay_windows.saturating_sub(1);
                }
                let still = self
                    .session
                    .with_state(|st| st.subscriptions.contains_key(&filter));
                if !still {
                    if window.is_some() {
                        self.session.close_replay();
                    }
                    return;
                }
                let rules = self.broker.auth.rules(&self.session);
                let share = ShareKey::parse(&filter);
                let mut backlog = Vec::with_capacity(msgs.len());
                for msg in msgs {
                    if rules
                        .as_ref()
                        .is_some_and(|r| !r.allows(msg.topic_str(), Want::Read))
                    {
                        self.broker.metrics.inc_acl_denied_deliveries();
                        continue;
                    }
                    backlog.push(Backlog {
                        delivery: Delivery {
                            qos: msg.qos.min(qos),
                            retain: false,
                            sub_ids: sub_id.into_iter().collect(),
                            shared: share.clone(),
                            msg,
                        },
                        replay_of: Some(filter.clone()),
                        window,
                    });
                }
                self.deliver_backlog(NewSubs {
                    backlog,
                    windows: usize::from(window.is_some()),
                });
            }
        }
    }
}
