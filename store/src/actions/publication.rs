//! A published message as the store holds it while its writes wait: the broker hands its own
//! shared message ([`Publication`] behind an `Arc`), so a message whose writes wait in the
//! delay line costs the store a reference, not a copy, and its record is built only if it is
//! written (a subscriber that acknowledges it within the window makes it never built).

use std::fmt::Debug;
use std::sync::Arc;

use bytes::Bytes;

use super::PublishedMessage;
use crate::msgid::MsgId;
use crate::op::WriteOp;
use crate::record::MessageRecord;

/// What the store reads of a published message. The broker implements it for its own message
/// type; [`super::Actions::message_published`] wraps a borrowed [`PublishedMessage`] in a copy.
pub trait Publication: Send + Sync + Debug {
    fn topic(&self) -> &str;
    /// The publisher's client id.
    fn sender(&self) -> &str;
    fn qos(&self) -> u8;
    fn retain(&self) -> bool;
    fn payload(&self) -> &Bytes;
    /// The message's record (mqtt_msg / mqtt_retain), with this msgid and its arrival
    /// (the msgid's time), and its v5 properties.
    fn record(&self, msgid: MsgId) -> MessageRecord;
}

/// A copy of a [`PublishedMessage`], for callers that have no shared message of their own.
#[derive(Debug)]
pub(super) struct Copied {
    /// The record with a placeholder msgid: [`Publication::record`] sets it.
    template: MessageRecord,
}

impl Copied {
    pub(super) fn new(msg: &PublishedMessage<'_>) -> Copied {
        Copied {
            template: MessageRecord {
                msgid: MsgId(0),
                topic: msg.topic.to_owned(),
                sender: msg.sender.to_owned(),
                qos: msg.qos,
                retain: msg.retain,
                payload: msg.payload.clone(),
                arrived: 0,
                props: msg.props.clone().boxed(),
            },
        }
    }
}

impl Publication for Copied {
    fn topic(&self) -> &str {
        &self.template.topic
    }

    fn sender(&self) -> &str {
        &self.template.sender
    }

    fn qos(&self) -> u8 {
        self.template.qos
    }

    fn retain(&self) -> bool {
        self.template.retain
    }

    fn payload(&self) -> &Bytes {
        &self.template.payload
    }

    fn record(&self, msgid: MsgId) -> MessageRecord {
        MessageRecord {
            msgid,
            arrived: msgid.timestamp_secs(),
            ..self.template.clone()
        }
    }
}

/// A stored message's writes, not yet made: its mqtt_msg put (`put_msg`) and the add of its
/// id to its topic's map item (`map_add`).
#[derive(Debug)]
pub(super) struct Deferred {
    pub(super) msg: Arc<dyn Publication>,
    pub(super) put_msg: bool,
    pub(super) map_add: bool,
}

impl Deferred {
    /// The writes, in the order they are made.
    pub(super) fn ops(&self, msgid: MsgId) -> impl Iterator<Item = WriteOp> + '_ {
        let put = self
            .put_msg
            .then(|| WriteOp::PutMsg(self.msg.record(msgid)));
        let add = self.map_add.then(|| WriteOp::MapAdd {
            topic: self.msg.topic().to_owned(),
            msgids: vec![msgid],
        });
        put.into_iter().chain(add)
    }
}
