//! Who may connect (authentication: a Mosquitto password file, anonymous clients allowed
//! or not) and what a connected client may do (authorization: a Mosquitto ACL file).
//!
//! - `password`: the password file, its two hash formats, and writing it (`dynamq passwd`).
//! - `acl`: the ACL file and the rules it gives one client (`ClientRules`), compiled once
//!   at CONNECT (and again when SIGHUP reloads the file) so that a check is a walk over
//!   that client's few rules.
//! - `throttle`: refusals of repeated failures from one address wait longer and longer.
//! - `store_users`, `store_acl`: users and ACL rules kept in the store (mqtt_user, mqtt_acl),
//!   with `auth.user_store` and `auth.acl_store`: a user name not in the password file is
//!   looked up in the store; the store's rules join the ACL file's.
//!
//! `Auth` holds what the broker needs at run time. Without an ACL file nothing is checked
//! after CONNECT (every check starts with `Option::None`). With one, the connection checks
//! its own rules for what its client publishes and subscribes to, and `Auth::may_read`
//! checks the subscriber's rules for every message delivered (`Broker::publish`), because a
//! wildcard subscription, or a `deny` rule inside an allowed one, can reach topics the
//! subscriber may not read.

pub mod acl;
pub mod password;
pub mod store_acl;
pub mod store_users;
pub(crate) mod throttle;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use dashmap::DashMap;
use parking_lot::RwLock;

use crate::config::{AuthSection, Listeners};
use crate::log_limit::LogLimit;
use crate::message::ClientId;
use crate::session::Session;
pub use acl::{Acl, AclFileError, ClientRules, Want};
pub use password::{PasswordFile, PasswordFileError};
use store_acl::{StoreAcl, StoreAclError};
use store_users::{Lookup, StoreUsers};
use throttle::Throttle;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Password(#[from] PasswordFileError),
    #[error(transparent)]
    Acl(#[from] AclFileError),
    #[error(transparent)]
    StoreAcl(#[from] StoreAclError),
}

/// Why a CONNECT was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// A user name the password file does not have, a wrong password, or no password.
    BadCredentials,
    /// No user name, and anonymous clients are not allowed.
    AnonymousNotAllowed,
    /// The user had to be looked up in the store, which failed or did not answer in time.
    StoreUnavailable,
}

/// The broker's authentication and authorization state. One per broker.
#[derive(Debug)]
pub struct Auth {
    /// `None`: no password file; user names are taken as given (for the ACL), unverified.
    passwords: Option<RwLock<Arc<PasswordFile>>>,
    /// Where the password file is, to read it again on SIGHUP.
    password_file: Option<PathBuf>,
    /// `Some`: user names not in the password file are looked up in the store.
    store_users: Option<StoreUsers>,
    /// Whether a client without a user name may connect.
    allow_anonymous: bool,
    /// `None`: no ACL file, nothing is checked after CONNECT.
    acl: Option<AclState>,
    /// Delays for repeated failures by address.
    throttle: Throttle,
    /// Rate limit of the log lines for denied publishes and deliveries.
    denial_log: LogLimit,
}

/// The ACL file and the rules of each client it was compiled for.
#[derive(Debug)]
struct AclState {
    /// Where the ACL file is, to read it again on SIGHUP (`None`: rules from the store only).
    path: Option<PathBuf>,
    /// The rules read from it. A reload replaces them and recompiles every admitted
    /// client's rules while holding the write lock; `admit` compiles and records a client's
    /// rules under the read lock, so that no client keeps rules of the file replaced.
    acl: RwLock<Acl>,
    /// The store's rules, joined to the file's for each client.
    store: Option<Arc<StoreAcl>>,
    /// The rules of the client that owns each session, set at CONNECT, so that a delivery
    /// to a session (online or away) is checked against the rules of its client. Removed
    /// when the session ends.
    clients: DashMap<ClientId, Admitted>,
}

/// A client whose rules were compiled, and what they were compiled from.
#[derive(Debug)]
struct Admitted {
    /// Kept (weakly) with the rules so that the end of an old session cannot remove the
    /// rules of a new one with the same client id.
    session: Weak<Session>,
    /// The user name the client connected as, to compile its rules again on a reload.
    username: Option<Arc<str>>,
    rules: Arc<ClientRules>,
}

impl Auth {
    /// No password file, no ACL, anonymous clients allowed: everything goes.
    pub fn open() -> Auth {
        Auth {
            passwords: None,
            password_file: None,
            store_users: None,
            allow_anonymous: true,
            acl: None,
            throttle: Throttle::default(),
            denial_log: LogLimit::default(),
        }
    }

    /// Reads the files `[auth]` names and decides whether anonymous clients are allowed:
    /// as configured, or else only while every listener is on a loopback address. Returns
    /// the reason for that decision too, for the start-up log.
    pub fn from_config(
        cfg: &AuthSection,
        listeners: &Listeners,
    ) -> Result<(Auth, String), AuthError> {
        let passwords = match &cfg.password_file {
            Some(p) => Some(RwLock::new(Arc::new(PasswordFile::load(p)?))),
            None => None,
        };
        let acl = match &cfg.acl_file {
            Some(p) => Some(AclState {
                acl: RwLock::new(Acl::load(p)?),
                path: Some(p.clone()),
                store: None,
                clients: DashMap::new(),
            }),
            None => None,
        };
        let (allow_anonymous, why) = match cfg.allow_anonymous {
            Some(true) => (true, "set by allow_anonymous".to_string()),
            Some(false) => (false, "set by allow_anonymous".to_string()),
            None => match non_loopback(listeners) {
                None => (true, "every listener is on loopback".to_string()),
                Some(addr) => (
                    false,
                    format!(
                        "listener {addr} is not on loopback (--allow-anonymous true allows them)"
                    ),
                ),
            },
        };
        let auth = Auth {
            passwords,
            password_file: cfg.password_file.clone(),
            store_users: None,
            allow_anonymous,
            acl,
            throttle: Throttle::default(),
            denial_log: LogLimit::default(),
        };
        Ok((auth, why))
    }

    /// With `auth.user_store` and `auth.acl_store`, takes users and ACL rules from `store`
    /// too (see `store_users`, `store_acl`); reads the rules once now, an error if that
    /// fails. `read_timeout` is the deadline of a store read.
    pub async fn use_store(
        &mut self,
        store: dynamq_store::users::UserStore,
        cfg: &AuthSection,
        read_timeout: Duration,
    ) -> Result<(), AuthError> {
        let every = Duration::from_secs(cfg.cache_secs.max(1));
        if cfg.user_store {
            self.store_users = Some(StoreUsers::new(store.clone(), every, read_timeout));
        }
        if cfg.acl_store {
            let rules = StoreAcl::start(store, every, read_timeout).await?;
            match &mut self.acl {
                Some(state) => state.store = Some(rules),
                None => {
                    self.acl = Some(AclState {
                        path: None,
                        acl: RwLock::new(Acl::default()),
                        store: Some(rules),
                        clients: DashMap::new(),
                    })
                }
            }
        }
        Ok(())
    }

    pub fn allows_anonymous(&self) -> bool {
        self.allow_anonymous
    }

    /// Users in the password file (`None` without one).
    pub fn user_count(&self) -> Option<usize> {
        self.passwords.as_ref().map(|p| p.read().len())
    }

    pub fn has_acl(&self) -> bool {
        self.acl.is_some()
    }

    /// True if an ACL file has `user` sections while no password file verifies user names:
    /// any client can then claim any user's rules (worth a warning at start).
    pub fn acl_users_unverified(&self) -> bool {
        self.passwords.is_none()
            && self.store_users.is_none()
            && self
                .acl
                .as_ref()
                .is_some_and(|a| a.acl.read().has_user_sections())
    }

    /// Reads the password file again (SIGHUP). On an error the users loaded before stay.
    pub fn reload_passwords(&self) -> Result<Option<usize>, PasswordFileError> {
        let (Some(path), Some(lock)) = (&self.password_file, &self.passwords) else {
            return Ok(None);
        };
        let fresh = PasswordFile::load(path)?;
        let n = fresh.len();
        *lock.write() = Arc::new(fresh);
        Ok(Some(n))
    }

    /// Reads the ACL file again (SIGHUP) and recompiles the rules of every client admitted,
    /// so that connected clients and sessions away are checked against the new rules from
    /// their next check on. Returns the number of clients whose rules were recompiled
    /// (`None` without an ACL file). On an error the rules loaded before stay.
    pub fn reload_acl(&self) -> Result<Option<usize>, AclFileError> {
        let Some((state, path)) = self
            .acl
            .as_ref()
            .and_then(|s| s.path.as_ref().map(|p| (s, p)))
        else {
            return Ok(None);
        };
        let fresh = Acl::load(path)?;
        let mut acl = state.acl.write();
        *acl = fresh;
        let mut n = 0;
        for mut e in state.clients.iter_mut() {
            let rules = self.rules_for(state, &acl, e.key().as_str(), e.username.as_deref());
            e.rules = Arc::new(rules);
            n += 1;
        }
        Ok(Some(n))
    }

    /// A client's rules: the file's joined to the store's, or everything for a superuser of
    /// the store.
    fn rules_for(
        &self,
        state: &AclState,
        acl: &Acl,
        client_id: &str,
        username: Option<&str>,
    ) -> ClientRules {
        if username.is_some_and(|u| self.is_store_superuser(u)) {
            return ClientRules::superuser();
        }
        let file = acl.for_client(client_id, username);
        match &state.store {
            Some(s) => file.merge(s.current().for_client(client_id, username)),
            None => file,
        }
    }

    /// Checks a CONNECT's user name and password. A slow hash is verified on the blocking
    /// pool; an unknown user costs the same hash as a known one, so that the time taken
    /// does not tell which user names exist.
    pub(crate) async fn authenticate(
        &self,
        username: Option<&str>,
        password: Option<&[u8]>,
    ) -> Result<(), Refusal> {
        let Some(username) = username else {
            return if self.allow_anonymous {
                Ok(())
            } else {
                Err(Refusal::AnonymousNotAllowed)
            };
        };
        if self.passwords.is_none() && self.store_users.is_none() {
            // No password file: a user name is an identity for the ACL, not a credential.
            return Ok(());
        }
        let in_file = self
            .passwords
            .as_ref()
            .and_then(|lock| lock.read().get(username).cloned());
        let (hash, known) = match (in_file, &self.store_users) {
            (Some(h), _) => (h, true),
            (None, None) => (dummy_hash().clone(), false),
            (None, Some(users)) => match users.lookup(username).await {
                Lookup::Found(u) => match &u.hash {
                    Some(h) => (h.clone(), true),
                    None => (dummy_hash().clone(), false),
                },
                Lookup::Unknown => (dummy_hash().clone(), false),
                Lookup::Unavailable => return Err(Refusal::StoreUnavailable),
            },
        };
        let password = password.unwrap_or_default().to_vec();
        let ok = if hash.is_costly() {
            tokio::task::spawn_blocking(move || hash.verify(&password))
                .await
                .unwrap_or(false)
        } else {
            hash.verify(&password)
        };
        if ok && known {
            Ok(())
        } else {
            Err(Refusal::BadCredentials)
        }
    }

    /// How long to wait before refusing a failed authentication from `peer`.
    pub(crate) fn failure_delay(&self, peer: &str) -> Duration {
        match throttle::peer_ip(peer) {
            Some(ip) => self.throttle.failed(ip),
            None => Duration::ZERO,
        }
    }

    /// Compiles the rules of a client that connected (without an ACL file: nothing to do);
    /// they become the rules its session's deliveries are checked against.
    pub(crate) fn admit(&self, session: &Arc<Session>, username: Option<&str>) {
        let Some(state) = &self.acl else { return };
        let client_id = &session.client_id;
        // Held until the rules are recorded: a reload waits, then recompiles them too.
        let acl = state.acl.read();
        let rules = Arc::new(self.rules_for(state, &acl, client_id.as_str(), username));
        state.clients.insert(
            client_id.clone(),
            Admitted {
                session: Arc::downgrade(session),
                username: username.map(Arc::from),
                rules,
            },
        );
    }

    /// The rules of the client connected to `session`, for what it publishes and subscribes
    /// to: `None` without an ACL file (nothing to check); rules that allow nothing if none
    /// were admitted for this session. Kept here rather than in the connection, so that an
    /// idle connection's record stays as small as it was.
    pub(crate) fn rules(&self, session: &Arc<Session>) -> Option<Arc<ClientRules>> {
        let state = self.acl.as_ref()?;
        Some(match state.clients.get(&session.client_id) {
            Some(e) if same(&e.session, session) => e.rules.clone(),
            _ => Arc::new(ClientRules::default()),
        })
    }

    /// A user of the store marked superuser (and not shadowed by the password file, which
    /// authenticated it otherwise): the ACL is not checked for it, as in EMQX.
    fn is_store_superuser(&self, username: &str) -> bool {
        let Some(users) = &self.store_users else {
            return false;
        };
        let in_file = self
            .passwords
            .as_ref()
            .is_some_and(|lock| lock.read().get(username).is_some());
        !in_file && users.is_superuser(username)
    }

    /// `session` ended: its client's rules are not needed any more.
    pub(crate) fn forget(&self, session: &Arc<Session>) {
        if let Some(state) = &self.acl {
            state
                .clients
                .remove_if(&session.client_id, |_, a| same(&a.session, session));
        }
    }

    /// `Some(state)` if deliveries are checked (an ACL file is loaded).
    pub(crate) fn delivery_check(&self) -> Option<DeliveryCheck<'_>> {
        self.acl.as_ref().map(|state| DeliveryCheck { state })
    }

    /// Whether to log a denial now: at most one line a second, with the number of denials
    /// not logged since the last line.
    pub(crate) fn log_denial(&self) -> Option<u64> {
        self.denial_log.admit()
    }
}

/// Checks deliveries against the subscribers' rules, for one publish.
pub(crate) struct DeliveryCheck<'a> {
    state: &'a AclState,
}

impl DeliveryCheck<'_> {
    /// May the client that owns `session` read `topic`? A session whose client has no
    /// rules (none admitted to it since the start) may not.
    pub(crate) fn may_read(&self, session: &Arc<Session>, topic: &str) -> bool {
        self.state
            .clients
            .get(&session.client_id)
            .is_some_and(|e| same(&e.session, session) && e.rules.allows(topic, Want::Read))
    }
}

fn same(weak: &Weak<Session>, session: &Arc<Session>) -> bool {
    std::ptr::eq(weak.as_ptr(), Arc::as_ptr(session))
}

/// A `$7$` hash of nothing at the default cost, verified for an unknown user name so that
/// it takes as long as a known one.
fn dummy_hash() -> &'static password::Hash {
    static DUMMY: OnceLock<password::Hash> = OnceLock::new();
    DUMMY.get_or_init(|| password::Hash::new_pbkdf2(b""))
}

/// The first listener address that is not loopback, if any.
fn non_loopback(l: &Listeners) -> Option<std::net::SocketAddr> {
    [&l.tcp, &l.ws, &l.tls, &l.wss]
        .into_iter()
        .flatten()
        .find(|a| !is_loopback(a.ip()))
        .copied()
}

fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn listeners(addrs: &[&str]) -> Listeners {
        Listeners {
            tcp: addrs
                .iter()
                .map(|a| a.parse::<SocketAddr>().unwrap())
                .collect(),
            ws: Vec::new(),
            ..Listeners::default()
        }
    }

    #[test]
    fn anonymous_default_follows_the_listeners() {
        let none = AuthSection::default();
        let (a, why) =
            Auth::from_config(&none, &listeners(&["127.0.0.1:1883", "[::1]:1"])).unwrap();
        assert!(a.allows_anonymous(), "{why}");
        let (a, why) =
            Auth::from_config(&none, &listeners(&["127.0.0.1:1", "0.0.0.0:1883"])).unwrap();
        assert!(!a.allows_anonymous());
        assert!(why.contains("0.0.0.0:1883"), "{why}");
        let set = AuthSection {
            allow_anonymous: Some(true),
            ..AuthSection::default()
        };
        let (a, _) = Auth::from_config(&set, &listeners(&["0.0.0.0:1883"])).unwrap();
        assert!(a.allows_anonymous());
    }

    #[tokio::test]
    async fn authenticate_against_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        let h = password::Hash::new_pbkdf2(b"right");
        std::fs::write(&path, format!("alice:{}\n", h.encode())).unwrap();
        let cfg = AuthSection {
            password_file: Some(path.clone()),
            allow_anonymous: Some(false),
            ..AuthSection::default()
        };
        let (a, _) = Auth::from_config(&cfg, &listeners(&["127.0.0.1:1"])).unwrap();
        assert_eq!(a.authenticate(Some("alice"), Some(b"right")).await, Ok(()));
        let bad = Err(Refusal::BadCredentials);
        assert_eq!(a.authenticate(Some("alice"), Some(b"wrong")).await, bad);
        assert_eq!(a.authenticate(Some("alice"), None).await, bad);
        assert_eq!(a.authenticate(Some("bob"), Some(b"")).await, bad);
        assert_eq!(
            a.authenticate(None, None).await,
            Err(Refusal::AnonymousNotAllowed)
        );
        // Reload: bob added, alice's password kept.
        let hb = password::Hash::new_pbkdf2(b"b");
        std::fs::write(
            &path,
            format!("alice:{}\nbob:{}\n", h.encode(), hb.encode()),
        )
        .unwrap();
        assert_eq!(a.reload_passwords().unwrap(), Some(2));
        assert_eq!(a.authenticate(Some("bob"), Some(b"b")).await, Ok(()));
        // A broken file on reload keeps the users loaded.
        std::fs::write(&path, "garbage\n").unwrap();
        assert!(a.reload_passwords().is_err());
        assert_eq!(a.authenticate(Some("bob"), Some(b"b")).await, Ok(()));
    }

    #[test]
    fn rules_belong_to_the_session_admitted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acl");
        std::fs::write(&path, "user u\ntopic read t/#\n").unwrap();
        let cfg = AuthSection {
            acl_file: Some(path),
            ..AuthSection::default()
        };
        let (a, _) = Auth::from_config(&cfg, &listeners(&["127.0.0.1:1"])).unwrap();
        let old = Arc::new(Session::new(ClientId::new("c")));
        let new = Arc::new(Session::new(ClientId::new("c")));
        a.admit(&old, Some("u"));
        let check = a.delivery_check().unwrap();
        assert!(check.may_read(&old, "t/x"));
        assert!(!check.may_read(&old, "x"));
        // Another session of the same client id has no rules: denied.
        assert!(!check.may_read(&new, "t/x"));
        assert!(!a.rules(&new).unwrap().allows("t/x", Want::Read));
        // Its end does not remove the rules of the session admitted.
        a.forget(&new);
        assert!(check.may_read(&old, "t/x"));
        a.forget(&old);
        assert!(!check.may_read(&old, "t/x"));
        // Without an ACL, nothing to check.
        assert!(Auth::open().rules(&old).is_none());
        assert!(Auth::open().delivery_check().is_none());
    }

    #[test]
    fn reloaded_acl_applies_to_admitted_clients() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("acl");
        std::fs::write(&path, "user u\ntopic readwrite a/#\n").unwrap();
        let cfg = AuthSection {
            acl_file: Some(path.clone()),
            ..AuthSection::default()
        };
        let (a, _) = Auth::from_config(&cfg, &listeners(&["127.0.0.1:1"])).unwrap();
        let s = Arc::new(Session::new(ClientId::new("c")));
        a.admit(&s, Some("u"));
        assert!(a.rules(&s).unwrap().allows("a/x", Want::Write));
        assert!(!a.rules(&s).unwrap().allows("b/x", Want::Write));
        // The new file takes effect for the client already admitted, deliveries included.
        std::fs::write(&path, "user u\ntopic readwrite b/#\n").unwrap();
        assert_eq!(a.reload_acl().unwrap(), Some(1));
        assert!(!a.rules(&s).unwrap().allows("a/x", Want::Write));
        assert!(a.rules(&s).unwrap().allows("b/x", Want::Write));
        assert!(a.delivery_check().unwrap().may_read(&s, "b/y"));
        // A broken file keeps the rules in force, and says which line.
        std::fs::write(&path, "user u\nbogus b/#\n").unwrap();
        let err = a.reload_acl().unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(a.rules(&s).unwrap().allows("b/x", Want::Write));
        // Without an ACL file there is nothing to reload.
        assert_eq!(Auth::open().reload_acl().unwrap(), None);
    }
}
