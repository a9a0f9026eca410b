//! Write throughput of the persistence path: N QoS 1 publishes through `Actions` (each one
//! mqtt_msg put + map add), then a flush; prints ops/s and the writer's counters.
//!
//! ```text
//! cargo run --release -p dynamq-store --example store_bench -- embedded 20000 [topics]
//! cargo run --release -p dynamq-store --example store_bench -- http://127.0.0.1:PORT 20000 [topics]
//! ```
//! The DynamoDB form creates tables with a fresh prefix on that endpoint (e.g. dynalite).

use std::time::Instant;

use bytes::Bytes;
use dynamq_store::dynamo::{DynamoConfig, connect};
use dynamq_store::tables::{Billing, create_tables};
use dynamq_store::{Actions, ActionsConfig, PublishedMessage, StoreConfig, default_bindings};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let target = args.get(1).map(String::as_str).unwrap_or("embedded");
    let n: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(20_000);
    let topics: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100);
    let tmp = tempfile::tempdir()?;
    let store = if target == "embedded" {
        StoreConfig::Embedded {
            data_dir: tmp.path().to_path_buf(),
        }
    } else {
        let config = DynamoConfig {
            region: "us-west-2".into(),
            endpoint: Some(target.to_owned()),
            pool_size: 8,
            access_key_id: Some("bench".into()),
            secret_access_key: Some("bench".into()),
            table_prefix: format!("bench{}_", std::process::id()),
        };
        create_tables(
            &connect(&config).await,
            &config.table_prefix,
            Billing::PayPerRequest,
        )
        .await?;
        StoreConfig::Dynamo(config)
    };
    let actions = Actions::new(
        ActionsConfig::new(store, "bench@127.0.0.1"),
        default_bindings(),
    )
    .await?;
    let payload = Bytes::from(vec![b'x'; 64]);
    let topic_names: Vec<String> = (0..topics).map(|i| format!("bench/{i}")).collect();
    let start = Instant::now();
    for i in 0..n {
        let id = actions.next_msgid();
        actions.message_published(
            PublishedMessage {
                topic: &topic_names[i % topics],
                sender: "bench",
                qos: 1,
                retain: false,
                payload: &payload,
                props: Default::default(),
            },
            id,
            false,
            None,
        )?;
    }
    let queued = start.elapsed();
    actions.flush().await?;
    let total = start.elapsed();
    let stats = actions.stats();
    println!(
        "{target}: {n} publishes over {topics} topics: queued in {queued:.2?}, durable in {total:.2?} \
         = {:.0} publishes/s ({:.0} store ops/s after coalescing); {stats:?}",
        n as f64 / total.as_secs_f64(),
        stats.writer.written as f64 / total.as_secs_f64()
    );
    actions.close().await?;
    Ok(())
}
