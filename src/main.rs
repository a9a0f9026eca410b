//! The `dynamq` command: `dynamq serve` runs the broker; `tables`, `passwd`, `user` and
//! `acl` administer its tables, password files, and the users and ACL rules in the store
//! (`users_cli`).

mod tables_cli;
mod users_cli;

/// jemalloc, with its background thread returning freed pages to the system within about a
/// second. With glibc's malloc, the memory of a connection's task, freed when the
/// connection hibernates, stays resident: it lies in holes between long-lived objects
/// (sessions) and is never given back. BENCHMARKS.md has the measurements.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings (its `malloc_conf`): purge freed pages after 1 s, from jemalloc's
/// own background thread, so that a broker gone idle gives memory back too.
#[unsafe(export_name = "_rjem_malloc_conf")]
pub static MALLOC_CONF: &[u8] = b"background_thread:true,dirty_decay_ms:1000,muzzy_decay_ms:0\0";

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use dynamq::auth::Auth;
use dynamq::broker::Broker;
use dynamq::config::{Config, Durability, Secret, StoreKind};
use dynamq::persistence::setup;
use dynamq::server;
use dynamq_store::binding::Binding;

#[derive(Parser)]
#[command(
    name = "dynamq",
    version,
    about = "An MQTT 3.1.1 / 5.0 broker whose state lives in DynamoDB"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the broker.
    Serve(Box<ServeArgs>),
    /// Create or check the six DynamoDB tables.
    #[command(subcommand)]
    Tables(TablesCommand),
    /// Add a user to a password file, or change its password (Mosquitto's format, $7$).
    Passwd(PasswdArgs),
    /// Users kept in the store (mqtt_user), for `serve --user-store`.
    #[command(subcommand)]
    User(users_cli::UserCommand),
    /// ACL rules kept in the store (mqtt_acl), for `serve --acl-store`.
    #[command(subcommand)]
    Acl(users_cli::AclCommand),
}

#[derive(Args)]
struct PasswdArgs {
    /// Batch mode: the password is the argument after USER (it shows in the process list
    /// and the shell history; without -b it is read from the terminal, or from stdin).
    #[arg(short = 'b')]
    batch: bool,
    /// The password file; created (readable by its owner only) if it does not exist.
    file: PathBuf,
    /// The user name.
    user: String,
    /// The password, with -b.
    password: Option<String>,
}

#[derive(Subcommand)]
enum TablesCommand {
    /// Create the six tables with the tutorial's key schemas (idempotent; waits for ACTIVE).
    Create {
        #[command(flatten)]
        target: TablesTarget,
        /// pay-per-request, or provisioned (5 read and 5 write units, as the tutorial).
        #[arg(long, default_value = "pay-per-request")]
        billing: String,
    },
    /// Check that the six tables exist with the right key schemas; says what is wrong.
    Check {
        #[command(flatten)]
        target: TablesTarget,
    },
}

#[derive(Args)]
struct TablesTarget {
    /// TOML configuration (its [store] section and data_dir).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The tutorial's backend.dynamo.* file, whose pool to use (for `user` and `acl`: implies
    /// the dynamo store).
    #[arg(long)]
    backend_conf: Option<PathBuf>,
    /// Endpoint URL of a local DynamoDB-compatible server, e.g. http://127.0.0.1:8000.
    #[arg(long)]
    endpoint: Option<String>,
    #[arg(long)]
    region: Option<String>,
    /// Table name prefix.
    #[arg(long)]
    prefix: Option<String>,
}

#[derive(Args)]
struct ServeArgs {
    /// TOML configuration file (see dynamq.example.toml). Flags override it.
    #[arg(long)]
    config: Option<PathBuf>,
    /// MQTT over TCP listen address; repeatable; `none` disables TCP.
    #[arg(long, value_name = "ADDR")]
    tcp: Vec<String>,
    /// MQTT over WebSocket listen address (path /mqtt); repeatable; `none` disables it.
    #[arg(long, value_name = "ADDR")]
    ws: Vec<String>,
    /// MQTT over TLS listen address; repeatable; needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR")]
    tls: Vec<String>,
    /// MQTT over WebSocket over TLS (path /mqtt); repeatable; needs --tls-cert and --tls-key.
    #[arg(long, value_name = "ADDR")]
    wss: Vec<String>,
    /// HTTP listen address for GET /metrics (Prometheus text format), /health and the REST
    /// API (/api/v5/...); repeatable.
    #[arg(long, value_name = "ADDR")]
    http: Vec<String>,
    /// Bearer token required by the HTTP endpoints but /health (required when an HTTP
    /// listener is not on loopback).
    #[arg(long, value_name = "TOKEN")]
    http_token: Option<String>,
    /// Seconds between two publications of the $SYS/broker/... topics (0: none).
    #[arg(long, value_name = "SECS")]
    sys_interval: Option<u64>,
    /// PEM certificate chain for the TLS listeners.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listeners.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificate(s): the TLS listeners then require a client certificate that
    /// chains to one of them.
    #[arg(long, value_name = "FILE")]
    tls_ca: Option<PathBuf>,
    /// The client certificate's subject CN is the user name (for the ACL; the certificate
    /// authenticates the client, a CONNECT user name and password are ignored). Needs --tls-ca.
    #[arg(long)]
    tls_cn_as_username: bool,
    /// Directory of the embedded store.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// This node's name, written to mqtt_client.node.
    #[arg(long)]
    node_name: Option<String>,
    /// Log filter: error, warn, info, debug, trace, or a tracing directive.
    #[arg(long)]
    log_level: Option<String>,
    /// Largest keepalive a client may ask for, in seconds (0: no cap).
    #[arg(long, value_name = "SECS")]
    max_keepalive: Option<u16>,
    /// Largest packet accepted from a client, in bytes.
    #[arg(long, value_name = "BYTES")]
    max_packet_size: Option<u32>,
    /// An idle TCP connection hibernates after this many milliseconds (0: never).
    #[arg(long, value_name = "MS")]
    hibernate_after_ms: Option<u64>,
    /// Where state is kept: embedded (files in --data-dir), dynamo, or none.
    #[arg(long, value_parser = ["embedded", "dynamo", "none"])]
    store: Option<String>,
    /// When a QoS 1/2 PUBLISH is acknowledged: `async` (once routed; its store writes follow)
    /// or `sync` (once its store writes are stored). Overrides `store.durability`.
    #[arg(long, value_parser = ["async", "sync"])]
    durability: Option<String>,
    /// The tutorial's backend.dynamo.* file (DynamoDB settings and hooks), accepted as is.
    #[arg(long, value_name = "FILE")]
    backend_conf: Option<PathBuf>,
    /// Mosquitto password file: clients giving a user name must give its password.
    #[arg(long, value_name = "FILE")]
    password_file: Option<PathBuf>,
    /// Mosquitto ACL file: what each client may publish and receive.
    #[arg(long, value_name = "FILE")]
    acl_file: Option<PathBuf>,
    /// Whether clients without a user name may connect (default: only while every listener
    /// is on loopback).
    #[arg(long, value_name = "BOOL")]
    allow_anonymous: Option<bool>,
    /// Also look users up in the store's mqtt_user table (`dynamq user add`).
    #[arg(long)]
    user_store: bool,
    /// Also read ACL rules from the store's mqtt_acl table (`dynamq acl add`).
    #[arg(long)]
    acl_store: bool,
    /// Seconds a user read from the store is cached, and between two reads of the store's
    /// ACL rules (default 30): how soon `dynamq user del` and `dynamq acl` take effect.
    #[arg(long, value_name = "SECS")]
    auth_cache_secs: Option<u64>,
}

/// `--tcp`/`--ws` values: addresses, or `none` for no listener.
fn parse_listeners(values: &[String], flag: &str) -> Result<Option<Vec<SocketAddr>>> {
    if values.is_empty() {
        return Ok(None);
    }
    if values.iter().any(|v| v == "none") {
        if values.len() > 1 {
            bail!("--{flag} none cannot be combined with addresses");
        }
        return Ok(Some(Vec::new()));
    }
    values
        .iter()
        .map(|v| {
            v.parse::<SocketAddr>()
                .with_context(|| format!("--{flag} {v}: expected HOST:PORT, e.g. 127.0.0.1:1883"))
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// The configuration and the bindings (hooks) it names.
fn load_config(args: &ServeArgs) -> Result<(Config, Vec<Binding>)> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(tcp) = parse_listeners(&args.tcp, "tcp")? {
        config.listeners.tcp = tcp;
    }
    if let Some(ws) = parse_listeners(&args.ws, "ws")? {
        config.listeners.ws = ws;
    }
    if let Some(tls) = parse_listeners(&args.tls, "tls")? {
        config.listeners.tls = tls;
    }
    if let Some(wss) = parse_listeners(&args.wss, "wss")? {
        config.listeners.wss = wss;
    }
    if let Some(http) = parse_listeners(&args.http, "http")? {
        config.listeners.http = http;
    }
    if let Some(t) = &args.http_token {
        config.listeners.http_token = Some(Secret::new(t.clone()));
    }
    if let Some(secs) = args.sys_interval {
        config.mqtt.sys_interval = secs;
    }
    if let Some(c) = &args.tls_cert {
        config.tls.cert_file = Some(c.clone());
    }
    if let Some(k) = &args.tls_key {
        config.tls.key_file = Some(k.clone());
    }
    if let Some(ca) = &args.tls_ca {
        config.tls.ca_file = Some(ca.clone());
    }
    if args.tls_cn_as_username {
        config.tls.cn_as_username = true;
    }
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(n) = &args.node_name {
        config.node_name = n.clone();
    }
    if let Some(l) = &args.log_level {
        config.log_level = l.clone();
    }
    if let Some(ms) = args.hibernate_after_ms {
        config.mqtt.hibernate_after_ms = ms;
    }
    if let Some(k) = args.max_keepalive {
        config.mqtt.max_keepalive = k;
    }
    if let Some(m) = args.max_packet_size {
        config.mqtt.max_packet_size = m;
    }
    if let Some(f) = &args.password_file {
        config.auth.password_file = Some(f.clone());
    }
    if let Some(f) = &args.acl_file {
        config.auth.acl_file = Some(f.clone());
    }
    if let Some(a) = args.allow_anonymous {
        config.auth.allow_anonymous = Some(a);
    }
    if args.user_store {
        config.auth.user_store = true;
    }
    if args.acl_store {
        config.auth.acl_store = true;
    }
    if let Some(secs) = args.auth_cache_secs {
        config.auth.cache_secs = secs;
    }
    let mut bindings = setup::bindings_from_config(&config.hooks)?;
    if let Some(file) = &args.backend_conf {
        let from_file = setup::apply_backend_conf(&mut config, file)?;
        if !from_file.is_empty() {
            bindings = from_file;
        }
    }
    if let Some(d) = &args.durability {
        config.store.durability = if d == "sync" {
            Durability::Sync
        } else {
            Durability::Async
        };
    }
    if let Some(kind) = &args.store {
        config.store.kind = match kind.as_str() {
            "dynamo" => StoreKind::Dynamo,
            "none" => StoreKind::None,
            _ => StoreKind::Embedded,
        };
    }
    config.validate()?;
    Ok((config, bindings))
}

/// Logs to stderr, through a writer that blanks the configured secrets out of every line
/// (`secrets::Redacting`), whatever crate logs them.
fn init_logging(level: &str, writer: dynamq::secrets::Redacting) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("invalid log level {level:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    let (config, bindings) = load_config(&args)?;
    init_logging(
        &config.log_level,
        dynamq::secrets::Redacting::for_config(&config),
    )?;
    for warning in
        dynamq::secrets::exposed_files(args.config.as_deref(), args.backend_conf.as_deref())
    {
        tracing::warn!("{warning}");
    }
    if config.store.kind == StoreKind::Embedded {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    }
    tracing::info!(node = %config.node_name, store = ?config.store.kind, "dynamq {} starting", env!("CARGO_PKG_VERSION"));
    let persistence = setup::build(&config, bindings).await?;
    if let Some(a) = persistence.actions() {
        let names: Vec<String> = a
            .bindings()
            .iter()
            .map(|h| format!("{}:{}", h.event, h.action))
            .collect();
        tracing::info!(hooks = %names.join(","), "store hooks active");
    }
    let (mut auth, why) = Auth::from_config(&config.auth, &config.listeners)?;
    if config.auth.user_store || config.auth.acl_store {
        let store = users_cli::user_store(&config).await?;
        let timeout = Duration::from_millis(config.store.read_timeout_ms.max(1));
        auth.use_store(store, &config.auth, timeout).await?;
    }
    log_auth(&auth, &config, &why);
    let broker = Broker::with_auth(config, persistence, auth);
    server::start(&broker).await?;
    wait_for_signal(&broker).await;
    tracing::info!("shutting down");
    server::shutdown(&broker, Duration::from_secs(5)).await;
    tracing::info!("stopped");
    Ok(())
}

/// The start-up lines about authentication: the files, and whether anonymous clients may
/// connect, and why.
fn log_auth(auth: &Auth, config: &Config, why: &str) {
    let show = |p: &Option<PathBuf>| {
        p.as_ref()
            .map_or("none".into(), |p| p.display().to_string())
    };
    tracing::info!(
        password_file = %show(&config.auth.password_file),
        users = auth.user_count().unwrap_or(0),
        acl_file = %show(&config.auth.acl_file),
        user_store = config.auth.user_store,
        acl_store = config.auth.acl_store,
        cache_secs = config.auth.cache_secs,
        "authentication"
    );
    if auth.allows_anonymous() {
        tracing::info!("anonymous clients allowed: {why}");
    } else {
        tracing::info!("anonymous clients refused: {why}");
    }
    if auth.acl_users_unverified() {
        tracing::warn!(
            "the ACL file has user sections but no password file verifies user names: any client can give any user name"
        );
    }
}

/// Waits for SIGTERM or Ctrl-C; SIGHUP meanwhile reads the password and ACL files again.
async fn wait_for_signal(broker: &Broker) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut hup)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::hangup()),
        ) else {
            let _ = tokio::signal::ctrl_c().await;
            return;
        };
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = hup.recv() => reload_auth(&broker.auth),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = broker;
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// SIGHUP: reads the password file and the ACL file again. A file with an error leaves what
/// was loaded from it before in force (logged).
fn reload_auth(auth: &Auth) {
    match auth.reload_passwords() {
        Ok(Some(users)) => tracing::info!(users, "password file reloaded"),
        Ok(None) => tracing::info!("SIGHUP: no password file to reload"),
        Err(e) => {
            tracing::error!("password file not reloaded, the users loaded before stay: {e}")
        }
    }
    match auth.reload_acl() {
        Ok(Some(clients)) => tracing::info!(clients, "ACL file reloaded"),
        Ok(None) => tracing::info!("SIGHUP: no ACL file to reload"),
        Err(e) => tracing::error!("ACL file not reloaded, the rules loaded before stay: {e}"),
    }
}

/// `dynamq passwd [-b] FILE USER [PASSWORD]`: sets USER's password in FILE, keeping every
/// other line, as `mosquitto_passwd [-b] FILE USER [PASSWORD]` does.
fn passwd(args: PasswdArgs) -> Result<()> {
    use dynamq::auth::password::{self, Hash};
    if !password::valid_user_name(&args.user) {
        bail!(
            "invalid user name {:?}: it must not be empty or contain ':' or control characters",
            args.user
        );
    }
    let pw = match (args.batch, args.password) {
        (true, Some(p)) => p,
        (true, None) => bail!("-b needs the password after the user name"),
        (false, Some(_)) => bail!("a password on the command line needs -b"),
        (false, None) => read_password()?,
    };
    if pw.is_empty() {
        bail!("empty password");
    }
    let text = match std::fs::read_to_string(&args.file) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", args.file.display())),
    };
    if let Some(t) = &text {
        // Only a file we can read back is rewritten.
        password::PasswordFile::parse(t).map_err(|(line, msg)| {
            anyhow::anyhow!("{}, line {line}: {msg}; not changed", args.file.display())
        })?;
    }
    let out = password::set_user(
        text.as_deref().unwrap_or(""),
        &args.user,
        &Hash::new_pbkdf2(pw.as_bytes()),
    );
    write_private(&args.file, &out)
}

/// The password from the terminal (asked twice, not echoed), or the first line of stdin.
pub(crate) fn read_password() -> Result<String> {
    use std::io::IsTerminal;
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let again =
            rpassword::prompt_password("Reenter password: ").context("cannot read the password")?;
        if first != again {
            bail!("passwords do not match");
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Writes `text` to `path` through a temporary file renamed over it, so that a broker
/// reading it meanwhile sees the old file or the new one; a new file is readable by its
/// owner only, an existing one keeps its permissions.
fn write_private(path: &std::path::Path, text: &str) -> Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let name = path
        .file_name()
        .context("the password file needs a file name")?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let result = (|| -> std::io::Result<()> {
        let mut f = opts.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        if let Ok(meta) = std::fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.with_context(|| format!("cannot write {}", path.display()))
}

/// Errors are printed as one line with their causes (`error: a: b: c`), exit code 1.
fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let cli = Cli::parse();
    // Blocking threads run the embedded store's reads and commits. A burst of connections
    // would otherwise start up to 512 of them, each kept for 10 s after its last job (their
    // stacks and allocator arenas were most of the memory per idle connection 10 s after a
    // burst): 16 are plenty for a store that serializes its commits anyway.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(16)
        .thread_keep_alive(std::time::Duration::from_secs(1))
        .build()
        .context("cannot start the tokio runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(*args)),
        Command::Tables(cmd) => runtime.block_on(tables_cli::tables(cmd)),
        Command::Passwd(args) => passwd(args),
        Command::User(cmd) => runtime.block_on(users_cli::user(cmd)),
        Command::Acl(cmd) => runtime.block_on(users_cli::acl(cmd)),
    }
}
