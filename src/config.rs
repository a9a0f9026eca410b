//! Broker configuration: the TOML file (`--config`), with command-line flags applied on top.
//!
//! Every section rejects unknown keys, so a typo is an error that names the key instead of a
//! setting that silently does nothing. `dynamq.example.toml` documents each key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The type of every secret in the configuration (the HTTP token, the AWS credentials):
/// its `Debug` is `<redacted>`.
pub use dynamq_store::Secret;
use dynamq_store::dynamo::DynamoConfig;
use serde::Deserialize;

/// The whole configuration. Defaults are what `dynamq serve` with no file runs with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Written to `mqtt_client.node`; one name per broker node.
    pub node_name: String,
    /// A tracing filter, e.g. `info` or `dynamq=debug`.
    pub log_level: String,
    /// Where the embedded store keeps its files.
    pub data_dir: PathBuf,
    pub listeners: Listeners,
    pub mqtt: MqttLimits,
    pub store: StoreSection,
    /// Hook bindings (event -> action). Empty: the tutorial's ten.
    pub hooks: Vec<HookEntry>,
    /// Certificate and key for the `tls` and `wss` listeners.
    pub tls: TlsFiles,
    /// Who may connect and what they may do.
    pub auth: AuthSection,
}

/// Authentication and authorization, in Mosquitto's file formats, and in the store
/// (mqtt_user, mqtt_acl).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthSection {
    /// Mosquitto password file (`user:$7$...` or `$6$`); unset: user names are not checked.
    pub password_file: Option<PathBuf>,
    /// Mosquitto ACL file; unset: every client may publish and subscribe to every topic.
    pub acl_file: Option<PathBuf>,
    /// Whether clients without a user name may connect. Unset: only while every listener
    /// is on a loopback address.
    pub allow_anonymous: Option<bool>,
    /// Users are also looked up in the store's mqtt_user table (`dynamq user add`), after
    /// the password file if there is one.
    pub user_store: bool,
    /// ACL rules are also read from the store's mqtt_acl table (`dynamq acl add`).
    pub acl_store: bool,
    /// Seconds a user read from the store is kept in memory, and between two reads of the
    /// store's ACL rules: a `dynamq user del` or `acl add|del` takes effect on every node
    /// within this time.
    pub cache_secs: u64,
}

impl Default for AuthSection {
    fn default() -> Self {
        AuthSection {
            password_file: None,
            acl_file: None,
            allow_anonymous: None,
            user_store: false,
            acl_store: false,
            cache_secs: 30,
        }
    }
}

/// PEM files for TLS listeners.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsFiles {
    /// The server certificate chain, leaf first.
    pub cert_file: Option<PathBuf>,
    /// Its private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: Option<PathBuf>,
    /// PEM file of the CA(s) client certificates must chain to. Set: the `tls` and `wss`
    /// listeners require a client certificate, and a client without a valid one fails the
    /// TLS handshake.
    pub ca_file: Option<PathBuf>,
    /// The subject CN of the client certificate is the client's user name, for the password
    /// check (skipped: the certificate authenticates) and the ACL; a CONNECT user name is
    /// ignored on the TLS listeners (Mosquitto's `use_identity_as_username`). Needs `ca_file`.
    pub cn_as_username: bool,
}

/// Which store keeps the broker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StoreKind {
    /// redb files in `data_dir` (the default).
    Embedded,
    /// DynamoDB (`[store.dynamo]`).
    Dynamo,
    /// No store: nothing survives a restart.
    None,
}

/// What the store writer does with writes that do not fit its memory buffer
/// (`store.buffer_bytes`). Publishers never wait on it (in `sync` durability a PUBACK waits
/// for the store itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// Spill them to the journal in `data_dir`, replayed in order when the store answers
    /// again and at start; dropped (counted, logged) only once the journal holds
    /// `store.journal_bytes`. (The name is kept for existing files: writes wait in the
    /// journal.)
    Wait,
    /// Never journal: drop them, count and log them.
    Drop,
}

/// What an acknowledgement of a QoS 1/2 PUBLISH promises about the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// PUBACK / PUBREC as soon as the message is queued for its subscribers; its store writes
    /// follow (a crash may lose the writes not yet stored).
    #[default]
    Async,
    /// PUBACK / PUBREC once the message's writes are stored (DynamoDB answered, or the
    /// embedded store committed). Only the publisher waits, up to its Receive Maximum.
    Sync,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    pub kind: StoreKind,
    pub durability: Durability,
    /// How long a CONNACK or SUBACK waits for a store read (the session lookup, the
    /// stored-message fetch); past it the read is acted on when it completes.
    pub read_timeout_ms: u64,
    pub overflow: Overflow,
    /// Most message ids kept in one mqtt_topic_msg_map item (keeps it under 400 KB).
    pub map_cap_per_topic: usize,
    /// Bytes of store writes (estimated) the writer holds in memory before it spills to the
    /// journal (or, with `overflow = "drop"`, drops).
    pub buffer_bytes: u64,
    /// Most bytes of the store writer's journal file in `data_dir` (also with DynamoDB).
    pub journal_bytes: u64,
    /// How long a store write waits in memory so that later writes of the same item replace
    /// or cancel it: a stored message its subscribers acknowledge within it is never written.
    /// 0: write at once. Not applied to writes a `sync` acknowledgement waits for.
    pub coalesce_ms: u64,
    /// How to reach DynamoDB; credentials never appear in logs (`Debug` redacts them).
    pub dynamo: DynamoConfig,
    /// Most stored message ids per topic (over its map items) before the oldest are evicted; 0: unlimited.
    pub max_stored_per_topic: usize,
}

impl Default for StoreSection {
    fn default() -> Self {
        StoreSection {
            kind: StoreKind::Embedded,
            durability: Durability::Async,
            read_timeout_ms: 500,
            overflow: Overflow::Wait,
            map_cap_per_topic: 5_000,
            buffer_bytes: 64 << 20,
            journal_bytes: 1 << 30,
            coalesce_ms: 100,
            dynamo: DynamoConfig::default(),
            max_stored_per_topic: 100_000,
        }
    }
}

/// One hook, as the tutorial's `backend.dynamo.hook.<event>.<n>` line says it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HookEntry {
    /// e.g. `message.publish`
    pub event: String,
    /// Topic filter; unset: every topic.
    pub topic: Option<String>,
    /// e.g. `on_message_publish`
    pub function: String,
    pub pool: Option<String>,
    pub max_returned_count: Option<usize>,
    /// e.g. `2h`, `30m`, `3600`
    pub time_range: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// Plain MQTT over TCP.
    pub tcp: Vec<SocketAddr>,
    /// MQTT over WebSocket, served at `ws_path`.
    pub ws: Vec<SocketAddr>,
    /// The HTTP path of the WebSocket endpoint.
    pub ws_path: String,
    /// MQTT over TLS (needs `[tls]`).
    pub tls: Vec<SocketAddr>,
    /// MQTT over WebSocket over TLS, at `ws_path` (needs `[tls]`).
    pub wss: Vec<SocketAddr>,
    /// HTTP: `GET /metrics` in the Prometheus text format, `/health`, and the REST API
    /// under `/api/v5`.
    pub http: Vec<SocketAddr>,
    /// Bearer token the HTTP endpoints but `/health*` require. Required when an `http`
    /// listener is not on loopback; once set, required on loopback too. Never logged.
    pub http_token: Option<Secret>,
}

/// Protocol limits. Zero means "no limit" where the comment says so.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttLimits {
    /// Largest keepalive a v5 client may use, in seconds; 0 means no cap. A v5 client asking
    /// for more (or for 0) gets Server Keep Alive with the cap. v3 clients cannot be told, so
    /// their own keepalive stands, as with Mosquitto 2.
    pub max_keepalive: u16,
    /// Largest packet accepted from a client, in bytes (checked from the fixed header).
    pub max_packet_size: u32,
    /// QoS 1/2 messages sent to a client and not yet acknowledged, at most (v5 clients may ask
    /// for fewer with Receive Maximum).
    pub max_inflight: u16,
    /// Messages queued for one session (online or away) before new ones are dropped, or,
    /// for a connected client, before its publishers are paused (`flow_control_ms`).
    pub max_queued_messages: usize,
    /// Bytes (topic and payload of each message) queued for one session before it is full,
    /// as `max_queued_messages` is for their number: whichever is reached first.
    pub max_queued_bytes: usize,
    /// Flow control: a QoS 1/2 message for a connected client whose queue is full is still
    /// queued (up to twice `max_queued_messages`), and its publisher stops being read until
    /// that queue is below the bound again, looking every this many milliseconds. A queue
    /// whose client took nothing from it meanwhile belongs to a stalled subscriber: messages
    /// over its bound are dropped (counted) until it drains, and the publisher goes on.
    /// 0: no flow control, drop at the bound.
    pub flow_control_ms: u64,
    /// A connected client whose queue stays full while it takes nothing from it for this
    /// many milliseconds is disconnected (v5: DISCONNECT 0x97 Quota exceeded); its session
    /// keeps its queue. 0: never.
    pub slow_consumer_timeout_ms: u64,
    /// Receive Maximum announced to v5 clients: QoS 1/2 publishes they may have unacknowledged.
    pub receive_maximum: u16,
    /// Topic Alias Maximum announced to v5 clients; 0 disables topic aliases.
    pub topic_alias_maximum: u16,
    /// Upper bound on a v5 client's Session Expiry Interval, seconds; also the lifetime of a
    /// v3.1.1 persistent session (CleanSession 0) once its client is away. 0 means no cap
    /// (a v3.1.1 persistent session then never expires).
    pub max_session_expiry: u32,
    /// v5 Response Information: a client that sets Request Response Information gets this
    /// prefix followed by its client id in its CONNACK (e.g. `resp/dev-1`), a topic root
    /// for the responses it receives. Empty: none is sent.
    pub response_information: String,
    /// Longest client id accepted, in bytes (v3.1.1 CONNACK 0x02, v5 0x85 beyond it).
    pub max_client_id_len: usize,
    /// Most levels in a topic name or filter (PUBLISH: v5 PUBACK 0x90, v3 dropped;
    /// SUBSCRIBE: 0x8F); 0: no limit. Bounds the work of matching one topic.
    pub max_topic_levels: usize,
    /// Most subscriptions one session holds; a SUBSCRIBE beyond it gets 0x97 Quota exceeded
    /// (v3: 0x80) for the new filters. 0: no limit.
    pub max_subscriptions: usize,
    /// Seconds a new connection has to send CONNECT.
    pub connect_timeout: u64,
    /// TCP keepalive on accepted connections: probes after this many seconds of silence,
    /// so that half-open connections (a client gone without a FIN) are closed even with an
    /// MQTT keepalive of 0. 0: off.
    pub tcp_keepalive_secs: u64,
    /// Milliseconds of silence (nothing read or written) after which a TCP connection
    /// hibernates: it gives up its task and buffers until the client sends something or a
    /// message arrives for it. 0 keeps every connection awake.
    pub hibernate_after_ms: u64,
    /// Seconds between two publications of the `$SYS/broker/...` topics; 0: none.
    pub sys_interval: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: default_node_name(),
            log_level: "info".into(),
            data_dir: PathBuf::from("data"),
            listeners: Listeners::default(),
            mqtt: MqttLimits::default(),
            store: StoreSection::default(),
            hooks: Vec::new(),
            tls: TlsFiles::default(),
            auth: AuthSection::default(),
        }
    }
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            // Loopback, as Mosquitto 2 without a config: serving the network is a choice
            // made with its authentication (see `auth`).
            tcp: vec![SocketAddr::from(([127, 0, 0, 1], 1883))],
            ws: vec![SocketAddr::from(([127, 0, 0, 1], 8083))],
            ws_path: "/mqtt".into(),
            tls: Vec::new(),
            wss: Vec::new(),
            http: Vec::new(),
            http_token: None,
        }
    }
}

impl Default for MqttLimits {
    fn default() -> Self {
        MqttLimits {
            max_keepalive: 0,
            max_packet_size: 1024 * 1024,
            max_inflight: 128,
            max_queued_messages: 10_000,
            max_queued_bytes: 16 * 1024 * 1024,
            flow_control_ms: 1_000,
            slow_consumer_timeout_ms: 30_000,
            receive_maximum: 1024,
            topic_alias_maximum: 64,
            max_session_expiry: 0,
            response_information: "resp/".into(),
            max_client_id_len: 65_535,
            max_topic_levels: 128,
            max_subscriptions: 10_000,
            connect_timeout: 10,
            tcp_keepalive_secs: 120,
            hibernate_after_ms: 1000,
            sys_interval: 10,
        }
    }
}

/// `dynamq@HOSTNAME`, in the spirit of EMQX's `emqx@127.0.0.1`.
fn default_node_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "127.0.0.1".into());
    format!("dynamq@{host}")
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// Only the line number and the reason: the parser's own message quotes the line,
    /// which may hold a secret.
    #[error("config file {}, line {line}: {message}", path.display())]
    Parse {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

impl Config {
    /// Reads a TOML file. Unknown keys are errors naming the key.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            line: e.span().map_or(0, |s| {
                1 + text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
            }),
            message: e.message().to_owned(),
        })
    }

    /// Whether the configuration holds a secret (the HTTP token, AWS credentials): a file
    /// that does should be readable by its owner only.
    pub fn holds_secret(&self) -> bool {
        let d = &self.store.dynamo;
        self.listeners.http_token.is_some()
            || d.access_key_id.is_some()
            || d.secret_access_key.is_some()
    }

    pub fn parse(text: &str) -> Result<Config, toml::de::Error> {
        toml::from_str(text)
    }

    /// Checks values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let m = &self.mqtt;
        if m.max_packet_size < 64 {
            return Err(ConfigError::Invalid(
                "mqtt.max_packet_size must be at least 64 bytes".into(),
            ));
        }
        if m.max_inflight == 0 || m.receive_maximum == 0 {
            return Err(ConfigError::Invalid(
                "mqtt.max_inflight and mqtt.receive_maximum must be at least 1".into(),
            ));
        }
        if m.max_queued_bytes == 0 {
            return Err(ConfigError::Invalid(
                "mqtt.max_queued_bytes must be at least 1".into(),
            ));
        }
        if m.max_queued_messages == 0 {
            return Err(ConfigError::Invalid(
                "mqtt.max_queued_messages must be at least 1".into(),
            ));
        }
        if !self.listeners.ws_path.starts_with('/') {
            return Err(ConfigError::Invalid(
                "listeners.ws_path must start with '/'".into(),
            ));
        }
        let l = &self.listeners;
        if l.tcp.is_empty() && l.ws.is_empty() && l.tls.is_empty() && l.wss.is_empty() {
            return Err(ConfigError::Invalid("no listener configured".into()));
        }
        if (!l.tls.is_empty() || !l.wss.is_empty())
            && (self.tls.cert_file.is_none() || self.tls.key_file.is_none())
        {
            return Err(ConfigError::Invalid(
                "TLS listeners need tls.cert_file and tls.key_file (--tls-cert, --tls-key)".into(),
            ));
        }
        if self.tls.cn_as_username && self.tls.ca_file.is_none() {
            return Err(ConfigError::Invalid(
                "tls.cn_as_username (--tls-cn-as-username) needs tls.ca_file (--tls-ca): \
                 only a verified client certificate can name its user"
                    .into(),
            ));
        }
        let a = &self.auth;
        if (a.user_store || a.acl_store) && self.store.kind == StoreKind::None {
            return Err(ConfigError::Invalid(
                "auth.user_store and auth.acl_store need a store (store.kind embedded or dynamo)"
                    .into(),
            ));
        }
        if (a.user_store || a.acl_store) && a.cache_secs == 0 {
            return Err(ConfigError::Invalid(
                "auth.cache_secs must be at least 1".into(),
            ));
        }
        if l.http_token.as_ref().is_some_and(|t| t.expose().is_empty()) {
            return Err(ConfigError::Invalid(
                "listeners.http_token (--http-token) must not be empty".into(),
            ));
        }
        if let Some(addr) = l.http.iter().find(|a| !is_loopback(a.ip()))
            && l.http_token.is_none()
        {
            return Err(ConfigError::Invalid(format!(
                "the HTTP listener {addr} is not on loopback: it needs a token \
                 (listeners.http_token or --http-token), since its API can kick clients \
                 and publish messages"
            )));
        }
        Ok(())
    }
}

/// True for 127.0.0.0/8, ::1 and IPv4-mapped loopback addresses.
pub(crate) fn is_loopback(ip: std::net::IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        Config::default().validate().unwrap();
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::parse("[mqtt]\nmax_keepalivee = 3\n").unwrap_err();
        assert!(err.to_string().contains("max_keepalivee"), "{err}");
        let err = Config::parse("bogus = 1\n").unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
    }

    #[test]
    fn http_off_loopback_needs_a_token() {
        let mut cfg = Config::default();
        cfg.listeners.http = vec![SocketAddr::from(([127, 0, 0, 1], 9100))];
        cfg.validate().unwrap();
        cfg.listeners
            .http
            .push(SocketAddr::from(([0, 0, 0, 0], 9101)));
        let err = cfg.validate().unwrap_err().to_string();
        assert!(
            err.contains("0.0.0.0:9101") && err.contains("token"),
            "{err}"
        );
        cfg.listeners.http_token = Some(Secret::new("s3cret".into()));
        cfg.validate().unwrap();
        assert!(!format!("{cfg:?}").contains("s3cret"));
        cfg.listeners.http_token = Some(Secret::new(String::new()));
        assert!(cfg.validate().is_err());
    }

    #[test]
    fn parse_errors_do_not_quote_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[store.dynamo]\nregion = \"x\"\nsecret_access_key = \"wJalr-Secret\nx = 1\n",
        )
        .unwrap();
        let err = Config::load(&path).unwrap_err();
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains("wJalr-Secret"), "{shown}");
        assert!(shown.contains("line 3"), "{shown}");
        std::fs::write(
            &path,
            "[store.dynamo]\nsecret_access_key = \"wJalr-Secret\"\n",
        )
        .unwrap();
        let cfg = Config::load(&path).unwrap();
        assert!(cfg.holds_secret());
        assert!(!format!("{cfg:?}").contains("wJalr-Secret"));
        assert!(!Config::default().holds_secret());
    }

    #[test]
    fn example_config_parses() {
        let text = include_str!("../dynamq.example.toml");
        let cfg = Config::parse(text).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.listeners.ws_path, "/mqtt");
    }
}
