//! Creating and checking the six tables (`dynamq tables create|check`, and `serve` at start),
//! and creating the two tables of users and ACL rules ([`crate::users`]), which `create`
//! makes too: `check` and `serve` look at the six only, since a broker that keeps no users
//! in the store needs no user tables.
//!
//! The key schemas are the tutorial's: every key attribute is a string; mqtt_sub and
//! mqtt_acked have a range key. No TTL is configured (dynalite has no UpdateTimeToLive and the
//! design does not need one: stored messages are removed on ack, expiry and the per-topic budget
//! `max_stored_per_topic`).

use std::fmt;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ProvisionedThroughput,
    ScalarAttributeType, TableDescription, TableStatus,
};

use crate::dynamo::item::key_names;
use crate::dynamo::{DynamoClient, TableNames, sdk_error};
use crate::error::StoreError;
use crate::op::Table;

/// How new tables are billed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Billing {
    PayPerRequest,
    /// The tutorial creates its tables with 5/5.
    Provisioned {
        rcu: i64,
        wcu: i64,
    },
}

/// What is wrong with one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing,
    /// The table exists but is not ACTIVE (CREATING, DELETING, ...).
    NotActive(String),
    /// The HASH or RANGE key is not the expected attribute (`None`: absent).
    WrongKey {
        key_type: &'static str,
        expected: Option<&'static str>,
        found: Option<String>,
    },
    /// A key attribute is declared with another type than S.
    WrongKeyType {
        attribute: String,
        expected: &'static str,
        found: String,
    },
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Missing => f.write_str("table does not exist"),
            Problem::NotActive(s) => write!(f, "table status is {s}, not ACTIVE"),
            Problem::WrongKey {
                key_type,
                expected,
                found,
            } => write!(
                f,
                "{key_type} key is {} but should be {}",
                found.as_deref().unwrap_or("(none)"),
                expected.unwrap_or("(none)")
            ),
            Problem::WrongKeyType {
                attribute,
                expected,
                found,
            } => write!(
                f,
                "key attribute {attribute} has type {found}, expected {expected}"
            ),
        }
    }
}

/// The result of checking one table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCheck {
    pub name: String,
    pub problems: Vec<Problem>,
}

/// The result of checking all six tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablesReport {
    pub tables: Vec<TableCheck>,
}

impl TablesReport {
    pub fn is_ok(&self) -> bool {
        self.tables.iter().all(|t| t.problems.is_empty())
    }
}

impl fmt::Display for TablesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for t in &self.tables {
            if t.problems.is_empty() {
                writeln!(f, "{}: ok", t.name)?;
            }
            for p in &t.problems {
                writeln!(f, "{}: {p}", t.name)?;
            }
        }
        Ok(())
    }
}

/// What `create_tables` did with one table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    Created,
    AlreadyExisted,
}

#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("table {table} exists with another schema: {}", problems.iter().map(|p| p.to_string()).collect::<Vec<_>>().join("; "))]
    Mismatch {
        table: String,
        problems: Vec<Problem>,
    },
    #[error("table {table} did not become ACTIVE within {waited:?}")]
    NotActive { table: String, waited: Duration },
}

/// How long `create_tables` waits for a table to become ACTIVE.
const ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

async fn describe(
    client: &DynamoClient,
    name: &str,
) -> Result<Option<TableDescription>, StoreError> {
    match client.sdk().describe_table().table_name(name).send().await {
        Ok(out) => Ok(out.table),
        Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(None),
        Err(e) => Err(sdk_error(client.target(), "DescribeTable", name, e)),
    }
}

/// The users and ACL tables: base name, hash key, range key (all S).
const USER_TABLES: [(&str, &str, Option<&str>); 2] = [
    (crate::users::USER_TABLE, "username", None),
    (crate::users::ACL_TABLE, "username", Some("topic")),
];

/// Compares a table's key schema with the expected one.
fn schema_problems(
    (hash, range): (&'static str, Option<&'static str>),
    desc: &TableDescription,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    let key_of = |kt: KeyType| {
        desc.key_schema()
            .iter()
            .find(|k| *k.key_type() == kt)
            .map(|k| k.attribute_name().to_owned())
    };
    for (key_type, kt, expected) in [
        ("HASH", KeyType::Hash, Some(hash)),
        ("RANGE", KeyType::Range, range),
    ] {
        let found = key_of(kt);
        if found.as_deref() != expected {
            problems.push(Problem::WrongKey {
                key_type,
                expected,
                found,
            });
        }
    }
    for attribute in std::iter::once(hash).chain(range) {
        if let Some(def) = desc
            .attribute_definitions()
            .iter()
            .find(|d| d.attribute_name() == attribute)
            && *def.attribute_type() != ScalarAttributeType::S
        {
            problems.push(Problem::WrongKeyType {
                attribute: attribute.to_owned(),
                expected: "S",
                found: def.attribute_type().as_str().to_owned(),
            });
        }
    }
    problems
}

/// Checks that the six tables exist, are ACTIVE and have the tutorial's key schemas.
pub async fn check_tables(client: &DynamoClient, prefix: &str) -> Result<TablesReport, StoreError> {
    let names = TableNames::new(prefix);
    let mut tables = Vec::new();
    for table in Table::ALL {
        let name = names.get(table).to_owned();
        let problems = match describe(client, &name).await? {
            None => vec![Problem::Missing],
            Some(desc) => {
                let mut p = schema_problems(key_names(table), &desc);
                match desc.table_status() {
                    Some(TableStatus::Active) | None => {}
                    Some(s) => p.push(Problem::NotActive(s.as_str().to_owned())),
                }
                p
            }
        };
        tables.push(TableCheck { name, problems });
    }
    Ok(TablesReport { tables })
}

/// Creates the missing tables, the six and the two of users and rules, and waits until all
/// are ACTIVE. Idempotent: an existing table with the right key schema is left alone; one
/// with another schema is an error.
pub async fn create_tables(
    client: &DynamoClient,
    prefix: &str,
    billing: Billing,
) -> Result<Vec<(String, Created)>, TablesError> {
    let names = TableNames::new(prefix);
    let mut done = Vec::new();
    let six = Table::ALL.map(|t| (names.get(t).to_owned(), key_names(t)));
    let users = USER_TABLES.map(|(base, hash, range)| (format!("{prefix}{base}"), (hash, range)));
    for (name, keys) in six.into_iter().chain(users) {
        let outcome = match describe(client, &name).await? {
            Some(desc) => {
                let problems = schema_problems(keys, &desc);
                if !problems.is_empty() {
                    return Err(TablesError::Mismatch {
                        table: name,
                        problems,
                    });
                }
                Created::AlreadyExisted
            }
            None => create_one(client, keys, &name, billing).await?,
        };
        done.push((name, outcome));
    }
    for (name, _) in &done {
        wait_active(client, name).await?;
    }
    Ok(done)
}

async fn create_one(
    client: &DynamoClient,
    (hash, range): (&'static str, Option<&'static str>),
    name: &str,
    billing: Billing,
) -> Result<Created, TablesError> {
    let mut call = client.sdk().create_table().table_name(name);
    for (attr, kt) in
        std::iter::once((hash, KeyType::Hash)).chain(range.map(|r| (r, KeyType::Range)))
    {
        let build = |e| TablesError::Store(crate::dynamo::build_error_pub("CreateTable", name, e));
        call = call
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name(attr)
                    .key_type(kt)
                    .build()
                    .map_err(build)?,
            )
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name(attr)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build)?,
            );
    }
    call = match billing {
        Billing::PayPerRequest => call.billing_mode(BillingMode::PayPerRequest),
        Billing::Provisioned { rcu, wcu } => call
            .billing_mode(BillingMode::Provisioned)
            .provisioned_throughput(
                ProvisionedThroughput::builder()
                    .read_capacity_units(rcu)
                    .write_capacity_units(wcu)
                    .build()
                    .map_err(|e| {
                        TablesError::Store(crate::dynamo::build_error_pub("CreateTable", name, e))
                    })?,
            ),
    };
    match call.send().await {
        Ok(_) => Ok(Created::Created),
        // Another process created it between our describe and create.
        Err(e) if e.code() == Some("ResourceInUseException") => Ok(Created::AlreadyExisted),
        Err(e) => Err(TablesError::Store(sdk_error(
            client.target(),
            "CreateTable",
            name,
            e,
        ))),
    }
}

async fn wait_active(client: &DynamoClient, name: &str) -> Result<(), TablesError> {
    let start = Instant::now();
    loop {
        if let Some(desc) = describe(client, name).await?
            && matches!(desc.table_status(), Some(TableStatus::Active) | None)
        {
            return Ok(());
        }
        if start.elapsed() > ACTIVE_TIMEOUT {
            return Err(TablesError::NotActive {
                table: name.to_owned(),
                waited: ACTIVE_TIMEOUT,
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
