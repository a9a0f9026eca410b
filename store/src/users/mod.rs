//! Users and ACL rules kept in the store, so that every node of a deployment sees the same
//! ones: the `mqtt_user` and `mqtt_acl` tables. They are not among the tutorial's six: the
//! writer never touches them; `dynamq user|acl` writes them and the broker reads them.
//!
//! - mqtt_user: key `username` (S); `password_hash` (S, a Mosquitto password file hash,
//!   `$7$...`), `is_superuser` (BOOL), `created` (N, Unix seconds).
//! - mqtt_acl: key `username` (S; [`ALL_USERS`] for rules of every client), sort key `topic`
//!   (S, the rule's filter); `permission` (S: allow|deny), `action` (S:
//!   publish|subscribe|all). One rule per user and filter: the rules' order does not matter
//!   to the decision (deny rules are checked first, then any rule that grants), so no
//!   sequence number is needed.
//!
//! [`UserStore`] is either backend: [`dynamo::DynamoUsers`] (two DynamoDB tables) or
//! [`embedded::EmbeddedUsers`] (a redb file of its own, `users.redb` in the data dir, opened
//! for each operation so that `dynamq user add` works while the broker runs).

pub mod dynamo;
pub mod embedded;

use std::fmt;
use std::str::FromStr;

use crate::error::StoreError;

/// The `username` of the rules that apply to every client (as in EMQX's built-in database).
pub const ALL_USERS: &str = "$all";

/// The base names of the two tables (a DynamoDB table prefix is prepended).
pub const USER_TABLE: &str = "mqtt_user";
pub const ACL_TABLE: &str = "mqtt_acl";

/// One mqtt_user item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub username: String,
    /// A password file hash (`$7$...` or `$6$...`): an item can be copied to or from a
    /// Mosquitto password file line as it is.
    pub password_hash: String,
    /// A superuser may publish and subscribe to everything: the ACL is not checked.
    pub is_superuser: bool,
    /// When the user was added, in Unix seconds.
    pub created: i64,
}

/// Whether a rule allows or denies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    Allow,
    Deny,
}

/// What a rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AclAction {
    /// Publishing to matching topics.
    Publish,
    /// Subscribing to, and receiving from, matching topics.
    Subscribe,
    /// Both.
    All,
}

/// One mqtt_acl item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRecord {
    /// A user name, or [`ALL_USERS`].
    pub username: String,
    /// A topic filter; in [`ALL_USERS`] rules a level may be `%c` (client id) or `%u` (user
    /// name), as in Mosquitto's `pattern` lines.
    pub topic: String,
    pub permission: Permission,
    pub action: AclAction,
}

/// A word that is not one of the allowed values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} {found:?}: expected {expected}")]
pub struct BadWord {
    pub what: &'static str,
    pub found: String,
    pub expected: &'static str,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Allow => "allow",
            Permission::Deny => "deny",
        }
    }
}

impl FromStr for Permission {
    type Err = BadWord;
    fn from_str(s: &str) -> Result<Self, BadWord> {
        match s {
            "allow" => Ok(Permission::Allow),
            "deny" => Ok(Permission::Deny),
            _ => Err(BadWord {
                what: "permission",
                found: s.to_owned(),
                expected: "allow or deny",
            }),
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl AclAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AclAction::Publish => "publish",
            AclAction::Subscribe => "subscribe",
            AclAction::All => "all",
        }
    }
}

impl FromStr for AclAction {
    type Err = BadWord;
    fn from_str(s: &str) -> Result<Self, BadWord> {
        match s {
            "publish" => Ok(AclAction::Publish),
            "subscribe" => Ok(AclAction::Subscribe),
            "all" => Ok(AclAction::All),
            _ => Err(BadWord {
                what: "action",
                found: s.to_owned(),
                expected: "publish, subscribe or all",
            }),
        }
    }
}

impl fmt::Display for AclAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The users and rules of one store. Cloning shares the client (DynamoDB) or the path.
#[derive(Debug, Clone)]
pub enum UserStore {
    Dynamo(dynamo::DynamoUsers),
    Embedded(embedded::EmbeddedUsers),
}

macro_rules! delegate {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            UserStore::Dynamo($s) => $e,
            UserStore::Embedded($s) => $e,
        }
    };
}

impl UserStore {
    /// Adds a user, or replaces the item of one with that name.
    pub async fn put_user(&self, user: &UserRecord) -> Result<(), StoreError> {
        delegate!(self, s => s.put_user(user).await)
    }

    /// The user's item (a strongly consistent read on DynamoDB).
    pub async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        delegate!(self, s => s.user(username).await)
    }

    /// Every user, sorted by name.
    pub async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut all = delegate!(self, s => s.users().await)?;
        all.sort_by(|a, b| a.username.cmp(&b.username));
        Ok(all)
    }

    /// Removes a user; `true` if there was one.
    pub async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_user(username).await)
    }

    /// Adds a rule, or replaces the one with the same user and filter.
    pub async fn put_rule(&self, rule: &AclRecord) -> Result<(), StoreError> {
        delegate!(self, s => s.put_rule(rule).await)
    }

    /// Every rule, sorted by user name and filter.
    pub async fn rules(&self) -> Result<Vec<AclRecord>, StoreError> {
        let mut all = delegate!(self, s => s.rules().await)?;
        all.sort_by(|a, b| (&a.username, &a.topic).cmp(&(&b.username, &b.topic)));
        Ok(all)
    }

    /// Removes the rule of `username` for `topic`; `true` if there was one.
    pub async fn delete_rule(&self, username: &str, topic: &str) -> Result<bool, StoreError> {
        delegate!(self, s => s.delete_rule(username, topic).await)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_round_trip() {
        for p in [Permission::Allow, Permission::Deny] {
            assert_eq!(p.as_str().parse::<Permission>(), Ok(p));
        }
        for a in [AclAction::Publish, AclAction::Subscribe, AclAction::All] {
            assert_eq!(a.as_str().parse::<AclAction>(), Ok(a));
        }
        assert!("read".parse::<AclAction>().is_err());
        assert!("Allow".parse::<Permission>().is_err());
    }
}
