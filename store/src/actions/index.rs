//! In-memory topic indexes with wildcard lookup: the retained messages (topic -> record) and
//! the stored-message map (topic -> ids). They are caches of mqtt_retain and
//! mqtt_topic_msg_map: loaded at start, kept current by this node's writes, refreshable.
//!
//! A sorted map is enough for the lookups we do: a filter's literal levels before its first
//! wildcard give a key prefix, so `a/b/#` scans only keys starting with `a/b`, and only `#` or
//! `+/...` scan everything.

use std::collections::BTreeMap;
use std::ops::Bound;

use dynamq_codec::topic::matches;

#[derive(Debug)]
pub(crate) struct TopicIndex<V> {
    map: BTreeMap<String, V>,
}

impl<V> Default for TopicIndex<V> {
    fn default() -> Self {
        TopicIndex {
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

impl<V> TopicIndex<V> {
    pub(crate) fn get(&self, topic: &str) -> Option<&V> {
        self.map.get(topic)
    }

    pub(crate) fn get_mut(&mut self, topic: &str) -> Option<&mut V> {
        self.map.get_mut(topic)
    }

    pub(crate) fn insert(&mut self, topic: String, v: V) {
        self.map.insert(topic, v);
    }

    pub(crate) fn entry(&mut self, topic: &str) -> &mut V
    where
        V: Default,
    {
        self.map.entry(topic.to_owned()).or_default()
    }

    pub(crate) fn remove(&mut self, topic: &str) -> Option<V> {
        self.map.remove(topic)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    /// Topics (with values) matched by a filter (a plain filter, not `$share/...`).
    pub(crate) fn matching<'a>(&'a self, filter: &'a str) -> Vec<(&'a str, &'a V)> {
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

    fn index(topics: &[&str]) -> TopicIndex<()> {
        let mut i = TopicIndex::default();
        for t in topics {
            i.insert((*t).to_owned(), ());
        }
        i
    }

    fn hits(i: &TopicIndex<()>, f: &str) -> Vec<String> {
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
