//! Acknowledgements that wait for the store (`store.durability = "sync"`): the PUBACK or
//! PUBREC of a QoS 1/2 message is sent once the message's writes are stored, and the
//! PUBCOMP of a QoS 2 packet id kept in the store once its removal is.
//!
//! Only this connection waits. It goes on reading and routing the client's next messages
//! while earlier ones are being stored, up to `mqtt.receive_maximum` acknowledgements
//! waiting; then it stops reading until the store catches up. Acknowledgements leave in the
//! order their PUBLISHes came [MQTT-4.6.0-2]: one that needs no store write waits behind
//! those before it.

use std::collections::VecDeque;

use dynamq_codec::{Packet, PubResp, ReasonCode};
use dynamq_store::{Durable, NotStored};
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use super::{Conn, ConnError};

/// Acknowledgements not yet sent, oldest first.
#[derive(Debug, Default)]
pub(super) struct PendingAcks {
    queue: VecDeque<Waiting>,
}

#[derive(Debug)]
struct Waiting {
    /// PUBACK or PUBREC, as it will be sent if the store took the message (or PUBCOMP).
    ack: Packet,
    /// `None`: nothing to wait for but the acknowledgements before it.
    stored: Option<Durable>,
}

impl PendingAcks {
    pub(super) fn len(&self) -> usize {
        self.queue.len()
    }

    /// Resolves when the oldest acknowledgement may go: its message is stored, or failed to be.
    pub(super) async fn head_ready(acks: Option<&mut PendingAcks>) -> Result<(), NotStored> {
        match acks.and_then(|a| a.queue.front_mut()) {
            Some(Waiting {
                stored: Some(d), ..
            }) => d.await,
            Some(_) => Ok(()),
            None => std::future::pending().await,
        }
    }
}

impl<R, W> Conn<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Sends `ack` once `stored` resolves and every acknowledgement before it was sent.
    pub(super) fn defer_ack(&mut self, ack: Packet, stored: Option<Durable>) {
        self.acks
            .get_or_insert_with(Box::default)
            .queue
            .push_back(Waiting { ack, stored });
    }

    /// True while no more PUBLISH is read: as many acknowledgements wait for the store as
    /// the client may have messages unacknowledged (`mqtt.receive_maximum`).
    pub(super) fn acks_full(&self) -> bool {
        self.acks
            .as_ref()
            .is_some_and(|a| a.len() >= usize::from(self.broker.config.mqtt.receive_maximum))
    }

    /// The oldest acknowledgement is ready (`head`): sends it, and those behind it that are
    /// ready too. A message the store refused for good gets reason 0x80 in v5; a v3 client
    /// cannot be told, so its connection is closed unacknowledged (it will send it again).
    pub(super) fn release_acks(&mut self, head: Result<(), NotStored>) -> Result<(), ConnError> {
        let was_full = self.acks_full();
        let mut result = head;
        loop {
            let Some(mut acks) = self.acks.take() else {
                break;
            };
            let Some(w) = acks.queue.pop_front() else {
                break;
            };
            self.acks = (!acks.queue.is_empty()).then_some(acks);
            match result {
                Ok(()) => self.send(&w.ack),
                Err(e) => self.not_stored(w.ack, e)?,
            }
            // The next one, if it is ready already.
            let next = match self.acks.as_mut().and_then(|a| a.queue.front_mut()) {
                Some(Waiting { stored: None, .. }) => Ok(()),
                Some(Waiting {
                    stored: Some(d), ..
                }) => match d.now_or_never() {
                    Some(r) => r,
                    None => break,
                },
                None => break,
            };
            result = next;
        }
        if was_full && !self.acks_full() {
            // Reading again: the keepalive starts over, as after a flow-control pause.
            let now = Instant::now();
            self.deadline = self
                .deadline
                .max(now + super::keepalive_window(self.neg.keep_alive));
        }
        Ok(())
    }

    fn not_stored(&mut self, ack: Packet, e: NotStored) -> Result<(), ConnError> {
        if let Packet::PubComp(_) = ack {
            // The packet id was released in memory; only a crash before the store takes
            // the removal could bring it back. PUBCOMP has no failure code but 0x92.
            self.broker.persistence.count_error();
            tracing::error!(client = %self.client_id, error = %e, "a released QoS 2 packet id could not be removed from the store");
            self.send(&ack);
            return Ok(());
        }
        self.broker.metrics.inc_publishes_not_stored();
        tracing::error!(client = %self.client_id, error = %e, "a QoS 1/2 message could not be stored: acknowledged as failed");
        if !self.neg.protocol.is_v5() {
            return Err(ConnError::NotStored);
        }
        let failed = |r: PubResp, neg: &super::Negotiated| PubResp {
            reason_code: ReasonCode::UnspecifiedError,
            properties: dynamq_codec::ReasonProperties {
                reason_string: neg.reason_string("the message could not be stored"),
                ..Default::default()
            },
            ..r
        };
        match ack {
            Packet::PubAck(r) => {
                let r = failed(r, &self.neg);
                self.send(&Packet::PubAck(r));
            }
            Packet::PubRec(r) => {
                self.carried.awaiting_rel.remove(&r.packet_id);
                if self.keeps_awaiting_rel() {
                    // Its add may have been applied: the client, told 0x80, may reuse the id
                    // for a new message, which must not be taken for a resend after a restart.
                    self.broker
                        .persistence
                        .forget_awaiting_rel(&self.client_id, &[r.packet_id]);
                }
                let r = failed(r, &self.neg);
                self.send(&Packet::PubRec(r));
            }
            other => self.send(&other),
        }
        Ok(())
    }
}
