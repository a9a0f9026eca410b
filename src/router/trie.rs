//! The subscription trie: one node per topic level; `+` and `#` are children like any other
//! level and are looked up beside the literal level while matching.

use std::collections::HashMap;
use std::sync::Arc;

use foldhash::fast::RandomState;
use std::sync::atomic::{AtomicUsize, Ordering};

use dynamq_codec::SubscriptionOptions;

use crate::message::ShareKey;
use crate::session::Session;

#[derive(Debug)]
pub(super) struct Entry {
    pub session: Arc<Session>,
    pub options: SubscriptionOptions,
    pub id: Option<u32>,
}

#[derive(Debug)]
struct SharedGroup {
    /// The group's name and filter; every delivery through the group shares it, so that it
    /// can find the group again if its member leaves (`Trie::pick_other`).
    key: Arc<ShareKey>,
    members: Vec<Entry>,
    /// Round-robin position.
    next: AtomicUsize,
}

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, Node, RandomState>,
    subs: Vec<Entry>,
    shared: Vec<SharedGroup>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.subs.is_empty() && self.shared.is_empty()
    }
}

/// Replaces the entry of the same session, or adds it; true if it replaced one.
fn upsert(entries: &mut Vec<Entry>, entry: Entry) -> bool {
    match entries
        .iter_mut()
        .find(|e| Arc::ptr_eq(&e.session, &entry.session))
    {
        Some(e) => {
            *e = entry;
            true
        }
        None => {
            entries.push(entry);
            false
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct Trie {
    root: Node,
    filters: usize,
    /// Shared groups in the trie; the walk for shared subscriptions is skipped at 0.
    shared_groups: usize,
}

impl Trie {
    /// The node of `filter`, created if missing. (Borrows only the root, so that the
    /// counters can be updated while the node is held.)
    fn node_mut<'a>(root: &'a mut Node, filter: &str) -> &'a mut Node {
        let mut node = root;
        for level in filter.split('/') {
            node = node.children.entry(Box::from(level)).or_default();
        }
        node
    }

    /// Inserts or replaces; true if the session was already subscribed to this filter.
    pub(super) fn insert(&mut self, filter: &str, entry: Entry) -> bool {
        let node = Trie::node_mut(&mut self.root, filter);
        let was_empty = node.subs.is_empty() && node.shared.is_empty();
        let existed = upsert(&mut node.subs, entry);
        if was_empty {
            self.filters += 1;
        }
        existed
    }

    pub(super) fn insert_shared(&mut self, filter: &str, group: &str, entry: Entry) -> bool {
        let node = Trie::node_mut(&mut self.root, filter);
        let was_empty = node.subs.is_empty() && node.shared.is_empty();
        let g = match node.shared.iter_mut().position(|g| &*g.key.group == group) {
            Some(i) => &mut node.shared[i],
            None => {
                self.shared_groups += 1;
                node.shared.push(SharedGroup {
                    key: Arc::new(ShareKey {
                        group: Box::from(group),
                        filter: Box::from(filter),
                    }),
                    members: Vec::new(),
                    next: AtomicUsize::new(0),
                });
                let last = node.shared.len() - 1;
                &mut node.shared[last]
            }
        };
        let existed = upsert(&mut g.members, entry);
        if was_empty {
            self.filters += 1;
        }
        existed
    }

    /// Removes `session` from the node at `filter` with `edit`, then prunes empty nodes.
    fn remove_with(&mut self, filter: &str, edit: impl FnOnce(&mut Node) -> bool) -> bool {
        fn walk<'a>(
            node: &mut Node,
            mut levels: impl Iterator<Item = &'a str>,
            edit: impl FnOnce(&mut Node) -> bool,
        ) -> (bool, bool) {
            match levels.next() {
                None => {
                    let had = !(node.subs.is_empty() && node.shared.is_empty());
                    let removed = edit(node);
                    let now_empty = node.subs.is_empty() && node.shared.is_empty();
                    (removed, had && now_empty)
                }
                Some(level) => {
                    let Some(child) = node.children.get_mut(level) else {
                        return (false, false);
                    };
                    let r = walk(child, levels, edit);
                    if child.is_empty() {
                        node.children.remove(level);
                    }
                    r
                }
            }
        }
        let (removed, emptied) = walk(&mut self.root, filter.split('/'), edit);
        if emptied {
            self.filters = self.filters.saturating_sub(1);
        }
        removed
    }

    pub(super) fn remove(&mut self, filter: &str, session: &Arc<Session>) -> bool {
        self.remove_with(filter, |node| {
            let before = node.subs.len();
            node.subs.retain(|e| !Arc::ptr_eq(&e.session, session));
            node.subs.len() != before
        })
    }

    pub(super) fn remove_shared(
        &mut self,
        filter: &str,
        group: &str,
        session: &Arc<Session>,
    ) -> bool {
        let mut groups_removed = 0;
        let removed = self.remove_with(filter, |node| {
            let Some(i) = node.shared.iter().position(|g| &*g.key.group == group) else {
                return false;
            };
            let g = &mut node.shared[i];
            let before = g.members.len();
            g.members.retain(|e| !Arc::ptr_eq(&e.session, session));
            let removed = g.members.len() != before;
            if g.members.is_empty() {
                node.shared.remove(i);
                groups_removed += 1;
            }
            removed
        });
        self.shared_groups -= groups_removed;
        removed
    }

    /// Pushes every non-shared subscription matching `topic` into `out`.
    pub(super) fn matches<'a>(&'a self, topic: &str, out: &mut Vec<&'a Entry>) {
        self.walk(topic, &mut |node| out.extend(node.subs.iter()));
    }

    /// Calls `f` with one member of every shared group matching `topic`, chosen round-robin
    /// among the online members (any member if none is online), and the group's key.
    pub(super) fn shared_matches(&self, topic: &str, mut f: impl FnMut(&Entry, &Arc<ShareKey>)) {
        if self.shared_groups == 0 {
            return;
        }
        self.walk(topic, &mut |node| {
            for g in &node.shared {
                let n = g.members.len();
                if n == 0 {
                    continue;
                }
                let start = g.next.fetch_add(1, Ordering::Relaxed);
                let pick = (0..n)
                    .map(|k| &g.members[(start + k) % n])
                    .find(|e| e.session.is_online())
                    .unwrap_or(&g.members[start % n]);
                f(pick, &g.key);
            }
        });
    }

    /// The group `key` names, if it has members.
    fn group(&self, key: &ShareKey) -> Option<&SharedGroup> {
        let mut node = &self.root;
        for level in key.filter.split('/') {
            node = node.children.get(level)?;
        }
        node.shared.iter().find(|g| g.key.group == key.group)
    }

    /// True if the group `key` names has an online member other than `leaver`.
    pub(super) fn has_other_online(&self, key: &ShareKey, leaver: &Arc<Session>) -> bool {
        self.group(key).is_some_and(|g| {
            g.members
                .iter()
                .any(|e| !Arc::ptr_eq(&e.session, leaver) && e.session.is_online())
        })
    }

    /// A member of the group `key` names other than `leaver`, to take over a delivery that
    /// `leaver` did not finish: round-robin among the online ones, any other one if none is
    /// online, `None` if `leaver` was the only member (or the group is gone).
    pub(super) fn pick_other(&self, key: &ShareKey, leaver: &Arc<Session>) -> Option<&Entry> {
        let g = self.group(key)?;
        let turn = g.next.fetch_add(1, Ordering::Relaxed);
        let others = || {
            g.members
                .iter()
                .filter(|e| !Arc::ptr_eq(&e.session, leaver))
        };
        // The turn counts among the candidates, so that each online member gets its share
        // however the offline ones lie between them.
        let online = others().filter(|e| e.session.is_online()).count();
        if online > 0 {
            return others()
                .filter(|e| e.session.is_online())
                .nth(turn % online);
        }
        let all = others().count();
        others().nth(turn % all.max(1))
    }

    /// Visits every node whose filter matches `topic`. Topics starting with `$` are not
    /// matched by a wildcard in the first level [MQTT-4.7.2-1]; `a/#` matches `a`
    /// [MQTT-4.7.1-2].
    fn walk<'a>(&'a self, topic: &str, visit: &mut impl FnMut(&'a Node)) {
        fn go<'a>(
            node: &'a Node,
            mut levels: std::str::Split<'_, char>,
            first: bool,
            visit: &mut impl FnMut(&'a Node),
        ) {
            let Some(level) = levels.next() else {
                visit(node);
                if let Some(hash) = node.children.get("#") {
                    visit(hash);
                }
                return;
            };
            if let Some(child) = node.children.get(level) {
                go(child, levels.clone(), false, visit);
            }
            if first && level.starts_with('$') {
                return;
            }
            if let Some(plus) = node.children.get("+") {
                go(plus, levels, false, visit);
            }
            if let Some(hash) = node.children.get("#") {
                visit(hash);
            }
        }
        go(&self.root, topic.split('/'), true, visit);
    }

    pub(super) fn filter_count(&self) -> usize {
        self.filters
    }
}

#[cfg(test)]
#[path = "trie_props.rs"]
mod props;
