//! Users kept in the store (`auth.user_store`: the mqtt_user table, `dynamq user add`),
//! looked up at CONNECT.
//!
//! A user found is kept in memory for `auth.cache_secs`, so that a CONNECT does not read the
//! store every time; after that the next CONNECT reads it again, so a `dynamq user del` (or
//! a new password) takes effect on every node within that time. A user name the store does
//! not have is not cached: `dynamq user add` takes effect at once (and a flood of unknown
//! names cannot grow the cache; the failure delay of `throttle` slows such a flood).
//!
//! A read has a deadline (`store.read_timeout_ms`): when the store does not answer in time,
//! or fails, the CONNECT is refused as "server unavailable", never let in.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;
use dynamq_store::users::UserStore;

use super::password::Hash;
use crate::log_limit::LogLimit;

/// A user read from the store.
#[derive(Debug)]
pub(crate) struct StoreUser {
    /// `None` when the item's `password_hash` is not a hash we can verify: nobody can log
    /// in as that user (logged when read).
    pub hash: Option<Hash>,
    pub superuser: bool,
}

/// What a lookup found.
#[derive(Debug)]
pub(crate) enum Lookup {
    Found(Arc<StoreUser>),
    Unknown,
    /// The store did not answer within the deadline, or failed.
    Unavailable,
}

/// The users of the store, with a cache of the ones found.
#[derive(Debug)]
pub struct StoreUsers {
    store: UserStore,
    /// How long a user found is trusted without reading the store again.
    ttl: Duration,
    /// The deadline of a read at CONNECT.
    timeout: Duration,
    /// Users found, with when they were read. Bounded by the number of users in the store.
    cache: DashMap<String, (Instant, Arc<StoreUser>)>,
    /// Rate limit of the lines about a store that fails or does not answer.
    failure_log: LogLimit,
}

impl StoreUsers {
    pub fn new(store: UserStore, ttl: Duration, timeout: Duration) -> StoreUsers {
        StoreUsers {
            store,
            ttl,
            timeout,
            cache: DashMap::new(),
            failure_log: LogLimit::default(),
        }
    }

    /// The user named `username`: from the cache while fresh, else from the store.
    pub(crate) async fn lookup(&self, username: &str) -> Lookup {
        if let Some(e) = self.cache.get(username)
            && e.0.elapsed() < self.ttl
        {
            return Lookup::Found(e.1.clone());
        }
        let read = tokio::time::timeout(self.timeout, self.store.user(username)).await;
        let record = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                if let Some(suppressed) = self.failure_log.admit() {
                    tracing::error!(
                        user = username,
                        suppressed,
                        "CONNECT refused: cannot read the user from the store: {e}"
                    );
                }
                return Lookup::Unavailable;
            }
            Err(_) => {
                if let Some(suppressed) = self.failure_log.admit() {
                    tracing::error!(
                        user = username,
                        suppressed,
                        timeout_ms = self.timeout.as_millis() as u64,
                        "CONNECT refused: the store did not answer the user lookup in time"
                    );
                }
                return Lookup::Unavailable;
            }
        };
        let Some(record) = record else {
            self.cache.remove(username);
            return Lookup::Unknown;
        };
        let hash = match Hash::parse(&record.password_hash) {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(
                    user = username,
                    "the store's password_hash of this user is not usable ({e}): it cannot log in"
                );
                None
            }
        };
        let user = Arc::new(StoreUser {
            hash,
            superuser: record.is_superuser,
        });
        self.cache
            .insert(username.to_owned(), (Instant::now(), user.clone()));
        Lookup::Found(user)
    }

    /// Whether `username` was found a superuser by its last lookup (the one its CONNECT just
    /// made, or a cached one).
    pub(crate) fn is_superuser(&self, username: &str) -> bool {
        self.cache.get(username).is_some_and(|e| e.1.superuser)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dynamq_store::users::UserRecord;
    use dynamq_store::users::embedded::EmbeddedUsers;

    #[tokio::test]
    async fn found_users_are_cached_for_the_ttl_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = UserStore::Embedded(EmbeddedUsers::new(dir.path()));
        let h = Hash::new_pbkdf2(b"pw");
        let rec = UserRecord {
            username: "u".into(),
            password_hash: h.encode(),
            is_superuser: true,
            created: 1,
        };
        store.put_user(&rec).await.unwrap();
        let users = StoreUsers::new(
            store.clone(),
            Duration::from_millis(300),
            Duration::from_secs(5),
        );
        let Lookup::Found(u) = users.lookup("u").await else {
            panic!("not found")
        };
        assert!(u.hash.as_ref().unwrap().verify(b"pw"));
        assert!(users.is_superuser("u"));
        assert!(matches!(users.lookup("nobody").await, Lookup::Unknown));
        // Deleted: still found from the cache until the TTL has passed, then unknown.
        assert!(store.delete_user("u").await.unwrap());
        assert!(matches!(users.lookup("u").await, Lookup::Found(_)));
        tokio::time::sleep(Duration::from_millis(350)).await;
        assert!(matches!(users.lookup("u").await, Lookup::Unknown));
        assert!(!users.is_superuser("u"));
        // A hash that does not parse: found, but no one can log in with it.
        let bad = UserRecord {
            password_hash: "plain-text".into(),
            ..rec
        };
        store.put_user(&bad).await.unwrap();
        let Lookup::Found(u) = users.lookup("u").await else {
            panic!("not found")
        };
        assert!(u.hash.is_none());
    }

    #[tokio::test]
    async fn a_store_that_fails_or_does_not_answer_is_unavailable() {
        use dynamq_store::dynamo::{DynamoConfig, connect};
        use dynamq_store::users::dynamo::DynamoUsers;
        let config = |endpoint: String| DynamoConfig {
            endpoint: Some(endpoint),
            access_key_id: Some("AKIDTEST".into()),
            secret_access_key: Some("test".into()),
            ..DynamoConfig::default()
        };
        // Accepts connections (the kernel's backlog) but never answers.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let endpoint = format!("http://{}", silent.local_addr().unwrap());
        let store = UserStore::Dynamo(DynamoUsers::new(connect(&config(endpoint)).await, ""));
        let users = StoreUsers::new(store, Duration::from_secs(30), Duration::from_millis(200));
        let start = Instant::now();
        assert!(matches!(users.lookup("u").await, Lookup::Unavailable));
        assert!(start.elapsed() < Duration::from_secs(5));
        // Nothing listens: refused at once, also unavailable (not "unknown user").
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let store = UserStore::Dynamo(DynamoUsers::new(
            connect(&config(format!("http://{closed}"))).await,
            "",
        ));
        let users = StoreUsers::new(store, Duration::from_secs(30), Duration::from_secs(5));
        assert!(matches!(users.lookup("u").await, Lookup::Unavailable));
        drop(silent);
    }
}
