//! Replay of stored messages to a new subscription: on_message_fetch_for_queue (every id in
//! mqtt_topic_msg_map of the matching topics) and on_message_fetch_for_pubsub (only ids after
//! the client's mqtt_acked cursor of each topic).
//!
//! Topics come from the stored-message index (wildcards work; its keys are real topics, never
//! the `"<topic>#<n>"` overflow items); each topic's ids are read from the store, from the
//! tutorial's item and its overflow items (the index may lag other nodes), and merged with
//! the index's (the store may lag this node's writer); an id in two items counts once. Then, per hook: ids older than `time_range` are expired (removed
//! and their messages deleted), the newest `max_returned_count` kept, the messages read with
//! BatchGetItem and returned in msgid order, less those past their Message Expiry Interval
//! (deleted).

use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use futures_util::future::join_all;

use super::topic_ids::{Slot, TopicIds, item_key};
use super::{Actions, ActionsError};
use crate::binding::{Action, Binding};
use crate::msgid::{MsgId, now_micros};
use crate::record::MessageRecord;
use crate::store::Store;

/// Concurrent store reads per fetch.
const READ_CONCURRENCY: usize = 16;
/// An id younger than this whose message is missing may still be in the write pipeline:
/// flush and look again instead of calling it dangling.
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(60);

impl Actions {
    pub(super) async fn fetch_stored(
        &self,
        clientid: &str,
        filter: &str,
    ) -> Result<Vec<MessageRecord>, ActionsError> {
        let queue = self
            .binding(Action::OnMessageFetchForQueue, filter)
            .cloned();
        let pubsub = self
            .binding(Action::OnMessageFetchForPubsub, filter)
            .cloned();
        if queue.is_none() && pubsub.is_none() {
            return Ok(Vec::new());
        }
        // Messages whose writes wait in the delay line are stored too: written and indexed
        // now, so that the index lists them (their reads below find them after a flush).
        self.delay.drain_all()?;
        self.catch_up()?;
        let topics = self.topics_for(filter);
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let ids_by_topic = self.read_topic_ids(&topics).await?;
        let now = now_micros();
        let mut wanted: BTreeSet<MsgId> = BTreeSet::new();
        if let Some(spec) = &queue {
            let all: Vec<MsgId> = ids_by_topic.values().flatten().copied().collect();
            wanted.extend(self.select(spec, all, now, &ids_by_topic).await?);
        }
        if let Some(spec) = &pubsub {
            let cursors = self.read_cursors(clientid, &topics).await?;
            let after: Vec<MsgId> = ids_by_topic
                .iter()
                .flat_map(|(topic, ids)| {
                    let cursor = cursors.get(topic).copied().flatten();
                    ids.iter()
                        .copied()
                        .filter(move |id| cursor.is_none_or(|c| *id > c))
                })
                .collect();
            wanted.extend(self.select(spec, after, now, &ids_by_topic).await?);
        }
        if let Some(since) = self.replay_since.lock().get(clientid).copied() {
            wanted.retain(|id| id.timestamp_micros() >= since);
        }
        self.read_messages(wanted, &ids_by_topic, now).await
    }

    /// Stored topics matching the filter; a filter without wildcards is its own topic even if
    /// the index has not seen it (another node may have written it).
    fn topics_for(&self, filter: &str) -> Vec<String> {
        let mut topics: Vec<String> = self
            .stored
            .read()
            .matching(filter)
            .into_iter()
            .map(|(t, _)| t.to_owned())
            .collect();
        if !filter.contains(['+', '#']) && topics.is_empty() {
            topics.push(filter.to_owned());
        }
        topics
    }

    /// Every id of each topic: read from all its map items in the store (the tutorial's
    /// item and its overflow items), merged into the index (an id keeps the item the index
    /// has for it: the store may lag a move) and returned from the index.
    async fn read_topic_ids(
        &self,
        topics: &[String],
    ) -> Result<HashMap<String, BTreeSet<MsgId>>, ActionsError> {
        let mut out = HashMap::with_capacity(topics.len());
        for chunk in topics.chunks(READ_CONCURRENCY) {
            let reads = join_all(chunk.iter().map(|t| self.read_topic_items(t))).await;
            for (topic, items) in chunk.iter().zip(reads) {
                let items = items?;
                let mut index = self.stored.write();
                let ids = index.entry(topic);
                for (slot, found) in items {
                    for id in found {
                        ids.load(slot, id);
                    }
                }
                let all = ids.all();
                if all.is_empty() {
                    index.remove(topic);
                }
                out.insert(topic.clone(), all);
            }
        }
        Ok(out)
    }

    /// The ids of each of a topic's map items in the store: the tutorial's item, the
    /// overflow items the index knows, and any further ones (another node may have written
    /// them), probed while they exist, when the topic has overflow items or a full
    /// tutorial's item.
    async fn read_topic_items(&self, topic: &str) -> Result<Vec<(Slot, Vec<MsgId>)>, ActionsError> {
        let known = self.stored.read().get(topic).map_or(0, TopicIds::max_slot);
        let reads = join_all((0..=known).map(|slot| self.item_ids(topic, slot))).await;
        let mut items = Vec::with_capacity(reads.len());
        for (slot, ids) in (0..=known).zip(reads) {
            items.push((slot, ids?));
        }
        let main_full = items
            .first()
            .is_some_and(|(_, ids)| ids.len() >= self.map_cap);
        if known > 0 || main_full {
            let mut slot = known + 1;
            loop {
                let ids = self.item_ids(topic, slot).await?;
                if ids.is_empty() {
                    break;
                }
                items.push((slot, ids));
                slot += 1;
            }
        }
        Ok(items)
    }

    /// The ids of one map item of a topic (empty if it does not exist).
    async fn item_ids(&self, topic: &str, slot: Slot) -> Result<Vec<MsgId>, ActionsError> {
        Ok(self.store.map_msgids(&item_key(topic, slot)).await?)
    }

    async fn read_cursors(
        &self,
        clientid: &str,
        topics: &[String],
    ) -> Result<HashMap<String, Option<MsgId>>, ActionsError> {
        let mut out = HashMap::with_capacity(topics.len());
        for chunk in topics.chunks(READ_CONCURRENCY) {
            let reads = join_all(chunk.iter().map(|t| self.store.acked(t, clientid))).await;
            for (topic, cursor) in chunk.iter().zip(reads) {
                out.insert(topic.clone(), cursor?);
            }
        }
        Ok(out)
    }

    /// Applies a hook's `time_range` (expiring older ids) and `max_returned_count` (newest).
    async fn select(
        &self,
        spec: &Binding,
        mut ids: Vec<MsgId>,
        now: u64,
        ids_by_topic: &HashMap<String, BTreeSet<MsgId>>,
    ) -> Result<Vec<MsgId>, ActionsError> {
        ids.sort_unstable();
        ids.dedup();
        if let Some(range) = spec.time_range {
            let oldest = MsgId::min_at_micros(now.saturating_sub(range.as_micros() as u64));
            let split = ids.partition_point(|id| *id < oldest);
            let expired: Vec<MsgId> = ids.drain(..split).collect();
            if !expired.is_empty() {
                self.counters
                    .expired
                    .fetch_add(expired.len() as u64, std::sync::atomic::Ordering::Relaxed);
                self.remove_ids(&expired, ids_by_topic, true).await?;
            }
        }
        if let Some(max) = spec.max_returned_count
            && ids.len() > max
        {
            ids.drain(..ids.len() - max);
        }
        Ok(ids)
    }

    /// Removes ids from whichever topics hold them (index and map items), and their
    /// messages if `delete_messages`.
    async fn remove_ids(
        &self,
        ids: &[MsgId],
        ids_by_topic: &HashMap<String, BTreeSet<MsgId>>,
        delete_messages: bool,
    ) -> Result<(), ActionsError> {
        for (topic, held) in ids_by_topic {
            let gone: Vec<MsgId> = ids.iter().copied().filter(|id| held.contains(id)).collect();
            self.remove_ids_of(topic, &gone, delete_messages)?;
        }
        Ok(())
    }

    /// Reads the messages, in msgid order. Ids whose message is missing: if recent, the
    /// writer is flushed and they are read again; old ones are dangling and removed from the
    /// map.
    async fn read_messages(
        &self,
        wanted: BTreeSet<MsgId>,
        ids_by_topic: &HashMap<String, BTreeSet<MsgId>>,
        now: u64,
    ) -> Result<Vec<MessageRecord>, ActionsError> {
        if wanted.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<MsgId> = wanted.iter().copied().collect();
        let mut found = self.store.messages(&ids).await?;
        let missing = |found: &[MessageRecord]| -> Vec<MsgId> {
            let have: BTreeSet<MsgId> = found.iter().map(|m| m.msgid).collect();
            wanted
                .iter()
                .copied()
                .filter(|id| !have.contains(id))
                .collect()
        };
        let grace = MsgId::min_at_micros(now.saturating_sub(IN_FLIGHT_GRACE.as_micros() as u64));
        let mut lost = missing(&found);
        if lost.iter().any(|id| *id >= grace) {
            self.flush().await?;
            found.extend(self.store.messages(&lost).await?);
            lost = missing(&found);
        }
        let dangling: Vec<MsgId> = lost.into_iter().filter(|id| *id < grace).collect();
        if !dangling.is_empty() {
            self.counters
                .dangling
                .fetch_add(dangling.len() as u64, std::sync::atomic::Ordering::Relaxed);
            tracing::warn!(count = dangling.len(), "map ids without a message removed");
            self.remove_ids(&dangling, ids_by_topic, false).await?;
        }
        found.sort_by_key(|m| m.msgid);
        found.dedup_by_key(|m| m.msgid);
        // Past their Message Expiry Interval: never delivered [MQTT-3.3.2-5], and deleted
        // with their map entries since no later subscriber may have them either.
        let now_ms = crate::record::now_millis();
        let expired: Vec<MsgId> = found
            .iter()
            .filter(|m| m.is_expired(now_ms))
            .map(|m| m.msgid)
            .collect();
        if !expired.is_empty() {
            found.retain(|m| !m.is_expired(now_ms));
            self.counters
                .message_expired
                .fetch_add(expired.len() as u64, std::sync::atomic::Ordering::Relaxed);
            self.remove_ids(&expired, ids_by_topic, true).await?;
        }
        Ok(found)
    }
}
