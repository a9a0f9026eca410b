//! Building the hooks from the configuration: which store, which hook bindings (the TOML
//! `[[hooks]]`, the tutorial's `backend.dynamo.*` file, or the tutorial's ten by default),
//! and, for DynamoDB, a check of the six tables before the broker starts.

use std::path::Path;

use dynamq_store::actions::{Backend, BackendConfig, OverflowPolicy, StoreConfig};
use dynamq_store::backend_conf::BackendConf;
use dynamq_store::dynamo::DynamoConfig;
use dynamq_store::hooks::{HookEvent, HookFunction, HookSpec, default_hooks, parse_duration};

use super::Hooks;
use crate::config::{Config, HookEntry, Overflow, StoreKind};

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error(transparent)]
    BackendConf(#[from] dynamq_store::backend_conf::ConfError),
    #[error("hooks[{index}]: {message}")]
    Hook { index: usize, message: String },
    #[error("cannot open the store")]
    Backend(#[from] dynamq_store::actions::BackendError),
    #[error("cannot check the DynamoDB tables")]
    Check(#[source] dynamq_store::error::StoreError),
    #[error("the DynamoDB tables are not as dynamq needs them (run `dynamq tables create`):\n{0}")]
    Tables(String),
}

/// Applies a tutorial-format backend file: it names DynamoDB, its pool's server, keys and
/// pool size, and its hooks.
pub fn apply_backend_conf(config: &mut Config, path: &Path) -> Result<Vec<HookSpec>, SetupError> {
    let conf = BackendConf::from_file(path)?;
    config.store.kind = StoreKind::Dynamo;
    let pool = conf
        .hooks
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
    Ok(conf.hooks)
}

/// The TOML `[[hooks]]` entries as hook specs; unknown names are errors naming the entry.
pub fn hooks_from_config(entries: &[HookEntry]) -> Result<Vec<HookSpec>, SetupError> {
    let mut specs = Vec::with_capacity(entries.len());
    for (index, e) in entries.iter().enumerate() {
        let err = |message: String| SetupError::Hook { index, message };
        let event = HookEvent::from_name(&e.event)
            .ok_or_else(|| err(format!("unknown event {:?}", e.event)))?;
        let function = HookFunction::from_name(&e.function)
            .ok_or_else(|| err(format!("unknown function {:?}", e.function)))?;
        if function.event() != event {
            return Err(err(format!(
                "function {} runs on {}, not {}",
                function.name(),
                function.event(),
                event
            )));
        }
        let time_range = match &e.time_range {
            None => None,
            Some(t) => {
                Some(parse_duration(t).ok_or_else(|| err(format!("invalid time_range {t:?}")))?)
            }
        };
        specs.push(HookSpec {
            event,
            seq: index as u32 + 1,
            topic_filter: e.topic.clone(),
            function,
            pool: e.pool.clone(),
            max_returned_count: e.max_returned_count,
            time_range,
        });
    }
    Ok(specs)
}

/// Opens the configured store with `hooks` (the tutorial's ten if empty). DynamoDB tables are
/// checked first: a missing table or a wrong key schema stops the start.
pub async fn build(config: &Config, hooks: Vec<HookSpec>) -> Result<Hooks, SetupError> {
    let store = match config.store.kind {
        StoreKind::None => return Ok(Hooks::none()),
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
    let hooks = if hooks.is_empty() {
        default_hooks()
    } else {
        hooks
    };
    let mut bc = BackendConfig::new(store, config.node_name.clone());
    bc.overflow = match config.store.overflow {
        Overflow::Wait => OverflowPolicy::Wait,
        Overflow::Drop => OverflowPolicy::Drop,
    };
    bc.map_cap_per_topic = config.store.map_cap_per_topic;
    let backend = Backend::new(bc, hooks).await?;
    Ok(Hooks::with_backend(backend, &config.node_name))
}
