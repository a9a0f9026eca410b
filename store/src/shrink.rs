//! Giving back the table of a collection that a burst grew: a hash map or a deque keeps the
//! capacity of its largest moment, so a burst of 10,000 connecting clients would leave the
//! store's per-client and per-write tables holding hundreds of kilobytes for good.
//!
//! [`Shrink::shrink_after_burst`] halves the room of a collection holding less than a quarter
//! of it (down to twice its length), which keeps the work amortized: a shrunk collection has
//! room for twice its entries, so shrinking again takes as many removals as it holds.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hash};

/// Capacity below which nothing is given back (not worth the reallocation).
const KEEP: usize = 64;

pub(crate) trait Shrink {
    /// Shrinks to twice the length when less than a quarter of the capacity is used.
    fn shrink_after_burst(&mut self);
}

impl<K: Hash + Eq, V, S: BuildHasher> Shrink for HashMap<K, V, S> {
    fn shrink_after_burst(&mut self) {
        if self.capacity() > KEEP && self.len() < self.capacity() / 4 {
            self.shrink_to(self.len() * 2);
        }
    }
}

impl<K: Hash + Eq, S: BuildHasher> Shrink for HashSet<K, S> {
    fn shrink_after_burst(&mut self) {
        if self.capacity() > KEEP && self.len() < self.capacity() / 4 {
            self.shrink_to(self.len() * 2);
        }
    }
}

impl<T> Shrink for VecDeque<T> {
    fn shrink_after_burst(&mut self) {
        if self.capacity() > KEEP && self.len() < self.capacity() / 4 {
            self.shrink_to(self.len() * 2);
        }
    }
}

impl<T> Shrink for Vec<T> {
    fn shrink_after_burst(&mut self) {
        if self.capacity() > KEEP && self.len() < self.capacity() / 4 {
            self.shrink_to(self.len() * 2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_map_gives_back_its_table_after_a_burst() {
        let mut map: HashMap<String, u64> = HashMap::new();
        for i in 0..10_000u64 {
            map.insert(format!("c{i}"), i);
        }
        assert!(map.capacity() >= 10_000);
        for i in 0..9_990u64 {
            map.remove(&format!("c{i}"));
            map.shrink_after_burst();
        }
        assert_eq!(map.len(), 10);
        assert!(map.capacity() <= KEEP, "capacity {}", map.capacity());
    }

    #[test]
    fn a_deque_gives_back_its_buffer_and_keeps_what_it_holds() {
        let mut q: VecDeque<u64> = (0..10_000).collect();
        while q.len() > 5 {
            q.pop_front();
            q.shrink_after_burst();
        }
        assert_eq!(q, [9_995, 9_996, 9_997, 9_998, 9_999]);
        assert!(q.capacity() <= KEEP, "capacity {}", q.capacity());
    }

    #[test]
    fn a_full_collection_keeps_its_room() {
        let mut v: Vec<u64> = (0..1_000).collect();
        let cap = v.capacity();
        v.shrink_after_burst();
        assert_eq!(v.capacity(), cap);
    }
}
