//! Messages to the client: taking them from the session queue within the in-flight window,
//! packet ids, the QoS 1/2 acknowledgement flows, and resending on reconnect.

use std::time::Instant;

use dynamq_codec::{NO_PUBLISH_PROPERTIES, Packet, PubResp, PublishRef, QoS, ReasonCode};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{Conn, WRITE_HIGH_WATER};
use crate::message::Delivery;
use crate::session::inflight::{OutEntry, OutState};

impl<R, W> Conn<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// True when the loop should wait for queued messages: the write buffer has room.
    pub(super) fn can_take_more(&self) -> bool {
        self.wbuf.len() < WRITE_HIGH_WATER
    }

    /// Room for more QoS 1/2 messages in flight [MQTT-3.3.4-9].
    pub(super) fn inflight_room(&self) -> usize {
        usize::from(self.neg.inflight_max).saturating_sub(self.carried.inflight.len())
    }

    /// Moves queued messages into the write buffer while the buffer has room. QoS 1/2
    /// messages also need room in the in-flight window; when it is full, they wait in the
    /// queue (in order) until acknowledgements arrive.
    pub(super) fn pump_queue(&mut self) {
        while self.can_take_more() {
            let room = self.inflight_room();
            let mut batch = std::mem::take(&mut self.batch);
            batch.clear();
            let bound = self.broker.queue_bound();
            if self.session.take_queued_within(64, room, bound, &mut batch) {
                // Publishers paused for this queue may go on (flow control).
                self.broker.flow.notify_waiters();
            }
            if batch.is_empty() {
                self.batch = batch;
                return;
            }
            let now = Instant::now();
            for d in batch.drain(..) {
                self.send_delivery(d, now);
            }
            self.batch = batch;
        }
    }

    /// Sends one delivery, registering it as in flight if its QoS is 1 or 2.
    fn send_delivery(&mut self, d: Delivery, now: Instant) {
        if d.msg.is_expired(now) {
            // An expired message is not sent [MQTT-3.3.2-5].
            self.broker.metrics.inc_dropped_expired();
            return;
        }
        let packet_id = if d.qos == QoS::AtMostOnce {
            None
        } else {
            match self.carried.inflight.next_packet_id() {
                Some(id) => Some(id),
                None => {
                    tracing::warn!(client = %self.client_id, "no free packet id; message dropped");
                    return;
                }
            }
        };
        if !self.write_publish(&d, packet_id, false, now) {
            return;
        }
        self.broker.metrics.inc_messages_sent();
        if let Some(packet_id) = packet_id {
            let state = if d.qos == QoS::AtLeastOnce {
                OutState::AwaitPubAck
            } else {
                OutState::AwaitPubRec
            };
            self.carried.inflight.push(OutEntry {
                packet_id,
                delivery: d,
                state,
            });
        }
    }

    /// Encodes `d` as a PUBLISH straight from the shared message (no per-subscriber copy),
    /// unless it exceeds the client's Maximum Packet Size, in which case it is dropped as if
    /// delivered [MQTT-3.1.2-25]. Returns whether it was written.
    fn write_publish(
        &mut self,
        d: &Delivery,
        packet_id: Option<u16>,
        dup: bool,
        now: Instant,
    ) -> bool {
        let owned;
        let alias = if self.neg.protocol.is_v5() {
            (self.neg.topic_aliases).outbound(&d.msg.topic, self.neg.client_alias_max)
        } else {
            None
        };
        let properties = if !self.neg.protocol.is_v5() {
            &NO_PUBLISH_PROPERTIES
        } else if d.sub_ids.is_empty() && d.msg.expires_at.is_none() && alias.is_none() {
            &d.msg.properties
        } else {
            let mut p = d.msg.properties.clone();
            p.subscription_identifiers = d.sub_ids.clone();
            p.message_expiry_interval = d.msg.remaining_expiry(now);
            p.topic_alias = alias.map(|a| a.alias);
            owned = p;
            &owned
        };
        let topic: &[u8] = match alias {
            Some(a) if !a.with_topic => b"",
            _ => &d.msg.topic,
        };
        let parts = PublishRef {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic,
            packet_id,
            properties,
            payload: &d.msg.payload,
        };
        let max = self.neg.client_max_packet;
        match dynamq_codec::encode_publish_parts(&parts, self.neg.protocol, max, &mut self.wbuf) {
            Ok(()) => {
                if let Some(a) = alias {
                    self.neg.topic_aliases.sent(&d.msg.topic, a);
                }
                true
            }
            Err(dynamq_codec::EncodeError::PacketTooLarge { .. }) => {
                self.broker.metrics.inc_dropped_too_large();
                false
            }
            Err(e) => {
                tracing::warn!(client = %self.client_id, "cannot encode PUBLISH: {e}");
                false
            }
        }
    }

    /// Resends every unacknowledged message after a reconnect, in the original order:
    /// PUBLISH with DUP set, or PUBREL for those already received [MQTT-4.4.0-1].
    pub(super) fn resend_inflight(&mut self) {
        let now = Instant::now();
        let entries: Vec<(u16, OutState, Delivery)> = self
            .carried
            .inflight
            .iter()
            .map(|e| (e.packet_id, e.state, e.delivery.clone()))
            .collect();
        for (packet_id, state, d) in entries {
            match state {
                OutState::AwaitPubAck | OutState::AwaitPubRec => {
                    self.write_publish(&d, Some(packet_id), true, now);
                }
                OutState::AwaitPubComp => {
                    self.send(&Packet::PubRel(PubResp::new(packet_id)));
                }
            }
        }
    }

    /// PUBACK (QoS 1, `AwaitPubAck`) or PUBCOMP (QoS 2, `AwaitPubComp`) from the client:
    /// the delivery is done (message.acked).
    pub(super) async fn on_delivery_acked(&mut self, ack: PubResp, expected: OutState) {
        match self.carried.inflight.complete(ack.packet_id, expected) {
            Some(e) => self
                .broker
                .persistence
                .message_acked(&self.client_id, &e.delivery.msg),
            None => {
                tracing::debug!(client = %self.client_id, packet_id = ack.packet_id, ?expected, "acknowledgement for no message in flight")
            }
        }
    }

    /// PUBREC from the client: answer PUBREL [MQTT-4.3.3-4]; an error reason ends the flow.
    pub(super) fn on_pubrec(&mut self, ack: PubResp) {
        let id = ack.packet_id;
        if ack.reason_code.is_error() {
            self.carried.inflight.complete(id, OutState::AwaitPubRec);
            return;
        }
        let known = self.carried.inflight.mark_released(id)
            || self.carried.inflight.state(id) == Some(OutState::AwaitPubComp);
        let mut rel = PubResp::new(id);
        if !known {
            rel.reason_code = ReasonCode::PacketIdentifierNotFound;
        }
        self.send(&Packet::PubRel(rel));
    }
}
