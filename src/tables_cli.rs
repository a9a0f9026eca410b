//! `dynamq tables create|check`: the DynamoDB tables, made or checked with the settings of
//! a config file, a backend file or flags.

use anyhow::{Result, bail};
use dynamq::config::Config;
use dynamq::persistence::setup;
use dynamq_store::tables::{Billing, Created};

use crate::{TablesCommand, TablesTarget};

/// The store settings of `dynamq tables` (and `dynamq user|acl`): a config file, a backend
/// file, then the DynamoDB flags.
pub(crate) fn tables_config(t: &TablesTarget) -> Result<Config> {
    let mut config = match &t.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(file) = &t.backend_conf {
        setup::apply_backend_conf(&mut config, file)?;
    }
    let d = &mut config.store.dynamo;
    if let Some(e) = &t.endpoint {
        d.endpoint = Some(e.clone());
    }
    if let Some(r) = &t.region {
        d.region = r.clone();
    }
    if let Some(p) = &t.prefix {
        d.table_prefix = p.clone();
    }
    Ok(config)
}

pub(crate) async fn tables(cmd: TablesCommand) -> Result<()> {
    crate::init_logging("warn", Default::default())?;
    match cmd {
        TablesCommand::Create { target, billing } => {
            let billing = match billing.as_str() {
                "pay-per-request" => Billing::PayPerRequest,
                "provisioned" => Billing::Provisioned { rcu: 5, wcu: 5 },
                other => bail!("--billing {other}: expected pay-per-request or provisioned"),
            };
            let config = tables_config(&target)?;
            let dc = config.store.dynamo.clone();
            let client = dynamq_store::dynamo::connect(&dc).await;
            let done =
                dynamq_store::tables::create_tables(&client, &dc.table_prefix, billing).await?;
            for (name, what) in done {
                println!(
                    "{name}: {}",
                    match what {
                        Created::Created => "created",
                        Created::AlreadyExisted => "already exists",
                    }
                );
            }
            Ok(())
        }
        TablesCommand::Check { target } => {
            let config = tables_config(&target)?;
            let dc = config.store.dynamo.clone();
            let client = dynamq_store::dynamo::connect(&dc).await;
            let report = dynamq_store::tables::check_tables(&client, &dc.table_prefix).await?;
            print!("{report}");
            if !report.is_ok() {
                bail!(
                    "the tables are not as dynamq needs them (dynamq tables create fixes missing ones)"
                );
            }
            Ok(())
        }
    }
}
