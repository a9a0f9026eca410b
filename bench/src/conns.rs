//! The `conn` mode: opens N idle connections at a rate, holds them, and measures the
//! connect rate, the handshake latency and (given its pid) the broker's memory per
//! connection.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dynamq_codec::Packet;
use hdrhistogram::Histogram;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::{Client, ClientConfig};
use crate::error::ClientError;
use crate::publisher::ping_interval;
use crate::report::{ConnSummary, Percentiles, rate, secs};
use crate::stats::Stats;

/// What a `conn` run does.
#[derive(Debug, Clone)]
pub(crate) struct ConnPlan {
    pub cfg: Arc<ClientConfig>,
    pub id_prefix: String,
    pub conns: u32,
    /// Connections per second; 0: as fast as `concurrency` allows.
    pub rate: f64,
    pub hold: Duration,
    pub broker_pid: Option<u32>,
    pub concurrency: usize,
    pub deadline: Instant,
}

/// Runs the plan; never fails, failures are in the summary.
pub(crate) async fn run(plan: ConnPlan, stats: Arc<Stats>, summary: &mut ConnSummary) {
    let started = Instant::now();
    summary.rss_before_kb = plan.broker_pid.and_then(rss_kb);
    let latency = Arc::new(Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 2)
            .expect("constant histogram bounds are valid"),
    ));
    let gate = Arc::new(Semaphore::new(plan.concurrency.max(1)));
    let stop = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let start = Instant::now();
    let spawn_all = async {
        for i in 0..plan.conns {
            if plan.rate > 0.0 {
                let due = start + Duration::from_secs_f64(f64::from(i) / plan.rate);
                tokio::time::sleep_until(due.into()).await;
            }
            let Ok(permit) = gate.clone().acquire_owned().await else {
                break;
            };
            let (cfg, stats, stop, latency) = (
                plan.cfg.clone(),
                stats.clone(),
                stop.clone(),
                latency.clone(),
            );
            let id = format!("{}{i}", plan.id_prefix);
            tasks.spawn(async move {
                let t0 = Instant::now();
                let client = Client::connect(&cfg, id).await;
                drop(permit);
                match client {
                    Ok(mut client) => {
                        let us = t0.elapsed().as_micros() as u64;
                        if let Ok(mut h) = latency.lock() {
                            let _ = h.record(us.max(1));
                        }
                        stats.connected.fetch_add(1, Relaxed);
                        match hold(&mut client, cfg.keep_alive, &stop).await {
                            Ok(()) => client.disconnect().await,
                            Err(e) => stats.error(e),
                        }
                    }
                    Err(e) => stats.error(e),
                }
            });
        }
    };
    if tokio::time::timeout_at(plan.deadline.into(), spawn_all)
        .await
        .is_err()
    {
        summary.timed_out = true;
    }
    // Wait until every handshake ended one way or the other.
    let target = u64::from(plan.conns);
    while stats.connected.load(Relaxed) + stats.errors.load(Relaxed) < target {
        if Instant::now() >= plan.deadline {
            summary.timed_out = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let connect_ns = start.elapsed().as_nanos() as u64;
    let connected = stats.connected.load(Relaxed);
    // The connections are idle now: the broker's memory is read at the end of the hold, so
    // that what a broker does with idle connections (shrinking buffers, hibernating) counts.
    let hold_until = (Instant::now() + plan.hold).min(plan.deadline);
    tokio::time::sleep_until(
        hold_until
            .checked_sub(Duration::from_millis(200))
            .unwrap_or(hold_until)
            .max(Instant::now())
            .into(),
    )
    .await;
    summary.rss_after_kb = plan.broker_pid.and_then(rss_kb);
    if let (Some(before), Some(after)) = (summary.rss_before_kb, summary.rss_after_kb) {
        summary.rss_per_conn_bytes = (after.saturating_sub(before) * 1024).checked_div(connected);
    }
    tokio::time::sleep_until(hold_until.into()).await;
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;

    summary.connected = connected;
    summary.errors = stats.errors.load(Relaxed);
    summary.first_error = stats.first_error();
    summary.connect_secs = secs(connect_ns);
    summary.connect_per_sec = rate(connected, connect_ns);
    if let Ok(h) = latency.lock() {
        summary.connect_latency_us = Percentiles::of(&h);
    }
    summary.elapsed_secs = secs(started.elapsed().as_nanos() as u64);
}

/// Keeps an idle connection alive until `stop`: pings, and notices a broker that closes it.
async fn hold(
    client: &mut Client,
    keep_alive: u16,
    stop: &CancellationToken,
) -> Result<(), ClientError> {
    let mut ping = ping_interval(keep_alive);
    loop {
        tokio::select! {
            r = client.read_more() => {
                r?;
                while let Some(packet) = client.next_packet()? {
                    match packet {
                        Packet::PingResp => {}
                        Packet::Disconnect(_) => return Err(ClientError::Closed),
                        _ => return Err(ClientError::Unexpected("packet on an idle connection")),
                    }
                }
            }
            _ = ping.tick() => {
                client.push(&Packet::PingReq)?;
                if !client.flush_until(stop).await? {
                    return Ok(());
                }
            }
            _ = stop.cancelled() => return Ok(()),
        }
    }
}

/// A process's resident memory, in KiB, from /proc/PID/status.
pub(crate) fn rss_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}
