//! The serde form of a journal record's payload: a [`WriteOp`] and the writer's sequence
//! number, as postcard encodes them.
//!
//! A private mirror of the public op and record types, so that the bytes on disk do not change
//! when those types do (a journal written before an upgrade is replayed after it). postcard
//! is not self-describing: the order of variants and fields is the format. New variants go
//! at the end of [`OpForm`]; a field never changes type or place.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::msgid::MsgId;
use crate::op::WriteOp;
use crate::record::{AckedRecord, ClientRecord, MessageProps, MessageRecord, SubRecord};

/// One journal record's payload.
#[derive(Serialize, Deserialize)]
struct RecordForm {
    /// The writer's sequence number of the op (monotonic across restarts: the writer
    /// continues after the journal's last one).
    seq: u64,
    op: OpForm,
}

#[derive(Serialize, Deserialize)]
enum OpForm {
    PutClient(ClientForm),
    ClientOffline {
        clientid: String,
        offline_at: u64,
        session_expires_at: Option<u64>,
    },
    PutSub(SubForm),
    DeleteSub {
        clientid: String,
        topic: String,
    },
    PutRetain(MsgForm),
    DeleteRetain {
        topic: String,
    },
    PutMsg(MsgForm),
    DeleteMsg {
        msgid: u128,
    },
    MapAdd {
        topic: String,
        msgids: Vec<u128>,
    },
    MapRemove {
        topic: String,
        msgids: Vec<u128>,
    },
    PutAcked {
        topic: String,
        clientid: String,
        msgid: u128,
    },
    DeleteAcked {
        topic: String,
        clientid: String,
    },
    /// A `PutClient` whose record has `awaiting_rel` ids (without, it is `PutClient`, as
    /// before the set existed).
    PutClientAwaitingRel {
        client: ClientForm,
        awaiting_rel: Vec<u16>,
    },
    AwaitingRelAdd {
        clientid: String,
        packet_ids: Vec<u16>,
    },
    AwaitingRelRemove {
        clientid: String,
        packet_ids: Vec<u16>,
    },
}

#[derive(Serialize, Deserialize)]
struct ClientForm {
    clientid: String,
    node: String,
    connect_state: u8,
    online_at: u64,
    offline_at: u64,
    session_expires_at: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct SubForm {
    clientid: String,
    topic: String,
    qos: u8,
}

#[derive(Serialize, Deserialize)]
struct MsgForm {
    msgid: u128,
    topic: String,
    sender: String,
    qos: u8,
    retain: bool,
    payload: Vec<u8>,
    arrived: u64,
    props: Option<PropsForm>,
}

#[derive(Serialize, Deserialize)]
struct PropsForm {
    payload_format: Option<u8>,
    content_type: Option<String>,
    response_topic: Option<String>,
    correlation_data: Option<Vec<u8>>,
    user_properties: Vec<(String, String)>,
    expires_at_ms: Option<u64>,
}

/// The postcard bytes of `(seq, op)`.
pub(super) fn encode(seq: u64, op: &WriteOp) -> Result<Vec<u8>, postcard::Error> {
    postcard::to_stdvec(&RecordForm {
        seq,
        op: OpForm::from(op),
    })
}

/// `(seq, op)` from a record's payload.
pub(super) fn decode(bytes: &[u8]) -> Result<(u64, WriteOp), postcard::Error> {
    let r: RecordForm = postcard::from_bytes(bytes)?;
    Ok((r.seq, r.op.into()))
}

fn ids(ids: &[MsgId]) -> Vec<u128> {
    ids.iter().map(|m| m.0).collect()
}

impl From<&MessageRecord> for MsgForm {
    fn from(r: &MessageRecord) -> MsgForm {
        MsgForm {
            msgid: r.msgid.0,
            topic: r.topic.clone(),
            sender: r.sender.clone(),
            qos: r.qos,
            retain: r.retain,
            payload: r.payload.to_vec(),
            arrived: r.arrived,
            props: r.props.as_deref().map(|p| PropsForm {
                payload_format: p.payload_format,
                content_type: p.content_type.clone(),
                response_topic: p.response_topic.clone(),
                correlation_data: p.correlation_data.as_ref().map(|d| d.to_vec()),
                user_properties: p.user_properties.clone(),
                expires_at_ms: p.expires_at_ms,
            }),
        }
    }
}

impl From<MsgForm> for MessageRecord {
    fn from(f: MsgForm) -> MessageRecord {
        MessageRecord {
            msgid: MsgId(f.msgid),
            topic: f.topic,
            sender: f.sender,
            qos: f.qos,
            retain: f.retain,
            payload: Bytes::from(f.payload),
            arrived: f.arrived,
            props: f.props.and_then(|p| {
                MessageProps {
                    payload_format: p.payload_format,
                    content_type: p.content_type,
                    response_topic: p.response_topic,
                    correlation_data: p.correlation_data.map(Bytes::from),
                    user_properties: p.user_properties,
                    expires_at_ms: p.expires_at_ms,
                }
                .boxed()
            }),
        }
    }
}

impl From<&WriteOp> for OpForm {
    fn from(op: &WriteOp) -> OpForm {
        match op {
            WriteOp::PutClient(r) => {
                let client = ClientForm {
                    clientid: r.clientid.clone(),
                    node: r.node.clone(),
                    connect_state: r.connect_state,
                    online_at: r.online_at,
                    offline_at: r.offline_at,
                    session_expires_at: r.session_expires_at,
                };
                if r.awaiting_rel.is_empty() {
                    OpForm::PutClient(client)
                } else {
                    OpForm::PutClientAwaitingRel {
                        client,
                        awaiting_rel: r.awaiting_rel.iter().copied().collect(),
                    }
                }
            }
            WriteOp::AwaitingRelAdd {
                clientid,
                packet_ids,
            } => OpForm::AwaitingRelAdd {
                clientid: clientid.clone(),
                packet_ids: packet_ids.clone(),
            },
            WriteOp::AwaitingRelRemove {
                clientid,
                packet_ids,
            } => OpForm::AwaitingRelRemove {
                clientid: clientid.clone(),
                packet_ids: packet_ids.clone(),
            },
            WriteOp::ClientOffline {
                clientid,
                offline_at,
                session_expires_at,
            } => OpForm::ClientOffline {
                clientid: clientid.clone(),
                offline_at: *offline_at,
                session_expires_at: *session_expires_at,
            },
            WriteOp::PutSub(r) => OpForm::PutSub(SubForm {
                clientid: r.clientid.clone(),
                topic: r.topic.clone(),
                qos: r.qos,
            }),
            WriteOp::DeleteSub { clientid, topic } => OpForm::DeleteSub {
                clientid: clientid.clone(),
                topic: topic.clone(),
            },
            WriteOp::PutRetain(r) => OpForm::PutRetain(r.into()),
            WriteOp::DeleteRetain { topic } => OpForm::DeleteRetain {
                topic: topic.clone(),
            },
            WriteOp::PutMsg(r) => OpForm::PutMsg(r.into()),
            WriteOp::DeleteMsg { msgid } => OpForm::DeleteMsg { msgid: msgid.0 },
            WriteOp::MapAdd { topic, msgids } => OpForm::MapAdd {
                topic: topic.clone(),
                msgids: ids(msgids),
            },
            WriteOp::MapRemove { topic, msgids } => OpForm::MapRemove {
                topic: topic.clone(),
                msgids: ids(msgids),
            },
            WriteOp::PutAcked(r) => OpForm::PutAcked {
                topic: r.topic.clone(),
                clientid: r.clientid.clone(),
                msgid: r.msgid.0,
            },
            WriteOp::DeleteAcked { topic, clientid } => OpForm::DeleteAcked {
                topic: topic.clone(),
                clientid: clientid.clone(),
            },
        }
    }
}

impl From<OpForm> for WriteOp {
    fn from(f: OpForm) -> WriteOp {
        let ids = |v: Vec<u128>| v.into_iter().map(MsgId).collect();
        let client = |c: ClientForm, awaiting_rel: Vec<u16>| {
            WriteOp::PutClient(ClientRecord {
                clientid: c.clientid,
                node: c.node,
                connect_state: c.connect_state,
                online_at: c.online_at,
                offline_at: c.offline_at,
                session_expires_at: c.session_expires_at,
                awaiting_rel: awaiting_rel.into_iter().collect(),
            })
        };
        match f {
            OpForm::PutClient(c) => client(c, Vec::new()),
            OpForm::PutClientAwaitingRel {
                client: c,
                awaiting_rel,
            } => client(c, awaiting_rel),
            OpForm::AwaitingRelAdd {
                clientid,
                packet_ids,
            } => WriteOp::AwaitingRelAdd {
                clientid,
                packet_ids,
            },
            OpForm::AwaitingRelRemove {
                clientid,
                packet_ids,
            } => WriteOp::AwaitingRelRemove {
                clientid,
                packet_ids,
            },
            OpForm::ClientOffline {
                clientid,
                offline_at,
                session_expires_at,
            } => WriteOp::ClientOffline {
                clientid,
                offline_at,
                session_expires_at,
            },
            OpForm::PutSub(s) => WriteOp::PutSub(SubRecord {
                clientid: s.clientid,
                topic: s.topic,
                qos: s.qos,
            }),
            OpForm::DeleteSub { clientid, topic } => WriteOp::DeleteSub { clientid, topic },
            OpForm::PutRetain(m) => WriteOp::PutRetain(m.into()),
            OpForm::DeleteRetain { topic } => WriteOp::DeleteRetain { topic },
            OpForm::PutMsg(m) => WriteOp::PutMsg(m.into()),
            OpForm::DeleteMsg { msgid } => WriteOp::DeleteMsg {
                msgid: MsgId(msgid),
            },
            OpForm::MapAdd { topic, msgids } => WriteOp::MapAdd {
                topic,
                msgids: ids(msgids),
            },
            OpForm::MapRemove { topic, msgids } => WriteOp::MapRemove {
                topic,
                msgids: ids(msgids),
            },
            OpForm::PutAcked {
                topic,
                clientid,
                msgid,
            } => WriteOp::PutAcked(AckedRecord {
                topic,
                clientid,
                msgid: MsgId(msgid),
            }),
            OpForm::DeleteAcked { topic, clientid } => WriteOp::DeleteAcked { topic, clientid },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_op_round_trips() {
        let msg = MessageRecord {
            msgid: MsgId(7 << 64 | 3),
            topic: "a/b".into(),
            sender: "s".into(),
            qos: 2,
            retain: true,
            payload: Bytes::from_static(&[0, 0xff, 1]),
            arrived: 9,
            props: MessageProps {
                content_type: Some("text/plain".into()),
                correlation_data: Some(Bytes::from_static(b"c")),
                user_properties: vec![("k".into(), "v".into())],
                expires_at_ms: Some(5),
                ..MessageProps::default()
            }
            .boxed(),
        };
        let ops = [
            WriteOp::PutClient(ClientRecord {
                clientid: "c".into(),
                node: "n".into(),
                connect_state: 1,
                online_at: 2,
                offline_at: 3,
                session_expires_at: Some(4),
                awaiting_rel: Default::default(),
            }),
            WriteOp::PutClient(ClientRecord {
                clientid: "c".into(),
                node: "n".into(),
                connect_state: 1,
                online_at: 2,
                offline_at: 0,
                session_expires_at: None,
                awaiting_rel: [1, 65535].into(),
            }),
            WriteOp::AwaitingRelAdd {
                clientid: "c".into(),
                packet_ids: vec![7, 8],
            },
            WriteOp::AwaitingRelRemove {
                clientid: "c".into(),
                packet_ids: vec![8],
            },
            WriteOp::ClientOffline {
                clientid: "c".into(),
                offline_at: 5,
                session_expires_at: None,
            },
            WriteOp::PutSub(SubRecord {
                clientid: "c".into(),
                topic: "f/#".into(),
                qos: 1,
            }),
            WriteOp::DeleteSub {
                clientid: "c".into(),
                topic: "f/#".into(),
            },
            WriteOp::PutRetain(msg.clone()),
            WriteOp::DeleteRetain { topic: "r".into() },
            WriteOp::PutMsg(MessageRecord {
                props: None,
                ..msg.clone()
            }),
            WriteOp::DeleteMsg { msgid: MsgId(1) },
            WriteOp::MapAdd {
                topic: "t".into(),
                msgids: vec![MsgId(1), MsgId(2)],
            },
            WriteOp::MapRemove {
                topic: "t".into(),
                msgids: vec![MsgId(2)],
            },
            WriteOp::PutAcked(AckedRecord {
                topic: "t".into(),
                clientid: "c".into(),
                msgid: MsgId(3),
            }),
            WriteOp::DeleteAcked {
                topic: "t".into(),
                clientid: "c".into(),
            },
        ];
        for (i, op) in ops.iter().enumerate() {
            let bytes = encode(i as u64, op).expect("encodes");
            assert_eq!(decode(&bytes).expect("decodes"), (i as u64, op.clone()));
        }
    }
}
