//! message.publish and message.acked: the writes a published message makes (as the
//! bindings say), what the store refuses before the message is routed, and what an
//! acknowledgement removes.

use super::publication::{Copied, Deferred, Publication};
use super::*;

/// The writes message.publish makes for one message.
struct Plan {
    put_retain: bool,
    delete_retain: bool,
    queue: bool,
    put_msg: bool,
}

impl Actions {
    /// A new msgid (clock, node and sequence: no I/O), for a message the broker builds: it
    /// travels with the message, and [`Actions::message_published`] and
    /// [`Actions::message_acked`] refer to it.
    pub fn next_msgid(&self) -> MsgId {
        self.ids.next_id()
    }

    /// True if the store limits the size of an item (DynamoDB: 400 KB), so that
    /// [`Actions::check_storable`] can refuse a message.
    pub fn has_item_limit(&self) -> bool {
        matches!(self.store, AnyStore::Dynamo(_))
    }

    /// The writes message.publish makes for a message, as the bindings say.
    fn plan(&self, topic: &str, qos: u8, retain: bool, payload_empty: bool) -> Plan {
        let empty_retained = retain && payload_empty;
        // A retained message reaches new subscribers through mqtt_retain (on_retain_lookup).
        // Queueing it too would replay it a second time, and replay it after it was replaced
        // or deleted: so only non-retained messages are queued.
        let queue = !empty_retained
            && qos > 0
            && !retain
            && self.binding(Action::OnMessagePublish, topic).is_some();
        Plan {
            put_retain: retain
                && !empty_retained
                && self.binding(Action::OnMessageRetain, topic).is_some(),
            delete_retain: empty_retained && self.binding(Action::OnRetainDelete, topic).is_some(),
            queue,
            put_msg: !empty_retained
                && (queue || self.binding(Action::OnMessageStore, topic).is_some()),
        }
    }

    /// Whether the store can take `msg` (before it is routed): on DynamoDB, a message whose
    /// item would pass 400 KB is refused with [`ActionsError::TooLarge`] (counted in
    /// `too_large`). Never reads or writes the store.
    pub fn check_storable(&self, msg: &PublishedMessage<'_>) -> Result<(), ActionsError> {
        if !self.has_item_limit() {
            return Ok(());
        }
        let plan = self.plan(msg.topic, msg.qos, msg.retain, msg.payload.is_empty());
        if !(plan.put_retain || plan.put_msg) {
            return Ok(());
        }
        // The largest msgid and time: the size is not underestimated.
        self.check_item_size(&MessageRecord {
            msgid: MsgId(u128::MAX),
            topic: msg.topic.to_owned(),
            sender: msg.sender.to_owned(),
            qos: msg.qos,
            retain: msg.retain,
            payload: msg.payload.clone(),
            arrived: u64::MAX,
            props: msg.props.clone().boxed(),
        })
    }

    /// message.publish, for a message with its msgid (see [`Actions::next_msgid`]): runs
    /// on_message_publish (QoS > 0: mqtt_msg + map), on_message_store (mqtt_msg),
    /// on_message_retain / on_retain_delete (retain flag; empty payload deletes). An empty
    /// retained message is never stored. Never waits. With `durable`, returns what resolves
    /// once the message's writes are stored (`None`: it has none).
    ///
    /// On DynamoDB, a message whose item would pass 400 KB is refused with
    /// [`ActionsError::TooLarge`] before anything is written (counted in `too_large`): the
    /// broker refuses the publish rather than acknowledging a message it would lose. A topic
    /// past `max_stored_per_topic` ids has its oldest evicted (counted in `evicted`).
    ///
    /// `awaiting_rel`: the packet id of a QoS 2 message the sender's session keeps until
    /// PUBREL (see [`Actions::keeps_awaiting_rel`]): added to its mqtt_client item with the
    /// message's writes, in the same durable group, so that its PUBREC goes only once both
    /// are stored.
    pub fn message_published(
        &self,
        msg: PublishedMessage<'_>,
        msgid: MsgId,
        durable: bool,
        awaiting_rel: Option<u16>,
    ) -> Result<Option<Durable>, ActionsError> {
        self.message_published_shared(Arc::new(Copied::new(&msg)), msgid, durable, awaiting_rel)
    }

    /// [`Actions::message_published`] for a message the caller shares: the delay line keeps a
    /// reference to it, and builds its record only if it is written.
    pub fn message_published_shared(
        &self,
        msg: Arc<dyn Publication>,
        msgid: MsgId,
        durable: bool,
        awaiting_rel: Option<u16>,
    ) -> Result<Option<Durable>, ActionsError> {
        let topic = msg.topic();
        let Plan {
            put_retain,
            delete_retain,
            queue,
            put_msg,
        } = self.plan(topic, msg.qos(), msg.retain(), msg.payload().is_empty());
        if (put_retain || put_msg) && self.has_item_limit() {
            self.check_item_size(&msg.record(msgid))?;
        }
        let mut ops = Vec::new();
        if put_retain {
            ops.push(WriteOp::PutRetain(msg.record(msgid)));
        } else if delete_retain {
            ops.push(WriteOp::DeleteRetain {
                topic: topic.to_owned(),
            });
        }
        if let Some(id) = awaiting_rel.filter(|_| self.keeps_awaiting_rel()) {
            ops.push(WriteOp::AwaitingRelAdd {
                clientid: msg.sender().to_owned(),
                packet_ids: vec![id],
            });
        }
        // The stored message's writes: a quick acknowledgement may cancel them (delay.rs).
        let stored = (put_msg || queue).then(|| Deferred {
            msg: msg.clone(),
            put_msg,
            map_add: queue,
        });
        // Held in the delay line (async with a window), or written now with the rest.
        let hold = !durable && self.delay.holds();
        if !hold && let Some(stored) = &stored {
            ops.extend(stored.ops(msgid));
        }
        let done = if durable {
            (!ops.is_empty())
                .then(|| self.writer.push_durable(ops))
                .transpose()?
        } else {
            for op in ops {
                self.submit(op)?;
            }
            None
        };
        if !hold {
            if queue {
                self.index_new(topic, msgid)?;
            }
            return Ok(done);
        }
        if let Some(stored) = stored {
            self.delay.defer(msgid, stored)?;
        }
        // Messages whose writes left the line are indexed here too, so that a broker that
        // only publishes keeps its index (and the list behind it) up to date.
        if self.delay.has_unindexed() {
            self.catch_up()?;
        }
        Ok(done)
    }

    /// message.acked (PUBACK / PUBCOMP from a subscriber) for a message with this msgid.
    /// on_message_acked_for_queue: put mqtt_acked, delete the message and its map entry.
    /// Without it but with on_message_fetch_for_pubsub configured, only the mqtt_acked cursor
    /// is written (the message stays for other subscribers).
    pub fn message_acked(
        &self,
        clientid: &str,
        topic: &str,
        msgid: MsgId,
    ) -> Result<(), ActionsError> {
        let queue = self
            .binding(Action::OnMessageAckedForQueue, topic)
            .is_some();
        if queue || self.binds(Action::OnMessageFetchForPubsub) {
            self.delay.ack(topic, clientid, msgid)?;
        }
        // Acknowledged while its writes wait: they are never made, and it was never indexed.
        if queue && !self.delay.cancel(msgid) {
            self.remove_stored(topic, vec![msgid])?;
        }
        Ok(())
    }
}
