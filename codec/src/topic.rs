//! Topic names and topic filters (spec 4.7, shared subscriptions 4.8.2): validation and
//! matching, for the broker.
//!
//! The decoder checks only what it must to parse a packet (a PUBLISH topic name has no
//! wildcards); topic *filters* are left to the broker, which in v5 answers a bad filter with
//! SUBACK 0x8F for that filter alone rather than closing the connection.

/// The prefix of a shared subscription's topic filter.
pub const SHARE_PREFIX: &str = "$share/";

const MAX_LEN: usize = u16::MAX as usize;

/// A valid topic name: at least one character [MQTT-4.7.3-1], no wildcard characters
/// [MQTT-3.3.2-2], no U+0000, at most 65,535 bytes [MQTT-4.7.3-3].
pub fn valid_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_LEN
        && !topic.bytes().any(|b| matches!(b, b'+' | b'#' | 0))
}

/// A valid topic filter: at least one character [MQTT-4.7.3-1], at most 65,535 bytes, no
/// U+0000, `#` only as the whole last level [MQTT-4.7.1-2] (v5 [MQTT-4.7.1-1]) and `+` only
/// as a whole level [MQTT-4.7.1-3] (v5 [MQTT-4.7.1-2]). A filter starting with `$share/` must also be a valid
/// shared subscription (see [`parse_shared`]).
pub fn valid_filter(filter: &str) -> bool {
    if filter.starts_with(SHARE_PREFIX) {
        return parse_shared(filter).is_some();
    }
    valid_plain_filter(filter)
}

fn valid_plain_filter(filter: &str) -> bool {
    if filter.is_empty() || filter.len() > MAX_LEN || filter.contains('\0') {
        return false;
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let is_last = levels.peek().is_none();
        if level.contains('#') && (level != "#" || !is_last) {
            return false;
        }
        if level.contains('+') && level != "+" {
            return false;
        }
    }
    true
}

/// True if the filter starts with `$share/`, i.e. the client means a shared subscription
/// (valid or not).
pub fn is_shared(filter: &str) -> bool {
    filter.starts_with(SHARE_PREFIX)
}

/// Splits a shared subscription `$share/{ShareName}/{filter}` into the share name and the
/// topic filter. `None` unless the share name is non-empty [MQTT-4.8.2-1], has no `/`, `+`
/// or `#`, and is followed by `/` and a valid topic filter [MQTT-4.8.2-2].
pub fn parse_shared(filter: &str) -> Option<(&str, &str)> {
    let rest = filter.strip_prefix(SHARE_PREFIX)?;
    let (group, real) = rest.split_once('/')?;
    if group.is_empty() || group.contains(['+', '#']) || !valid_plain_filter(real) {
        return None;
    }
    Some((group, real))
}

/// True if `topic` (a topic name) matches `filter` (a valid, non-shared topic filter).
///
/// `+` matches exactly one level (possibly empty), `#` the parent level and any number of
/// child levels (`sport/#` matches `sport`), and a topic starting with `$` is not matched by
/// a filter starting with a wildcard [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
        return false;
    }
    // The common catch-all (the tutorial's hooks all use it), without splitting the topic.
    if filter == "#" {
        return true;
    }
    let mut filter_levels = filter.split('/');
    let mut topic_levels = topic.split('/');
    loop {
        match (filter_levels.next(), topic_levels.next()) {
            (Some("#"), _) => return true,
            (Some("+"), Some(_)) => {}
            (Some(f), Some(t)) if f == t => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// True if every topic name that `inner` matches is also matched by `outer` (both valid,
/// non-shared topic filters): `a/#` covers `a/+` and `a`, `a/+` does not cover `a/#`. An
/// authorization rule given as a filter allows a subscription only if it covers it, so that
/// a subscription cannot reach topics the rule does not name.
///
/// A topic starting with `$` is not matched by a filter starting with a wildcard
/// [MQTT-4.7.2-1], so `#` does not cover `$SYS/#`.
pub fn covers(outer: &str, inner: &str) -> bool {
    let outer_wild_first = outer.starts_with(['+', '#']);
    if outer_wild_first && inner.starts_with('$') {
        return false;
    }
    let mut o = outer.split('/');
    let mut i = inner.split('/');
    loop {
        match (o.next(), i.next()) {
            // `#` covers whatever is left, including nothing (`a/#` matches `a`).
            (Some("#"), _) => return true,
            (None, None) => return true,
            // `inner` ends: it matches the topic of exactly its levels, which `outer` only
            // matches if what is left of it is a lone `#`.
            (Some(_), None) => return false,
            (None, Some(_)) => return false,
            // Only `#` covers `#`, and only `+` or `#` cover `+`.
            (Some(_), Some("#")) => return false,
            (Some("+"), Some(_)) => {}
            (Some(_), Some("+")) => return false,
            (Some(a), Some(b)) if a == b => {}
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_names() {
        assert!(valid_topic_name("a/b"));
        assert!(valid_topic_name("/"));
        assert!(valid_topic_name("$SYS/x"));
        assert!(!valid_topic_name(""));
        assert!(!valid_topic_name("a/+"));
        assert!(!valid_topic_name("a/#"));
        assert!(!valid_topic_name("a\0b"));
        assert!(!valid_topic_name(&"a".repeat(65_536)));
    }

    #[test]
    fn filters_4_7_1() {
        for ok in [
            "#",
            "+",
            "sport/#",
            "sport/tennis/#",
            "+/tennis/#",
            "sport/+/player1",
            "/+",
            "+/+",
            "a//b",
        ] {
            assert!(valid_filter(ok), "{ok}");
        }
        for bad in [
            "",
            "sport/tennis#",
            "sport/tennis/#/ranking",
            "sport+",
            "a/b+/c",
            "#/a",
            "a\0",
        ] {
            assert!(!valid_filter(bad), "{bad}");
        }
    }

    #[test]
    fn shared() {
        assert_eq!(parse_shared("$share/g/a/+"), Some(("g", "a/+")));
        assert_eq!(parse_shared("$share/g/#"), Some(("g", "#")));
        assert_eq!(parse_shared("$share//a"), None);
        assert_eq!(parse_shared("$share/g"), None);
        assert_eq!(parse_shared("$share/g/"), None);
        assert_eq!(parse_shared("$share/g+/a"), None);
        assert_eq!(parse_shared("$share/g/a#"), None);
        assert_eq!(parse_shared("a/b"), None);
        assert!(!valid_filter("$share/g"));
        assert!(valid_filter("$share/g/x"));
        assert!(is_shared("$share/g"));
        assert!(!is_shared("$sharex/g"));
    }

    #[test]
    fn matching_examples_of_4_7() {
        assert!(matches("sport/tennis/player1/#", "sport/tennis/player1"));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/ranking"
        ));
        assert!(matches(
            "sport/tennis/player1/#",
            "sport/tennis/player1/score/wimbledon"
        ));
        assert!(matches("sport/#", "sport"));
        assert!(matches("sport/tennis/+", "sport/tennis/player1"));
        assert!(!matches("sport/tennis/+", "sport/tennis/player1/ranking"));
        assert!(!matches("sport/+", "sport"));
        assert!(matches("sport/+", "sport/"));
        assert!(matches("+/+", "/finance"));
        assert!(matches("/+", "/finance"));
        assert!(!matches("+", "/finance"));
        assert!(matches("#", "a/b/c"));
        assert!(matches("a/b", "a/b"));
        assert!(!matches("a/b", "a/b/c"));
        assert!(!matches("a/b/c", "a/b"));
        assert!(!matches("a/B", "a/b"));
    }

    #[test]
    fn dollar_topics_4_7_2_1() {
        assert!(!matches("#", "$SYS/x"));
        assert!(!matches("+/monitor/Clients", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/#", "$SYS/monitor/Clients"));
        assert!(matches("$SYS/monitor/+", "$SYS/monitor/Clients"));
    }

    #[test]
    fn covers_is_wildcard_aware() {
        assert!(covers("a/#", "a/+"));
        assert!(covers("a/#", "a"));
        assert!(covers("a/#", "a/#"));
        assert!(covers("a/#", "a/b/c"));
        assert!(covers("a/+", "a/b"));
        assert!(covers("a/+", "a/+"));
        assert!(!covers("a/+", "a/#"));
        assert!(!covers("a/+", "a/b/c"));
        assert!(!covers("a/b", "a/+"));
        assert!(!covers("a", "a/#"));
        assert!(!covers("a/+/c", "a/+"));
        assert!(covers("+/+", "a/b"));
        assert!(covers("#", "a/+/#"));
        assert!(!covers("#", "$SYS/#"));
        assert!(!covers("+/x", "$SYS/x"));
        assert!(covers("$SYS/#", "$SYS/+"));
        assert!(!covers("a/+/#", "a"));
        assert!(covers("a/+/#", "a/b"));
        assert!(covers("c/x", "c/x"));
        assert!(!covers("c/x", "c/y"));
    }

    /// `covers` agrees with `matches` on topic names: a filter covers a topic name exactly
    /// when it matches it.
    #[test]
    fn covers_agrees_with_matches_on_names() {
        for (f, t) in [
            ("a/#", "a"),
            ("a/+", "a/b"),
            ("#", "$SYS/x"),
            ("+", "/x"),
            ("a/b", "a/b"),
        ] {
            assert_eq!(covers(f, t), matches(f, t), "{f} {t}");
        }
    }
}
