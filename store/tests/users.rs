//! Users and ACL rules in the store (mqtt_user, mqtt_acl) on both stores: add, get, list,
//! replace, delete; on DynamoDB the exact item shapes and key schemas; on the embedded
//! store, a second opener (another process's `dynamq user add`) waiting for the first.

mod common;

use aws_sdk_dynamodb::types::{AttributeValue, KeyType};
use common::{Kind, Place, shared};
use dynamq_store::users::dynamo::DynamoUsers;
use dynamq_store::users::embedded::EmbeddedUsers;
use dynamq_store::users::{ALL_USERS, AclAction, AclRecord, Permission, UserRecord, UserStore};

async fn user_store(place: &Place) -> UserStore {
    match (&place.kind, &place.dir) {
        (Kind::Embedded, Some(dir)) => UserStore::Embedded(EmbeddedUsers::new(dir.path())),
        _ => UserStore::Dynamo(DynamoUsers::new(shared().client().await, &place.prefix)),
    }
}

fn user(name: &str, superuser: bool, created: i64) -> UserRecord {
    UserRecord {
        username: name.into(),
        password_hash: format!("$7$101$c2FsdA==$aGFzaC17bmFtZX0={name}"),
        is_superuser: superuser,
        created,
    }
}

fn rule(user: &str, topic: &str, permission: Permission, action: AclAction) -> AclRecord {
    AclRecord {
        username: user.into(),
        topic: topic.into(),
        permission,
        action,
    }
}

async fn users_round_trip(kind: Kind) {
    let place = Place::new(kind, "users").await;
    let s = user_store(&place).await;
    assert_eq!(s.users().await.expect("empty list"), vec![]);
    assert_eq!(s.user("alice").await.expect("get missing"), None);

    let alice = user("alice", false, 1_700_000_000);
    let root = user("root", true, 1_700_000_001);
    s.put_user(&root).await.expect("put root");
    s.put_user(&alice).await.expect("put alice");
    assert_eq!(s.user("alice").await.expect("get"), Some(alice.clone()));
    assert_eq!(s.user("root").await.expect("get"), Some(root.clone()));
    // Sorted by name.
    assert_eq!(
        s.users().await.expect("list"),
        vec![alice.clone(), root.clone()]
    );

    // Adding again replaces (a new password).
    let alice2 = UserRecord {
        password_hash: "$7$101$bmV3$bmV3aGFzaA==".into(),
        ..alice.clone()
    };
    s.put_user(&alice2).await.expect("replace");
    assert_eq!(s.user("alice").await.expect("get"), Some(alice2));
    assert_eq!(s.users().await.expect("list").len(), 2);

    assert!(s.delete_user("alice").await.expect("del"));
    assert!(!s.delete_user("alice").await.expect("del again"));
    assert_eq!(s.user("alice").await.expect("get deleted"), None);
    assert_eq!(s.users().await.expect("list"), vec![root]);
}

async fn rules_round_trip(kind: Kind) {
    let place = Place::new(kind, "rules").await;
    let s = user_store(&place).await;
    assert_eq!(s.rules().await.expect("empty"), vec![]);
    let r1 = rule("alice", "a/#", Permission::Allow, AclAction::All);
    let r2 = rule("alice", "a/secret", Permission::Deny, AclAction::Publish);
    let r3 = rule(ALL_USERS, "c/%c/#", Permission::Allow, AclAction::Subscribe);
    for r in [&r3, &r2, &r1] {
        s.put_rule(r).await.expect("put rule");
    }
    // Sorted by user, then filter ("$all" sorts before letters).
    assert_eq!(
        s.rules().await.expect("list"),
        vec![r3.clone(), r1.clone(), r2.clone()]
    );
    // Same user and filter: replaced.
    let r2b = rule("alice", "a/secret", Permission::Deny, AclAction::All);
    s.put_rule(&r2b).await.expect("replace");
    assert_eq!(
        s.rules().await.expect("list"),
        vec![r3.clone(), r1.clone(), r2b]
    );
    assert!(s.delete_rule("alice", "a/secret").await.expect("del"));
    assert!(!s.delete_rule("alice", "a/secret").await.expect("del again"));
    assert!(!s.delete_rule("bob", "a/#").await.expect("other user"));
    assert_eq!(s.rules().await.expect("list"), vec![r3, r1]);
}

both_stores! {
    users => users_round_trip;
    rules => rules_round_trip;
}

/// The item shapes a user sees with Scan, and the two tables' key schemas.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamo_items_and_keys() {
    let place = Place::new(Kind::Dynamo, "shapes").await;
    let s = user_store(&place).await;
    s.put_user(&user("u1", true, 42)).await.expect("put");
    s.put_rule(&rule("u1", "t/+", Permission::Deny, AclAction::Subscribe))
        .await
        .expect("put rule");
    let client = shared().client().await;
    let sdk = client.sdk();
    let users = format!("{}mqtt_user", place.prefix);
    let out = sdk.scan().table_name(&users).send().await.expect("scan");
    let items = out.items.unwrap_or_default();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.get("username"), Some(&AttributeValue::S("u1".into())));
    assert!(
        matches!(item.get("password_hash"), Some(AttributeValue::S(h)) if h.starts_with("$7$"))
    );
    assert_eq!(item.get("is_superuser"), Some(&AttributeValue::Bool(true)));
    assert_eq!(item.get("created"), Some(&AttributeValue::N("42".into())));
    assert_eq!(item.len(), 4);

    let acl = format!("{}mqtt_acl", place.prefix);
    let out = sdk.scan().table_name(&acl).send().await.expect("scan");
    let items = out.items.unwrap_or_default();
    assert_eq!(items.len(), 1);
    let s_of = |k: &str| match items[0].get(k) {
        Some(AttributeValue::S(v)) => v.clone(),
        other => panic!("{k}: {other:?}"),
    };
    assert_eq!(
        ["username", "topic", "permission", "action"].map(s_of),
        ["u1", "t/+", "deny", "subscribe"].map(String::from)
    );
    assert_eq!(items[0].len(), 4);

    let desc = sdk
        .describe_table()
        .table_name(&acl)
        .send()
        .await
        .expect("describe")
        .table
        .expect("table");
    let keys: Vec<(String, KeyType)> = desc
        .key_schema()
        .iter()
        .map(|k| (k.attribute_name().to_owned(), k.key_type().clone()))
        .collect();
    assert_eq!(
        keys,
        vec![
            ("username".to_owned(), KeyType::Hash),
            ("topic".to_owned(), KeyType::Range)
        ]
    );

    // An item written by hand without is_superuser (optional) or created reads as false / 0.
    sdk.put_item()
        .table_name(&users)
        .item("username", AttributeValue::S("plain".into()))
        .item("password_hash", AttributeValue::S("$7$x".into()))
        .send()
        .await
        .expect("put by hand");
    let plain = s.user("plain").await.expect("get").expect("found");
    assert!(!plain.is_superuser);
    assert_eq!(plain.created, 0);
    // A bad attribute type is an error naming the table, not a panic.
    sdk.put_item()
        .table_name(&users)
        .item("username", AttributeValue::S("broken".into()))
        .item("password_hash", AttributeValue::N("1".into()))
        .send()
        .await
        .expect("put broken");
    let err = s.user("broken").await.expect_err("bad item");
    assert!(err.to_string().contains("mqtt_user"), "{err}");
}

/// While one opener holds the users file (a broker reading), another (`dynamq user add`)
/// waits for it instead of failing; and the file lives apart from dynamq.redb, so that the
/// broker's open store does not lock it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_file_is_shared_by_turns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _store = dynamq_store::embedded::EmbeddedStore::open(dir.path())
        .await
        .expect("main store open");
    let file = EmbeddedUsers::new(dir.path());
    assert!(file.path().ends_with("users.redb"));
    let a = UserStore::Embedded(file.clone());
    a.put_user(&user("x", false, 1))
        .await
        .expect("put while dynamq.redb is open");
    // Hold the file open as another process would, for a moment.
    let held = redb::Database::create(file.path()).expect("hold");
    let b = UserStore::Embedded(EmbeddedUsers::new(dir.path()));
    let reader = tokio::spawn(async move { b.user("x").await });
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    assert!(!reader.is_finished(), "the second opener should wait");
    drop(held);
    let got = reader.await.expect("join").expect("read after release");
    assert_eq!(got.map(|u| u.username), Some("x".to_owned()));
}
