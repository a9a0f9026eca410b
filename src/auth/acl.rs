//! Mosquitto's ACL file (`acl_file` in mosquitto.conf(5)), read as it is, and the rules it
//! gives one client.
//!
//! - `topic [read|write|readwrite|deny] FILTER` before any `user` line: rules for anonymous
//!   clients (clients without a user name), as in Mosquitto ("the first set of topics are
//!   applied to anonymous clients").
//! - `user NAME`: the `topic` lines after it are that user's (until the next `user` line).
//! - `pattern [read|write|readwrite|deny] FILTER`: rules for every client, wherever the line
//!   is, with a level `%c` replaced by the client id and `%u` by the user name (a pattern
//!   with `%u` does not apply to an anonymous client).
//! - The access word may be left out (`topic FILTER`): read and write. `#` at the start of a
//!   line is a comment.
//!
//! Once a file is given, what it does not allow is denied. A client's rules are compiled
//! once, at CONNECT (`ClientRules`): its own list (its user's, or the anonymous one), then
//! the patterns, substituted. Each list is checked as Mosquitto checks it: its `deny` rules
//! first (a match denies), then the others in file order (a match giving the access asked
//! for allows); then the next list; nothing matched denies.
//!
//! Rules can also be added one by one (`Acl::add_user_rule`, `Acl::add_pattern`): the rules
//! kept in the store (`store_acl`), which may deny one way only (`DenyRead`, `DenyWrite`),
//! as EMQX's rules can.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use dynamq_codec::topic;

#[derive(Debug, thiserror::Error)]
pub enum AclFileError {
    #[error("cannot read ACL file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("ACL file {}, line {line}: {msg}", path.display())]
    Line {
        path: PathBuf,
        line: usize,
        msg: String,
    },
}

/// What a rule grants (or, `Deny`, refuses).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Read,
    Write,
    ReadWrite,
    Deny,
    /// Denies reading (subscribing, receiving) only; not in the file format.
    DenyRead,
    /// Denies writing (publishing) only; not in the file format.
    DenyWrite,
}

impl Access {
    fn grants(self, want: Want) -> bool {
        matches!(
            (self, want),
            (Access::ReadWrite, _) | (Access::Read, Want::Read) | (Access::Write, Want::Write)
        )
    }

    fn denies(self, want: Want) -> bool {
        matches!(
            (self, want),
            (Access::Deny, _) | (Access::DenyRead, Want::Read) | (Access::DenyWrite, Want::Write)
        )
    }

    fn is_deny(self) -> bool {
        matches!(self, Access::Deny | Access::DenyRead | Access::DenyWrite)
    }
}

/// What a client asks to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// Receive messages published to it (and subscribe to it).
    Read,
    /// Publish to it.
    Write,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    access: Access,
    filter: String,
}

/// The rules of an ACL file.
#[derive(Debug, Default)]
pub struct Acl {
    anonymous: Vec<Rule>,
    users: HashMap<String, Vec<Rule>>,
    patterns: Vec<Rule>,
}

impl Acl {
    pub fn load(path: &Path) -> Result<Acl, AclFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| AclFileError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text).map_err(|(line, msg)| AclFileError::Line {
            path: path.to_owned(),
            line,
            msg,
        })
    }

    /// Parses the file's text; `Err((line number, what is wrong))` for the first bad line.
    pub fn parse(text: &str) -> Result<Acl, (usize, String)> {
        let mut acl = Acl::default();
        let mut user: Option<String> = None;
        for (i, raw) in text.lines().enumerate() {
            let n = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (keyword, rest) = line
                .split_once(char::is_whitespace)
                .map(|(k, r)| (k, r.trim_start()))
                .unwrap_or((line, ""));
            match keyword {
                "user" => {
                    if rest.is_empty() {
                        return Err((n, "`user` without a user name".into()));
                    }
                    acl.users.entry(rest.to_owned()).or_default();
                    user = Some(rest.to_owned());
                }
                "topic" | "pattern" => {
                    let rule = parse_rule(rest).map_err(|msg| (n, format!("{keyword}: {msg}")))?;
                    let list = match (keyword, &user) {
                        ("pattern", _) => &mut acl.patterns,
                        (_, None) => &mut acl.anonymous,
                        (_, Some(u)) => acl.users.entry(u.clone()).or_default(),
                    };
                    list.push(rule);
                }
                other => {
                    return Err((
                        n,
                        format!("unknown keyword {other:?} (expected topic, user or pattern)"),
                    ));
                }
            }
        }
        Ok(acl)
    }

    /// Adds a rule to `user`'s list (as a `topic` line in its `user` section would);
    /// `Err` says why the filter is not valid.
    pub fn add_user_rule(
        &mut self,
        user: &str,
        access: Access,
        filter: &str,
    ) -> Result<(), String> {
        check_filter(filter)?;
        self.users.entry(user.to_owned()).or_default().push(Rule {
            access,
            filter: filter.to_owned(),
        });
        Ok(())
    }

    /// Adds a rule for every client, with `%c` and `%u` levels substituted (as a `pattern`
    /// line would).
    pub fn add_pattern(&mut self, access: Access, filter: &str) -> Result<(), String> {
        check_filter(filter)?;
        self.patterns.push(Rule {
            access,
            filter: filter.to_owned(),
        });
        Ok(())
    }

    /// Whether the file names `user` in a `user` line.
    pub fn has_user_sections(&self) -> bool {
        !self.users.is_empty()
    }

    /// The rules for one client, compiled once at CONNECT.
    pub fn for_client(&self, client_id: &str, username: Option<&str>) -> ClientRules {
        let own = match username {
            Some(u) => self.users.get(u).cloned().unwrap_or_default(),
            None => self.anonymous.clone(),
        };
        // A client id or user name with a wildcard would widen a pattern (CVE-2017-7650):
        // no pattern applies to such a client, as in Mosquitto.
        let unsafe_name = |s: &str| s.contains(['+', '#']);
        let patterns = if unsafe_name(client_id) || username.is_some_and(unsafe_name) {
            Vec::new()
        } else {
            self.patterns
                .iter()
                .filter_map(|r| substitute(r, client_id, username))
                .collect()
        };
        ClientRules {
            lists: [deny_first(own), deny_first(patterns)],
            everything: false,
        }
    }
}

/// `[access] FILTER`; the filter is the rest of the line, so it may hold spaces when the
/// access word is given.
fn parse_rule(rest: &str) -> Result<Rule, String> {
    let (word, filter) = rest
        .split_once(char::is_whitespace)
        .map(|(w, f)| (w, f.trim()))
        .unwrap_or((rest, ""));
    let access = match word {
        "read" => Some(Access::Read),
        "write" => Some(Access::Write),
        "readwrite" => Some(Access::ReadWrite),
        "deny" => Some(Access::Deny),
        _ => None,
    };
    let (access, filter) = match access {
        Some(a) => (a, filter),
        None => (Access::ReadWrite, rest.trim()),
    };
    check_filter(filter)?;
    Ok(Rule {
        access,
        filter: filter.to_owned(),
    })
}

fn check_filter(filter: &str) -> Result<(), String> {
    if filter.is_empty() {
        return Err("no topic filter".into());
    }
    if !topic::valid_filter(filter) || topic::is_shared(filter) {
        return Err(format!("{filter:?} is not a valid topic filter"));
    }
    Ok(())
}

/// A pattern with `%c` and `%u` levels replaced; `None` if it needs a user name and the
/// client has none.
fn substitute(rule: &Rule, client_id: &str, username: Option<&str>) -> Option<Rule> {
    let mut out = Vec::new();
    for level in rule.filter.split('/') {
        out.push(match level {
            "%c" => client_id,
            "%u" => username?,
            other => other,
        });
    }
    Some(Rule {
        access: rule.access,
        filter: out.join("/"),
    })
}

/// `deny` rules first (in file order), then the others in file order.
fn deny_first(rules: Vec<Rule>) -> Vec<Rule> {
    let (mut deny, allow): (Vec<Rule>, Vec<Rule>) =
        rules.into_iter().partition(|r| r.access.is_deny());
    deny.extend(allow);
    deny
}

/// One client's rules: its own list, then the patterns.
#[derive(Debug, Clone, Default)]
pub struct ClientRules {
    lists: [Vec<Rule>; 2],
    /// A superuser's: everything is allowed, no rule is looked at.
    everything: bool,
}

impl ClientRules {
    /// The rules of a superuser: everything allowed.
    pub fn superuser() -> ClientRules {
        ClientRules {
            everything: true,
            ..ClientRules::default()
        }
    }

    /// These rules and `other`'s as one client's: each list joined with the same list of
    /// `other`, deny rules first again.
    pub fn merge(self, other: ClientRules) -> ClientRules {
        let [own, patterns] = self.lists;
        let [own2, patterns2] = other.lists;
        let join = |mut a: Vec<Rule>, b: Vec<Rule>| {
            a.extend(b);
            deny_first(a)
        };
        ClientRules {
            lists: [join(own, own2), join(patterns, patterns2)],
            everything: self.everything || other.everything,
        }
    }

    /// May the client publish to (`Want::Write`) or receive from (`Want::Read`) `topic`?
    pub fn allows(&self, topic_name: &str, want: Want) -> bool {
        self.decide(want, |filter| topic::matches(filter, topic_name))
    }

    /// May the client subscribe to `filter` (not shared: pass the filter of a shared
    /// subscription)? Only if a rule that lets it read covers every topic the filter
    /// matches (`a/+` does not allow `a/#`) and no `deny` rule covers the filter. A `deny`
    /// rule covering part of it leaves the subscription allowed: the messages it denies are
    /// not delivered (`allows` with `Want::Read`, checked per message).
    pub fn allows_subscribe(&self, filter: &str) -> bool {
        self.decide(Want::Read, |rule| topic::covers(rule, filter))
    }

    fn decide(&self, want: Want, applies: impl Fn(&str) -> bool) -> bool {
        if self.everything {
            return true;
        }
        for list in &self.lists {
            for rule in list {
                if applies(&rule.filter) {
                    if rule.access.denies(want) {
                        return false;
                    }
                    if rule.access.grants(want) {
                        return true;
                    }
                }
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "\
# anonymous clients
topic read public/#
topic readwrite anon/+

user alice
topic readwrite a/+
topic deny a/secret
topic write in/#
topic sensors/with space

user bob
topic read b/#

pattern readwrite c/%c/#
pattern read u/%u/+
pattern deny c/%c/locked
";

    fn acl() -> Acl {
        Acl::parse(FILE).unwrap()
    }

    #[test]
    fn anonymous_rules_only_for_anonymous() {
        let a = acl();
        let anon = a.for_client("cid", None);
        assert!(anon.allows("public/x", Want::Read));
        assert!(!anon.allows("public/x", Want::Write));
        assert!(anon.allows("anon/1", Want::Write));
        // The first set of rules does not apply to a user (Mosquitto's reading).
        let alice = a.for_client("cid", Some("alice"));
        assert!(!alice.allows("public/x", Want::Read));
        // Nor to a user the file does not name: it has the patterns only.
        let carol = a.for_client("cid", Some("carol"));
        assert!(!carol.allows("public/x", Want::Read));
        assert!(carol.allows("c/cid/x", Want::Write));
    }

    #[test]
    fn user_rules_and_deny_precedence() {
        let alice = acl().for_client("cid", Some("alice"));
        assert!(alice.allows("a/x", Want::Read));
        assert!(alice.allows("a/x", Want::Write));
        // `deny` is checked before the broader readwrite a/+ above it.
        assert!(!alice.allows("a/secret", Want::Read));
        assert!(!alice.allows("a/secret", Want::Write));
        assert!(alice.allows("in/x/y", Want::Write));
        assert!(!alice.allows("in/x/y", Want::Read));
        // No access word: read and write; the filter may hold a space.
        assert!(alice.allows("sensors/with space", Want::Read));
        assert!(!alice.allows("b/x", Want::Read));
        let bob = acl().for_client("cid", Some("bob"));
        assert!(bob.allows("b/x/y", Want::Read));
        assert!(!bob.allows("b/x", Want::Write));
    }

    #[test]
    fn patterns_substitute_client_id_and_user() {
        let a = acl();
        let bob = a.for_client("bob-1", Some("bob"));
        assert!(bob.allows("c/bob-1/x", Want::Write));
        assert!(!bob.allows("c/other/x", Want::Write));
        assert!(bob.allows("u/bob/x", Want::Read));
        assert!(!bob.allows("u/alice/x", Want::Read));
        // The pattern list's deny comes first within the patterns.
        assert!(!bob.allows("c/bob-1/locked", Want::Write));
        // %u patterns do not apply to anonymous clients; %c ones do.
        let anon = a.for_client("anon-1", None);
        assert!(anon.allows("c/anon-1/x", Want::Read));
        assert!(!anon.allows("u//x", Want::Read));
        // A wildcard in the client id or user name: no pattern applies.
        assert!(!a.for_client("#", None).allows("c/#/x", Want::Read));
        assert!(!a.for_client("x", Some("+")).allows("c/x/y", Want::Read));
    }

    #[test]
    fn subscriptions_must_be_covered() {
        let a = acl();
        let alice = a.for_client("cid", Some("alice"));
        assert!(alice.allows_subscribe("a/+"));
        assert!(alice.allows_subscribe("a/x"));
        // a/# reaches a/x/y, which a/+ does not allow.
        assert!(!alice.allows_subscribe("a/#"));
        // Denied outright.
        assert!(!alice.allows_subscribe("a/secret"));
        // Write-only.
        assert!(!alice.allows_subscribe("in/#"));
        let anon = a.for_client("cid", None);
        assert!(anon.allows_subscribe("public/#"));
        assert!(anon.allows_subscribe("public/+/x"));
        assert!(!anon.allows_subscribe("#"));
        assert!(!anon.allows_subscribe("+/x"));
    }

    #[test]
    fn nothing_allowed_without_a_rule() {
        let empty = Acl::parse("# nothing\n").unwrap();
        let c = empty.for_client("c", Some("u"));
        assert!(!c.allows("t", Want::Read));
        assert!(!c.allows_subscribe("t"));
    }

    #[test]
    fn one_way_denials_added_rules_merge_and_superuser() {
        let mut store = Acl::default();
        store
            .add_user_rule("alice", Access::ReadWrite, "s/#")
            .unwrap();
        store
            .add_user_rule("alice", Access::DenyWrite, "s/ro/#")
            .unwrap();
        store.add_pattern(Access::DenyRead, "c/%c/wo").unwrap();
        assert!(store.add_pattern(Access::Read, "a/#/b").is_err());
        assert!(store.add_user_rule("u", Access::Read, "").is_err());
        let alice = store.for_client("cid", Some("alice"));
        // DenyWrite: reading still allowed, writing not.
        assert!(alice.allows("s/ro/x", Want::Read));
        assert!(alice.allows_subscribe("s/ro/#"));
        assert!(!alice.allows("s/ro/x", Want::Write));
        assert!(alice.allows("s/x", Want::Write));
        // Merged with the file's rules: alice's file rule and the store's deny both hold,
        // and the store's pattern list (DenyRead on c/cid/wo) comes before the file's
        // readwrite c/%c/# pattern within the joined pattern list.
        let both = acl().for_client("cid", Some("alice")).merge(alice);
        assert!(both.allows("a/x", Want::Write));
        assert!(both.allows("s/x", Want::Read));
        assert!(!both.allows("c/cid/wo", Want::Read));
        assert!(both.allows("c/cid/wo", Want::Write));
        assert!(both.allows("c/cid/other", Want::Read));
        // A superuser: everything, $SYS included.
        let root = ClientRules::superuser();
        assert!(root.allows("$SYS/x", Want::Read));
        assert!(root.allows_subscribe("#"));
        assert!(root.allows("any", Want::Write));
    }

    #[test]
    fn bad_lines_name_their_line() {
        let cases = [
            ("user\n", 1, "without a user name"),
            ("# ok\ntopic read a/#/b\n", 2, "not a valid topic filter"),
            ("topic read\n", 1, "no topic filter"),
            ("topic\n", 1, "no topic filter"),
            ("\n\nbogus x\n", 3, "unknown keyword"),
            ("pattern deny $share/g/x\n", 1, "not a valid topic filter"),
            ("topic write a+\n", 1, "not a valid topic filter"),
        ];
        for (text, line, needle) in cases {
            let (n, msg) = Acl::parse(text).unwrap_err();
            assert_eq!(n, line, "{text:?}: {msg}");
            assert!(msg.contains(needle), "{text:?}: {msg}");
        }
    }
}
