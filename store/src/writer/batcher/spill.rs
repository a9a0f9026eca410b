//! The writer task's journal side: ops spilled to the journal when memory is full, the
//! journal thread's replies (synced groups, records read back, truncation), and the return
//! to memory once every record is applied (see the parent modules' docs for why it is safe).

use std::sync::atomic::Ordering;

use tracing::{error, info};

use super::*;

impl<S: Store> Batcher<S> {
    /// Adds an op to the journal group being built, or drops it if the journal is full.
    pub(super) fn spill(&mut self, seq: u64, op: WriteOp, bytes: u64, tracker: Option<Tracker>) {
        let Some(j) = self.journal.as_mut() else {
            self.insert_pending(seq, op, bytes, tracker.into_iter().collect(), false);
            return;
        };
        let c = &self.counters;
        let record = match journal::encode_record(seq, &op) {
            Ok(r) if j.reserved + r.len() as u64 <= j.max_bytes => r,
            Ok(_) => {
                c.buffered_bytes.fetch_sub(bytes, Ordering::Relaxed);
                c.dropped_journal_full.fetch_add(1, Ordering::Relaxed);
                c.journal_full_log.dropped(&op);
                if let Some(t) = tracker {
                    t.not_stored(NotStored::Dropped);
                }
                return;
            }
            Err(e) => {
                error!(error = %e, op = ?op.key(), "store journal: op cannot be encoded, dropped");
                c.buffered_bytes.fetch_sub(bytes, Ordering::Relaxed);
                c.dropped_journal_error.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = tracker {
                    t.not_stored(NotStored::Dropped);
                }
                return;
            }
        };
        j.reserved += record.len() as u64;
        j.buf.extend_from_slice(&record);
        j.buf_records += 1;
        j.buf_mem += bytes;
        j.floor.get_or_insert(seq);
        j.last_seq = Some(seq);
        if let Some(t) = tracker {
            j.tracked.push_back((seq, t));
        }
        c.spilled.fetch_add(1, Ordering::Relaxed);
    }

    /// Sends the group being built, reads records back when memory has room, and moves
    /// between the modes.
    pub(super) fn advance_journal(&mut self) {
        let budget = self.config.buffer_bytes;
        let mem_bytes = self.mem_bytes;
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        if !j.opened {
            return;
        }
        if j.appending.is_none() && j.buf_records > 0 {
            let bytes = std::mem::take(&mut j.buf);
            let file_bytes = bytes.len() as u64;
            let last = j.last_seq.unwrap_or(0);
            j.appending = Some((j.buf_records, j.buf_mem, last, file_bytes));
            j.buf_records = 0;
            j.buf_mem = 0;
            if j.tx.send(Cmd::Append(bytes)).is_err() {
                self.journal_gone();
                return;
            }
        }
        if self.mode == Mode::Spill && !j.reading && j.unread > 0 && mem_bytes < budget / 2 {
            j.reading = true;
            if j.tx.send(Cmd::Read((budget / 4).max(MIN_READ))).is_err() {
                self.journal_gone();
                return;
            }
        }
        if self.mode == Mode::Spill && j.is_drained() {
            self.mode = Mode::Draining;
        }
        if self.mode == Mode::Draining && !j.truncating && j.retry_truncate_at.is_none() {
            let applied = match (self.outstanding.first(), j.last_seq) {
                (Some(first), Some(last)) => *first > last,
                _ => true,
            };
            if applied {
                j.truncating = true;
                if j.tx.send(Cmd::Truncate).is_err() {
                    self.journal_gone();
                }
            }
        }
    }

    pub(super) fn on_reply(&mut self, reply: Reply) {
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        let c = self.counters.clone();
        match reply {
            Reply::Opened(Ok(r)) => {
                j.opened = true;
                if r.records > 0 {
                    info!(
                        records = r.records,
                        bytes = r.bytes,
                        "store journal found at start: replaying it before new writes"
                    );
                    self.mode = Mode::Spill;
                    j.unread = r.records;
                    j.startup_left = r.records;
                    j.reserved = r.bytes;
                    j.floor = Some(0);
                    j.synced_seq = r.last_seq;
                    j.last_seq = r.last_seq;
                    self.next_seq = r.last_seq.map_or(0, |s| s + 1);
                } else if r.bytes > 0 {
                    // Only a quarantined tail was there: the file is empty now.
                    j.reserved = r.bytes;
                }
                self.recovery = r;
            }
            Reply::Opened(Err(e)) => {
                error!(error = %e, "store journal cannot be opened: running without a journal");
                self.journal = None;
            }
            Reply::Appended(result) => {
                let Some((records, mem, last, file_bytes)) = j.appending.take() else {
                    return;
                };
                c.buffered_bytes.fetch_sub(mem, Ordering::Relaxed);
                match result {
                    Ok(()) => {
                        j.unread += records;
                        j.synced_seq = Some(last);
                    }
                    Err(e) => {
                        error!(error = %e, records, "store journal: append failed, ops dropped");
                        c.dropped_journal_error
                            .fetch_add(records, Ordering::Relaxed);
                        j.reserved = j.reserved.saturating_sub(file_bytes);
                        let after = j.synced_seq;
                        j.tracked.retain(|(seq, t)| {
                            let lost = after.is_none_or(|a| *seq > a) && *seq <= last;
                            if lost {
                                t.not_stored(NotStored::Dropped);
                            }
                            !lost
                        });
                    }
                }
            }
            Reply::Read(batch) => self.on_read(batch),
            Reply::Truncated(Ok(())) => {
                j.truncating = false;
                j.reserved = j.buf.len() as u64;
                j.floor = None;
                j.last_seq = None;
                if j.startup_left == 0 && self.recovery.records > 0 && !self.startup_done {
                    info!(
                        records = self.recovery.records,
                        "store journal found at start: replayed and applied"
                    );
                    self.startup_done = true;
                }
                self.mode = Mode::Memory;
                self.held_bytes = 0;
                for h in std::mem::take(&mut self.held) {
                    self.insert_pending(
                        h.seq,
                        h.op,
                        h.bytes,
                        h.tracker.into_iter().collect(),
                        false,
                    );
                }
            }
            Reply::Truncated(Err(e)) => {
                error!(error = %e, "store journal cannot be cut: retrying in 1 s");
                j.truncating = false;
                j.retry_truncate_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }

    pub(super) fn on_read(&mut self, batch: ReadBatch) {
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        j.reading = false;
        let c = self.counters.clone();
        let mut ops = Vec::with_capacity(batch.ops.len());
        for (seq, op) in batch.ops {
            j.unread = j.unread.saturating_sub(1);
            j.startup_left = j.startup_left.saturating_sub(1);
            let mut trackers = Vec::new();
            while let Some((s, _)) = j.tracked.front() {
                if *s > seq {
                    break;
                }
                if let Some((s, t)) = j.tracked.pop_front() {
                    if s == seq {
                        trackers.push(t);
                    } else {
                        t.not_stored(NotStored::Dropped);
                    }
                }
            }
            j.floor = Some(seq + 1);
            ops.push((seq, op, trackers));
        }
        if let Some(offset) = batch.corrupt_at {
            let lost = j.unread;
            error!(
                offset,
                lost,
                "store journal: corrupt record while replaying; the records from there on are lost (quarantined)"
            );
            c.dropped_journal_error.fetch_add(lost, Ordering::Relaxed);
            j.unread = 0;
            j.startup_left = 0;
            let upto = j.synced_seq;
            j.tracked.retain(|(seq, t)| {
                let lost = upto.is_some_and(|u| *seq <= u);
                if lost {
                    t.not_stored(NotStored::Dropped);
                }
                !lost
            });
            let in_flight = j.appending.map_or(0, |a| a.3);
            j.reserved = offset + in_flight + j.buf.len() as u64;
        }
        if j.is_drained() {
            j.floor = None;
        }
        c.replayed.fetch_add(ops.len() as u64, Ordering::Relaxed);
        for (seq, op, trackers) in ops {
            let bytes = op.approx_bytes();
            c.buffered_bytes.fetch_add(bytes, Ordering::Relaxed);
            self.insert_pending(seq, op, bytes, trackers, true);
        }
    }

    /// The journal thread stopped (it panicked): records still in the file are replayed at
    /// the next start; ops waiting for it here are lost.
    pub(super) fn journal_gone(&mut self) {
        let Some(j) = self.journal.take() else {
            return;
        };
        let lost = j.buf_records + j.appending.map_or(0, |a| a.0);
        error!(
            lost,
            unread = j.unread,
            "store journal thread stopped: running without a journal"
        );
        let c = &self.counters;
        c.dropped_journal_error.fetch_add(lost, Ordering::Relaxed);
        c.buffered_bytes.fetch_sub(
            j.buf_mem + j.appending.map_or(0, |a| a.1),
            Ordering::Relaxed,
        );
        for (_, t) in j.tracked {
            t.not_stored(NotStored::Dropped);
        }
        self.mode = Mode::Memory;
        self.held_bytes = 0;
        for h in std::mem::take(&mut self.held) {
            self.insert_pending(h.seq, h.op, h.bytes, h.tracker.into_iter().collect(), false);
        }
    }
}

/// The journal thread's next reply (`None`: it stopped).
pub(super) async fn recv_reply(journal: &mut Option<JournalState>) -> Option<Reply> {
    match journal {
        Some(j) => j.rx.recv().await,
        None => std::future::pending().await,
    }
}
