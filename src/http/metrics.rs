//! `GET /metrics`: the broker's counters and gauges in the Prometheus text format, so that
//! every drop and every store failure the broker counts can be watched.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use crate::broker::Broker;

pub(super) async fn metrics(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        render(&broker),
    )
}

fn metric(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    let _ = writeln!(out, "# HELP dynamq_{name} {help}");
    let _ = writeln!(out, "# TYPE dynamq_{name} {kind}");
    let _ = writeln!(out, "dynamq_{name} {value}");
}

/// The text exposition of every metric.
pub(crate) fn render(broker: &Broker) -> String {
    let mut out = String::with_capacity(4096);
    for (name, help, value) in broker.metrics.snapshot() {
        metric(&mut out, &format!("{name}_total"), "counter", help, value);
    }
    let sessions = broker.registry.all();
    let online = sessions.iter().filter(|s| s.is_online()).count();
    let gauges = [
        ("clients_connected", "Clients connected now.", online as u64),
        (
            "sessions",
            "Sessions, connected or not.",
            sessions.len() as u64,
        ),
        (
            "subscription_filters",
            "Distinct topic filters subscribed.",
            broker.router.filter_count() as u64,
        ),
        (
            "connections_hibernating",
            "TCP connections hibernating now.",
            broker.parker.len() as u64,
        ),
        (
            "retained_messages",
            "Retained messages in memory.",
            broker.router.retained.len() as u64,
        ),
    ];
    for (name, help, value) in gauges {
        metric(&mut out, name, "gauge", help, value);
    }
    metric(
        &mut out,
        "store_action_errors_total",
        "counter",
        "Store actions that failed (each logged with its cause).",
        broker.persistence.errors(),
    );
    if let Some(s) = broker.persistence.stats() {
        let w = s.writer;
        let counters = [
            (
                "store_ops_submitted_total",
                "Store write ops queued.",
                w.submitted,
            ),
            (
                "store_ops_coalesced_total",
                "Store write ops folded into a later op on the same key.",
                w.coalesced,
            ),
            (
                "store_ops_written_total",
                "Store write ops applied.",
                w.written,
            ),
            (
                "store_ops_failed_total",
                "Store write ops given up on (each logged).",
                w.failed,
            ),
            (
                "store_batch_retries_total",
                "Store write batches retried after a failure.",
                w.retries,
            ),
            (
                "store_ops_rejected_full_total",
                "Store write ops refused: queue full.",
                w.rejected_full,
            ),
            ("store_batches_total", "Store write calls made.", w.batches),
            (
                "store_ops_dropped_full_total",
                "Store write ops dropped by the drop overflow policy.",
                s.dropped_full,
            ),
            (
                "store_evicted_total",
                "Stored message ids evicted by the per-topic cap.",
                s.evicted,
            ),
            (
                "store_expired_total",
                "Stored message ids dropped by a fetch's time_range.",
                s.expired,
            ),
            (
                "store_message_expired_total",
                "Stored or retained messages found past their Message Expiry Interval (deleted).",
                s.message_expired,
            ),
            (
                "store_read_errors_total",
                "Stored-message replays that failed on a store read.",
                s.read_errors,
            ),
            (
                "store_duplicates_skipped_total",
                "Stored messages not replayed twice to one subscription.",
                s.duplicates_skipped,
            ),
            (
                "store_sessions_expired_total",
                "Stored sessions found expired when their client came back (deleted).",
                s.sessions_expired,
            ),
        ];
        for (name, help, value) in counters {
            metric(&mut out, name, "counter", help, value);
        }
        metric(
            &mut out,
            "store_ops_pending",
            "gauge",
            "Store write ops queued or in flight.",
            w.pending,
        );
    }
    out
}
