//! The summary: one line of JSON on stdout, for harnesses to parse.

use hdrhistogram::Histogram;
use serde::Serialize;

/// Percentiles of a latency histogram.
#[derive(Debug, Default, Serialize)]
pub(crate) struct Percentiles {
    pub samples: u64,
    pub p50: u64,
    pub p99: u64,
    pub p999: u64,
    pub max: u64,
    pub mean: f64,
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Percentiles {
        if h.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            samples: h.len(),
            p50: h.value_at_quantile(0.50),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            max: h.max(),
            mean: (h.mean() * 10.0).round() / 10.0,
        }
    }
}

/// The summary of `pub`, `sub` and `run`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct MsgSummary {
    pub mode: &'static str,
    pub broker: String,
    pub mqtt_version: u8,
    pub pubs: u32,
    pub subs: u32,
    pub qos: u8,
    pub sub_qos: u8,
    pub size: usize,
    pub count_per_pub: u64,
    /// PUBLISH packets written.
    pub sent: u64,
    /// Publishes the broker took: written at QoS 0, acknowledged at QoS 1/2.
    pub published: u64,
    /// Deliveries to our subscribers, duplicates included.
    pub received: u64,
    /// Deliveries owed: each publish times the subscriptions that match its topic.
    pub expected: u64,
    /// expected - unique deliveries (never negative). Loss at QoS 0 is allowed.
    pub lost: u64,
    pub duplicates: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the start of publishing to the last publisher's end.
    pub pub_secs: f64,
    /// From the start of publishing to the last delivery.
    pub recv_secs: f64,
    pub sent_per_sec: f64,
    pub recv_per_sec: f64,
    /// Publish to delivery, in microseconds.
    pub latency_us: Percentiles,
    /// True if --max-secs cut the run short.
    pub timed_out: bool,
    pub elapsed_secs: f64,
}

/// The summary of `conn`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct ConnSummary {
    pub mode: &'static str,
    pub broker: String,
    pub mqtt_version: u8,
    pub conns: u32,
    pub connected: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    /// From the first connect to the last CONNACK.
    pub connect_secs: f64,
    pub connect_per_sec: f64,
    /// TCP connect to CONNACK, in microseconds.
    pub connect_latency_us: Percentiles,
    pub rss_before_kb: Option<u64>,
    pub rss_after_kb: Option<u64>,
    /// (after - before) / connected.
    pub rss_per_conn_bytes: Option<u64>,
    pub timed_out: bool,
    pub elapsed_secs: f64,
}

/// Seconds, rounded to the millisecond.
pub(crate) fn secs(ns: u64) -> f64 {
    (ns as f64 / 1e6).round() / 1e3
}

/// Events per second, rounded.
pub(crate) fn rate(events: u64, ns: u64) -> f64 {
    if ns == 0 {
        0.0
    } else {
        (events as f64 * 1e9 / ns as f64).round()
    }
}
