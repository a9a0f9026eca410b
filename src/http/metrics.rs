//! `GET /metrics`: the broker's counters and gauges in the Prometheus text format, so that
//! every drop and every store failure the broker counts can be watched.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;

use dynamq_store::writer::HistogramSnapshot;

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
            ("store_batches_total", "Store write calls made.", w.batches),
            (
                "store_ops_spilled_total",
                "Store write ops appended to the journal (memory buffer full).",
                w.spilled,
            ),
            (
                "store_ops_replayed_total",
                "Store write ops read back from the journal.",
                w.replayed,
            ),
            (
                "store_ops_dropped_journal_full_total",
                "Store write ops dropped: memory buffer and journal full.",
                w.dropped_journal_full,
            ),
            (
                "store_ops_dropped_buffer_full_total",
                "Store write ops dropped: memory buffer full (no journal, or it lags).",
                w.dropped_buffer_full,
            ),
            (
                "store_ops_dropped_journal_error_total",
                "Store write ops lost to journal I/O errors or corrupt records (logged).",
                w.dropped_journal_error,
            ),
            (
                "store_evicted_total",
                "Stored messages evicted: past store.max_stored_per_topic ids on their topic.",
                s.evicted,
            ),
            (
                "store_moved_to_overflow_total",
                "Stored message ids moved from a topic's mqtt_topic_msg_map item to its overflow items <topic>#n.",
                s.moved_to_overflow,
            ),
            (
                "store_too_large_total",
                "Messages refused because their DynamoDB item would pass 400 KB.",
                s.too_large,
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
        let gauges = [
            (
                "store_ops_pending",
                "Store write ops queued or in flight.",
                w.pending,
            ),
            (
                "store_buffer_bytes",
                "Estimated bytes of store write ops held in memory.",
                w.buffered_bytes,
            ),
            (
                "store_journal_ops",
                "Store journal records not yet read back.",
                w.journal_ops,
            ),
            (
                "store_journal_bytes",
                "Bytes of the store journal file.",
                w.journal_bytes,
            ),
        ];
        for (name, help, value) in gauges {
            metric(&mut out, name, "gauge", help, value);
        }
    }
    if let Some(actions) = broker.persistence.actions() {
        let m = actions.writer_metrics();
        histogram(
            &mut out,
            "store_batch_size",
            "Ops per store write call.",
            &m.batch_size,
        );
        histogram(
            &mut out,
            "store_write_latency_seconds",
            "Seconds per store write call.",
            &m.write_latency,
        );
        let _ = writeln!(
            out,
            "# HELP dynamq_store_write_errors_total Store write ops whose attempt failed, by error code (retried or not)."
        );
        let _ = writeln!(out, "# TYPE dynamq_store_write_errors_total counter");
        for (code, n) in &m.failures_by_code {
            let _ = writeln!(
                out,
                "dynamq_store_write_errors_total{{code=\"{}\"}} {n}",
                label_value(code)
            );
        }
    }
    out
}

/// A Prometheus histogram: cumulative `_bucket{le=..}`, then `_sum` and `_count`.
fn histogram(out: &mut String, name: &str, help: &str, h: &HistogramSnapshot) {
    let _ = writeln!(out, "# HELP dynamq_{name} {help}");
    let _ = writeln!(out, "# TYPE dynamq_{name} histogram");
    for (le, count) in &h.buckets {
        let _ = writeln!(out, "dynamq_{name}_bucket{{le=\"{le}\"}} {count}");
    }
    let _ = writeln!(out, "dynamq_{name}_bucket{{le=\"+Inf\"}} {}", h.count);
    let _ = writeln!(out, "dynamq_{name}_sum {}", h.sum);
    let _ = writeln!(out, "dynamq_{name}_count {}", h.count);
}

/// A label value with `\`, `"` and newlines escaped, as the text format requires.
fn label_value(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
