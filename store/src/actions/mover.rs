//! The second half of a move to an overflow map item: removing the ids from the tutorial's
//! item once their add to the overflow item is durable.
//!
//! The writer orders the ops of one item, not of two: pushed together, the removal from
//! `mqtt_topic_msg_map[topic]` could apply before the add to `"<topic>#<n>"`, and a crash
//! between them would lose the ids. So the add is pushed with [`Writer::push_durable`] and
//! this task, in order, awaits each add and only then pushes the removal. A crash before the
//! removal leaves the ids in both items: harmless (readers deduplicate, and
//! `refresh_indexes` finishes the move at start).

use tokio::sync::{mpsc, oneshot};

use crate::msgid::MsgId;
use crate::op::WriteOp;
use crate::writer::{Durable, Writer};

enum Msg {
    /// Remove `ids` from the tutorial's item of `topic` once `durable` resolves.
    Remove {
        durable: Durable,
        topic: String,
        ids: Vec<MsgId>,
    },
    /// Answer once every earlier removal has been pushed to the writer.
    Flush(oneshot::Sender<()>),
}

/// Handle to the mover task; the task ends when the handle is dropped or closed.
#[derive(Debug)]
pub(super) struct Mover {
    tx: mpsc::UnboundedSender<Msg>,
    task: tokio::task::JoinHandle<()>,
}

impl Mover {
    /// Starts the task on the current runtime; it pushes its removals to `writer`.
    pub(super) fn spawn(writer: Writer) -> Mover {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(rx, writer));
        Mover { tx, task }
    }

    /// Removes `ids` from `topic`'s tutorial item once `durable` (their add to an overflow
    /// item) resolves. Never waits.
    pub(super) fn remove_after(&self, durable: Durable, topic: String, ids: Vec<MsgId>) {
        if self
            .tx
            .send(Msg::Remove {
                durable,
                topic,
                ids,
            })
            .is_err()
        {
            // Only after close: the ids stay in both items, which is safe.
            tracing::warn!("overflow mover stopped: ids left in the tutorial's map item");
        }
    }

    /// Resolves once every removal asked for before this call has been pushed to the writer
    /// (flush the writer after it to have them stored).
    pub(super) async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Msg::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// Pushes the pending removals and stops the task, releasing its writer handle.
    pub(super) async fn close(self) {
        let Mover { tx, task } = self;
        drop(tx);
        if let Err(e) = task.await {
            tracing::error!(error = %e, "overflow mover task failed");
        }
    }
}

async fn run(mut rx: mpsc::UnboundedReceiver<Msg>, writer: Writer) {
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Remove {
                durable,
                topic,
                ids,
            } => {
                if durable.await.is_err() {
                    tracing::warn!(
                        topic,
                        "writer stopped before an overflow add was stored: ids left in the tutorial's map item"
                    );
                    continue;
                }
                if writer
                    .push(WriteOp::MapRemove { topic, msgids: ids })
                    .is_err()
                {
                    tracing::warn!("writer stopped: ids left in the tutorial's map item");
                }
            }
            Msg::Flush(done) => {
                let _ = done.send(());
            }
        }
    }
}
