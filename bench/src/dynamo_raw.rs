//! `dynamo-raw`: how fast a DynamoDB endpoint (dynalite in the harness) takes mqtt_msg items
//! when nothing but the writes is in the way, for the persistence benchmark (issue 9 §8).
//!
//! Two patterns, one code path: `--batch 25` sends BatchWriteItem requests of 25 items
//! (unprocessed items sent again until taken): the raw ceiling a store writer can approach;
//! `--batch 1` sends one PutItem per item, the original plugin's pattern (with
//! `--concurrency 8`, its pool). `--concurrency` requests are in flight at once. Items have
//! the shape of the tutorial's mqtt_msg items (as dynamq writes them: see
//! `dynamq_store::dynamo::item`), each with a fresh msgid. The summary counts the items the
//! endpoint took and the wall time from the first request to the last answer.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use aws_sdk_dynamodb::types::{AttributeValue, PutRequest, WriteRequest};
use dynamq_store::MsgIdGen;
use dynamq_store::dynamo::{DynamoConfig, TableNames, connect};
use dynamq_store::op::Table;
use dynamq_store::tables::{Billing, create_tables};
use serde::Serialize;

use crate::cli::DynamoRawArgs;

/// DynamoDB's BatchWriteItem limit.
const BATCH_WRITE_MAX: usize = 25;
/// Sending the same unprocessed items again, at most this many times per request.
const UNPROCESSED_ROUNDS: u32 = 100;

/// The summary of `dynamo-raw`.
#[derive(Debug, Default, Serialize)]
pub(crate) struct RawSummary {
    pub mode: &'static str,
    pub endpoint: String,
    /// "BatchWriteItem" or "PutItem".
    pub request: &'static str,
    pub batch: usize,
    pub concurrency: usize,
    pub payload_size: usize,
    /// Items asked for.
    pub items: u64,
    /// Items the endpoint took.
    pub written: u64,
    pub requests: u64,
    /// Items the endpoint gave back unprocessed (each sent again).
    pub unprocessed: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub secs: f64,
    pub items_per_sec: f64,
}

/// Counters shared by the request loops.
#[derive(Default)]
struct Counters {
    next: AtomicU64,
    written: AtomicU64,
    requests: AtomicU64,
    unprocessed: AtomicU64,
    errors: AtomicU64,
    first_error: std::sync::Mutex<Option<String>>,
}

impl Counters {
    fn error(&self, e: impl std::fmt::Display) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert_with(|| e.to_string());
        }
    }
}

/// What every request loop shares.
struct Plan {
    sdk: aws_sdk_dynamodb::Client,
    table: String,
    items: u64,
    batch: usize,
    payload: String,
    ids: MsgIdGen,
    deadline: Instant,
    counters: Counters,
}

pub(crate) async fn run(a: DynamoRawArgs) -> anyhow::Result<String> {
    if a.batch == 0 || a.batch > BATCH_WRITE_MAX {
        bail!("--batch must be within 1..={BATCH_WRITE_MAX}");
    }
    if a.concurrency == 0 {
        bail!("--concurrency must be at least 1");
    }
    let config = DynamoConfig {
        region: a.region.clone(),
        endpoint: Some(a.endpoint.clone()),
        pool_size: a.concurrency,
        access_key_id: Some("bench".into()),
        secret_access_key: Some("bench".into()),
        table_prefix: a.prefix.clone(),
    };
    let client = connect(&config).await;
    if a.create_tables {
        create_tables(&client, &a.prefix, Billing::PayPerRequest)
            .await
            .context("creating the tables")?;
    }
    let plan = Arc::new(Plan {
        sdk: client.sdk().clone(),
        table: TableNames::new(&a.prefix).get(Table::Msg).to_owned(),
        items: a.items,
        batch: a.batch,
        payload: "x".repeat(a.payload_size),
        ids: MsgIdGen::new("bench@127.0.0.1"),
        deadline: Instant::now() + Duration::from_secs_f64(a.common_max_secs.max(0.1)),
        counters: Counters::default(),
    });
    let start = Instant::now();
    let loops: Vec<_> = (0..a.concurrency)
        .map(|_| tokio::spawn(request_loop(plan.clone())))
        .collect();
    for l in loops {
        if let Err(e) = l.await {
            plan.counters.error(format!("request loop ended: {e}"));
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let c = &plan.counters;
    let written = c.written.load(Ordering::Relaxed);
    let summary = RawSummary {
        mode: "dynamo-raw",
        endpoint: a.endpoint,
        request: if a.batch == 1 {
            "PutItem"
        } else {
            "BatchWriteItem"
        },
        batch: a.batch,
        concurrency: a.concurrency,
        payload_size: a.payload_size,
        items: a.items,
        written,
        requests: c.requests.load(Ordering::Relaxed),
        unprocessed: c.unprocessed.load(Ordering::Relaxed),
        errors: c.errors.load(Ordering::Relaxed),
        first_error: c.first_error.lock().ok().and_then(|f| f.clone()),
        secs,
        items_per_sec: if secs > 0.0 {
            written as f64 / secs
        } else {
            0.0
        },
    };
    Ok(serde_json::to_string(&summary)?)
}

/// Takes the next `batch` items until all are taken or the deadline passes, one request at
/// a time.
async fn request_loop(plan: Arc<Plan>) {
    let c = &plan.counters;
    let step = plan.batch as u64;
    loop {
        let first = c.next.fetch_add(step, Ordering::Relaxed);
        if first >= plan.items || Instant::now() >= plan.deadline {
            return;
        }
        let n = step.min(plan.items - first) as usize;
        let items: Vec<_> = (0..n).map(|_| msg_item(&plan)).collect();
        if plan.batch == 1 {
            put_items(&plan, items).await;
        } else {
            batch_write(&plan, items).await;
        }
    }
}

/// One PutItem per item.
async fn put_items(plan: &Plan, items: Vec<HashMap<String, AttributeValue>>) {
    let c = &plan.counters;
    for item in items {
        c.requests.fetch_add(1, Ordering::Relaxed);
        let call = plan
            .sdk
            .put_item()
            .table_name(&plan.table)
            .set_item(Some(item))
            .send()
            .await;
        match call {
            Ok(_) => {
                c.written.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => c.error(aws_sdk_dynamodb::error::DisplayErrorContext(e)),
        }
    }
}

/// One BatchWriteItem, then the unprocessed items again until none is left.
async fn batch_write(plan: &Plan, items: Vec<HashMap<String, AttributeValue>>) {
    let c = &plan.counters;
    let mut requests = Vec::with_capacity(items.len());
    for item in items {
        match PutRequest::builder().set_item(Some(item)).build() {
            Ok(put) => requests.push(WriteRequest::builder().put_request(put).build()),
            Err(e) => c.error(e),
        }
    }
    for _ in 0..UNPROCESSED_ROUNDS {
        if requests.is_empty() {
            return;
        }
        let sent = requests.len() as u64;
        c.requests.fetch_add(1, Ordering::Relaxed);
        let call = plan
            .sdk
            .batch_write_item()
            .request_items(&plan.table, std::mem::take(&mut requests))
            .send()
            .await;
        match call {
            Ok(out) => {
                requests = out
                    .unprocessed_items
                    .and_then(|mut m| m.remove(&plan.table))
                    .unwrap_or_default();
                let left = requests.len() as u64;
                c.unprocessed.fetch_add(left, Ordering::Relaxed);
                c.written.fetch_add(sent - left, Ordering::Relaxed);
            }
            Err(e) => {
                c.error(aws_sdk_dynamodb::error::DisplayErrorContext(e));
                return;
            }
        }
    }
    if !requests.is_empty() {
        c.error(format!(
            "{} items still unprocessed after {UNPROCESSED_ROUNDS} rounds",
            requests.len()
        ));
    }
}

/// An item shaped as dynamq writes a v3 QoS 1 message to mqtt_msg.
fn msg_item(plan: &Plan) -> HashMap<String, AttributeValue> {
    let s = |v: &str| AttributeValue::S(v.to_owned());
    let n = |v: u64| AttributeValue::N(v.to_string());
    let arrived = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    HashMap::from([
        ("msgid".to_owned(), s(&plan.ids.next_id().encode())),
        ("topic".to_owned(), s("b/0")),
        ("sender".to_owned(), s("bench-raw")),
        ("qos".to_owned(), n(1)),
        ("retain".to_owned(), n(0)),
        ("payload".to_owned(), s(&plan.payload)),
        ("arrived".to_owned(), n(arrived)),
    ])
}
