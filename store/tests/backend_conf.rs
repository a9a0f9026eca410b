//! The tutorial's `backend.dynamo.*` file, parsed as written, and the errors that name lines.

use std::path::Path;
use std::time::Duration;

use dynamq_store::Secret;
use dynamq_store::backend_conf::BackendConf;
use dynamq_store::binding::{Action, Event, default_bindings};

fn fixture() -> BackendConf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/emqx_backend_dynamo.conf");
    BackendConf::from_file(&path).expect("the tutorial's config parses")
}

#[test]
fn tutorial_config_block_parses() {
    let conf = fixture();
    assert_eq!(conf.region.as_deref(), Some("us-west-2"));
    let pool = &conf.pools["pool1"];
    assert_eq!(pool.server.as_deref(), Some("http://localhost:8000"));
    assert_eq!(pool.pool_size, Some(8));
    assert_eq!(
        pool.aws_access_key_id.as_ref().map(Secret::expose),
        Some("AKIAU5IM2XOC7AQWG7HK")
    );
    assert_eq!(
        pool.aws_secret_access_key.as_ref().map(Secret::expose),
        Some("TZt7XoRi+vtCJYQ9YsAinh19jR1rngm/hxZMWR2P")
    );
    assert_eq!(conf.bindings.len(), 10);
    // The file's ten hooks are the defaults.
    let mut defaults = default_bindings();
    defaults.sort_by_key(|h| (h.event, h.seq));
    assert_eq!(conf.bindings, defaults);
    let unsub = conf
        .bindings
        .iter()
        .find(|h| h.event == Event::SessionUnsubscribed)
        .expect("unsubscribed hook");
    assert_eq!(unsub.action, Action::OnAckedDelete);
    assert_eq!(unsub.topic_filter.as_deref(), Some("#"));
    assert_eq!(unsub.pool.as_deref(), Some("pool1"));

    let dc = conf.dynamo_config("pool1").expect("pool1");
    assert_eq!(dc.endpoint.as_deref(), Some("http://localhost:8000"));
    assert_eq!(dc.pool_size, 8);
    let shown = format!("{dc:?} {pool:?}");
    assert!(
        !shown.contains("TZt7XoRi"),
        "secret leaked in Debug: {shown}"
    );
    assert!(
        !shown.contains("AKIAU5IM"),
        "key id leaked in Debug: {shown}"
    );
}

#[test]
fn offline_opts_and_new_functions() {
    let text = r##"
backend.dynamo.pool1.server = http://127.0.0.1:1
backend.dynamo.hook.session.subscribed.1 = {"topic": "t/#", "action": {"function": "on_message_fetch_for_queue"}, "offline_opts": {"max_returned_count": 500, "time_range": "2h"}, "pool": "pool1"}
backend.dynamo.hook.session.subscribed.2 = {"action": {"function": "on_message_fetch_for_pubsub"}, "offline_opts": {"time_range": 90}}
backend.dynamo.hook.message.publish.1 = {"topic": "#", "action": {"function": "on_message_store"}}
"##;
    let conf = BackendConf::parse(text, "x.conf").expect("parses");
    assert_eq!(conf.bindings.len(), 3);
    // Sorted by event (declaration order: session.* before message.*) then number.
    let q = &conf.bindings[0];
    assert_eq!(q.action, Action::OnMessageFetchForQueue);
    assert_eq!(q.max_returned_count, Some(500));
    assert_eq!(q.time_range, Some(Duration::from_secs(7200)));
    assert_eq!(q.topic_filter.as_deref(), Some("t/#"));
    assert_eq!(conf.bindings[1].action, Action::OnMessageFetchForPubsub);
    assert_eq!(conf.bindings[1].time_range, Some(Duration::from_secs(90)));
    assert_eq!(conf.bindings[1].pool, None);
    assert_eq!(conf.bindings[2].action, Action::OnMessageStore);
}

fn error_of(text: &str) -> String {
    BackendConf::parse(text, "bad.conf")
        .expect_err("must fail")
        .to_string()
}

#[test]
fn errors_name_the_line() {
    let e = error_of(
        "## c\n\nbackend.dynamo.hook.message.delivered.1 = {\"action\": {\"function\": \"on_message_publish\"}}\n",
    );
    assert!(
        e.starts_with("bad.conf:3: unknown hook event \"message.delivered\""),
        "{e}"
    );

    let e = error_of(
        "backend.dynamo.region = x\nbackend.dynamo.hook.message.publish.1 = {\"action\": {\"function\": \"on_nothing\"}}\n",
    );
    assert!(
        e.starts_with("bad.conf:2: unknown function \"on_nothing\""),
        "{e}"
    );

    let e = error_of(
        "backend.dynamo.hook.message.publish.1 = {\"action\": {\"function\": \"on_message_publish\"\n",
    );
    assert!(e.starts_with("bad.conf:1: bad hook JSON"), "{e}");

    let e = error_of(
        "backend.dynamo.hook.message.publish.1 = {\"action\": {\"function\": \"on_client_connected\"}}\n",
    );
    assert!(
        e.contains("bad.conf:1: function on_client_connected runs on client.connected"),
        "{e}"
    );

    let e = error_of(
        "\n\nbackend.dynamo.hook.message.publish.1 = {\"action\": {\"function\": \"on_message_publish\"}, \"pool\": \"pool9\"}\n",
    );
    assert!(e.starts_with("bad.conf:3: hook uses pool \"pool9\""), "{e}");

    let e = error_of("backend.dynamo.pool1.pool_size = lots\n");
    assert!(e.starts_with("bad.conf:1: pool_size"), "{e}");

    let e = error_of("backend.mysql.server = x\n");
    assert!(e.starts_with("bad.conf:1: unknown key"), "{e}");

    let e = error_of("just words\n");
    assert!(e.starts_with("bad.conf:1: expected `key = value`"), "{e}");

    let e = error_of(
        "backend.dynamo.hook.message.publish.1 = {\"action\": {\"function\": \"on_message_publish\"}, \"extra\": 1}\n",
    );
    assert!(e.starts_with("bad.conf:1: bad hook JSON"), "{e}");

    let e = error_of(
        "backend.dynamo.hook.message.publish.1 = {\"topic\": \"a/#/b\", \"action\": {\"function\": \"on_message_publish\"}}\n",
    );
    assert!(e.contains("not a valid topic filter"), "{e}");

    let e = error_of(
        "backend.dynamo.hook.session.subscribed.1 = {\"action\": {\"function\": \"on_message_fetch_for_queue\"}, \"offline_opts\": {\"time_range\": \"2 fortnights\"}}\n",
    );
    assert!(e.contains("bad time_range"), "{e}");

    let text = "backend.dynamo.hook.message.publish.1 = {\"action\": {\"function\": \"on_message_publish\"}}\nbackend.dynamo.hook.message.publish.1 = {\"action\": {\"function\": \"on_message_retain\"}}\n";
    assert!(error_of(text).starts_with("bad.conf:2: duplicate hook"));
}

#[test]
fn missing_file_names_the_path() {
    let e = BackendConf::from_file(Path::new("/nonexistent/dynamo.conf"))
        .expect_err("missing")
        .to_string();
    assert!(e.contains("/nonexistent/dynamo.conf"), "{e}");
}
