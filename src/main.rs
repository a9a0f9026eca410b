//! The `dynamq` command: `dynamq serve` runs the broker.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use dynamq::broker::Broker;
use dynamq::config::Config;
use dynamq::hooks::Hooks;
use dynamq::server;

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

fn load_config(args: &ServeArgs) -> Result<Config> {
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
    if let Some(d) = &args.data_dir {
        config.data_dir = d.clone();
    }
    if let Some(n) = &args.node_name {
        config.node_name = n.clone();
    }
    if let Some(l) = &args.log_level {
        config.log_level = l.clone();
    }
    if let Some(k) = args.max_keepalive {
        config.mqtt.max_keepalive = k;
    }
    if let Some(m) = args.max_packet_size {
        config.mqtt.max_packet_size = m;
    }
    config.validate()?;
    Ok(config)
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
    let config = load_config(&args)?;
    init_logging(&config.log_level)?;
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
    tracing::info!(node = %config.node_name, "dynamq {} starting", env!("CARGO_PKG_VERSION"));
    let broker = Broker::new(config, Hooks::none());
    server::start(&broker).await?;
    wait_for_signal().await;
    tracing::info!("shutting down");
    server::shutdown(&broker, Duration::from_secs(5)).await;
    tracing::info!("stopped");
    Ok(())
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
    }
}
