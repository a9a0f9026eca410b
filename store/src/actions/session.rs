//! Sessions kept in the store: their subscriptions restored when a client comes back
//! (on_subscribe_lookup), unless the session expired while the client was away (mqtt_client's
//! `session_expires_at`, written at disconnect); expired sessions found at start are deleted.
//! Also the packet ids of QoS 2 messages received and not released (mqtt_client's
//! `awaiting_rel`), so that exactly once holds across a restart.

use std::collections::BTreeSet;
use std::sync::atomic::Ordering;

use super::{Actions, ActionsError};
use crate::binding::Action;
use crate::op::WriteOp;
use crate::record::{ClientRecord, SubRecord};
use crate::store::Store;
use crate::writer::Durable;

/// What the store keeps of a client's session (see [`Actions::session_created`]).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct StoredSession {
    /// (filter, qos) of each stored subscription.
    pub subscriptions: Vec<(String, u8)>,
    /// Packet ids of QoS 2 messages received from the client and not yet released.
    pub awaiting_rel: BTreeSet<u16>,
}

impl Actions {
    /// session.created: with on_subscribe_lookup, the client's stored subscriptions
    /// (filter, qos) for the broker to restore (empty otherwise), and with `awaiting_rel`
    /// the packet ids of QoS 2 messages it sent that were received and not released (kept
    /// on its mqtt_client item, see [`Actions::keeps_awaiting_rel`]). A session that expired
    /// while its client was away (mqtt_client's `session_expires_at` is past `now`, Unix
    /// seconds) is deleted instead, with its subscriptions and their acked state
    /// (`sessions_expired`), and nothing is restored [MQTT-3.1.2-23].
    pub async fn session_created(
        &self,
        clientid: &str,
        now: u64,
        awaiting_rel: bool,
    ) -> Result<StoredSession, ActionsError> {
        let awaiting_rel = awaiting_rel && self.binds(Action::OnClientConnected);
        let subs = if self.binds(Action::OnSubscribeLookup) {
            self.store.subscriptions(clientid).await?
        } else {
            Vec::new()
        };
        if subs.is_empty() && !awaiting_rel {
            return Ok(StoredSession::default());
        }
        let client = self.store.client(clientid).await?;
        if client.as_ref().is_some_and(|c| session_expired(c, now)) {
            if !subs.is_empty() {
                self.delete_expired_session(clientid, &subs).await?;
            }
            return Ok(StoredSession::default());
        }
        Ok(StoredSession {
            subscriptions: subs.into_iter().map(|s| (s.topic, s.qos)).collect(),
            awaiting_rel: match client {
                Some(c) if awaiting_rel => c.awaiting_rel,
                _ => BTreeSet::new(),
            },
        })
    }

    /// True if the packet ids of received QoS 2 messages not yet released can be kept on
    /// the client's mqtt_client item (`awaiting_rel`): on_client_connected writes the item.
    /// The broker keeps them only in `sync` durability, for a session that outlives its
    /// connection.
    pub fn keeps_awaiting_rel(&self) -> bool {
        self.binds(Action::OnClientConnected)
    }

    /// A session ended with QoS 2 packet ids not released: they are removed from its
    /// mqtt_client item (if they were kept there), so that a later session does not find them.
    pub fn awaiting_rel_forgotten(
        &self,
        clientid: &str,
        packet_ids: &[u16],
    ) -> Result<(), ActionsError> {
        if !self.keeps_awaiting_rel() || packet_ids.is_empty() {
            return Ok(());
        }
        self.submit(WriteOp::AwaitingRelRemove {
            clientid: clientid.to_owned(),
            packet_ids: packet_ids.to_vec(),
        })
    }

    /// PUBREL for a packet id the client's session kept (QoS 2, [MQTT-4.3.3-11]): removes it
    /// from `awaiting_rel`. With `durable`, returns what resolves once that is stored: the
    /// PUBCOMP waits for it, or after a crash the client could reuse the id for a new
    /// message that the broker would take for a resend and drop.
    pub fn awaiting_rel_released(
        &self,
        clientid: &str,
        packet_id: u16,
        durable: bool,
    ) -> Result<Option<Durable>, ActionsError> {
        if !self.keeps_awaiting_rel() {
            return Ok(None);
        }
        let op = WriteOp::AwaitingRelRemove {
            clientid: clientid.to_owned(),
            packet_ids: vec![packet_id],
        };
        if durable {
            Ok(Some(self.writer.push_durable([op])?))
        } else {
            self.submit(op)?;
            Ok(None)
        }
    }

    /// At start: deletes the stored sessions (subscriptions and acked rows) that expired
    /// while their clients were away, as `session_created` would when they come back, so
    /// that clients that never come back do not keep their subscriptions for ever. One Scan
    /// of mqtt_client. Returns how many were deleted. The mqtt_client items stay (the
    /// clients' last state, as the tutorial keeps it).
    pub async fn expire_sessions(&self, now: u64) -> Result<u64, ActionsError> {
        if !self.binds(Action::OnSubscribeLookup) {
            return Ok(0);
        }
        let mut deleted = 0;
        for c in self.store.clients_all().await? {
            if !session_expired(&c, now) {
                continue;
            }
            let subs = self.store.subscriptions(&c.clientid).await?;
            if !subs.is_empty() {
                self.delete_expired_session(&c.clientid, &subs).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    async fn delete_expired_session(
        &self,
        clientid: &str,
        subs: &[SubRecord],
    ) -> Result<(), ActionsError> {
        self.counters
            .sessions_expired
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(clientid, "stored session expired while the client was away");
        for s in subs {
            self.unsubscribed(clientid, &s.topic)?;
        }
        Ok(())
    }
}

/// True if `c`'s client is away and its session's expiry (Unix seconds) is not after `now`.
fn session_expired(c: &ClientRecord, now: u64) -> bool {
    c.connect_state == 0 && c.session_expires_at.is_some_and(|at| at <= now)
}
