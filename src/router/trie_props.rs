//! Property tests of the subscription trie: for random filters and topics, the trie matches
//! exactly the subscriptions that a plain matcher, written here from the specification's
//! rules, says match; after random removals too. The plain matcher compares a filter and a
//! topic level by level and knows nothing of tries, so the two fail independently.
//!
//! The rules [MQTT-4.7.1-1..3] [MQTT-4.7.2-1]: levels are separated by `/` and may be
//! empty; `+` matches exactly one level, an empty one included; `#` (only last) matches its
//! parent level and any number of levels below; a filter starting with a wildcard does not
//! match a topic starting with `$`.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use dynamq_codec::{QoS, SubscriptionOptions};
use proptest::prelude::*;

use super::{Entry, Trie};
use crate::message::ClientId;
use crate::session::Session;

/// Does `filter` match `topic`? From the specification's rules, one level at a time.
fn spec_matches(filter: &str, topic: &str) -> bool {
    let f: Vec<&str> = filter.split('/').collect();
    let t: Vec<&str> = topic.split('/').collect();
    // [MQTT-4.7.2-1]: `+` or `#` as the first level never matches a `$` topic.
    if t[0].starts_with('$') && (f[0] == "+" || f[0] == "#") {
        return false;
    }
    let mut i = 0;
    loop {
        match (f.get(i), t.get(i)) {
            // `#` matches what is left, nothing included (`a/#` matches `a`).
            (Some(&"#"), _) => return true,
            (Some(&"+"), Some(_)) => {}
            (Some(fl), Some(tl)) if fl == tl => {}
            (None, None) => return true,
            _ => return false,
        }
        i += 1;
    }
}

#[test]
fn spec_matcher_follows_the_spec_examples() {
    // The examples of section 4.7.1.
    assert!(spec_matches(
        "sport/tennis/player1/#",
        "sport/tennis/player1"
    ));
    assert!(spec_matches(
        "sport/tennis/player1/#",
        "sport/tennis/player1/ranking"
    ));
    assert!(spec_matches("sport/#", "sport"));
    assert!(spec_matches("#", "sport/tennis"));
    assert!(spec_matches("sport/tennis/+", "sport/tennis/player1"));
    assert!(!spec_matches(
        "sport/tennis/+",
        "sport/tennis/player1/ranking"
    ));
    assert!(!spec_matches("sport/+", "sport"));
    assert!(spec_matches("sport/+", "sport/"));
    assert!(spec_matches("+/+", "/finance"));
    assert!(spec_matches("/+", "/finance"));
    assert!(!spec_matches("+", "/finance"));
    // Section 4.7.2.
    assert!(!spec_matches("#", "$SYS/x"));
    assert!(!spec_matches("+/monitor/Clients", "$SYS/monitor/Clients"));
    assert!(spec_matches("$SYS/#", "$SYS/monitor/Clients"));
    assert!(spec_matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
}

/// Sessions the subscriptions are spread over.
const SESSIONS: usize = 4;

/// A valid topic filter over a small alphabet, so that random filters and topics often
/// match: `a`, `b`, empty levels, `+`, optionally a `$` first level and a final `#`.
fn filter() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "b", "", "+"]);
    (
        prop::collection::vec(level, 0..4),
        prop::bool::weighted(0.2),
        any::<bool>(),
    )
        .prop_map(|(mut levels, dollar, hash)| {
            if dollar && !levels.is_empty() {
                levels[0] = "$s";
            }
            if hash {
                levels.push("#");
            }
            let f = levels.join("/");
            // A filter is at least one character [MQTT-4.7.3-1].
            if f.is_empty() { "#".to_string() } else { f }
        })
}

/// A valid topic name: levels from the same alphabet, no wildcards, `$s` anywhere.
fn topic() -> impl Strategy<Value = String> {
    let level = prop::sample::select(vec!["a", "b", "", "$s"]);
    prop::collection::vec(level, 1..5).prop_map(|levels| {
        let t = levels.join("/");
        if t.is_empty() { "a".to_string() } else { t }
    })
}

fn sessions() -> Vec<Arc<Session>> {
    (0..SESSIONS)
        .map(|i| Arc::new(Session::new(ClientId::new(&format!("s{i}")))))
        .collect()
}

/// An entry tagged with `id`, so that a match can be traced to its subscription.
fn entry(session: &Arc<Session>, id: u32) -> Entry {
    Entry {
        session: session.clone(),
        options: SubscriptionOptions::qos(QoS::AtMostOnce),
        id: Some(id),
    }
}

/// The ids the trie's `matches` finds for `topic`, sorted.
fn trie_ids(trie: &Trie, topic: &str) -> Vec<u32> {
    let mut out = Vec::new();
    trie.matches(topic, &mut out);
    let mut ids: Vec<u32> = out.iter().filter_map(|e| e.id).collect();
    assert_eq!(ids.len(), out.len(), "every entry has an id");
    ids.sort_unstable();
    ids
}

/// The ids of the model's subscriptions whose filter matches `topic`, sorted.
fn spec_ids(model: &HashMap<(usize, String), u32>, topic: &str) -> Vec<u32> {
    let mut ids: Vec<u32> = model
        .iter()
        .filter(|((_, f), _)| spec_matches(f, topic))
        .map(|(_, id)| *id)
        .collect();
    ids.sort_unstable();
    ids
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Inserting, then removing a random part: `matches` agrees with the plain matcher for
    /// every topic, `insert` and `remove` say whether the subscription existed, and the
    /// filter count is the number of distinct filters subscribed.
    #[test]
    fn matches_agree_with_spec(
        subs in prop::collection::vec((0..SESSIONS, filter()), 0..24),
        removals in prop::collection::vec(any::<bool>(), 24),
        topics in prop::collection::vec(topic(), 1..16),
    ) {
        let sessions = sessions();
        let mut trie = Trie::default();
        // (session, filter) -> id of its latest insert: a second insert replaces the first.
        let mut model: HashMap<(usize, String), u32> = HashMap::new();
        for (id, (s, f)) in subs.iter().enumerate() {
            let id = id as u32;
            let existed = trie.insert(f, entry(&sessions[*s], id));
            prop_assert_eq!(existed, model.insert((*s, f.clone()), id).is_some());
        }
        let distinct = |m: &HashMap<(usize, String), u32>| {
            m.keys().map(|(_, f)| f.as_str()).collect::<HashSet<_>>().len()
        };
        prop_assert_eq!(trie.filter_count(), distinct(&model));
        for t in &topics {
            prop_assert_eq!(trie_ids(&trie, t), spec_ids(&model, t), "topic {:?}", t);
        }

        for ((s, f), remove) in subs.iter().zip(&removals) {
            if *remove {
                let had = model.remove(&(*s, f.clone())).is_some();
                prop_assert_eq!(trie.remove(f, &sessions[*s]), had, "remove {:?}", f);
            }
        }
        prop_assert_eq!(trie.filter_count(), distinct(&model));
        for t in &topics {
            prop_assert_eq!(trie_ids(&trie, t), spec_ids(&model, t), "after removals, topic {:?}", t);
        }
    }

    /// Shared subscriptions: `shared_matches` calls back once for every group whose filter
    /// matches the topic, with a current member of that group, before and after removals.
    #[test]
    fn shared_groups_match_once_per_group(
        subs in prop::collection::vec(
            (0..SESSIONS, prop::sample::select(vec!["g1", "g2"]), filter()),
            0..16,
        ),
        removals in prop::collection::vec(any::<bool>(), 16),
        topics in prop::collection::vec(topic(), 1..8),
    ) {
        let sessions = sessions();
        let mut trie = Trie::default();
        // (filter, group) -> session -> id of its latest insert.
        let mut model: HashMap<(String, &str), HashMap<usize, u32>> = HashMap::new();
        for (id, (s, g, f)) in subs.iter().enumerate() {
            let id = id as u32;
            let existed = trie.insert_shared(f, g, entry(&sessions[*s], id));
            let members = model.entry((f.clone(), *g)).or_default();
            prop_assert_eq!(existed, members.insert(*s, id).is_some());
        }
        check_shared(&trie, &model, &topics)?;
        for ((s, g, f), remove) in subs.iter().zip(&removals) {
            if *remove {
                let key = (f.clone(), *g);
                let had = model.get_mut(&key).is_some_and(|m| m.remove(s).is_some());
                if model.get(&key).is_some_and(|m| m.is_empty()) {
                    model.remove(&key);
                }
                prop_assert_eq!(trie.remove_shared(f, g, &sessions[*s]), had);
            }
        }
        check_shared(&trie, &model, &topics)?;
        // Only shared subscriptions were made: `matches` finds none of them.
        for t in &topics {
            prop_assert!(trie_ids(&trie, t).is_empty());
        }
    }
}

/// For each topic: one callback per matching group, each with one of its members.
fn check_shared(
    trie: &Trie,
    model: &HashMap<(String, &str), HashMap<usize, u32>>,
    topics: &[String],
) -> Result<(), TestCaseError> {
    let groups = model.values().filter(|m| !m.is_empty()).count();
    let filters: HashSet<&str> = model.keys().map(|(f, _)| f.as_str()).collect();
    prop_assert_eq!(trie.filter_count(), filters.len());
    prop_assert_eq!(trie.shared_groups, groups);
    // id -> the group it is a member of.
    let owner: HashMap<u32, &(String, &str)> = model
        .iter()
        .flat_map(|(k, m)| m.values().map(move |id| (*id, k)))
        .collect();
    for t in topics {
        let mut called = Vec::new();
        trie.shared_matches(t, |e, _| called.push(e.id));
        let mut got: Vec<&(String, &str)> = called
            .iter()
            .map(|id| {
                id.and_then(|id| owner.get(&id).copied())
                    .unwrap_or_else(|| panic!("called with {id:?}, no current member"))
            })
            .collect();
        got.sort();
        let mut want: Vec<&(String, &str)> =
            model.keys().filter(|(f, _)| spec_matches(f, t)).collect();
        want.sort();
        prop_assert_eq!(got, want, "topic {:?}", t);
    }
    Ok(())
}
