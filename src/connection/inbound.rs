//! Packets from the client after CONNECT: PUBLISH and its acknowledgements, SUBSCRIBE,
//! UNSUBSCRIBE, PINGREQ, DISCONNECT. Violations become `ConnError`s naming the statement.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamq_codec::topic;
use dynamq_codec::{
    Disconnect, Packet, PubResp, Publish, PublishProperties, QoS, ReasonCode, ReasonProperties,
    RetainHandling, SubAck, Subscribe, SubscriptionOptions, UnsubAck, Unsubscribe,
};
use dynamq_store::msgid::MsgId;
use tokio::io::{AsyncRead, AsyncWrite};

use super::late::{self, LateRead};
use super::{Conn, ConnError, End};
use crate::auth::Want;
use crate::message::{Delivery, Message, ShareKey};
use crate::session::inflight::OutState;
use crate::session::{Subscription, Window};

type Handled = Result<Option<End>, ConnError>;

/// A message a new subscription gets at once: a retained one, or a stored one replayed.
pub(super) struct Backlog {
    pub(super) delivery: Delivery,
    /// For a replayed stored message: the filter it was replayed to.
    pub(super) replay_of: Option<String>,
    /// For a replayed stored message: the replay window of its subscription (see
    /// `session::replay`), which leaves out what reached the subscription live.
    pub(super) window: Option<Window>,
}

/// What new subscriptions get at once, and the replay windows opened for them: closed once
/// the backlog is queued.
#[derive(Default)]
pub(super) struct NewSubs {
    pub(super) backlog: Vec<Backlog>,
    pub(super) windows: usize,
}

impl<R, W> Conn<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    pub(super) async fn handle(&mut self, packet: Packet) -> Handled {
        match packet {
            Packet::Publish(p) => self.on_publish(p).await?,
            Packet::PubAck(a) => self.on_delivery_acked(a, OutState::AwaitPubAck).await,
            Packet::PubRec(a) => self.on_pubrec(a),
            Packet::PubRel(a) => self.on_pubrel(a),
            Packet::PubComp(a) => self.on_delivery_acked(a, OutState::AwaitPubComp).await,
            Packet::Subscribe(s) => Box::pin(self.on_subscribe(s)).await?,
            Packet::Unsubscribe(u) => Box::pin(self.on_unsubscribe(u)).await,
            Packet::PingReq => self.send(&Packet::PingResp),
            Packet::Disconnect(d) => return self.on_disconnect(d).map(Some),
            Packet::Connect(_) => {
                return Err(ConnError::protocol(
                    ReasonCode::ProtocolError,
                    "[MQTT-3.1.0-2] second CONNECT on a connection",
                ));
            }
            Packet::Auth(_) => {
                // No authentication method was agreed in CONNECT [MQTT-4.12.0-1].
                return Err(ConnError::protocol(
                    ReasonCode::ProtocolError,
                    "[MQTT-4.12.0-1] AUTH without an authentication method",
                ));
            }
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                return Err(ConnError::protocol(
                    ReasonCode::ProtocolError,
                    "[MQTT-4.8.0-1] a server-to-client packet sent by the client",
                ));
            }
        }
        Ok(None)
    }

    async fn on_publish(&mut self, mut p: Publish) -> Result<(), ConnError> {
        if let Some(alias) = p.properties.topic_alias.take() {
            let max = self.broker.config.mqtt.topic_alias_maximum;
            self.neg.topic_aliases.resolve(alias, &mut p.topic, max)?;
        }
        if p.topic.is_empty() {
            return Err(ConnError::protocol(
                ReasonCode::ProtocolError,
                "[MQTT-4.7.3-1] PUBLISH with an empty topic and no topic alias",
            ));
        }
        if p.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&p.payload).is_err()
        {
            // A payload that says it is UTF-8 and is not [MQTT-3.3.2-4]: v5 answers with
            // reason 0x99 rather than closing.
            self.ack_publish(
                &p,
                ReasonCode::PayloadFormatInvalid,
                "[MQTT-3.3.2-4] the payload is not UTF-8 but its Payload Format Indicator is 1",
            );
            return Ok(());
        }
        self.broker.metrics.inc_messages_received();
        if p.qos == QoS::ExactlyOnce {
            let Some(id) = p.packet_id else {
                return Err(ConnError::protocol(
                    ReasonCode::ProtocolError,
                    "[MQTT-2.2.1-2] QoS 2 PUBLISH without a packet id",
                ));
            };
            if self.carried.awaiting_rel.contains(&id) {
                // A resend of a message already received: acknowledge, do not deliver twice
                // [MQTT-4.3.3-9].
                self.send_ack(Packet::PubRec(PubResp::new(id)), None);
                return Ok(());
            }
            if self.carried.awaiting_rel.len()
                >= usize::from(self.broker.config.mqtt.receive_maximum)
            {
                return Err(ConnError::protocol(
                    ReasonCode::ReceiveMaximumExceeded,
                    "[MQTT-3.3.4-7] more QoS 2 publishes unacknowledged than Receive Maximum",
                ));
            }
            self.carried.awaiting_rel.insert(id);
        }
        let max_levels = self.broker.config.mqtt.max_topic_levels;
        if max_levels > 0 && too_many_levels(&p.topic, max_levels) {
            self.broker.metrics.inc_limit_refusals();
            let why = "the topic has more levels than the server allows (mqtt.max_topic_levels)";
            tracing::info!(client = %self.client_id, "PUBLISH refused: {why}");
            let reason = if self.neg.protocol.is_v5() {
                ReasonCode::TopicNameInvalid
            } else {
                ReasonCode::Success
            };
            self.ack_publish(&p, reason, why);
            return Ok(());
        }
        if p.topic.starts_with(b"$SYS") {
            // The broker's own topics: no client writes them (as in Mosquitto).
            self.publish_denied(&p, "clients may not publish to $SYS topics");
            return Ok(());
        }
        if let Some(rules) = self.broker.auth.rules(&self.session)
            && !rules.allows(p.topic_str(), Want::Write)
        {
            self.publish_denied(&p, "not authorized to publish to this topic");
            return Ok(());
        }
        let props = std::mem::take(&mut p.properties);
        let expires_at = props
            .message_expiry_interval
            .map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        let msg = Arc::new(Message {
            topic: p.topic.clone(),
            payload: p.payload.clone(),
            qos: p.qos,
            retain: p.retain,
            properties: PublishProperties {
                topic_alias: None,
                subscription_identifiers: Vec::new(),
                ..props
            },
            expires_at,
            sender: self.client_id.clone(),
            msgid: self.broker.persistence.new_msgid(),
        });
        if let Some(why) = self.broker.persistence.refuses(&msg) {
            // The store could not keep it: refused, not acknowledged and then lost. A v3
            // client cannot be told: its connection is closed unacknowledged.
            self.broker.metrics.inc_publishes_not_stored();
            tracing::warn!(client = %self.client_id, topic = msg.topic_str(), "PUBLISH refused: {why}");
            if !self.neg.protocol.is_v5() {
                return Err(ConnError::NotStored);
            }
            // 0x97: PUBACK and PUBREC have no 0x95 Packet too large (spec 3.4.2.1, 3.5.2.1).
            self.ack_publish(&p, ReasonCode::QuotaExceeded, &why);
            return Ok(());
        }
        // In sync durability a persistent session's QoS 2 id is stored with the message, and
        // its PUBREC waits for both: after a restart a resend is still known [MQTT-4.3.3-9].
        let keep_id = (p.qos == QoS::ExactlyOnce && self.keeps_awaiting_rel())
            .then_some(p.packet_id)
            .flatten();
        let mut out = self.broker.publish_received(msg, keep_id);
        let reason = if out.queued == 0 && out.dropped == 0 {
            ReasonCode::NoMatchingSubscribers
        } else {
            ReasonCode::Success
        };
        // The message is queued everywhere it goes: acknowledged now (in sync durability,
        // once stored); what the client sends next waits until the queues it went over
        // drain (flow control).
        let stored = out.stored.take();
        self.ack_publish_when(&p, reason, "", stored);
        self.pause_for(out.congested);
        Ok(())
    }

    /// A PUBLISH the client may not write (the ACL, or a `$SYS` topic): dropped, counted,
    /// logged (at most a line a second). A v5 client's PUBACK or PUBREC says 0x87 Not
    /// authorized, with `why` as its Reason String; a v3 client cannot be told, so, as
    /// Mosquitto does, it gets its acknowledgement as usual.
    fn publish_denied(&mut self, p: &Publish, why: &str) {
        self.broker.metrics.inc_acl_denied_publish();
        if let Some(suppressed) = self.broker.auth.log_denial() {
            tracing::info!(client = %self.client_id, topic = p.topic_str(), suppressed, "PUBLISH denied ({why}): not delivered");
        }
        let reason = if self.neg.protocol.is_v5() {
            ReasonCode::NotAuthorized
        } else {
            ReasonCode::Success
        };
        self.ack_publish(p, reason, why);
    }

    /// PUBACK for QoS 1, PUBREC for QoS 2 [MQTT-4.3.2-2] [MQTT-4.3.3-2]; an error code
    /// carries `why` as its Reason String when the client allows it.
    fn ack_publish(&mut self, p: &Publish, reason: ReasonCode, why: &str) {
        self.ack_publish_when(p, reason, why, None);
    }

    /// Like `ack_publish`, once `stored` resolves (sync durability, see `acks`).
    fn ack_publish_when(
        &mut self,
        p: &Publish,
        reason: ReasonCode,
        why: &str,
        stored: Option<dynamq_store::Durable>,
    ) {
        let Some(packet_id) = p.packet_id else { return };
        let ack = PubResp {
            packet_id,
            reason_code: reason,
            properties: ReasonProperties {
                reason_string: reason
                    .is_error()
                    .then(|| self.neg.reason_string(why))
                    .flatten(),
                ..ReasonProperties::default()
            },
        };
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send_ack(Packet::PubAck(ack), stored),
            QoS::ExactlyOnce => {
                if reason.is_error() {
                    self.carried.awaiting_rel.remove(&packet_id);
                }
                self.send_ack(Packet::PubRec(ack), stored);
            }
        }
    }

    /// Sends a PUBACK, PUBREC (or PUBCOMP) now, or once `stored` resolves; behind those
    /// still waiting in any case, so that they leave in order [MQTT-4.6.0-2].
    fn send_ack(&mut self, ack: Packet, stored: Option<dynamq_store::Durable>) {
        if stored.is_none() && self.acks.is_none() {
            self.send(&ack);
        } else {
            self.defer_ack(ack, stored);
        }
    }

    /// PUBREL: release the packet id and answer PUBCOMP [MQTT-4.3.3-11]. A packet id kept in
    /// the store (see `keeps_awaiting_rel`) is removed there first: the PUBCOMP waits for
    /// that, or after a crash the client could reuse the id for a new message that would be
    /// taken for a resend and dropped.
    fn on_pubrel(&mut self, rel: PubResp) {
        let mut comp = PubResp::new(rel.packet_id);
        let known = self.carried.awaiting_rel.remove(&rel.packet_id);
        if !known {
            comp.reason_code = ReasonCode::PacketIdentifierNotFound;
        }
        if !self.keeps_awaiting_rel() {
            self.send(&Packet::PubComp(comp));
            return;
        }
        if !known {
            // An id the store may still hold, if the session lookup at CONNECT is late: it
            // is not taken back from it when that completes (see `late`).
            let cap = usize::from(self.broker.config.mqtt.receive_maximum);
            if let Some(late) = self.late.as_mut()
                && late.released.len() < cap
            {
                late.released.push(rel.packet_id);
            }
            self.send_ack(Packet::PubComp(comp), None);
            return;
        }
        let stored = self
            .broker
            .persistence
            .awaiting_rel_released(&self.client_id, rel.packet_id);
        self.send_ack(Packet::PubComp(comp), stored);
    }

    /// True if this session's QoS 2 packet ids are kept in the store until PUBREL
    /// (`Persistence::keeps_awaiting_rel`: sync durability, a session that outlives the
    /// connection).
    pub(super) fn keeps_awaiting_rel(&self) -> bool {
        self.broker
            .persistence
            .keeps_awaiting_rel(self.neg.session_expiry)
    }

    async fn on_subscribe(&mut self, s: Subscribe) -> Result<(), ConnError> {
        let sub_id = s.properties.subscription_identifier;
        let mut codes = Vec::with_capacity(s.filters.len());
        let mut backlog = NewSubs::default();
        for (filter, options) in s.filters {
            let code = self
                .subscribe_one(&filter, options, sub_id, &mut backlog)
                .await?;
            codes.push(code);
        }
        // SUBACK first, then the retained messages [MQTT-3.8.4-1]: they go through the
        // session queue, which is written after the SUBACK already in the write buffer.
        let refused = codes.iter().any(|c| c.is_error());
        self.send(&Packet::SubAck(SubAck {
            packet_id: s.packet_id,
            properties: ReasonProperties {
                reason_string: refused
                    .then(|| {
                        self.neg
                            .reason_string("a filter was refused: see its reason code")
                    })
                    .flatten(),
                ..ReasonProperties::default()
            },
            reason_codes: codes,
        }));
        self.deliver_backlog(backlog);
        Ok(())
    }

    /// Queues what new subscriptions get at once, through the one delivery path (which
    /// counts what does not fit). A replayed stored message counts as had by the
    /// subscription only once it was queued: one dropped stays replayable. A replayed message
    /// that reached the subscription live is left out (see `session::replay`); then the
    /// replay windows close.
    pub(super) fn deliver_backlog(&mut self, subs: NewSubs) {
        let mut replayed: Vec<(String, MsgId)> = Vec::new();
        for Backlog {
            delivery,
            replay_of,
            window,
        } in subs.backlog
        {
            let msgid = delivery.msg.msgid;
            if let (Some(w), Some(id)) = (window, msgid)
                && w.is_live(id)
            {
                continue;
            }
            let queued = self.broker.deliver(&self.session, delivery).is_queued();
            if let (true, Some(filter), Some(id)) = (queued, replay_of, msgid) {
                replayed.push((filter, id));
            }
        }
        for chunk in replayed.chunk_by(|a, b| a.0 == b.0) {
            let ids: Vec<MsgId> = chunk.iter().map(|(_, id)| *id).collect();
            self.broker
                .persistence
                .replayed(&self.client_id, &chunk[0].0, &ids);
        }
        for _ in 0..subs.windows {
            self.session.close_replay();
        }
    }

    async fn subscribe_one(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
        sub_id: Option<u32>,
        subs: &mut NewSubs,
    ) -> Result<ReasonCode, ConnError> {
        let shared = topic::parse_shared(filter);
        if !topic::valid_filter(filter) {
            tracing::info!(client = %self.client_id, filter, "[MQTT-4.7.1-1] invalid topic filter in SUBSCRIBE");
            return Ok(ReasonCode::TopicFilterInvalid);
        }
        let limits = &self.broker.config.mqtt;
        if limits.max_topic_levels > 0
            && too_many_levels(filter.as_bytes(), limits.max_topic_levels)
        {
            self.broker.metrics.inc_limit_refusals();
            tracing::info!(client = %self.client_id, filter, "SUBSCRIBE refused: more topic levels than mqtt.max_topic_levels");
            return Ok(ReasonCode::TopicFilterInvalid);
        }
        if limits.max_subscriptions > 0 {
            let full = self.session.with_state(|st| {
                st.subscriptions.len() >= limits.max_subscriptions
                    && !st.subscriptions.contains_key(filter)
            });
            if full {
                self.broker.metrics.inc_limit_refusals();
                tracing::info!(client = %self.client_id, filter, max = limits.max_subscriptions, "SUBSCRIBE refused: the session holds mqtt.max_subscriptions subscriptions");
                return Ok(ReasonCode::QuotaExceeded);
            }
        }
        if shared.is_some() && options.no_local {
            return Err(ConnError::protocol(
                ReasonCode::ProtocolError,
                "[MQTT-3.8.3-4] No Local set on a shared subscription",
            ));
        }
        let acl = self.broker.auth.rules(&self.session);
        if let Some(rules) = &acl
            && !rules.allows_subscribe(shared.map_or(filter, |(_, real)| real))
        {
            // v3 SUBACK 0x80 Failure [MQTT-3.9.3-2]; v5 0x87 Not authorized.
            self.broker.metrics.inc_acl_denied_subscribe();
            tracing::info!(client = %self.client_id, filter, "SUBSCRIBE denied by the ACL");
            return Ok(ReasonCode::NotAuthorized);
        }
        // Retained and stored messages go only where the subscriber may read their topic.
        let readable = |msg: &Message| {
            acl.as_ref()
                .is_none_or(|r| r.allows(msg.topic_str(), Want::Read))
        };
        let granted = options.qos;
        let sub = Subscription {
            options: options.clone(),
            id: sub_id,
        };
        // Into the router first, before anything that can wait: a message published from now
        // on reaches the subscription live.
        let existed = self.broker.router.subscribe(&self.session, filter, &sub);
        // A new QoS 1/2 subscription may get stored messages replayed: its replay window,
        // marked after the insert, keeps those it also gets live from coming twice.
        let window = (!existed && granted != QoS::AtMostOnce)
            .then(|| self.broker.persistence.new_msgid())
            .flatten()
            .map(Window::new);
        if let Some(w) = window {
            self.session.open_replay(w);
        }
        self.session.with_state(|st| {
            st.subscriptions.insert(filter.to_string(), sub);
        });
        let send_retained = shared.is_none()
            && match options.retain_handling {
                RetainHandling::SendAtSubscribe => true,
                RetainHandling::SendIfNew => !existed,
                RetainHandling::DoNotSend => false,
            };
        // Stored messages replayed to a shared subscription came through it too.
        let share = shared.and_then(|_| ShareKey::parse(filter));
        let delivery = |msg: Arc<Message>, retain: bool| Delivery {
            qos: msg.qos.min(granted),
            retain,
            sub_ids: sub_id.into_iter().collect(),
            shared: share.clone(),
            msg,
        };
        if send_retained {
            for msg in self.broker.router.retained.matching(filter) {
                if !readable(&msg) {
                    self.broker.metrics.inc_acl_denied_deliveries();
                    continue;
                }
                subs.backlog.push(Backlog {
                    // Retained messages sent on subscribe carry RETAIN=1 [MQTT-3.3.1-9].
                    delivery: delivery(msg, true),
                    replay_of: None,
                    window: None,
                });
            }
        }
        // The fetch waits at most `store.read_timeout_ms`; past it the SUBACK goes without,
        // and the messages are replayed when the fetch completes (see `late`).
        let fetch: Pin<Box<dyn Future<Output = LateRead> + Send>> = {
            let broker = self.broker.clone();
            let client = self.client_id.clone();
            let filter = filter.to_owned();
            Box::pin(async move {
                let msgs = broker
                    .persistence
                    .session_subscribed(&client, &filter, granted, !existed)
                    .await;
                LateRead::Replay {
                    filter,
                    qos: granted,
                    sub_id,
                    msgs,
                    window,
                }
            })
        };
        let stored = match late::with_deadline(fetch, self.broker.persistence.read_timeout()).await
        {
            Ok(LateRead::Replay { msgs, .. }) => Some(msgs),
            Ok(LateRead::Session { .. }) => Some(Vec::new()),
            Err(fetch) => {
                // Its replay window stays open until the late read is acted on (`late`).
                self.add_late_read("stored-message fetch on SUBSCRIBE", fetch);
                if window.is_some()
                    && let Some(l) = self.late.as_mut()
                {
                    l.replay_windows += 1;
                }
                None
            }
        };
        let stored = match stored {
            Some(msgs) => {
                subs.windows += usize::from(window.is_some());
                msgs
            }
            None => Vec::new(),
        };
        for msg in stored {
            if !readable(&msg) {
                self.broker.metrics.inc_acl_denied_deliveries();
                continue;
            }
            subs.backlog.push(Backlog {
                delivery: delivery(msg, false),
                replay_of: Some(filter.to_owned()),
                window,
            });
        }
        Ok(ReasonCode::granted(granted))
    }

    async fn on_unsubscribe(&mut self, u: Unsubscribe) {
        let mut codes = Vec::with_capacity(u.filters.len());
        for filter in &u.filters {
            let removed = self.broker.router.unsubscribe(&self.session, filter);
            self.session
                .with_state(|st| st.subscriptions.remove(filter));
            if removed {
                self.broker
                    .persistence
                    .session_unsubscribed(&self.client_id, filter);
            }
            codes.push(if removed {
                ReasonCode::Success
            } else {
                ReasonCode::NoSubscriptionExisted
            });
        }
        self.send(&Packet::UnsubAck(UnsubAck {
            packet_id: u.packet_id,
            properties: ReasonProperties::default(),
            reason_codes: codes,
        }));
    }

    /// DISCONNECT: a normal one discards the will [MQTT-3.14.4-3]; v5 0x04 keeps it.
    fn on_disconnect(&mut self, d: Disconnect) -> Result<End, ConnError> {
        if let Some(expiry) = d.properties.session_expiry_interval {
            if self.neg.connect_session_expiry == 0 && expiry != 0 {
                return Err(ConnError::protocol(
                    ReasonCode::ProtocolError,
                    "[MQTT-3.14.2-2] DISCONNECT sets a Session Expiry Interval after CONNECT had 0",
                ));
            }
            self.neg.session_expiry = match self.broker.config.mqtt.max_session_expiry {
                0 => expiry,
                max => expiry.min(max),
            };
        }
        Ok(End::Disconnect {
            will: d.reason_code == ReasonCode::DisconnectWithWillMessage,
        })
    }

    /// Restores a session's subscriptions found in the store (on_subscribe_lookup).
    pub(super) async fn restore_subscriptions(&mut self, subs: Vec<(String, QoS)>) {
        let mut backlog = NewSubs::default();
        for (filter, qos) in subs {
            if let Err(e) = self
                .subscribe_one(&filter, SubscriptionOptions::qos(qos), None, &mut backlog)
                .await
            {
                tracing::warn!(client = %self.client_id, filter, "cannot restore subscription: {e}");
            }
        }
        self.deliver_backlog(backlog);
    }
}

/// True if `topic` has more than `max` levels (separated by `/`).
fn too_many_levels(topic: &[u8], max: usize) -> bool {
    topic.iter().filter(|&&b| b == b'/').count() >= max
}
