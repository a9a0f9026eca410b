//! The stored-message ids of one topic, spread over its mqtt_topic_msg_map items.
//!
//! One DynamoDB item holds at most 400 KB, so one topic's ids cannot all live in the
//! tutorial's item once a subscriber stays away long enough. The layout:
//!
//! - `mqtt_topic_msg_map[topic]` (slot 0, the tutorial's item) holds the **newest** ids, at
//!   most `map_cap_per_topic` (5,000 ids of ~47 bytes: ~240 KB). A user's
//!   `aws dynamodb scan` reads it as before.
//! - Older ids live in overflow items of the same table, keyed `"<topic>#<n>"` (slot n >= 1),
//!   each holding at most `map_cap_per_topic` ids. `#` cannot appear in a topic name
//!   [MQTT-4.7.1-1], so such a key is never a real topic; wildcard filters match the index,
//!   whose keys are real topics only, so they never see these items.
//! - When the tutorial's item is full, its oldest id moves to the lowest-numbered overflow
//!   item with room (slots emptied by acks are reused, so a topic never has more than
//!   `ceil(ids / cap) + 1` overflow items in use). The move adds the id to the overflow item
//!   first and removes it from the tutorial's item only once that add is durable: a crash in
//!   between leaves the id in two items (deduplicated on read), never in none.
//! - DynamoDB keeps an emptied item (with its `topic` only); readers treat it as empty.
//!
//! [`TopicIds`] is the in-memory index of one topic: every id and the slot that holds it.

use std::collections::{BTreeMap, BTreeSet};

use crate::msgid::MsgId;

/// Which item of a topic holds an id: 0 is the tutorial's item, n >= 1 is `"<topic>#<n>"`.
pub(super) type Slot = u32;

/// The mqtt_topic_msg_map key of a topic's slot.
pub(super) fn item_key(topic: &str, slot: Slot) -> String {
    if slot == 0 {
        topic.to_owned()
    } else {
        format!("{topic}#{slot}")
    }
}

/// The topic and slot of an mqtt_topic_msg_map key; `None` for a key that contains `#` but is
/// not `"<topic>#<n>"` with n >= 1 (no real topic contains `#`: not ours, left alone).
pub(super) fn parse_item_key(key: &str) -> Option<(&str, Slot)> {
    match key.split_once('#') {
        None => Some((key, 0)),
        Some((topic, n)) => match n.parse::<Slot>() {
            Ok(slot) if slot >= 1 && !topic.is_empty() && !n.starts_with('+') => {
                Some((topic, slot))
            }
            _ => None,
        },
    }
}

/// Ids moved from the tutorial's item to overflow items: add each group to its slot, then
/// (once durable) remove them all from slot 0.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Moves {
    pub(super) to: BTreeMap<Slot, Vec<MsgId>>,
}

impl Moves {
    pub(super) fn is_empty(&self) -> bool {
        self.to.is_empty()
    }

    /// Every moved id (what slot 0 loses).
    pub(super) fn ids(&self) -> Vec<MsgId> {
        self.to.values().flatten().copied().collect()
    }
}

/// One topic's ids and where they are stored.
#[derive(Debug, Default, Clone)]
pub(super) struct TopicIds {
    /// Slot 0: the tutorial's item, the newest ids.
    main: BTreeSet<MsgId>,
    /// Overflow slots (n >= 1) and their ids; an emptied slot is dropped here (the store may
    /// keep an empty item) and reused first.
    overflow: BTreeMap<Slot, BTreeSet<MsgId>>,
}

impl TopicIds {
    pub(super) fn len(&self) -> usize {
        self.main.len() + self.overflow.values().map(BTreeSet::len).sum::<usize>()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.main.is_empty() && self.overflow.values().all(BTreeSet::is_empty)
    }

    /// The slot holding `id`, if any.
    pub(super) fn slot_of(&self, id: &MsgId) -> Option<Slot> {
        if self.main.contains(id) {
            return Some(0);
        }
        self.overflow
            .iter()
            .find(|(_, ids)| ids.contains(id))
            .map(|(slot, _)| *slot)
    }

    pub(super) fn contains(&self, id: &MsgId) -> bool {
        self.slot_of(id).is_some()
    }

    /// The highest overflow slot in use (0: none).
    pub(super) fn max_slot(&self) -> Slot {
        self.overflow.keys().next_back().copied().unwrap_or(0)
    }

    /// The ids of slot 0 (the tutorial's item).
    #[cfg(test)]
    pub(super) fn main(&self) -> &BTreeSet<MsgId> {
        &self.main
    }

    /// Every id, in msgid order.
    pub(super) fn all(&self) -> BTreeSet<MsgId> {
        let mut all = self.main.clone();
        for ids in self.overflow.values() {
            all.extend(ids.iter().copied());
        }
        all
    }

    /// Records an id known to be in `slot` (loading from the store). An id already indexed
    /// keeps its slot; returns false then (the store holds it twice: an interrupted move).
    pub(super) fn load(&mut self, slot: Slot, id: MsgId) -> bool {
        if self.contains(&id) {
            return false;
        }
        if slot == 0 {
            self.main.insert(id);
        } else {
            self.overflow.entry(slot).or_default().insert(id);
        }
        true
    }

    /// Adds a new id to slot 0, then moves slot 0's oldest ids to overflow slots until it
    /// holds at most `cap`.
    pub(super) fn insert(&mut self, id: MsgId, cap: usize) -> Moves {
        if !self.contains(&id) {
            self.main.insert(id);
        }
        self.rebalance(cap)
    }

    /// Moves slot 0's oldest ids to the lowest overflow slots with room until slot 0 holds at
    /// most `cap` ids.
    pub(super) fn rebalance(&mut self, cap: usize) -> Moves {
        let cap = cap.max(1);
        let mut moves = Moves::default();
        while self.main.len() > cap {
            let Some(id) = self.main.pop_first() else {
                break;
            };
            let slot = self.slot_with_room(cap);
            self.overflow.entry(slot).or_default().insert(id);
            moves.to.entry(slot).or_default().push(id);
        }
        moves
    }

    /// The lowest overflow slot holding fewer than `cap` ids (a new one if all are full).
    fn slot_with_room(&self, cap: usize) -> Slot {
        let mut slot = 1;
        for (n, ids) in &self.overflow {
            if *n != slot {
                // A gap: slot `slot` is free (emptied or never used).
                return slot;
            }
            if ids.len() < cap {
                return slot;
            }
            slot += 1;
        }
        slot
    }

    /// Removes `id`; returns the slot that held it.
    pub(super) fn remove(&mut self, id: &MsgId) -> Option<Slot> {
        if self.main.remove(id) {
            return Some(0);
        }
        let slot = self
            .overflow
            .iter_mut()
            .find_map(|(slot, ids)| ids.remove(id).then_some(*slot))?;
        if self.overflow.get(&slot).is_some_and(BTreeSet::is_empty) {
            self.overflow.remove(&slot);
        }
        Some(slot)
    }

    /// Removes the oldest ids until at most `budget` remain; returns them with their slots.
    pub(super) fn evict_over(&mut self, budget: usize) -> Vec<(Slot, MsgId)> {
        let mut out = Vec::new();
        while self.len() > budget {
            let oldest = std::iter::once((0, self.main.first()))
                .chain(self.overflow.iter().map(|(s, ids)| (*s, ids.first())))
                .filter_map(|(s, id)| id.map(|id| (s, *id)))
                .min_by_key(|(_, id)| *id);
            let Some((slot, id)) = oldest else {
                break;
            };
            self.remove(&id);
            out.push((slot, id));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u128) -> MsgId {
        MsgId(n)
    }

    #[test]
    fn keys_round_trip_and_foreign_keys_are_refused() {
        assert_eq!(item_key("a/b", 0), "a/b");
        assert_eq!(item_key("a/b", 3), "a/b#3");
        assert_eq!(parse_item_key("a/b"), Some(("a/b", 0)));
        assert_eq!(parse_item_key("a/b#3"), Some(("a/b", 3)));
        for bad in ["a/#", "a/b#0", "a/b#x", "#1", "a#+1", "a#1#2"] {
            assert_eq!(parse_item_key(bad), None, "{bad}");
        }
    }

    #[test]
    fn newest_stay_in_main_and_older_fill_overflow_slots() {
        let mut t = TopicIds::default();
        let mut moved = Vec::new();
        for n in 1..=10 {
            let m = t.insert(id(n), 3);
            moved.extend(
                m.to.into_iter()
                    .flat_map(|(s, ids)| ids.into_iter().map(move |i| (s, i))),
            );
        }
        assert_eq!(
            t.main().iter().copied().collect::<Vec<_>>(),
            [id(8), id(9), id(10)]
        );
        assert_eq!(
            moved,
            [
                (1, id(1)),
                (1, id(2)),
                (1, id(3)),
                (2, id(4)),
                (2, id(5)),
                (2, id(6)),
                (3, id(7))
            ]
        );
        assert_eq!(t.len(), 10);
        // An emptied slot is reused first.
        for n in 1..=3 {
            assert_eq!(t.remove(&id(n)), Some(1));
        }
        assert_eq!(t.max_slot(), 3);
        assert_eq!(t.insert(id(11), 3).to, BTreeMap::from([(1, vec![id(8)])]));
    }

    #[test]
    fn eviction_takes_the_oldest_wherever_it_is() {
        let mut t = TopicIds::default();
        for n in 1..=7 {
            t.insert(id(n), 2);
        }
        assert_eq!(t.evict_over(4), [(1, id(1)), (1, id(2)), (2, id(3))]);
        assert_eq!(
            t.all().into_iter().collect::<Vec<_>>(),
            [id(4), id(5), id(6), id(7)]
        );
    }

    #[test]
    fn an_id_in_two_items_is_indexed_once() {
        let mut t = TopicIds::default();
        assert!(t.load(1, id(1)));
        assert!(!t.load(0, id(1)));
        assert_eq!(t.slot_of(&id(1)), Some(1));
        assert_eq!(t.len(), 1);
    }
}
