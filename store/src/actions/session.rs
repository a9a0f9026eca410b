//! Sessions kept in the store: their subscriptions restored when a client comes back
//! (on_subscribe_lookup), unless the session expired while the client was away (mqtt_client's
//! `session_expires_at`, written at disconnect); expired sessions found at start are deleted.

use std::sync::atomic::Ordering;

use super::{Actions, ActionsError};
use crate::binding::Action;
use crate::record::{ClientRecord, SubRecord};
use crate::store::Store;

impl Actions {
    /// session.created: with on_subscribe_lookup, the client's stored subscriptions
    /// (filter, qos) for the broker to restore (empty otherwise). A session that expired
    /// while its client was away (mqtt_client's `session_expires_at` is past `now`, Unix
    /// seconds) is deleted instead, with its subscriptions and their acked state
    /// (`sessions_expired`), and nothing is restored [MQTT-3.1.2-23].
    pub async fn session_created(
        &self,
        clientid: &str,
        now: u64,
    ) -> Result<Vec<(String, u8)>, ActionsError> {
        if !self.binds(Action::OnSubscribeLookup) {
            return Ok(Vec::new());
        }
        let subs = self.store.subscriptions(clientid).await?;
        if subs.is_empty() {
            return Ok(Vec::new());
        }
        let expired = match self.store.client(clientid).await? {
            Some(c) => session_expired(&c, now),
            None => false,
        };
        if expired {
            self.delete_expired_session(clientid, &subs).await?;
            return Ok(Vec::new());
        }
        Ok(subs.into_iter().map(|s| (s.topic, s.qos)).collect())
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
