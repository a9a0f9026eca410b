//! Ops waiting for one key, already coalesced: last write wins, a `ClientOffline` folds into
//! a pending `PutClient`, map adds and removes of one topic merge into one set each (and so do
//! a client's `awaiting_rel` adds and removes, or they fold into its pending `PutClient`), and
//! a stored message deleted before its put was written is not written at all.

use std::collections::BTreeSet;

use tokio::time::Instant;

use super::durable::Tracker;
use crate::msgid::MsgId;
use crate::op::WriteOp;

/// The coalesced ops of one key.
pub(super) enum Pending {
    Item(WriteOp),
    /// Disjoint sets: an add cancels a pending remove of the same id and vice versa, so the
    /// two UpdateItems can go in either order.
    Map {
        topic: String,
        add: BTreeSet<MsgId>,
        remove: BTreeSet<MsgId>,
    },
    /// A client's item: `base` (a `ClientOffline`, or nothing), then changes to its
    /// `awaiting_rel` set, disjoint like the map's (the base touches other attributes, so
    /// the UpdateItems commute). A `PutClient` is never a base here: it replaces the whole
    /// item, so set changes after it fold into its record instead (`Item`).
    Client {
        clientid: String,
        base: Option<WriteOp>,
        add: BTreeSet<u16>,
        remove: BTreeSet<u16>,
    },
    /// Nothing to write: a `PutMsg` followed by the `DeleteMsg` of the same id (the message
    /// was acknowledged before it was stored). A msgid is unique and its put is the first
    /// write of its key, so the item was absent before and stays absent: skipping both
    /// writes gives the same end state (the common case of a subscriber that keeps up).
    Nothing,
}

impl Pending {
    pub(super) fn new(op: WriteOp) -> Pending {
        match op {
            WriteOp::MapAdd { topic, msgids } => Pending::Map {
                topic,
                add: msgids.into_iter().collect(),
                remove: BTreeSet::new(),
            },
            WriteOp::MapRemove { topic, msgids } => Pending::Map {
                topic,
                add: BTreeSet::new(),
                remove: msgids.into_iter().collect(),
            },
            op @ (WriteOp::AwaitingRelAdd { .. } | WriteOp::AwaitingRelRemove { .. }) => {
                let mut this = Pending::Client {
                    clientid: client_of(&op).to_owned(),
                    base: None,
                    add: BTreeSet::new(),
                    remove: BTreeSet::new(),
                };
                this.coalesce(op, true);
                this
            }
            op => Pending::Item(op),
        }
    }

    /// Folds a later op of the same key in. With `may_cancel` false (the entry holds ops read
    /// back from the journal, which may have been applied before a crash), a put followed by
    /// its delete, or a map add followed by its remove, is kept as the delete or remove:
    /// cancelling both would leave what the earlier run applied.
    pub(super) fn coalesce(&mut self, op: WriteOp, may_cancel: bool) {
        match (self, op) {
            (Pending::Map { add, remove, .. }, WriteOp::MapAdd { msgids, .. }) => {
                for id in msgids {
                    remove.remove(&id);
                    add.insert(id);
                }
            }
            (Pending::Map { add, remove, .. }, WriteOp::MapRemove { msgids, .. }) => {
                for id in msgids {
                    // An id added here and never written was not in the item before (a msgid
                    // is added once): removing it from `add` is the whole remove.
                    if !(add.remove(&id) && may_cancel) {
                        remove.insert(id);
                    }
                }
            }
            (Pending::Client { add, remove, .. }, WriteOp::AwaitingRelAdd { packet_ids, .. })
            | (
                Pending::Client {
                    add: remove,
                    remove: add,
                    ..
                },
                WriteOp::AwaitingRelRemove { packet_ids, .. },
            ) => {
                for id in packet_ids {
                    remove.remove(&id);
                    add.insert(id);
                }
            }
            (
                Pending::Item(WriteOp::PutClient(rec)),
                WriteOp::AwaitingRelAdd { packet_ids, .. },
            ) => {
                rec.awaiting_rel.extend(packet_ids);
            }
            (
                Pending::Item(WriteOp::PutClient(rec)),
                WriteOp::AwaitingRelRemove { packet_ids, .. },
            ) => {
                for id in packet_ids {
                    rec.awaiting_rel.remove(&id);
                }
            }
            (
                this @ Pending::Item(WriteOp::ClientOffline { .. }),
                op @ (WriteOp::AwaitingRelAdd { .. } | WriteOp::AwaitingRelRemove { .. }),
            ) => {
                let Pending::Item(base) = std::mem::replace(this, Pending::Nothing) else {
                    return;
                };
                *this = Pending::Client {
                    clientid: client_of(&op).to_owned(),
                    base: Some(base),
                    add: BTreeSet::new(),
                    remove: BTreeSet::new(),
                };
                this.coalesce(op, may_cancel);
            }
            (Pending::Client { base, .. }, op @ WriteOp::ClientOffline { .. }) => {
                // Absolute values of other attributes than the set: the last one wins.
                *base = Some(op);
            }
            (
                Pending::Item(WriteOp::PutClient(rec)),
                WriteOp::ClientOffline {
                    offline_at,
                    session_expires_at,
                    ..
                },
            ) => {
                rec.connect_state = 0;
                rec.offline_at = offline_at;
                rec.session_expires_at = session_expires_at;
            }
            (this @ Pending::Item(WriteOp::PutMsg(_)), WriteOp::DeleteMsg { .. }) if may_cancel => {
                *this = Pending::Nothing;
            }
            (this, op) => *this = Pending::new(op),
        }
    }

    /// About the memory it holds (see [`WriteOp::approx_bytes`]); a set entry costs about
    /// three ids (the B-tree's nodes).
    pub(super) fn approx_bytes(&self) -> u64 {
        match self {
            Pending::Item(op) => op.approx_bytes(),
            Pending::Nothing => std::mem::size_of::<WriteOp>() as u64,
            Pending::Client {
                clientid,
                base,
                add,
                remove,
            } => {
                clientid.len() as u64
                    + base.as_ref().map_or(0, WriteOp::approx_bytes)
                    + (std::mem::size_of::<WriteOp>() + 3 * 2 * (add.len() + remove.len())) as u64
            }
            Pending::Map { topic, add, remove } => {
                let id = std::mem::size_of::<MsgId>();
                (std::mem::size_of::<WriteOp>() + topic.len() + 3 * id * (add.len() + remove.len()))
                    as u64
            }
        }
    }

    pub(super) fn into_ops(self) -> Vec<WriteOp> {
        match self {
            Pending::Item(op) => vec![op],
            Pending::Nothing => Vec::new(),
            Pending::Client {
                clientid,
                base,
                add,
                remove,
            } => {
                let mut ops: Vec<WriteOp> = base.into_iter().collect();
                ops.extend(set_ops(
                    clientid,
                    add,
                    remove,
                    |clientid, packet_ids| WriteOp::AwaitingRelAdd {
                        clientid,
                        packet_ids,
                    },
                    |clientid, packet_ids| WriteOp::AwaitingRelRemove {
                        clientid,
                        packet_ids,
                    },
                ));
                ops
            }
            Pending::Map { topic, add, remove } => set_ops(
                topic,
                add,
                remove,
                |topic, msgids| WriteOp::MapAdd { topic, msgids },
                |topic, msgids| WriteOp::MapRemove { topic, msgids },
            ),
        }
    }
}

/// The client id of a client op (empty for others).
fn client_of(op: &WriteOp) -> &str {
    match op {
        WriteOp::PutClient(r) => &r.clientid,
        WriteOp::ClientOffline { clientid, .. }
        | WriteOp::AwaitingRelAdd { clientid, .. }
        | WriteOp::AwaitingRelRemove { clientid, .. } => clientid,
        _ => "",
    }
}

/// A key's entry in the batcher: its coalesced ops and what is owed to whom once they apply.
pub(super) struct PendingEntry {
    /// Sequence number of the oldest op folded in: the entry holds back flushes from there.
    pub(super) min_seq: u64,
    pub(super) value: Pending,
    /// What `value` is counted for in the memory budget.
    pub(super) bytes: u64,
    /// The `push_durable` calls with an op folded in (one clone per op).
    pub(super) trackers: Vec<Tracker>,
    /// When the entry's first op arrived: it is written once it is `WriterConfig::hold` old.
    pub(super) since: Instant,
    /// False once an op read back from the journal is folded in (see [`Pending::coalesce`]).
    pub(super) may_cancel: bool,
}

/// The ops of a set's pending adds and removes (each only if not empty), for the item `key`.
fn set_ops<T: Ord>(
    key: String,
    add: BTreeSet<T>,
    remove: BTreeSet<T>,
    add_op: impl FnOnce(String, Vec<T>) -> WriteOp,
    remove_op: impl FnOnce(String, Vec<T>) -> WriteOp,
) -> Vec<WriteOp> {
    let mut ops = Vec::with_capacity(2);
    if !add.is_empty() {
        ops.push(add_op(key.clone(), add.into_iter().collect()));
    }
    if !remove.is_empty() {
        ops.push(remove_op(key, remove.into_iter().collect()));
    }
    ops
}
