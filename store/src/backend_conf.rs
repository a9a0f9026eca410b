//! The tutorial's `emqx_backend_dynamo.conf` format, accepted as it is (`--backend-conf`):
//!
//! ```text
//! ## comment
//! backend.dynamo.region = us-west-2
//! backend.dynamo.pool1.server = http://localhost:8000
//! backend.dynamo.pool1.pool_size = 8
//! backend.dynamo.pool1.aws_access_key_id = AKIA...
//! backend.dynamo.pool1.aws_secret_access_key = ...
//! backend.dynamo.hook.message.publish.1 = {"topic": "#", "action": {"function": "on_message_publish"}, "pool": "pool1"}
//! backend.dynamo.hook.session.subscribed.1 = {"topic": "#", "action": {"function": "on_message_fetch_for_queue"}, "offline_opts": {"max_returned_count": 500, "time_range": "2h"}, "pool": "pool1"}
//! ```
//! Every error names the file and line. Unknown keys, events, functions, pools and JSON
//! fields are errors rather than ignored, so a typo never silently disables persistence.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::binding::{Action, Binding, Event, parse_duration};
use crate::dynamo::DynamoConfig;
use crate::secret::Secret;

/// A parsed backend config file.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendConf {
    /// `backend.dynamo.region`.
    pub region: Option<String>,
    /// `backend.dynamo.<pool>.*`, by pool name.
    pub pools: BTreeMap<String, PoolConf>,
    /// The bindings (hook lines), sorted by event then sequence number. Empty if the file has none (then the
    /// caller uses [`crate::binding::default_bindings`]).
    pub bindings: Vec<Binding>,
}

/// One connection pool. The credentials are [`Secret`]s: `Debug` redacts them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PoolConf {
    pub server: Option<String>,
    pub pool_size: Option<usize>,
    pub aws_access_key_id: Option<Secret>,
    pub aws_secret_access_key: Option<Secret>,
}

impl BackendConf {
    /// Whether the file gives AWS credentials (a file that does should be readable by its
    /// owner only).
    pub fn holds_secret(&self) -> bool {
        self.pools
            .values()
            .any(|p| p.aws_access_key_id.is_some() || p.aws_secret_access_key.is_some())
    }
}

/// A config file error, with its place.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    #[error("{file}:{line}: {message}")]
    Line {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: {message}")]
    File { file: String, message: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HookJson {
    topic: Option<String>,
    action: ActionJson,
    pool: Option<String>,
    offline_opts: Option<OfflineOpts>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionJson {
    function: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OfflineOpts {
    max_returned_count: Option<usize>,
    /// `"2h"` or a number of seconds.
    time_range: Option<serde_json::Value>,
}

const PREFIX: &str = "backend.dynamo.";

impl BackendConf {
    /// Reads and parses a file.
    pub fn from_file(path: &Path) -> Result<BackendConf, ConfError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfError::Io {
            file: file.clone(),
            source,
        })?;
        BackendConf::parse(&text, &file)
    }

    /// Parses the text of a file; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<BackendConf, ConfError> {
        let mut conf = BackendConf::default();
        // Pool names used by hooks, with the line, checked once every pool is known.
        let mut pool_refs: Vec<(String, usize)> = Vec::new();
        for (idx, raw) in text.lines().enumerate() {
            let line_no = idx + 1;
            let err = |message: String| ConfError::Line {
                file: file.to_owned(),
                line: line_no,
                message,
            };
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (key, value) = line
                .split_once('=')
                // The line itself is not repeated: it may hold a secret key.
                .ok_or_else(|| err("expected `key = value`".to_owned()))?;
            let (key, value) = (key.trim(), unquote(value.trim()));
            let rest = key
                .strip_prefix(PREFIX)
                .ok_or_else(|| err(format!("unknown key {key:?} (expected backend.dynamo.*)")))?;
            if rest == "region" {
                conf.region = Some(value.to_owned());
            } else if let Some(hook) = rest.strip_prefix("hook.") {
                let spec = parse_hook(hook, value).map_err(err)?;
                if conf
                    .bindings
                    .iter()
                    .any(|h| h.event == spec.event && h.seq == spec.seq)
                {
                    return Err(err(format!("duplicate hook {}.{}", spec.event, spec.seq)));
                }
                if let Some(pool) = &spec.pool {
                    pool_refs.push((pool.clone(), line_no));
                }
                conf.bindings.push(spec);
            } else if let Some((pool, setting)) = rest.split_once('.') {
                let p = conf.pools.entry(pool.to_owned()).or_default();
                match setting {
                    "server" => p.server = Some(value.to_owned()),
                    "pool_size" => {
                        let n: usize = value.parse().ok().filter(|n| *n > 0).ok_or_else(|| {
                            err(format!(
                                "pool_size must be a positive integer, found {value:?}"
                            ))
                        })?;
                        p.pool_size = Some(n);
                    }
                    "aws_access_key_id" => p.aws_access_key_id = Some(value.into()),
                    "aws_secret_access_key" => p.aws_secret_access_key = Some(value.into()),
                    other => return Err(err(format!("unknown pool setting {other:?} in {key:?}"))),
                }
            } else {
                return Err(err(format!("unknown key {key:?}")));
            }
        }
        for (pool, line) in pool_refs {
            if !conf.pools.contains_key(&pool) {
                return Err(ConfError::Line {
                    file: file.to_owned(),
                    line,
                    message: format!("hook uses pool {pool:?}, which is not configured"),
                });
            }
        }
        conf.bindings.sort_by_key(|h| (h.event, h.seq));
        Ok(conf)
    }

    /// The DynamoDB connection settings of one pool (region from `backend.dynamo.region`).
    pub fn dynamo_config(&self, pool: &str) -> Result<DynamoConfig, ConfError> {
        let p = self.pools.get(pool).ok_or_else(|| ConfError::File {
            file: String::new(),
            message: format!("pool {pool:?} is not configured"),
        })?;
        Ok(DynamoConfig {
            region: self
                .region
                .clone()
                .unwrap_or_else(|| "us-east-1".to_owned()),
            endpoint: p.server.clone(),
            pool_size: p.pool_size.unwrap_or(8),
            access_key_id: p.aws_access_key_id.clone(),
            secret_access_key: p.aws_secret_access_key.clone(),
            table_prefix: String::new(),
        })
    }
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// `<event>.<seq>` and the JSON value.
fn parse_hook(key: &str, value: &str) -> Result<Binding, String> {
    let (event_name, seq) = key
        .rsplit_once('.')
        .ok_or_else(|| format!("hook key {key:?} must be <event>.<n>"))?;
    let event = Event::from_name(event_name).ok_or_else(|| {
        let known: Vec<_> = Event::ALL.iter().map(|e| e.name()).collect();
        format!(
            "unknown hook event {event_name:?} (known: {})",
            known.join(", ")
        )
    })?;
    let seq: u32 = seq
        .parse()
        .map_err(|_| format!("hook number {seq:?} in {key:?} is not a number"))?;
    let json: HookJson = serde_json::from_str(value).map_err(|e| format!("bad hook JSON: {e}"))?;
    let action = Action::from_name(&json.action.function)
        .ok_or_else(|| format!("unknown function {:?}", json.action.function))?;
    if action.event() != event {
        return Err(format!(
            "function {action} runs on {}, not on {event}",
            action.event()
        ));
    }
    if let Some(topic) = &json.topic
        && !dynamq_codec::topic::valid_filter(topic)
    {
        return Err(format!("hook topic {topic:?} is not a valid topic filter"));
    }
    let (max_returned_count, time_range) = match json.offline_opts {
        None => (None, None),
        Some(o) => {
            let time_range = match o.time_range {
                None => None,
                Some(serde_json::Value::String(s)) => {
                    Some(parse_duration(&s).ok_or_else(|| format!("bad time_range {s:?}"))?)
                }
                Some(serde_json::Value::Number(n)) => Some(std::time::Duration::from_secs(
                    n.as_u64().ok_or_else(|| format!("bad time_range {n}"))?,
                )),
                Some(other) => return Err(format!("bad time_range {other}")),
            };
            (o.max_returned_count, time_range)
        }
    };
    Ok(Binding {
        event,
        seq,
        topic_filter: json.topic,
        action,
        pool: json.pool,
        max_returned_count,
        time_range,
    })
}
