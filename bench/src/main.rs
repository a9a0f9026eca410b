//! dynamq-bench: an MQTT load generator in the spirit of emqtt-bench.
//!
//! Modes (`cli`): `conn` holds many idle connections (`conns`); `pub` and `sub` run
//! publishers or subscribers alone; `run` runs both in one process and measures end to end:
//! throughput, latency from a timestamp in each payload, loss and duplicates (`run`);
//! `dynamo-raw` writes mqtt_msg items straight to a DynamoDB endpoint (`dynamo_raw`), the
//! ceiling the broker's store writer is measured against.
//!
//! Each client is one tokio task owning one `client::Client` (a TCP stream, a read buffer,
//! a write buffer): no channels, no per-message allocation, every write a batch. By default
//! the whole generator runs on one thread, so it can be pinned to one core next to the
//! broker under test. `stats` holds the shared counters and the progress line; `report`
//! the one-line JSON summary printed on stdout.

mod cli;
mod client;
mod connect;
mod conns;
mod dynamo_raw;
mod error;
mod publisher;
mod report;
mod run;
mod stats;
mod subscriber;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::Parser;
use tokio_util::sync::CancellationToken;

use crate::cli::{Cli, Common, Mode, PublishOpts};
use crate::client::{ClientConfig, protocol_for, qos_for};
use crate::publisher::{HEADER_LEN, PubPlan};
use crate::report::{ConnSummary, MsgSummary};
use crate::stats::{Clock, Stats};

/// Grace after --max-secs for the tasks to wind down before the process gives up on them.
const GRACE: Duration = Duration::from_secs(15);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Mode::DynamoRaw(a) = cli.mode {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let max = Duration::from_secs_f64(a.common_max_secs.max(0.1));
        let line = runtime.block_on(async {
            tokio::time::timeout(max + GRACE, dynamo_raw::run(a))
                .await
                .context("the run did not wind down after --max-secs")?
        })?;
        println!("{line}");
        return Ok(());
    }
    let common = match &cli.mode {
        Mode::Conn(a) => &a.common,
        Mode::Pub(a) => &a.common,
        Mode::Sub(a) => &a.common,
        Mode::Run(a) => &a.common,
        Mode::DynamoRaw(_) => bail!("dynamo-raw is run above"),
    };
    let runtime = if common.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(common.threads)
            .enable_all()
            .build()?
    };
    stats::base();
    let deadline = Instant::now() + Duration::from_secs_f64(common.max_secs.max(0.1));
    let line = runtime.block_on(async {
        tokio::time::timeout_at((deadline + GRACE).into(), execute(cli.mode, deadline))
            .await
            .context("the run did not wind down after --max-secs")?
    })?;
    println!("{line}");
    // Tasks still winding down must not delay the exit.
    runtime.shutdown_background();
    Ok(())
}

/// Runs one mode and returns its JSON summary.
async fn execute(mode: Mode, deadline: Instant) -> anyhow::Result<String> {
    let stats = Arc::new(Stats::default());
    let progress_stop = CancellationToken::new();
    let quiet = match &mode {
        Mode::Conn(a) => a.common.quiet,
        Mode::Pub(a) => a.common.quiet,
        Mode::Sub(a) => a.common.quiet,
        Mode::Run(a) => a.common.quiet,
        Mode::DynamoRaw(_) => true,
    };
    if !quiet {
        let (stats, stop) = (stats.clone(), progress_stop.clone());
        tokio::spawn(async move { stats::progress(&stats, stop).await });
    }
    let line = match mode {
        Mode::Conn(a) => {
            let cfg = client_config(&a.common, 64)?;
            let mut summary = ConnSummary {
                mode: "conn",
                broker: cfg.addr.to_string(),
                mqtt_version: a.common.mqtt_version,
                conns: a.conns,
                ..ConnSummary::default()
            };
            let plan = conns::ConnPlan {
                cfg: Arc::new(cfg),
                id_prefix: id_prefix(&a.common, "c"),
                conns: a.conns,
                rate: a.rate,
                hold: Duration::from_secs_f64(a.hold_secs.max(0.0)),
                broker_pid: a.broker_pid,
                concurrency: a.common.connect_concurrency,
                deadline,
            };
            conns::run(plan, stats, &mut summary).await;
            serde_json::to_string(&summary)?
        }
        Mode::Pub(a) => {
            let w = workload(
                &a.common,
                &a.publish,
                0,
                String::new(),
                a.publish.qos,
                0.0,
                0,
                deadline,
            )?;
            messaging("pub", w, &a.common, stats).await?
        }
        Mode::Sub(a) => {
            let publish = PublishOpts {
                pubs: 0,
                count: 0,
                rate: 0.0,
                qos: a.qos,
                size: HEADER_LEN,
                topic: String::new(),
                inflight: 1,
            };
            let target = a.count * u64::from(a.subscribe.subs);
            let (subs, filter) = (a.subscribe.subs, a.subscribe.filter.clone());
            let mut w = workload(
                &a.common, &publish, subs, filter, a.qos, 0.0, target, deadline,
            )?;
            w.clock = Clock::Wall;
            messaging("sub", w, &a.common, stats).await?
        }
        Mode::Run(a) => {
            let sub_qos = a.sub_qos.unwrap_or(a.publish.qos);
            let (subs, filter) = (a.subscribe.subs, a.subscribe.filter.clone());
            let mut w = workload(
                &a.common,
                &a.publish,
                subs,
                filter,
                sub_qos,
                a.drain_secs,
                0,
                deadline,
            )?;
            w.clock = Clock::Monotonic;
            w.plan.clock = Clock::Monotonic;
            w.stalled = a.stalled;
            messaging("run", w, &a.common, stats).await?
        }
        Mode::DynamoRaw(a) => dynamo_raw::run(a).await?,
    };
    progress_stop.cancel();
    Ok(line)
}

async fn messaging(
    mode: &'static str,
    w: run::Workload,
    common: &Common,
    stats: Arc<Stats>,
) -> anyhow::Result<String> {
    let mut summary = MsgSummary {
        mode,
        broker: w.cfg.addr.to_string(),
        mqtt_version: common.mqtt_version,
        pubs: w.pubs,
        subs: w.subs,
        qos: w.plan.qos as u8,
        sub_qos: w.sub_qos as u8,
        size: w.plan.size,
        count_per_pub: w.plan.count,
        ..MsgSummary::default()
    };
    run::run(w, stats, &mut summary).await;
    Ok(serde_json::to_string(&summary)?)
}

/// Builds a messaging workload from the options, checking them.
#[allow(clippy::too_many_arguments)]
fn workload(
    common: &Common,
    p: &PublishOpts,
    subs: u32,
    filter: String,
    sub_qos: u8,
    drain_secs: f64,
    sub_target: u64,
    deadline: Instant,
) -> anyhow::Result<run::Workload> {
    let Some(qos) = qos_for(p.qos) else {
        bail!("--qos must be 0, 1 or 2");
    };
    let Some(sub_qos) = qos_for(sub_qos) else {
        bail!("--sub-qos must be 0, 1 or 2");
    };
    if p.pubs > 0 && p.size < HEADER_LEN {
        bail!("--size must be at least {HEADER_LEN} (timestamp, publisher, sequence)");
    }
    if p.inflight == 0 || p.inflight > 65_535 {
        bail!("--inflight must be within 1..=65535");
    }
    if p.count > u64::from(u32::MAX) {
        bail!("--count must fit in 32 bits (the sequence number in the payload)");
    }
    let cfg = client_config(common, 64 * 1024)?;
    Ok(run::Workload {
        plan: PubPlan {
            index: 0,
            topic: Bytes::new(),
            qos,
            count: p.count,
            size: p.size,
            inflight: p.inflight,
            rate: p.rate,
            keep_alive: common.keepalive,
            clock: Clock::Wall,
        },
        cfg: Arc::new(cfg),
        id_prefix: id_prefix(common, ""),
        pubs: p.pubs,
        subs,
        topic_pattern: p.topic.clone(),
        filter,
        sub_qos,
        clock: Clock::Wall,
        drain: Duration::from_secs_f64(drain_secs.max(0.0)),
        sub_target,
        connect_concurrency: common.connect_concurrency,
        deadline,
        stalled: 0,
    })
}

fn client_config(common: &Common, read_capacity: usize) -> anyhow::Result<ClientConfig> {
    let ip: IpAddr = common
        .host
        .parse()
        .with_context(|| format!("--host must be an IP address, not {:?}", common.host))?;
    let Some(protocol) = protocol_for(common.mqtt_version) else {
        bail!("--mqtt-version must be 3, 4 (both mean 3.1.1) or 5");
    };
    Ok(ClientConfig {
        addr: SocketAddr::new(ip, common.port),
        protocol,
        keep_alive: common.keepalive,
        read_capacity,
        handshake_timeout: Duration::from_secs(10),
    })
}

/// `{prefix}-{pid}-{role}`: unique across concurrent runs against one broker.
fn id_prefix(common: &Common, role: &str) -> String {
    format!("{}-{}-{role}", common.client_prefix, std::process::id())
}
