//! mqtt_user and mqtt_acl in a redb file of their own, `users.redb` in the data dir.
//!
//! Not in `dynamq.redb`: redb locks an open file against any other opener, and the broker
//! holds `dynamq.redb` open for as long as it runs. This file is opened for each operation
//! and closed after it, so that `dynamq user add` can write while a broker reads (an open
//! that finds the file locked waits and tries again, up to [`LOCKED_WAIT`]). Operations of
//! one process take turns (a mutex), as the lock would refuse a second opener anyway.
//!
//! Keys as on DynamoDB: `username`, and (`username`, `topic`) for rules. Values are postcard.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, DatabaseError, ReadableDatabase, ReadableTable, TableDefinition, TableError};

use super::{ACL_TABLE, AclRecord, USER_TABLE, UserRecord};
use crate::error::StoreError;

const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new(USER_TABLE);
const RULES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new(ACL_TABLE);

/// The file's name inside the data dir.
pub const USERS_FILE: &str = "users.redb";

/// How long an open waits for another process (a broker, `dynamq user`) to close the file.
const LOCKED_WAIT: Duration = Duration::from_secs(3);
/// redb's page cache for this small file.
const CACHE_BYTES: usize = 64 * 1024;

/// A mqtt_user value: the item but its key. Field order is the format.
#[derive(serde::Serialize, serde::Deserialize)]
struct UserValue {
    password_hash: String,
    is_superuser: bool,
    created: i64,
}

/// A mqtt_acl value: the item but its key.
#[derive(serde::Serialize, serde::Deserialize)]
struct RuleValue {
    permission: String,
    action: String,
}

/// The users file of a data dir.
#[derive(Debug, Clone)]
pub struct EmbeddedUsers {
    path: Arc<PathBuf>,
    /// One operation at a time in this process.
    turn: Arc<Mutex<()>>,
}

fn fail(operation: &'static str, table: &'static str) -> impl Fn(String) -> StoreError {
    move |message| StoreError::Embedded {
        operation,
        table,
        message,
    }
}

/// A table of the file, for reading; `None` if nothing was ever written to it.
fn read_table<K: redb::Key + 'static, V: redb::Value + 'static>(
    db: &Database,
    def: TableDefinition<K, V>,
    e: &impl Fn(String) -> StoreError,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    let txn = db.begin_read().map_err(|x| e(x.to_string()))?;
    match txn.open_table(def) {
        Ok(t) => Ok(Some(t)),
        Err(TableError::TableDoesNotExist(_)) => Ok(None),
        Err(x) => Err(e(x.to_string())),
    }
}

impl EmbeddedUsers {
    /// The users file in `data_dir` (created, with the directory, on the first write).
    pub fn new(data_dir: impl AsRef<Path>) -> EmbeddedUsers {
        EmbeddedUsers {
            path: Arc::new(data_dir.as_ref().join(USERS_FILE)),
            turn: Arc::new(Mutex::new(())),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on the open database, on the blocking pool.
    async fn with_db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let path = self.path.clone();
        let turn = self.turn.clone();
        tokio::task::spawn_blocking(move || {
            // A panic while holding it poisons nothing we rely on: the guard protects no data.
            let _turn = turn.lock().unwrap_or_else(|p| p.into_inner());
            let db = open(&path)?;
            f(&db)
        })
        .await
        .map_err(|e| StoreError::Task(e.to_string()))?
    }

    pub(super) async fn put_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        let key = u.username.clone();
        let value = encode(&UserValue {
            password_hash: u.password_hash.clone(),
            is_superuser: u.is_superuser,
            created: u.created,
        })?;
        self.with_db(move |db| {
            write(db, "put", USER_TABLE, |txn| {
                txn.open_table(USERS)?
                    .insert(key.as_str(), value.as_slice())?;
                Ok(())
            })
        })
        .await
    }

    pub(super) async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let name = username.to_owned();
        self.with_db(move |db| {
            let e = fail("get", USER_TABLE);
            let Some(t) = read_table(db, USERS, &e)? else {
                return Ok(None);
            };
            match t.get(name.as_str()).map_err(|x| e(x.to_string()))? {
                None => Ok(None),
                Some(v) => user_from(&name, v.value()).map(Some),
            }
        })
        .await
    }

    pub(super) async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        self.with_db(|db| {
            let e = fail("scan", USER_TABLE);
            let Some(t) = read_table(db, USERS, &e)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for row in t.iter().map_err(|x| e(x.to_string()))? {
                let (k, v) = row.map_err(|x| e(x.to_string()))?;
                out.push(user_from(k.value(), v.value())?);
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        let name = username.to_owned();
        self.with_db(move |db| {
            write(db, "delete", USER_TABLE, |txn| {
                Ok(txn.open_table(USERS)?.remove(name.as_str())?.is_some())
            })
        })
        .await
    }

    pub(super) async fn put_rule(&self, r: &AclRecord) -> Result<(), StoreError> {
        let (user, topic) = (r.username.clone(), r.topic.clone());
        let value = encode(&RuleValue {
            permission: r.permission.as_str().to_owned(),
            action: r.action.as_str().to_owned(),
        })?;
        self.with_db(move |db| {
            write(db, "put", ACL_TABLE, |txn| {
                txn.open_table(RULES)?
                    .insert((user.as_str(), topic.as_str()), value.as_slice())?;
                Ok(())
            })
        })
        .await
    }

    pub(super) async fn rules(&self) -> Result<Vec<AclRecord>, StoreError> {
        self.with_db(|db| {
            let e = fail("scan", ACL_TABLE);
            let Some(t) = read_table(db, RULES, &e)? else {
                return Ok(Vec::new());
            };
            let mut out = Vec::new();
            for row in t.iter().map_err(|x| e(x.to_string()))? {
                let (k, v) = row.map_err(|x| e(x.to_string()))?;
                let (user, topic) = k.value();
                out.push(rule_from(user, topic, v.value())?);
            }
            Ok(out)
        })
        .await
    }

    pub(super) async fn delete_rule(
        &self,
        username: &str,
        topic: &str,
    ) -> Result<bool, StoreError> {
        let (user, topic) = (username.to_owned(), topic.to_owned());
        self.with_db(move |db| {
            write(db, "delete", ACL_TABLE, |txn| {
                Ok(txn
                    .open_table(RULES)?
                    .remove((user.as_str(), topic.as_str()))?
                    .is_some())
            })
        })
        .await
    }
}

/// Opens (or creates) the file, waiting while another process has it open.
fn open(path: &Path) -> Result<Database, StoreError> {
    let open_err = |message: String| StoreError::EmbeddedOpen {
        path: path.to_owned(),
        message,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| open_err(format!("cannot create data dir: {e}")))?;
    }
    let start = Instant::now();
    loop {
        match Database::builder().set_cache_size(CACHE_BYTES).create(path) {
            Ok(db) => return Ok(db),
            Err(DatabaseError::DatabaseAlreadyOpen) if start.elapsed() < LOCKED_WAIT => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(DatabaseError::DatabaseAlreadyOpen) => {
                return Err(open_err(format!(
                    "still open by another process after {LOCKED_WAIT:?}"
                )));
            }
            Err(e) => return Err(open_err(e.to_string())),
        }
    }
}

/// One write transaction, committed durably.
fn write<T>(
    db: &Database,
    operation: &'static str,
    table: &'static str,
    f: impl FnOnce(&redb::WriteTransaction) -> Result<T, redb::Error>,
) -> Result<T, StoreError> {
    let run = || -> Result<T, redb::Error> {
        let txn = db.begin_write()?;
        let out = f(&txn)?;
        txn.commit()?;
        Ok(out)
    };
    run().map_err(|e| fail(operation, table)(e.to_string()))
}

fn encode<T: serde::Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    postcard::to_stdvec(v).map_err(|e| StoreError::Embedded {
        operation: "encode",
        table: USER_TABLE,
        message: e.to_string(),
    })
}

fn bad(table: &str, key: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::BadItem {
        table: table.to_owned(),
        reason: format!("{key}: {e}"),
    }
}

fn user_from(username: &str, bytes: &[u8]) -> Result<UserRecord, StoreError> {
    let v: UserValue = postcard::from_bytes(bytes).map_err(|e| bad(USER_TABLE, username, e))?;
    Ok(UserRecord {
        username: username.to_owned(),
        password_hash: v.password_hash,
        is_superuser: v.is_superuser,
        created: v.created,
    })
}

fn rule_from(username: &str, topic: &str, bytes: &[u8]) -> Result<AclRecord, StoreError> {
    let key = format!("{username} {topic}");
    let v: RuleValue = postcard::from_bytes(bytes).map_err(|e| bad(ACL_TABLE, &key, e))?;
    Ok(AclRecord {
        username: username.to_owned(),
        topic: topic.to_owned(),
        permission: v.permission.parse().map_err(|e| bad(ACL_TABLE, &key, e))?,
        action: v.action.parse().map_err(|e| bad(ACL_TABLE, &key, e))?,
    })
}
