//! DynamoDB specifics against dynalite: the exact item shapes users see with Scan, table
//! creation and checking, BatchWriteItem batching and coalescing, and retry across an outage.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType, TableStatus,
};
use bytes::Bytes;
use common::{Dynalite, Kind, Place, shared, unique_prefix};
use dynamq_store::actions::PublishedMessage;
use dynamq_store::dynamo::DynamoStore;
use dynamq_store::msgid::MsgId;
use dynamq_store::op::WriteOp;
use dynamq_store::record::SubRecord;
use dynamq_store::store::Store;
use dynamq_store::tables::{Billing, Created, Problem, TablesError, check_tables, create_tables};
use dynamq_store::writer::{Writer, WriterConfig};

/// Attribute name -> type letter(s) of every item of a table.
async fn scan_shapes(client: &Client, table: &str) -> Vec<BTreeMap<String, &'static str>> {
    let out = client.scan().table_name(table).send().await.expect("scan");
    out.items
        .unwrap_or_default()
        .into_iter()
        .map(|item| {
            item.into_iter()
                .map(|(k, v)| {
                    let t = match v {
                        AttributeValue::S(_) => "S",
                        AttributeValue::N(_) => "N",
                        AttributeValue::Ss(_) => "SS",
                        _ => "other",
                    };
                    (k, t)
                })
                .collect()
        })
        .collect()
}

fn shape(pairs: &[(&str, &'static str)]) -> BTreeMap<String, &'static str> {
    pairs.iter().map(|(k, t)| ((*k).to_owned(), *t)).collect()
}

async fn scan(
    client: &Client,
    table: &str,
) -> Vec<std::collections::HashMap<String, AttributeValue>> {
    client
        .scan()
        .table_name(table)
        .send()
        .await
        .expect("scan")
        .items
        .unwrap_or_default()
}

fn s(v: &AttributeValue) -> &str {
    v.as_s().map(String::as_str).unwrap_or("<not S>")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_have_the_tutorial_shapes() {
    let place = Place::new(Kind::Dynamo, "shapes").await;
    let p = place.prefix.clone();
    let b = place.actions().await;
    b.client_connected(
        "mqttjs_34f653fdcc",
        "emqx@127.0.0.1",
        1563765246,
        Default::default(),
    )
    .await
    .expect("conn");
    b.subscribed("mqttjs_17137f2af0", "testtopic", 0, true)
        .await
        .expect("sub");
    let payload = Bytes::from_static(b"{ \"msg\": \"Hello, World!\" }");
    let pm = |qos, retain| PublishedMessage {
        topic: "testtopic",
        sender: "mqttjs_17137f2af0",
        qos,
        retain,
        payload: &payload,
        props: Default::default(),
    };
    let retained = common::publish(&b, pm(0, true)).expect("retain");
    let stored = common::publish(&b, pm(1, false)).expect("publish");
    b.message_acked("mqttjs_673dd52f4f", "testtopic", retained)
        .expect("ack");
    let binary = Bytes::from_static(&[0xde, 0xad, 0xbe, 0xef]);
    common::publish(
        &b,
        PublishedMessage {
            topic: "bin",
            sender: "x",
            qos: 1,
            retain: false,
            payload: &binary,
            props: Default::default(),
        },
    )
    .expect("publish binary");
    b.flush().await.expect("flush");
    let client = shared().client().await.sdk().clone();

    assert_eq!(
        scan_shapes(&client, &format!("{p}mqtt_client")).await,
        vec![shape(&[
            ("clientid", "S"),
            ("node", "S"),
            ("connect_state", "N"),
            ("online_at", "N"),
            ("offline_at", "N")
        ])]
    );
    let items = scan(&client, &format!("{p}mqtt_client")).await;
    assert_eq!(
        items[0]["connect_state"].as_n().map(String::as_str),
        Ok("1")
    );
    assert_eq!(
        items[0]["online_at"].as_n().map(String::as_str),
        Ok("1563765246")
    );
    assert_eq!(items[0]["offline_at"].as_n().map(String::as_str), Ok("0"));
    assert_eq!(s(&items[0]["node"]), "emqx@127.0.0.1");

    assert_eq!(
        scan_shapes(&client, &format!("{p}mqtt_sub")).await,
        vec![shape(&[("clientid", "S"), ("topic", "S"), ("qos", "N")])]
    );

    let msg_shape = shape(&[
        ("msgid", "S"),
        ("topic", "S"),
        ("sender", "S"),
        ("qos", "N"),
        ("retain", "N"),
        ("payload", "S"),
        ("arrived", "N"),
    ]);
    assert_eq!(
        scan_shapes(&client, &format!("{p}mqtt_retain")).await,
        vec![msg_shape.clone()]
    );
    let items = scan(&client, &format!("{p}mqtt_retain")).await;
    let r = &items[0];
    assert_eq!(s(&r["payload"]), "{ \"msg\": \"Hello, World!\" }");
    assert_eq!(r["retain"].as_n().map(String::as_str), Ok("1"));
    let id = MsgId::decode(s(&r["msgid"])).expect("msgid decodes");
    assert_eq!(id, retained);
    assert_eq!(
        r["arrived"].as_n().map(String::as_str),
        Ok(id.timestamp_secs().to_string().as_str())
    );

    // mqtt_msg: the retained one (acked: deleted), the stored one and the binary one.
    let items = scan(&client, &format!("{p}mqtt_msg")).await;
    assert_eq!(items.len(), 2, "{items:?}");
    for item in &items {
        let id = MsgId::decode(s(&item["msgid"])).expect("decodes");
        let mut keys: BTreeMap<String, &str> = BTreeMap::new();
        for (k, v) in item {
            keys.insert(k.clone(), if v.is_n() { "N" } else { "S" });
        }
        if id == stored {
            assert_eq!(keys, msg_shape);
            assert_eq!(item["retain"].as_n().map(String::as_str), Ok("0"));
            assert_eq!(item["qos"].as_n().map(String::as_str), Ok("1"));
        } else {
            let mut with_encoding = msg_shape.clone();
            with_encoding.insert("payload_encoding".into(), "S");
            assert_eq!(keys, with_encoding);
            assert_eq!(s(&item["payload_encoding"]), "base64");
            assert_eq!(s(&item["payload"]), "3q2+7w==");
        }
    }

    let mut maps = scan_shapes(&client, &format!("{p}mqtt_topic_msg_map")).await;
    maps.dedup();
    assert_eq!(maps, vec![shape(&[("topic", "S"), ("MsgId", "SS")])]);
    let items = scan(&client, &format!("{p}mqtt_topic_msg_map")).await;
    let tt = items
        .iter()
        .find(|i| s(&i["topic"]) == "testtopic")
        .expect("testtopic map");
    assert_eq!(tt["MsgId"].as_ss().expect("SS"), &vec![stored.encode()]);

    assert_eq!(
        scan_shapes(&client, &format!("{p}mqtt_acked")).await,
        vec![shape(&[("topic", "S"), ("clientid", "S"), ("msgid", "S")])]
    );

    // Removing the last id leaves {topic}; readers see an empty set.
    b.message_acked("c", "testtopic", stored).expect("ack");
    b.flush().await.expect("flush");
    assert!(
        b.store()
            .map_msgids("testtopic")
            .await
            .expect("map")
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_create_is_idempotent_and_check_reports_problems() {
    let client = shared().client().await;
    let prefix = unique_prefix("tables");
    let first = create_tables(&client, &prefix, Billing::Provisioned { rcu: 5, wcu: 5 })
        .await
        .expect("create");
    assert!(first.iter().all(|(_, c)| *c == Created::Created));
    // The tutorial's six, and mqtt_user and mqtt_acl.
    assert_eq!(first.len(), 8);
    let again = create_tables(&client, &prefix, Billing::PayPerRequest)
        .await
        .expect("again");
    assert!(again.iter().all(|(_, c)| *c == Created::AlreadyExisted));
    let report = check_tables(&client, &prefix).await.expect("check");
    assert!(report.is_ok(), "{report}");

    // A missing table, and one with the wrong key schema.
    let bad = unique_prefix("bad");
    let attr = |n: &str, t| {
        AttributeDefinition::builder()
            .attribute_name(n)
            .attribute_type(t)
            .build()
            .expect("attr")
    };
    let key = |n: &str, t| {
        KeySchemaElement::builder()
            .attribute_name(n)
            .key_type(t)
            .build()
            .expect("key")
    };
    client
        .sdk()
        .create_table()
        .table_name(format!("{bad}mqtt_sub"))
        .attribute_definitions(attr("clientid", ScalarAttributeType::N))
        .key_schema(key("clientid", KeyType::Hash))
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .expect("create bad table");
    // dynalite reports CREATING for a moment even with --createTableMs 0.
    for _ in 0..100 {
        let desc = client
            .sdk()
            .describe_table()
            .table_name(format!("{bad}mqtt_sub"))
            .send()
            .await
            .expect("describe");
        if desc.table.and_then(|t| t.table_status) == Some(TableStatus::Active) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let report = check_tables(&client, &bad).await.expect("check");
    assert!(!report.is_ok());
    let by_name: BTreeMap<_, _> = report
        .tables
        .iter()
        .map(|t| (t.name.clone(), t.problems.clone()))
        .collect();
    assert_eq!(
        by_name[&format!("{bad}mqtt_client")],
        vec![Problem::Missing]
    );
    assert_eq!(
        by_name[&format!("{bad}mqtt_sub")],
        vec![
            Problem::WrongKey {
                key_type: "RANGE",
                expected: Some("topic"),
                found: None
            },
            Problem::WrongKeyType {
                attribute: "clientid".into(),
                expected: "S",
                found: "N".into()
            },
        ]
    );
    let text = report.to_string();
    assert!(
        text.contains(&format!(
            "{bad}mqtt_sub: RANGE key is (none) but should be topic"
        )),
        "{text}"
    );
    match create_tables(&client, &bad, Billing::PayPerRequest).await {
        Err(TablesError::Mismatch { table, .. }) => assert_eq!(table, format!("{bad}mqtt_sub")),
        other => panic!("expected a mismatch, got {other:?}"),
    }
}

fn writer_for(store: DynamoStore) -> Writer {
    Writer::spawn(
        Arc::new(store),
        WriterConfig {
            pool_size: 4,
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(500),
            ..WriterConfig::default()
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batches_over_25_and_duplicate_keys_are_accepted() {
    let place = Place::new(Kind::Dynamo, "batch").await;
    let store = DynamoStore::connect(&shared().config(&place.prefix)).await;
    let w = writer_for(store.clone());
    for i in 0..80 {
        w.push(WriteOp::PutSub(SubRecord {
            clientid: "c".into(),
            topic: format!("t/{i}"),
            qos: 1,
        }))
        .expect("submit");
    }
    // The same key many times within one window: dynalite rejects duplicate keys in one
    // BatchWriteItem, so these must be coalesced.
    for qos in [0, 1, 2, 0, 1, 2] {
        w.push(WriteOp::PutSub(SubRecord {
            clientid: "d".into(),
            topic: "same".into(),
            qos,
        }))
        .expect("submit");
    }
    w.push(WriteOp::DeleteSub {
        clientid: "c".into(),
        topic: "t/0".into(),
    })
    .expect("submit");
    w.flush().await.expect("flush");
    let s = w.stats();
    assert_eq!(s.failed, 0, "{s:?}");
    assert!(s.batches >= 4, "{s:?}");
    assert_eq!(store.subscriptions("c").await.expect("query").len(), 79);
    assert_eq!(
        store.subscriptions("d").await.expect("query"),
        vec![SubRecord {
            clientid: "d".into(),
            topic: "same".into(),
            qos: 2
        }]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn map_adds_and_removes_coalesce_into_update_items() {
    let place = Place::new(Kind::Dynamo, "mapco").await;
    let store = DynamoStore::connect(&shared().config(&place.prefix)).await;
    let w = writer_for(store.clone());
    let ids: Vec<MsgId> = (0..30u128)
        .map(|i| MsgId((1_563_765_995_880_379u128 << 64) | i))
        .collect();
    for id in &ids {
        w.push(WriteOp::MapAdd {
            topic: "m".into(),
            msgids: vec![*id],
        })
        .expect("submit");
    }
    for id in &ids[..5] {
        w.push(WriteOp::MapRemove {
            topic: "m".into(),
            msgids: vec![*id],
        })
        .expect("submit");
    }
    w.flush().await.expect("flush");
    let mut got = store.map_msgids("m").await.expect("read");
    got.sort();
    assert_eq!(got, ids[5..].to_vec());
    let s = w.stats();
    assert!(s.coalesced > 0 && s.failed == 0, "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_during_an_outage_lands_after_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let mut server = Dynalite::start(Some(data.path()));
    let client = server.client().await;
    create_tables(&client, "", Billing::PayPerRequest)
        .await
        .expect("tables");
    let store = DynamoStore::connect(&server.config("")).await;
    let w = writer_for(store.clone());
    w.push(WriteOp::PutSub(SubRecord {
        clientid: "c".into(),
        topic: "before".into(),
        qos: 1,
    }))
    .expect("submit");
    w.flush().await.expect("flush before outage");

    server.stop();
    w.push(WriteOp::PutSub(SubRecord {
        clientid: "c".into(),
        topic: "during".into(),
        qos: 2,
    }))
    .expect("submit during outage");
    let w2 = w.clone();
    let flushed = tokio::spawn(async move { w2.flush().await });
    // The SDK retries a refused connection a few times itself before the writer sees the
    // error and schedules its own retry.
    let start = std::time::Instant::now();
    while w.stats().retries == 0 {
        assert!(start.elapsed() < Duration::from_secs(60), "{:?}", w.stats());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !flushed.is_finished(),
        "flush returned while the store was down"
    );

    server.restart();
    tokio::time::timeout(Duration::from_secs(60), flushed)
        .await
        .expect("flush finishes after restart")
        .expect("join")
        .expect("flush");
    let mut topics: Vec<String> = store
        .subscriptions("c")
        .await
        .expect("query")
        .into_iter()
        .map(|s| s.topic)
        .collect();
    topics.sort();
    assert_eq!(topics, ["before", "during"]);
    let s = w.stats();
    assert_eq!((s.failed, s.pending), (0, 0), "{s:?}");
}

/// The item size the actions check ([`message_item_size`]) is DynamoDB's: dynalite, which
/// applies DynamoDB's size rules, stores a message item of exactly 400 KB and refuses one a
/// byte over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_item_size_is_dynamodbs() {
    use dynamq_store::dynamo::{MAX_ITEM_BYTES, message_item_size};
    use dynamq_store::record::MessageRecord;

    let prefix = unique_prefix("itemsize");
    let client = shared().client().await;
    create_tables(&client, &prefix, Billing::PayPerRequest)
        .await
        .expect("create tables");
    let store = DynamoStore::with_client(client, &prefix);
    let record = |len: usize| MessageRecord {
        msgid: MsgId(0x0005_f3a2_1b2c_3d4e_0102_0304_0506_0708 + len as u128),
        topic: "size/t".into(),
        sender: "s".into(),
        qos: 1,
        retain: false,
        payload: Bytes::from(vec![b'a'; len]),
        arrived: 1_563_765_246,
        props: None,
    };
    let base = message_item_size(&record(0));
    let at_limit = record(MAX_ITEM_BYTES - base);
    assert_eq!(message_item_size(&at_limit), MAX_ITEM_BYTES);
    let failed = store.write(vec![WriteOp::PutMsg(at_limit)]).await;
    assert!(failed.is_empty(), "{failed:?}");
    let over = record(MAX_ITEM_BYTES - base + 1);
    let failed = store.write(vec![WriteOp::PutMsg(over)]).await;
    assert_eq!(failed.len(), 1, "dynalite refuses an item over 400 KB");
}
