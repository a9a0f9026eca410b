//! Building the persistence from the configuration: which store, which bindings (the TOML
//! `[[hooks]]`, the tutorial's `backend.dynamo.*` file, or the tutorial's ten by default),
//! and, for DynamoDB, a check of the six tables before the broker starts.

use std::path::Path;

use dynamq_store::actions::{Actions, ActionsConfig, OverflowPolicy, StoreConfig};
use dynamq_store::backend_conf::BackendConf;
use dynamq_store::binding::{Action, Binding, Event, default_bindings, parse_duration};
use dynamq_store::dynamo::DynamoConfig;

use super::Persistence;
use crate::config::{Config, Durability, HookEntry, Overflow, StoreKind};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    BackendConf(#[from] dynamq_store::backend_conf::ConfError),
    #[error("hooks[{index}]: {message}")]
    Hook { index: usize, message: String },
    #[error("cannot open the store")]
    Actions(#[from] dynamq_store::actions::ActionsError),
    #[error("cannot check the DynamoDB tables")]
    Check(#[source] dynamq_store::error::StoreError),
    #[error("the DynamoDB tables are not as dynamq needs them (run `dynamq tables create`):\n{0}")]
    Tables(String),
}

/// Applies a tutorial-format backend file: it names DynamoDB, its pool's server, keys and
/// pool size, and its bindings (hook lines).
pub fn apply_backend_conf(config: &mut Config, path: &Path) -> Result<Vec<Binding>, SetupError> {
    let conf = BackendConf::from_file(path)?;
    config.store.kind = StoreKind::Dynamo;
    let pool = conf
        .bindings
        .iter()
        .find_map(|h| h.pool.clone())
        .or_else(|| conf.pools.keys().next().cloned());
    if let Some(pool) = pool {
        let prefix = std::mem::take(&mut config.store.dynamo.table_prefix);
        config.store.dynamo = DynamoConfig {
            table_prefix: prefix,
            ..conf.dynamo_config(&pool)?
        };
    } else if let Some(region) = conf.region {
        config.store.dynamo.region = region;
    }
    Ok(conf.bindings)
}

/// The TOML `[[hooks]]` entries as bindings; unknown names are errors naming the entry.
pub fn bindings_from_config(entries: &[HookEntry]) -> Result<Vec<Binding>, SetupError> {
    let mut specs = Vec::with_capacity(entries.len());
    for (index, e) in entries.iter().enumerate() {
        let err = |message: String| SetupError::Hook { index, message };
        let event = Event::from_name(&e.event)
            .ok_or_else(|| err(format!("unknown event {:?}", e.event)))?;
        let action = Action::from_name(&e.function)
            .ok_or_else(|| err(format!("unknown function {:?}", e.function)))?;
        if action.event() != event {
            return Err(err(format!(
                "function {} runs on {}, not {}",
                action.name(),
                action.event(),
                event
            )));
        }
        let time_range = match &e.time_range {
            None => None,
            Some(t) => {
                Some(parse_duration(t).ok_or_else(|| err(format!("invalid time_range {t:?}")))?)
            }
        };
        specs.push(Binding {
            event,
            seq: index as u32 + 1,
            topic_filter: e.topic.clone(),
            action,
            pool: e.pool.clone(),
            max_returned_count: e.max_returned_count,
            time_range,
        });
    }
    Ok(specs)
}

/// Opens the configured store with `bindings` (the tutorial's ten if empty). DynamoDB tables are
/// checked first: a missing table or a wrong key schema stops the start.
pub async fn build(config: &Config, bindings: Vec<Binding>) -> Result<Persistence, SetupError> {
    let store = match config.store.kind {
        StoreKind::None => return Ok(Persistence::none()),
        StoreKind::Embedded => StoreConfig::Embedded {
            data_dir: config.data_dir.clone(),
        },
        StoreKind::Dynamo => {
            let dc = config.store.dynamo.clone();
            let client = dynamq_store::dynamo::connect(&dc).await;
            let report = dynamq_store::tables::check_tables(&client, &dc.table_prefix)
                .await
                .map_err(SetupError::Check)?;
            if !report.is_ok() {
                return Err(SetupError::Tables(report.to_string()));
            }
            StoreConfig::Dynamo(dc)
        }
    };
    let bindings = if bindings.is_empty() {
        default_bindings()
    } else {
        bindings
    };
    let mut bc = ActionsConfig::new(store, config.node_name.clone());
    bc.overflow = match config.store.overflow {
        Overflow::Wait => OverflowPolicy::Wait,
        Overflow::Drop => OverflowPolicy::Drop,
    };
    bc.map_cap_per_topic = config.store.map_cap_per_topic;
    bc.buffer_bytes = config.store.buffer_bytes;
    bc.journal_bytes = config.store.journal_bytes;
    bc.coalesce = std::time::Duration::from_millis(config.store.coalesce_ms);
    // The journal lives in the data directory whatever the store (DynamoDB too).
    bc.journal_dir = Some(config.data_dir.clone());
    bc.max_stored_per_topic = config.store.max_stored_per_topic;
    let actions = Actions::new(bc, bindings).await?;
    let mut persistence = Persistence::with_actions(
        actions,
        &config.node_name,
        config.store.durability == Durability::Sync,
    );
    persistence.set_read_timeout(std::time::Duration::from_millis(
        config.store.read_timeout_ms.max(1),
    ));
    Ok(persistence)
}
