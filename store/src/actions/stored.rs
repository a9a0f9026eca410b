//! The stored-message index and its map items: loading it at start, adding a published
//! id (moving the oldest to overflow items, evicting past the budget), removing ids from
//! whichever item holds them, and the DynamoDB item-size check on publish. The layout of a
//! topic's items is in [`super::topic_ids`]; the deferred half of a move in [`super::mover`].

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;

use dynamq_codec::topic_map::TopicMap;

use super::topic_ids::{Moves, Slot, TopicIds, item_key, parse_item_key};
use super::{Actions, ActionsError};
use crate::msgid::MsgId;
use crate::op::WriteOp;
use crate::record::MessageRecord;
use crate::shrink::Shrink;
use crate::store::Store;

impl Actions {
    /// Reloads the stored-message index from the store (at start; and when other nodes
    /// write the same tables): every mqtt_topic_msg_map item, overflow items `"<topic>#<n>"`
    /// folded into their topic. Finishes what a crash interrupted: an id found in the
    /// tutorial's item and in an overflow item is removed from the tutorial's item, and a
    /// tutorial's item holding more than `map_cap_per_topic` ids has its oldest moved out.
    pub async fn refresh_indexes(&self) -> Result<(), ActionsError> {
        let maps = self.store.map_all().await?;
        // Overflow items first, so that an id in both keeps its overflow slot.
        let mut by_topic: BTreeMap<String, Vec<(Slot, Vec<MsgId>)>> = BTreeMap::new();
        for (key, ids) in maps {
            if ids.is_empty() {
                continue;
            }
            match parse_item_key(&key) {
                Some((topic, slot)) => by_topic
                    .entry(topic.to_owned())
                    .or_default()
                    .push((slot, ids)),
                None => tracing::warn!(key, "mqtt_topic_msg_map item with a foreign key ignored"),
            }
        }
        let mut index = TopicMap::default();
        let mut fixes = Vec::new();
        for (topic, mut items) in by_topic {
            items.sort_by_key(|(slot, _)| std::cmp::Reverse(*slot));
            let mut t = TopicIds::default();
            let mut twice = Vec::new();
            for (slot, ids) in items {
                for id in ids {
                    if !t.load(slot, id) && slot == 0 {
                        twice.push(id);
                    }
                }
            }
            let moves = t.rebalance(self.map_cap);
            if !twice.is_empty() || !moves.is_empty() {
                fixes.push((topic.clone(), twice, moves));
            }
            if !t.is_empty() {
                index.insert(topic, t);
            }
        }
        *self.stored.write() = index;
        for (topic, twice, moves) in fixes {
            if !twice.is_empty() {
                tracing::info!(
                    topic,
                    count = twice.len(),
                    "interrupted overflow moves finished"
                );
                self.submit(WriteOp::MapRemove {
                    topic: topic.clone(),
                    msgids: twice,
                })?;
            }
            self.move_to_overflow(&topic, moves)?;
        }
        Ok(())
    }

    /// Writes moves out of a topic's tutorial item: the adds to the overflow items now, the
    /// removal from the tutorial's item once those adds are durable (by the mover), so that
    /// a crash between them leaves an id in two items, never in none.
    pub(super) fn move_to_overflow(&self, topic: &str, moves: Moves) -> Result<(), ActionsError> {
        if moves.is_empty() {
            return Ok(());
        }
        // Moves take a topic's oldest ids: their adds to the tutorial's item must reach the
        // writer before the removes that follow the move.
        self.delay.drain_all()?;
        let ids = moves.ids();
        self.counters
            .moved_to_overflow
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        let adds = moves.to.into_iter().map(|(slot, msgids)| WriteOp::MapAdd {
            topic: item_key(topic, slot),
            msgids,
        });
        let durable = self.writer.push_durable(adds)?;
        self.mover.remove_after(durable, topic.to_owned(), ids);
        Ok(())
    }

    /// Refuses a message whose DynamoDB item would pass 400 KB (counted in `too_large`).
    pub(super) fn check_item_size(&self, record: &MessageRecord) -> Result<(), ActionsError> {
        let bytes = crate::dynamo::item::message_item_size(record);
        let limit = crate::dynamo::item::MAX_ITEM_BYTES;
        if bytes <= limit {
            return Ok(());
        }
        let before = self.counters.too_large.fetch_add(1, Ordering::Relaxed);
        // Rate-limited like evictions: a client retrying in a loop must not flood the log.
        if before.is_multiple_of(1_000) {
            tracing::warn!(
                topic = record.topic,
                sender = record.sender,
                bytes,
                limit,
                refused_total = before + 1,
                "message refused: its DynamoDB item would pass the item size limit"
            );
        }
        Err(ActionsError::TooLarge { bytes, limit })
    }

    /// Indexes a newly stored id of `topic`: moves the tutorial item's oldest ids to overflow
    /// items past `map_cap_per_topic`, and evicts the topic's oldest past
    /// `max_stored_per_topic`.
    pub(super) fn index_new(&self, topic: &str, msgid: MsgId) -> Result<(), ActionsError> {
        let (moves, evicted) = self.index_locked(&mut self.stored.write(), topic, msgid);
        self.after_index(topic, moves, evicted)
    }

    /// Indexes the messages whose writes left the delay line since the last call (see
    /// `delay.rs`): called before the index is read or changed, and on publish.
    pub(super) fn catch_up(&self) -> Result<(), ActionsError> {
        let mut work = Vec::new();
        {
            // Held while indexing: a caller that finds the list empty next sees them indexed.
            let mut pending = self.delay.unindexed();
            if pending.is_empty() {
                return Ok(());
            }
            let mut stored = self.stored.write();
            for (msg, id) in pending.drain(..) {
                let (moves, evicted) = self.index_locked(&mut stored, msg.topic(), id);
                if !moves.is_empty() || !evicted.is_empty() {
                    work.push((msg, moves, evicted));
                }
            }
            pending.shrink_after_burst();
        }
        for (msg, moves, evicted) in work {
            self.after_index(msg.topic(), moves, evicted)?;
        }
        Ok(())
    }

    /// Adds an id to the index (locked by the caller); returns the moves to overflow items
    /// and the evictions to write.
    fn index_locked(
        &self,
        stored: &mut TopicMap<TopicIds>,
        topic: &str,
        msgid: MsgId,
    ) -> (Moves, Vec<(Slot, MsgId)>) {
        let ids = stored.entry(topic);
        let moves = ids.insert(msgid, self.map_cap);
        let evicted = match self.max_stored {
            0 => Vec::new(),
            budget => ids.evict_over(budget),
        };
        (moves, evicted)
    }

    /// Writes what indexing an id decided: its moves, then its evictions (counted, logged).
    fn after_index(
        &self,
        topic: &str,
        moves: Moves,
        evicted: Vec<(Slot, MsgId)>,
    ) -> Result<(), ActionsError> {
        self.move_to_overflow(topic, moves)?;
        if evicted.is_empty() {
            return Ok(());
        }
        let n = evicted.len() as u64;
        let before = self.counters.evicted.fetch_add(n, Ordering::Relaxed);
        // Logged at the first eviction and then once per 10,000: under a steady overload
        // every publish evicts, and a line each would flood the log.
        if before == 0 || before / 10_000 != (before + n) / 10_000 {
            tracing::warn!(
                topic,
                budget = self.max_stored,
                evicted_total = before + n,
                "stored messages over the per-topic budget: oldest evicted"
            );
        }
        self.unmap(topic, evicted, true)
    }

    /// Removes ids from a topic (index, and whichever of its map items holds each) and
    /// deletes their messages.
    pub(super) fn remove_stored(&self, topic: &str, ids: Vec<MsgId>) -> Result<(), ActionsError> {
        self.remove_ids_of(topic, &ids, true)
    }

    /// Removes ids from a topic's index and map items, and their messages if
    /// `delete_messages`.
    pub(super) fn remove_ids_of(
        &self,
        topic: &str,
        ids: &[MsgId],
        delete_messages: bool,
    ) -> Result<(), ActionsError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.catch_up()?;
        let placed: Vec<(Slot, MsgId)> = {
            let mut stored = self.stored.write();
            let placed = match stored.get_mut(topic) {
                // An id the index does not know is looked for in the tutorial's item.
                Some(t) => ids
                    .iter()
                    .map(|id| (t.remove(id).unwrap_or(0), *id))
                    .collect(),
                None => ids.iter().map(|id| (0, *id)).collect(),
            };
            if stored.get(topic).is_some_and(TopicIds::is_empty) {
                stored.remove(topic);
            }
            placed
        };
        self.unmap(topic, placed, delete_messages)
    }

    /// Writes the removal of already unindexed ids from the map items that held them (one
    /// MapRemove per item), and the deletion of their messages if `delete_messages`.
    pub(super) fn unmap(
        &self,
        topic: &str,
        placed: Vec<(Slot, MsgId)>,
        delete_messages: bool,
    ) -> Result<(), ActionsError> {
        // The common case, one id acknowledged before its writes left the delay line.
        if let [(0, id)] = placed[..]
            && delete_messages
            && self.delay.cancel(id)
        {
            return Ok(());
        }
        let mut by_slot: BTreeMap<Slot, Vec<MsgId>> = BTreeMap::new();
        for (slot, id) in placed {
            // A message whose writes still wait in the delay line (always in the tutorial's
            // item: moves drain the line first) is taken out: nothing to delete.
            if delete_messages && slot == 0 && self.delay.cancel(id) {
                continue;
            }
            if delete_messages {
                self.submit(WriteOp::DeleteMsg { msgid: id })?;
            }
            by_slot.entry(slot).or_default().push(id);
        }
        for (slot, msgids) in by_slot {
            self.submit(WriteOp::MapRemove {
                topic: item_key(topic, slot),
                msgids,
            })?;
        }
        Ok(())
    }
}
