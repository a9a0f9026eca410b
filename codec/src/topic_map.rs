//! A map from topic names to values with wildcard lookup: the broker's retained messages
//! (topic -> message) and the store's stored-message index (topic -> ids) are both one.
//!
//! A sorted map is enough for the lookups they do: a filter's literal levels before its first
//! wildcard give a key prefix, so `a/b/#` scans only keys starting with `a/b`, and only `#` or
//! `+/...` scan everything.

use std::collections::BTreeMap;
use std::ops::Bound;

use crate::topic::matches;

#[derive(Debug)]
pub struct TopicMap<V> {
    map: BTreeMap<String, V>,
}

impl<V> Default for TopicMap<V> {
    fn default() -> Self {
        TopicMap {
            map: BTreeMap::new(),
        }
    }
}

/// The literal part of a filter before its first wildcard level (`a/b/+/c` -> `a/b/`,
/// `a/#` -> `a`, since `a/#` also matches `a`), or the whole filter if it has none.
fn literal_prefix(filter: &str) -> (&str, bool) {
    let mut end: usize = 0;
    for level in filter.split('/') {
        if level == "#" {
            // `a/#` matches `a` too: drop the separator before `#`.
            return (&filter[..end.saturating_sub(1)], true);
        }
        if level == "+" {
            return (&filter[..end], true);
        }
        end += level.len() + 1;
    }
    (filter, false)
}

impl<V> TopicMap<V> {
    pub fn get(&self, topic: &str) -> Option<&V> {
        self.map.get(topic)
    }

    pub fn get_mut(&mut self, topic: &str) -> Option<&mut V> {
        self.map.get_mut(topic)
    }

    pub fn insert(&mut self, topic: String, v: V) {
        self.map.insert(topic, v);
    }

    pub fn entry(&mut self, topic: &str) -> &mut V
    where
        V: Default,
    {
        self.map.entry(topic.to_owned()).or_default()
    }

    pub fn remove(&mut self, topic: &str) -> Option<V> {
        self.map.remove(topic)
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Keeps only the entries for which `f` is true.
    pub fn retain(&mut self, f: impl FnMut(&String, &mut V) -> bool) {
        self.map.retain(f);
    }

    /// Topics (with values) matched by a filter (a plain filter, not `$share/...`), in topic
    /// order. `$` topics are matched only by filters that start with the same literal level
    /// [MQTT-4.7.2-1].
    pub fn matching<'a>(&'a self, filter: &'a str) -> Vec<(&'a str, &'a V)> {
        let (prefix, wildcard) = literal_prefix(filter);
        if !wildcard {
            return self
                .map
                .get_key_value(filter)
                .map(|(k, v)| (k.as_str(), v))
                .into_iter()
                .collect();
        }
        self.map
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .filter(|(k, _)| matches(filter, k))
            .map(|(k, v)| (k.as_str(), v))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(topics: &[&str]) -> TopicMap<()> {
        let mut i = TopicMap::default();
        for t in topics {
            i.insert((*t).to_owned(), ());
        }
        i
    }

    fn hits(i: &TopicMap<()>, f: &str) -> Vec<String> {
        i.matching(f)
            .into_iter()
            .map(|(k, _)| k.to_owned())
            .collect()
    }

    #[test]
    fn wildcard_lookups() {
        let i = index(&["a", "a/b", "a/b/c", "a/c", "ab", "b/b", "$SYS/x", "/x"]);
        assert_eq!(hits(&i, "a/#"), ["a", "a/b", "a/b/c", "a/c"]);
        assert_eq!(hits(&i, "a/+"), ["a/b", "a/c"]);
        assert_eq!(hits(&i, "+/b"), ["a/b", "b/b"]);
        assert_eq!(
            hits(&i, "#"),
            ["/x", "a", "a/b", "a/b/c", "a/c", "ab", "b/b"]
        );
        assert_eq!(hits(&i, "$SYS/#"), ["$SYS/x"]);
        assert_eq!(hits(&i, "a/b"), ["a/b"]);
        assert_eq!(hits(&i, "+/x"), ["/x"]);
        assert!(hits(&i, "zz/#").is_empty());
    }
}
