//! `dynamq user add|del|list` and `dynamq acl add|del|list`: the users and ACL rules kept in
//! the store (mqtt_user, mqtt_acl), on the store `serve` would use with the same config and
//! flags: the embedded data dir (`users.redb` there) or DynamoDB.
//!
//! Output never shows a password or a hash: `user list` prints names, the superuser flag
//! and when each user was added.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use dynamq::auth::acl::Acl;
use dynamq::auth::password::{self, Hash};
use dynamq::auth::store_acl;
use dynamq::config::{Config, StoreKind};
use dynamq_store::users::dynamo::DynamoUsers;
use dynamq_store::users::embedded::EmbeddedUsers;
use dynamq_store::users::{ALL_USERS, AclAction, AclRecord, Permission, UserRecord, UserStore};

/// Which store: the same settings as `serve` (a config file, the tutorial's backend file,
/// then these flags).
#[derive(Args)]
pub(crate) struct StoreTarget {
    /// The config file, backend file and DynamoDB flags, as for `dynamq tables`.
    #[command(flatten)]
    dynamo: crate::TablesTarget,
    /// embedded (the data dir) or dynamo.
    #[arg(long, value_parser = ["embedded", "dynamo"])]
    store: Option<String>,
    /// Directory of the embedded store.
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user, or change its password. Without --password the password is asked on
    /// the terminal (twice), or read from the first line of stdin.
    Add {
        #[command(flatten)]
        target: StoreTarget,
        name: String,
        /// The password (it shows in the process list and the shell history).
        #[arg(long)]
        password: Option<String>,
        /// A superuser may publish and subscribe to everything (the ACL is not checked).
        #[arg(long)]
        superuser: bool,
    },
    /// Remove a user (connected clients stay; new connections are refused within
    /// auth.cache_secs on every node).
    Del {
        #[command(flatten)]
        target: StoreTarget,
        name: String,
    },
    /// List the users: name, superuser, created (Unix seconds).
    List {
        #[command(flatten)]
        target: StoreTarget,
    },
}

#[derive(Subcommand)]
pub(crate) enum AclCommand {
    /// Add a rule, or replace the one of USER for TOPIC.
    Add {
        #[command(flatten)]
        target: StoreTarget,
        /// A user name, or $all for every client.
        user: String,
        /// allow or deny.
        permission: String,
        /// publish, subscribe or all.
        action: String,
        /// A topic filter; in $all rules a level may be %c (client id) or %u (user name).
        topic: String,
    },
    /// Remove the rule of USER for TOPIC.
    Del {
        #[command(flatten)]
        target: StoreTarget,
        user: String,
        topic: String,
    },
    /// List the rules: user, permission, action, topic.
    List {
        #[command(flatten)]
        target: StoreTarget,
    },
}

fn target_config(t: &StoreTarget) -> Result<Config> {
    let mut config = crate::tables_cli::tables_config(&t.dynamo)?;
    if let Some(kind) = &t.store {
        config.store.kind = if kind == "dynamo" {
            StoreKind::Dynamo
        } else {
            StoreKind::Embedded
        };
    }
    if let Some(d) = &t.data_dir {
        config.data_dir = d.clone();
    }
    Ok(config)
}

/// The users and rules of the store `config` names.
pub(crate) async fn user_store(config: &Config) -> Result<UserStore> {
    Ok(match config.store.kind {
        StoreKind::Embedded => UserStore::Embedded(EmbeddedUsers::new(&config.data_dir)),
        StoreKind::Dynamo => {
            let dc = &config.store.dynamo;
            let client = dynamq_store::dynamo::connect(dc).await;
            UserStore::Dynamo(DynamoUsers::new(client, &dc.table_prefix))
        }
        StoreKind::None => bail!("no store (store.kind = none): users need one"),
    })
}

async fn open(t: &StoreTarget) -> Result<UserStore> {
    let config = target_config(t)?;
    crate::init_logging("warn", dynamq::secrets::Redacting::for_config(&config))?;
    user_store(&config).await
}

pub(crate) async fn user(cmd: UserCommand) -> Result<()> {
    match cmd {
        UserCommand::Add {
            target,
            name,
            password,
            superuser,
        } => {
            if !password::valid_user_name(&name) || name == ALL_USERS {
                bail!(
                    "invalid user name {name:?}: it must not be empty, be {ALL_USERS}, or contain ':' or control characters"
                );
            }
            let pw = match password {
                Some(p) => p,
                None => crate::read_password()?,
            };
            if pw.is_empty() {
                bail!("empty password");
            }
            let store = open(&target).await?;
            let existed = store.user(&name).await?.is_some();
            let created = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            // The hash is computed on this thread: the command does nothing else meanwhile.
            let record = UserRecord {
                username: name.clone(),
                password_hash: Hash::new_pbkdf2(pw.as_bytes()).encode(),
                is_superuser: superuser,
                created,
            };
            store
                .put_user(&record)
                .await
                .context("cannot add the user")?;
            println!("{name}: {}", if existed { "replaced" } else { "added" });
            Ok(())
        }
        UserCommand::Del { target, name } => {
            let store = open(&target).await?;
            if !store.delete_user(&name).await? {
                bail!("no user {name:?}");
            }
            println!("{name}: deleted");
            Ok(())
        }
        UserCommand::List { target } => {
            let store = open(&target).await?;
            println!("username\tsuperuser\tcreated");
            for u in store.users().await? {
                println!("{}\t{}\t{}", u.username, u.is_superuser, u.created);
            }
            Ok(())
        }
    }
}

pub(crate) async fn acl(cmd: AclCommand) -> Result<()> {
    match cmd {
        AclCommand::Add {
            target,
            user,
            permission,
            action,
            topic,
        } => {
            let permission: Permission = permission.parse()?;
            let action: AclAction = action.parse()?;
            let access = store_acl::access(permission, action);
            Acl::default()
                .add_pattern(access, &topic)
                .map_err(|e| anyhow::anyhow!("topic: {e}"))?;
            if user != ALL_USERS && store_acl::has_placeholder(&topic) {
                bail!(
                    "%c and %u are substituted in {ALL_USERS} rules only (as in Mosquitto's pattern lines)"
                );
            }
            if user.is_empty() {
                bail!("empty user name");
            }
            let store = open(&target).await?;
            store
                .put_rule(&AclRecord {
                    username: user.clone(),
                    topic: topic.clone(),
                    permission,
                    action,
                })
                .await
                .context("cannot add the rule")?;
            println!("{user} {permission} {action} {topic}: added");
            Ok(())
        }
        AclCommand::Del {
            target,
            user,
            topic,
        } => {
            let store = open(&target).await?;
            if !store.delete_rule(&user, &topic).await? {
                bail!("no rule of {user:?} for {topic:?}");
            }
            println!("{user} {topic}: deleted");
            Ok(())
        }
        AclCommand::List { target } => {
            let store = open(&target).await?;
            println!("username\tpermission\taction\ttopic");
            for r in store.rules().await? {
                println!(
                    "{}\t{}\t{}\t{}",
                    r.username, r.permission, r.action, r.topic
                );
            }
            Ok(())
        }
    }
}
