//! The `dynamq` command: `dynamq serve` runs the broker.

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
use dynamq::broker::Broker;
use dynamq::config::{Config, StoreKind};
use dynamq::persistence::setup;
use dynamq::server;
use dynamq_store::binding::Binding;
use dynamq_store::tables::{Billing, Created};

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
    Serve(ServeArgs),
    /// Create or check the six DynamoDB tables.
    #[command(subcommand)]
    Tables(TablesCommand),
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
    /// TOML configuration whose [store.dynamo] section to use.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The tutorial's backend.dynamo.* file, whose pool to use.
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
    /// HTTP listen address for GET /metrics (Prometheus text format); repeatable.
    #[arg(long, value_name = "ADDR")]
    http: Vec<String>,
    /// PEM certificate chain for the TLS listeners.
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<PathBuf>,
    /// PEM private key for the TLS listeners.
    #[arg(long, value_name = "FILE")]
    tls_key: Option<PathBuf>,
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
    /// The tutorial's backend.dynamo.* file (DynamoDB settings and hooks), accepted as is.
    #[arg(long, value_name = "FILE")]
    backend_conf: Option<PathBuf>,
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
    if let Some(c) = &args.tls_cert {
        config.tls.cert_file = Some(c.clone());
    }
    if let Some(k) = &args.tls_key {
        config.tls.key_file = Some(k.clone());
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
    let mut bindings = setup::bindings_from_config(&config.hooks)?;
    if let Some(file) = &args.backend_conf {
        let from_file = setup::apply_backend_conf(&mut config, file)?;
        if !from_file.is_empty() {
            bindings = from_file;
        }
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

fn init_logging(level: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .with_context(|| format!("invalid log level {level:?}"))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Ok(())
}

async fn serve(args: ServeArgs) -> Result<()> {
    let (config, bindings) = load_config(&args)?;
    init_logging(&config.log_level)?;
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
    let broker = Broker::new(config, persistence);
    server::start(&broker).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    server::shutdown(&broker, Duration::from_secs(5)).await;
    tracing::info!("stopped");
    Ok(())
}

/// The DynamoDB settings for `dynamq tables`: a config file, a backend file, then flags.
fn tables_config(t: &TablesTarget) -> Result<Config> {
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

async fn tables(cmd: TablesCommand) -> Result<()> {
    init_logging("warn")?;
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

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
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
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Tables(cmd) => runtime.block_on(tables(cmd)),
    }
}
