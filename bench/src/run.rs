//! The `pub`, `sub` and `run` modes: subscribers connect and subscribe first, then the
//! publishers start together; when they are done the subscribers drain, and the counts,
//! expectations and latencies are gathered into one summary.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dynamq_codec::QoS;
use dynamq_codec::topic::{matches, parse_shared};
use hdrhistogram::Histogram;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::client::ClientConfig;
use crate::connect::connect_many;
use crate::publisher::{PubPlan, PubProgress, publish};
use crate::report::{MsgSummary, Percentiles, rate, secs};
use crate::stats::{Clock, Stats, mono_ns};
use crate::subscriber::{SubState, receive};

/// Everything a messaging run needs.
#[derive(Debug, Clone)]
pub(crate) struct Workload {
    pub cfg: Arc<ClientConfig>,
    /// Client ids start with this.
    pub id_prefix: String,
    pub pubs: u32,
    pub subs: u32,
    /// The template of every publisher's plan; `topic` holds the pattern with `%i`.
    pub plan: PubPlan,
    pub topic_pattern: String,
    pub filter: String,
    pub sub_qos: QoS,
    pub clock: Clock,
    /// Idle time after the publishers end that ends the run.
    pub drain: Duration,
    /// `sub` mode: stop once this many unique deliveries arrived (0: at the deadline).
    pub sub_target: u64,
    pub connect_concurrency: usize,
    pub deadline: Instant,
    /// Subscribers to `filter` that never read after their SUBACK (`run --stalled`).
    pub stalled: u32,
}

/// Runs the workload; never fails, failures are in the summary.
pub(crate) async fn run(w: Workload, stats: Arc<Stats>, summary: &mut MsgSummary) {
    let started = Instant::now();
    let qos = w.sub_qos;
    let subs = connect_many(
        &w.cfg,
        &stats,
        &format!("{}s", w.id_prefix),
        w.subs,
        Some((&w.filter, qos)),
        w.connect_concurrency,
        w.deadline,
    )
    .await;
    // Held open and never read until the run ends: the broker sees stalled consumers.
    let _stalled = connect_many(
        &w.cfg,
        &stats,
        &format!("{}x", w.id_prefix),
        w.stalled,
        Some((&w.filter, qos)),
        w.connect_concurrency,
        w.deadline,
    )
    .await;
    let filters: Vec<String> = subs
        .iter()
        .map(|(i, _)| w.filter.replace("%i", &i.to_string()))
        .collect();
    let sub_stop = CancellationToken::new();
    let mut sub_tasks = JoinSet::new();
    for (_, mut client) in subs {
        let (stats, stop, clock, ka) = (stats.clone(), sub_stop.clone(), w.clock, w.cfg.keep_alive);
        sub_tasks.spawn(async move {
            let mut state = SubState::new();
            match receive(&mut client, &mut state, &stats, clock, ka, &stop).await {
                Ok(()) => client.disconnect().await,
                Err(e) => stats.error(e),
            }
            state
        });
    }

    let pubs = connect_many(
        &w.cfg,
        &stats,
        &format!("{}p", w.id_prefix),
        w.pubs,
        None,
        w.connect_concurrency,
        w.deadline,
    )
    .await;
    let pub_stop = CancellationToken::new();
    let mut pub_tasks = JoinSet::new();
    let start_ns = mono_ns();
    for (i, mut client) in pubs {
        let mut plan = w.plan.clone();
        plan.index = i;
        plan.topic = Bytes::from(w.topic_pattern.replace("%i", &i.to_string()));
        let (stats, stop) = (stats.clone(), pub_stop.clone());
        pub_tasks.spawn(async move {
            let mut progress = PubProgress::default();
            match publish(&mut client, &plan, &stats, &stop, &mut progress).await {
                Ok(()) => client.disconnect().await,
                Err(e) => stats.error(e),
            }
            (plan.topic, progress, mono_ns())
        });
    }
    let mut pub_end_ns = start_ns;
    let mut expected = 0u64;
    loop {
        let next = tokio::time::timeout_at(w.deadline.into(), pub_tasks.join_next()).await;
        match next {
            Ok(Some(Ok((topic, progress, end_ns)))) => {
                summary.published += progress.completed;
                pub_end_ns = pub_end_ns.max(end_ns);
                let topic = String::from_utf8_lossy(&topic);
                expected += progress.completed * deliveries_per_message(&filters, &topic);
            }
            Ok(Some(Err(join))) => stats.error(join),
            Ok(None) => break,
            Err(_) => {
                summary.timed_out = true;
                pub_stop.cancel();
            }
        }
    }

    // Drain: until everything owed arrived, or nothing arrived for `drain`, or the deadline.
    loop {
        let received = stats.unique_received();
        let now = mono_ns();
        let last = stats.last_recv_ns.load(Relaxed).max(pub_end_ns);
        let done = if w.pubs == 0 {
            w.sub_target > 0 && received >= w.sub_target
        } else {
            received >= expected || now.saturating_sub(last) > w.drain.as_nanos() as u64
        };
        if done || w.subs == 0 {
            break;
        }
        if Instant::now() >= w.deadline {
            // A `sub` run without a target simply ends at the deadline.
            summary.timed_out |= w.pubs > 0 || w.sub_target > 0;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sub_stop.cancel();
    let mut latency = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 2)
        .expect("constant histogram bounds are valid");
    while let Some(state) = sub_tasks.join_next().await {
        match state {
            Ok(state) => {
                let _ = latency.add(&state.latency);
            }
            Err(join) => stats.error(join),
        }
    }

    let received = stats.received.load(Relaxed);
    let duplicates = stats.duplicates.load(Relaxed);
    let last_recv_ns = stats.last_recv_ns.load(Relaxed);
    let pub_ns = pub_end_ns.saturating_sub(start_ns);
    let recv_ns = last_recv_ns.saturating_sub(start_ns);
    summary.sent = stats.sent.load(Relaxed);
    summary.received = received;
    summary.duplicates = duplicates;
    summary.expected = expected;
    summary.lost = expected.saturating_sub(received - duplicates);
    summary.errors = stats.errors.load(Relaxed);
    summary.first_error = stats.first_error();
    summary.pub_secs = secs(pub_ns);
    summary.recv_secs = secs(recv_ns);
    summary.sent_per_sec = rate(summary.sent, pub_ns);
    summary.recv_per_sec = rate(received, recv_ns);
    summary.latency_us = Percentiles::of(&latency);
    summary.elapsed_secs = secs(started.elapsed().as_nanos() as u64);
}

/// How many of `filters` a message on `topic` is delivered to: each matching ordinary
/// subscription once, each matching shared-subscription group once.
fn deliveries_per_message(filters: &[String], topic: &str) -> u64 {
    let mut groups: Vec<&str> = Vec::new();
    let mut n = 0;
    for filter in filters {
        match parse_shared(filter) {
            Some((group, real)) => {
                if matches(real, topic) && !groups.contains(&group) {
                    groups.push(group);
                    n += 1;
                }
            }
            None => n += u64::from(matches(filter, topic)),
        }
    }
    n
}

#[cfg(test)]
mod tests {
    use super::deliveries_per_message;

    #[test]
    fn counts_matching_subscriptions_and_groups_once() {
        let filters: Vec<String> = ["a/#", "a/+", "b/#", "$share/g/a/#", "$share/g/a/1"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(deliveries_per_message(&filters, "a/1"), 3);
        assert_eq!(deliveries_per_message(&filters, "b"), 1);
        assert_eq!(deliveries_per_message(&filters, "c"), 0);
    }
}
