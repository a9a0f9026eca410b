//! Persistence: the broker's events (client connected, session subscribed, message
//! published, ...) handed to the store's [`Actions`], and what the store gives back (stored
//! subscriptions, stored messages to replay, retained messages at start) turned into the
//! broker's types.
//!
//! With no store (`store.kind = "none"`) every call is a no-op and the broker is a plain
//! in-memory broker. A store error never reaches the client: it is logged with its cause and
//! counted (`store_errors`), and MQTT traffic goes on.
//!
//! Each store call is boxed: the store's futures are large (the AWS SDK's especially), and
//! inlined they would make every connection task that large, idle or not.

mod publication;
pub mod setup;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use dynamq_codec::{PublishProperties, QoS};
use dynamq_store::Durable;
use dynamq_store::actions::{Actions, ActionsError, ActionsStats, PublishedMessage};
use dynamq_store::msgid::MsgId;
use dynamq_store::record::{MessageProps, MessageRecord, now_millis};
use parking_lot::Mutex;

use crate::log_limit::LogLimit;
use crate::message::{ClientId, Message};

/// `store.read_timeout_ms` by default.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_millis(500);

/// Ended sessions remembered (see `Persistence::ended`) before old ones are pruned.
const ENDED_PRUNE_AT: usize = 65_536;
/// How long an ended session is remembered while store writes are pending.
const ENDED_KEEP: Duration = Duration::from_secs(600);

#[derive(Default)]
pub struct Persistence {
    actions: Option<Arc<Actions>>,
    /// `store.durability = "sync"`: a QoS 1/2 message is acknowledged once stored.
    sync: bool,
    /// How long a CONNACK or SUBACK waits for a store read (`store.read_timeout_ms`).
    read_timeout: Duration,
    /// Log lines about reads that missed `read_timeout`.
    read_log: LogLimit,
    /// Written to mqtt_client.node.
    node: String,
    /// Store operations that failed (each also logged).
    errors: AtomicU64,
    /// Clients whose session ended here, and when. The deletion of their subscriptions may
    /// still wait in the store's writer (store reads do not see queued writes), so the store
    /// is not asked for their session when they come back: it would return the ended one.
    /// Taken when the client connects again.
    ended: Mutex<HashMap<ClientId, Instant>>,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Persistence {
    /// No store: an in-memory broker.
    pub fn none() -> Persistence {
        Persistence {
            read_timeout: DEFAULT_READ_TIMEOUT,
            ..Persistence::default()
        }
    }

    pub fn with_actions(actions: Actions, node: &str, sync: bool) -> Persistence {
        Persistence {
            actions: Some(Arc::new(actions)),
            sync,
            read_timeout: DEFAULT_READ_TIMEOUT,
            read_log: LogLimit::default(),
            node: node.to_string(),
            errors: AtomicU64::new(0),
            ended: Mutex::default(),
        }
    }

    pub fn actions(&self) -> Option<&Arc<Actions>> {
        self.actions.as_ref()
    }

    /// Sets how long a CONNACK or SUBACK waits for a store read.
    pub fn set_read_timeout(&mut self, timeout: Duration) {
        self.read_timeout = timeout;
    }

    /// How long a CONNACK or SUBACK waits for a store read.
    pub fn read_timeout(&self) -> Duration {
        self.read_timeout
    }

    /// A read of `what` for `client` missed the deadline: logs it (at most a line a second).
    pub(crate) fn log_read_timeout(&self, what: &str, client: &str) {
        if let Some(suppressed) = self.read_log.admit() {
            tracing::warn!(
                client,
                timeout_ms = self.read_timeout.as_millis() as u64,
                suppressed,
                "store read ({what}) missed its deadline: answered without it, acted on when it completes"
            );
        }
    }

    /// True if QoS 1/2 messages are acknowledged only once stored (`store.durability`).
    pub fn is_sync(&self) -> bool {
        self.sync
    }

    /// The msgid of a message being built (clock, node, sequence: no I/O); `None` without a
    /// store.
    pub fn new_msgid(&self) -> Option<MsgId> {
        self.actions.as_ref().map(|a| a.next_msgid())
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Option<ActionsStats> {
        self.actions.as_ref().map(|a| a.stats())
    }

    /// Counts a store operation that failed, logged by the caller.
    pub fn count_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    fn failed(&self, what: &str, client: &str, e: &ActionsError) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        tracing::error!(client, "store action {what} failed: {e}");
    }

    /// The retained messages kept in the store (on_retain_lookup), for the broker's
    /// retained index at start. `None`: retained messages are not read from the store.
    pub async fn retained_messages(&self) -> Result<Option<Vec<Arc<Message>>>, ActionsError> {
        let Some(a) = &self.actions else {
            return Ok(None);
        };
        let records = Box::pin(a.retained_messages()).await?;
        Ok(records.map(|rs| {
            rs.into_iter()
                .map(|r| Arc::new(message_from_record(r)))
                .collect()
        }))
    }

    /// Deletes the stored sessions that expired while their clients were away (see
    /// `Actions::expire_sessions`); run in the background at start. Logs what it did.
    pub async fn expire_sessions(&self) {
        let Some(a) = &self.actions else { return };
        match Box::pin(a.expire_sessions(now_secs())).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                sessions = n,
                "deleted stored sessions that expired while their clients were away"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot look for expired stored sessions"),
        }
    }

    /// client.connected. `awaiting_rel`: the packet ids of QoS 2 messages the session keeps
    /// until PUBREL (see [`Persistence::keeps_awaiting_rel`]; empty otherwise): the client's
    /// item is written whole, with them.
    pub async fn client_connected(&self, client: &ClientId, awaiting_rel: BTreeSet<u16>) {
        let Some(a) = &self.actions else { return };
        let connected = a.client_connected(client.shared(), &self.node, now_secs(), awaiting_rel);
        if let Err(e) = Box::pin(connected).await {
            self.failed("client.connected", client.as_str(), &e);
        }
    }

    /// True if the packet ids of QoS 2 messages received from a client and not yet released
    /// by PUBREL are kept in the store (mqtt_client's `awaiting_rel`), so that exactly once
    /// holds across a restart: only in `sync` durability (the PUBREC waits for the id to be
    /// stored, the PUBCOMP for its removal), for a session that outlives its connection
    /// (`session_expiry` > 0), and when on_client_connected writes the client's item. In
    /// `async` durability they live in memory only.
    pub fn keeps_awaiting_rel(&self, session_expiry: u32) -> bool {
        self.sync
            && session_expiry != 0
            && self
                .actions
                .as_ref()
                .is_some_and(|a| a.keeps_awaiting_rel())
    }

    /// PUBREL of a packet id kept in the store (see `keeps_awaiting_rel`): removes it.
    /// Returns what resolves once the removal is stored; the PUBCOMP waits for it.
    pub fn awaiting_rel_released(&self, client: &ClientId, packet_id: u16) -> Option<Durable> {
        let a = self.actions.as_ref()?;
        match a.awaiting_rel_released(client.as_str(), packet_id, self.sync) {
            Ok(d) => d,
            Err(e) => {
                self.failed("awaiting_rel.remove", client.as_str(), &e);
                None
            }
        }
    }

    /// client.disconnected, with the session's expiry interval in seconds (`u32::MAX`: it
    /// never expires), so that a session left in the store expires after a restart too. A
    /// session with expiry 0 ends with its connection (its subscriptions are deleted now):
    /// its item keeps the tutorial's shape, without `session_expires_at`.
    pub fn client_disconnected(&self, client: &ClientId, session_expiry: u32) {
        let Some(a) = &self.actions else { return };
        let expiry = (session_expiry != u32::MAX && session_expiry != 0).then_some(session_expiry);
        if let Err(e) = a.client_disconnected(client.as_str(), now_secs(), expiry) {
            self.failed("client.disconnected", client.as_str(), &e);
        }
    }

    /// session.created: what the store keeps of the client's session, for a session that was
    /// not in memory (after a restart, or from another node): its subscriptions
    /// (on_subscribe_lookup) and, with `awaiting_rel`, the packet ids of QoS 2 messages
    /// received and not released. Not asked when the session was in memory (`in_memory`),
    /// nor when it ended here since the client last connected: the store may not have taken
    /// its deletion yet, and has nothing newer.
    pub async fn stored_session(
        &self,
        client: &ClientId,
        in_memory: bool,
        awaiting_rel: bool,
    ) -> StoredSession {
        let Some(a) = &self.actions else {
            return StoredSession::default();
        };
        let ended_here = self.ended.lock().remove(client).is_some();
        if in_memory || ended_here {
            return StoredSession::default();
        }
        match Box::pin(a.session_created(client.as_str(), now_secs(), awaiting_rel)).await {
            Ok(s) => StoredSession {
                subscriptions: s
                    .subscriptions
                    .into_iter()
                    .filter_map(|(filter, qos)| QoS::from_u8(qos).map(|q| (filter, q)))
                    .collect(),
                awaiting_rel: s.awaiting_rel,
            },
            Err(e) => {
                self.failed("session.created", client.as_str(), &e);
                StoredSession::default()
            }
        }
    }

    /// A session ended: its subscriptions end with it, in the store too, so that a later
    /// session of this client does not get them back [MQTT-3.1.2-6]; so do the QoS 2 packet
    /// ids it had not released (`awaiting_rel`), which the store may keep (see
    /// `keeps_awaiting_rel`).
    pub fn session_ended<'a>(
        &self,
        client: &ClientId,
        filters: impl Iterator<Item = &'a str>,
        awaiting_rel: &[u16],
    ) {
        if self.actions.is_none() {
            return;
        }
        self.remember_ended(client);
        for filter in filters {
            self.session_unsubscribed(client, filter);
        }
        self.forget_awaiting_rel(client, awaiting_rel);
    }

    /// Removes QoS 2 packet ids from those the store keeps for `client` (see
    /// `keeps_awaiting_rel`), without waiting: the session that held them ended, or the
    /// client was told they are done with.
    pub fn forget_awaiting_rel(&self, client: &ClientId, packet_ids: &[u16]) {
        let Some(a) = &self.actions else { return };
        if self.sync
            && !packet_ids.is_empty()
            && let Err(e) = a.awaiting_rel_forgotten(client.as_str(), packet_ids)
        {
            self.failed("awaiting_rel.remove", client.as_str(), &e);
        }
    }

    fn remember_ended(&self, client: &ClientId) {
        let now = Instant::now();
        let mut ended = self.ended.lock();
        if ended.len() >= ENDED_PRUNE_AT {
            // Clients that never came back: forget those ended long ago, or all of them
            // once the store has written everything.
            let writes_pending = self.stats().is_some_and(|s| s.writer.pending > 0);
            ended.retain(|_, at| writes_pending && now.duration_since(*at) < ENDED_KEEP);
        }
        ended.insert(client.clone(), now);
    }

    /// session.subscribed: stores the subscription and returns the stored messages to
    /// replay to it, in order. Call [`Persistence::replayed`] with those that were queued.
    pub async fn session_subscribed(
        &self,
        client: &ClientId,
        filter: &str,
        qos: QoS,
        is_new: bool,
    ) -> Vec<Arc<Message>> {
        let Some(a) = &self.actions else {
            return Vec::new();
        };
        match Box::pin(a.subscribed(client.as_str(), filter, qos as u8, is_new)).await {
            Ok(records) => records
                .into_iter()
                .map(|r| Arc::new(message_from_record(r)))
                .collect(),
            Err(e) => {
                self.failed("session.subscribed", client.as_str(), &e);
                Vec::new()
            }
        }
    }

    /// The stored messages of `session_subscribed` that were queued for the subscription.
    pub fn replayed(&self, client: &ClientId, filter: &str, msgids: &[MsgId]) {
        if let Some(a) = &self.actions {
            a.replayed(client.as_str(), filter, msgids);
        }
    }

    /// session.unsubscribed
    pub fn session_unsubscribed(&self, client: &ClientId, filter: &str) {
        let Some(a) = &self.actions else { return };
        if let Err(e) = a.unsubscribed(client.as_str(), filter) {
            self.failed("session.unsubscribed", client.as_str(), &e);
        }
    }

    /// message.publish: hands the message's writes to the store (never waits). In `sync`
    /// durability, for a QoS 1/2 message that has writes, returns what resolves once they
    /// are stored: its acknowledgement waits for that.
    ///
    /// `awaiting_rel`: the packet id of a QoS 2 message whose sender's session keeps it
    /// until PUBREL (see `keeps_awaiting_rel`): stored with the message's writes, in the
    /// same group its acknowledgement waits for.
    pub fn message_published(
        &self,
        msg: &Arc<Message>,
        awaiting_rel: Option<u16>,
    ) -> Option<Durable> {
        let a = self.actions.as_ref()?;
        let id = msg.msgid?;
        let durable = self.sync && msg.qos != QoS::AtMostOnce;
        match a.message_published_shared(msg.clone(), id, durable, awaiting_rel) {
            Ok(d) => d,
            Err(e) => {
                self.failed("message.publish", msg.sender.as_str(), &e);
                None
            }
        }
    }

    /// Why the store cannot take `msg`, if it cannot (on DynamoDB, an item over 400 KB;
    /// counted by the store in `store_too_large_total`): the broker refuses the PUBLISH
    /// rather than acknowledge a message it would lose. Checked before the message is routed.
    pub fn refuses(&self, msg: &Message) -> Option<String> {
        let a = self.actions.as_ref()?;
        if !a.has_item_limit() {
            return None;
        }
        let published = published(msg);
        a.check_storable(&published).err().map(|e| e.to_string())
    }

    /// message.acked: the client acknowledged a message that has a msgid.
    pub fn message_acked(&self, client: &ClientId, msg: &Message) {
        let Some(a) = &self.actions else { return };
        let Some(id) = msg.msgid else { return };
        if let Err(e) = a.message_acked(client.as_str(), msg.topic_str(), id) {
            self.failed("message.acked", client.as_str(), &e);
        }
    }

    /// Waits until every store write submitted so far is durable (shutdown).
    pub async fn flush(&self) {
        let Some(a) = &self.actions else { return };
        if let Err(e) = a.flush().await {
            self.failed("flush", "-", &e);
        }
    }
}

/// What the store keeps of a client's session, as the broker restores it.
#[derive(Debug, Default)]
pub struct StoredSession {
    /// (filter, QoS) of each stored subscription.
    pub subscriptions: Vec<(String, QoS)>,
    /// Packet ids of QoS 2 messages received from the client and not yet released.
    pub awaiting_rel: BTreeSet<u16>,
}

/// A message as the store's message.publish takes it.
fn published(msg: &Message) -> PublishedMessage<'_> {
    PublishedMessage {
        topic: msg.topic_str(),
        sender: msg.sender.as_str(),
        qos: msg.qos as u8,
        retain: msg.retain,
        payload: &msg.payload,
        props: stored_props(msg),
    }
}

/// The v5 properties the store keeps with a message; the expiry as an absolute time, so
/// that the time it spends stored counts.
fn stored_props(msg: &Message) -> MessageProps {
    let p = &msg.properties;
    MessageProps {
        payload_format: p.payload_format_indicator,
        content_type: p.content_type.clone(),
        response_topic: p.response_topic.clone(),
        correlation_data: p.correlation_data.clone(),
        user_properties: p.user_properties.clone(),
        expires_at_ms: msg.expires_at.map(|t| {
            let left = t.saturating_duration_since(Instant::now());
            now_millis().saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX))
        }),
    }
}

/// A message read back from the store, as the router carries it: with its v5 properties,
/// and its expiry back on the broker's clock (the interval forwarded is what remains of it,
/// see `Message::remaining_expiry`).
fn message_from_record(r: MessageRecord) -> Message {
    let msgid = Some(r.msgid);
    let now = Instant::now();
    let p = r.props.map(|p| *p).unwrap_or_default();
    let expires_at = p
        .expires_at_ms
        .map(|t| now + Duration::from_millis(t.saturating_sub(now_millis())));
    let mut msg = Message {
        topic: Bytes::from(r.topic),
        payload: r.payload,
        qos: QoS::from_u8(r.qos).unwrap_or(QoS::AtLeastOnce),
        retain: r.retain,
        properties: PublishProperties {
            payload_format_indicator: p.payload_format,
            response_topic: p.response_topic,
            correlation_data: p.correlation_data,
            user_properties: p.user_properties,
            content_type: p.content_type,
            ..PublishProperties::default()
        },
        expires_at,
        sender: ClientId::new(&r.sender),
        msgid,
    };
    msg.properties.message_expiry_interval = msg.remaining_expiry(now);
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the broker hands the store comes back as it was published, with the expiry
    /// that remains.
    #[test]
    fn properties_and_expiry_round_trip_through_a_record() {
        let mut msg = Message::for_test("a/b", QoS::AtLeastOnce, "pub");
        let m = Arc::get_mut(&mut msg).expect("sole owner");
        m.retain = true;
        m.properties = PublishProperties {
            payload_format_indicator: Some(1),
            message_expiry_interval: Some(120),
            response_topic: Some("reply".into()),
            correlation_data: Some(Bytes::from_static(&[0, 0xff])),
            user_properties: vec![("k".into(), "1".into()), ("k".into(), "2".into())],
            content_type: Some("text/plain".into()),
            ..PublishProperties::default()
        };
        m.expires_at = Some(Instant::now() + Duration::from_secs(120));
        let record = MessageRecord {
            msgid: MsgId(1),
            topic: "a/b".into(),
            sender: "pub".into(),
            qos: 1,
            retain: true,
            payload: msg.payload.clone(),
            arrived: 0,
            props: stored_props(&msg).boxed(),
        };
        let back = message_from_record(record);
        let left = back.properties.message_expiry_interval.expect("an expiry");
        assert!((119..=120).contains(&left), "{left}");
        let mut expected = msg.properties.clone();
        expected.message_expiry_interval = Some(left);
        assert_eq!(back.properties, expected);
        let at = back.expires_at.expect("an expiry");
        let now = Instant::now();
        assert!(at > now + Duration::from_secs(118) && at <= now + Duration::from_secs(120));

        // No properties (v3): nothing stored, nothing restored.
        let plain = Message::for_test("a/b", QoS::AtMostOnce, "pub");
        assert!(stored_props(&plain).boxed().is_none());
    }
}
