//! Write operations, the unit the writer batches, and the key each one addresses.
//!
//! Two ops with the same [`OpKey`] touch the same item, so the writer applies them in
//! submission order and may coalesce them (last write wins; a `ClientOffline` after a
//! `PutClient` folds into the put, and so do `awaiting_rel` adds and removes; map adds and removes of one topic merge into one set each).

use crate::msgid::MsgId;
use crate::record::{AckedRecord, ClientRecord, MessageProps, MessageRecord, SubRecord};

/// The six tables (without any prefix).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Table {
    Client,
    Sub,
    Retain,
    Msg,
    TopicMsgMap,
    Acked,
}

impl Table {
    pub const ALL: [Table; 6] = [
        Table::Client,
        Table::Sub,
        Table::Retain,
        Table::Msg,
        Table::TopicMsgMap,
        Table::Acked,
    ];

    /// The tutorial's table name.
    pub fn base_name(self) -> &'static str {
        match self {
            Table::Client => "mqtt_client",
            Table::Sub => "mqtt_sub",
            Table::Retain => "mqtt_retain",
            Table::Msg => "mqtt_msg",
            Table::TopicMsgMap => "mqtt_topic_msg_map",
            Table::Acked => "mqtt_acked",
        }
    }
}

/// A change to one item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    /// Put mqtt_client (on_client_connected).
    PutClient(ClientRecord),
    /// Update mqtt_client: `connect_state` = 0, `offline_at` and `session_expires_at`
    /// (on_client_disconnected; `None` removes it). Other attributes are left as they are.
    ClientOffline {
        clientid: String,
        offline_at: u64,
        session_expires_at: Option<u64>,
    },
    /// Add packet ids to mqtt_client[clientid].`awaiting_rel` (QoS 2 messages received and
    /// not yet released). Like `ClientOffline`, an UpdateItem that leaves the other
    /// attributes as they are.
    AwaitingRelAdd {
        clientid: String,
        packet_ids: Vec<u16>,
    },
    /// Remove packet ids from mqtt_client[clientid].`awaiting_rel` (released by PUBREL).
    /// Removing the last one drops the attribute.
    AwaitingRelRemove {
        clientid: String,
        packet_ids: Vec<u16>,
    },
    PutSub(SubRecord),
    DeleteSub {
        clientid: String,
        topic: String,
    },
    PutRetain(MessageRecord),
    DeleteRetain {
        topic: String,
    },
    PutMsg(MessageRecord),
    DeleteMsg {
        msgid: MsgId,
    },
    /// Add ids to `mqtt_topic_msg_map[topic]`.MsgId (creating the item if needed).
    MapAdd {
        topic: String,
        msgids: Vec<MsgId>,
    },
    /// Remove ids from `mqtt_topic_msg_map[topic]`.MsgId. Removing the last id leaves the item
    /// with its `topic` only (DynamoDB drops an emptied set attribute); readers treat that as
    /// an empty set.
    MapRemove {
        topic: String,
        msgids: Vec<MsgId>,
    },
    PutAcked(AckedRecord),
    DeleteAcked {
        topic: String,
        clientid: String,
    },
}

/// The item an op addresses: ops with equal keys are ordered and coalesced.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpKey {
    Client(String),
    Sub(String, String),
    Retain(String),
    Msg(MsgId),
    TopicMsgMap(String),
    Acked(String, String),
}

impl WriteOp {
    pub fn key(&self) -> OpKey {
        match self {
            WriteOp::PutClient(r) => OpKey::Client(r.clientid.clone()),
            WriteOp::ClientOffline { clientid, .. }
            | WriteOp::AwaitingRelAdd { clientid, .. }
            | WriteOp::AwaitingRelRemove { clientid, .. } => OpKey::Client(clientid.clone()),
            WriteOp::PutSub(r) => OpKey::Sub(r.clientid.clone(), r.topic.clone()),
            WriteOp::DeleteSub { clientid, topic } => OpKey::Sub(clientid.clone(), topic.clone()),
            WriteOp::PutRetain(r) => OpKey::Retain(r.topic.clone()),
            WriteOp::DeleteRetain { topic } => OpKey::Retain(topic.clone()),
            WriteOp::PutMsg(r) => OpKey::Msg(r.msgid),
            WriteOp::DeleteMsg { msgid } => OpKey::Msg(*msgid),
            WriteOp::MapAdd { topic, .. } | WriteOp::MapRemove { topic, .. } => {
                OpKey::TopicMsgMap(topic.clone())
            }
            WriteOp::PutAcked(r) => OpKey::Acked(r.topic.clone(), r.clientid.clone()),
            WriteOp::DeleteAcked { topic, clientid } => {
                OpKey::Acked(topic.clone(), clientid.clone())
            }
        }
    }

    pub fn table(&self) -> Table {
        match self {
            WriteOp::PutClient(_)
            | WriteOp::ClientOffline { .. }
            | WriteOp::AwaitingRelAdd { .. }
            | WriteOp::AwaitingRelRemove { .. } => Table::Client,
            WriteOp::PutSub(_) | WriteOp::DeleteSub { .. } => Table::Sub,
            WriteOp::PutRetain(_) | WriteOp::DeleteRetain { .. } => Table::Retain,
            WriteOp::PutMsg(_) | WriteOp::DeleteMsg { .. } => Table::Msg,
            WriteOp::MapAdd { .. } | WriteOp::MapRemove { .. } => Table::TopicMsgMap,
            WriteOp::PutAcked(_) | WriteOp::DeleteAcked { .. } => Table::Acked,
        }
    }

    /// About how many bytes of memory the op holds while it waits in the writer: its heap
    /// data (strings, payload, ids) plus the enum itself. The writer's memory budget
    /// (`WriterConfig::buffer_bytes`) counts this; it need not be exact, only proportional.
    pub fn approx_bytes(&self) -> u64 {
        let heap = match self {
            WriteOp::PutClient(r) => {
                r.clientid.len() + r.node.len() + r.awaiting_rel.len() * 3 * size_of::<u16>()
            }
            WriteOp::ClientOffline { clientid, .. } => clientid.len(),
            WriteOp::AwaitingRelAdd {
                clientid,
                packet_ids,
            }
            | WriteOp::AwaitingRelRemove {
                clientid,
                packet_ids,
            } => clientid.len() + packet_ids.len() * size_of::<u16>(),
            WriteOp::PutSub(r) => r.clientid.len() + r.topic.len(),
            WriteOp::DeleteSub { clientid, topic } => clientid.len() + topic.len(),
            WriteOp::PutRetain(r) | WriteOp::PutMsg(r) => message_heap_bytes(r),
            WriteOp::DeleteRetain { topic } => topic.len(),
            WriteOp::DeleteMsg { .. } => 0,
            WriteOp::MapAdd { topic, msgids } | WriteOp::MapRemove { topic, msgids } => {
                topic.len() + msgids.len() * std::mem::size_of::<MsgId>()
            }
            WriteOp::PutAcked(r) => r.topic.len() + r.clientid.len(),
            WriteOp::DeleteAcked { topic, clientid } => topic.len() + clientid.len(),
        };
        (std::mem::size_of::<WriteOp>() + heap) as u64
    }

    /// Whether DynamoDB writes this op with BatchWriteItem (a whole-item put or delete) rather
    /// than UpdateItem.
    pub fn is_item_write(&self) -> bool {
        !matches!(
            self,
            WriteOp::ClientOffline { .. }
                | WriteOp::AwaitingRelAdd { .. }
                | WriteOp::AwaitingRelRemove { .. }
                | WriteOp::MapAdd { .. }
                | WriteOp::MapRemove { .. }
        )
    }
}

/// The heap bytes of a stored message: strings, payload, and its v5 properties if any.
fn message_heap_bytes(r: &MessageRecord) -> usize {
    let props = r.props.as_deref().map_or(0, |p: &MessageProps| {
        std::mem::size_of::<MessageProps>()
            + p.content_type.as_ref().map_or(0, String::len)
            + p.response_topic.as_ref().map_or(0, String::len)
            + p.correlation_data.as_ref().map_or(0, |d| d.len())
            + p.user_properties
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2 * std::mem::size_of::<String>())
                .sum::<usize>()
    });
    r.topic.len() + r.sender.len() + r.payload.len() + props
}
