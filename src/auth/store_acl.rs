//! ACL rules kept in the store (`auth.acl_store`: the mqtt_acl table, `dynamq acl add`),
//! read at start and again every `auth.cache_secs`.
//!
//! They become an [`Acl`] checked with the ACL file's semantics (see `acl`), each item one
//! rule:
//!
//! | item | becomes |
//! |---|---|
//! | `username` = `$all` | a `pattern` line: for every client, `%c`/`%u` levels substituted |
//! | any other `username` | a `topic` line in that user's section (filter taken literally) |
//! | allow + publish / subscribe / all | `write` / `read` / `readwrite` |
//! | deny + all | `deny` |
//! | deny + publish / subscribe | denies publishing / subscribing and receiving only |
//!
//! A client's rules are those of the file and those of the store together (`merge`): its
//! user's rules from both, deny rules first, then the patterns of both, deny rules first.
//! Anonymous clients get the `$all` rules only. Rules are compiled at CONNECT: a change
//! applies to connections made after the next read. When a read fails, the rules read
//! before stay (logged); when the first read at start fails, the broker does not start.

use std::sync::{Arc, Weak};
use std::time::Duration;

use dynamq_store::StoreError;
use dynamq_store::users::{ALL_USERS, AclAction, AclRecord, Permission, UserStore};
use parking_lot::RwLock;

use super::acl::{Access, Acl};

/// The store's rules, as last read.
#[derive(Debug)]
pub struct StoreAcl {
    store: UserStore,
    /// The deadline of one read of all the rules.
    timeout: Duration,
    current: RwLock<Arc<Acl>>,
}

/// Why the rules could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StoreAclError {
    #[error("cannot read the ACL rules from the store: {0}")]
    Store(#[from] StoreError),
    #[error("the store did not answer within {0:?} when reading the ACL rules")]
    Timeout(Duration),
}

impl StoreAcl {
    /// Reads the rules (an error if that fails), then keeps reading them every `every` on a
    /// task that ends when the returned value is dropped.
    pub async fn start(
        store: UserStore,
        every: Duration,
        timeout: Duration,
    ) -> Result<Arc<StoreAcl>, StoreAclError> {
        let acl = Arc::new(StoreAcl {
            store,
            timeout,
            current: RwLock::new(Arc::new(Acl::default())),
        });
        let n = acl.refresh().await?;
        tracing::info!(rules = n, "ACL rules read from the store");
        let weak = Arc::downgrade(&acl);
        tokio::spawn(refresh_loop(weak, every));
        Ok(acl)
    }

    /// The rules as last read.
    pub(crate) fn current(&self) -> Arc<Acl> {
        self.current.read().clone()
    }

    /// Reads the rules again; returns how many were read.
    async fn refresh(&self) -> Result<usize, StoreAclError> {
        let records = tokio::time::timeout(self.timeout, self.store.rules())
            .await
            .map_err(|_| StoreAclError::Timeout(self.timeout))??;
        let n = records.len();
        *self.current.write() = Arc::new(to_acl(&records));
        Ok(n)
    }
}

async fn refresh_loop(acl: Weak<StoreAcl>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(acl) = acl.upgrade() else { return };
        if let Err(e) = acl.refresh().await {
            tracing::error!("{e}; the rules read before stay in force");
        }
    }
}

/// The access a rule gives, in the ACL file's terms.
pub fn access(permission: Permission, action: AclAction) -> Access {
    match (permission, action) {
        (Permission::Allow, AclAction::Publish) => Access::Write,
        (Permission::Allow, AclAction::Subscribe) => Access::Read,
        (Permission::Allow, AclAction::All) => Access::ReadWrite,
        (Permission::Deny, AclAction::Publish) => Access::DenyWrite,
        (Permission::Deny, AclAction::Subscribe) => Access::DenyRead,
        (Permission::Deny, AclAction::All) => Access::Deny,
    }
}

/// Whether a filter has a `%c` or `%u` level, which only `$all` rules substitute.
pub fn has_placeholder(filter: &str) -> bool {
    filter.split('/').any(|l| l == "%c" || l == "%u")
}

/// The rules as an [`Acl`]. An item whose filter is not valid is left out (logged): the
/// others still apply.
fn to_acl(records: &[AclRecord]) -> Acl {
    let mut acl = Acl::default();
    for r in records {
        let a = access(r.permission, r.action);
        let added = if r.username == ALL_USERS {
            acl.add_pattern(a, &r.topic)
        } else {
            if has_placeholder(&r.topic) {
                tracing::warn!(
                    user = %r.username,
                    topic = %r.topic,
                    "ACL rule in the store: %c and %u are substituted in $all rules only; this filter is taken literally"
                );
            }
            acl.add_user_rule(&r.username, a, &r.topic)
        };
        if let Err(e) = added {
            tracing::warn!(user = %r.username, "ACL rule in the store left out: {e}");
        }
    }
    acl
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::acl::Want;
    use dynamq_store::users::embedded::EmbeddedUsers;

    fn rule(user: &str, topic: &str, p: Permission, a: AclAction) -> AclRecord {
        AclRecord {
            username: user.into(),
            topic: topic.into(),
            permission: p,
            action: a,
        }
    }

    #[test]
    fn items_map_onto_the_file_semantics() {
        use AclAction::*;
        use Permission::*;
        let acl = to_acl(&[
            rule("alice", "a/#", Allow, All),
            rule("alice", "a/ro/#", Deny, Publish),
            rule("alice", "a/wo", Deny, Subscribe),
            rule("alice", "in/#", Allow, Publish),
            rule("alice", "a/+/#/bad", Allow, All),
            rule(ALL_USERS, "c/%c/#", Allow, All),
            rule(ALL_USERS, "u/%u/#", Allow, Subscribe),
            rule(ALL_USERS, "c/%c/locked", Deny, All),
        ]);
        let alice = acl.for_client("dev1", Some("alice"));
        assert!(alice.allows("a/x", Want::Write));
        assert!(alice.allows("a/ro/x", Want::Read));
        assert!(!alice.allows("a/ro/x", Want::Write));
        assert!(!alice.allows("a/wo", Want::Read));
        assert!(alice.allows("a/wo", Want::Write));
        assert!(alice.allows("in/x", Want::Write));
        assert!(!alice.allows("in/x", Want::Read));
        // $all rules: patterns for every client.
        assert!(alice.allows("c/dev1/x", Want::Write));
        assert!(!alice.allows("c/dev1/locked", Want::Write));
        assert!(alice.allows("u/alice/x", Want::Read));
        assert!(!alice.allows("u/alice/x", Want::Write));
        assert!(!alice.allows("c/dev2/x", Want::Read));
        // Another user: the $all rules only; anonymous: those without %u.
        let bob = acl.for_client("b", Some("bob"));
        assert!(!bob.allows("a/x", Want::Read));
        assert!(bob.allows("u/bob/x", Want::Read));
        let anon = acl.for_client("z", None);
        assert!(anon.allows("c/z/x", Want::Read));
        assert!(!anon.allows("u//x", Want::Read));
    }

    #[tokio::test]
    async fn start_reads_and_refreshes() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::Embedded(EmbeddedUsers::new(dir.path()));
        let acl = StoreAcl::start(
            store.clone(),
            Duration::from_millis(100),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert!(
            !acl.current()
                .for_client("c", Some("u"))
                .allows("t", Want::Read)
        );
        store
            .put_rule(&rule("u", "t", Permission::Allow, AclAction::Subscribe))
            .await
            .unwrap();
        let mut seen = false;
        for _ in 0..50 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if acl
                .current()
                .for_client("c", Some("u"))
                .allows("t", Want::Read)
            {
                seen = true;
                break;
            }
        }
        assert!(seen, "the new rule was not read within 2.5 s");
    }
}
