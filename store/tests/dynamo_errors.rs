//! The messages of DynamoDB failures, as `dynamq` prints them when it cannot start: one line
//! that says what to fix. A refused endpoint, no credentials at all (in a child process with
//! an empty environment), a throttling answer (from a scripted HTTP server) and a table that
//! does not exist (dynalite).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Command;

use common::{shared, unique_prefix};
use dynamq_store::dynamo::{DynamoConfig, DynamoStore, connect};
use dynamq_store::error::StoreError;
use dynamq_store::store::Store;
use dynamq_store::tables::check_tables;

/// An endpoint on which nothing listens: a port the kernel gave us, closed again.
fn refused_endpoint() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    let port = l.local_addr().expect("local addr").port();
    drop(l);
    format!("http://127.0.0.1:{port}")
}

fn config(endpoint: String, with_keys: bool) -> DynamoConfig {
    DynamoConfig {
        endpoint: Some(endpoint),
        access_key_id: with_keys.then(|| "AKIDTEST".into()),
        secret_access_key: with_keys.then(|| "test-secret".into()),
        ..DynamoConfig::default()
    }
}

/// The checks every start-up message must pass: one line, short, and none of the SDK's
/// Debug dump (which names its types and the raw response).
fn assert_readable(text: &str) {
    assert!(!text.contains('\n'), "not one line: {text}");
    assert!(text.len() < 300, "{} chars: {text}", text.len());
    for dump in [
        "DispatchFailure",
        "ConnectorError",
        "HttpResponse",
        "headers",
        "Os {",
    ] {
        assert!(!text.contains(dump), "{dump:?} in: {text}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_endpoint_is_one_line_naming_it() {
    let endpoint = refused_endpoint();
    let client = connect(&config(endpoint.clone(), true)).await;
    let e = check_tables(&client, "")
        .await
        .expect_err("nothing listens there");
    let text = e.to_string();
    assert_readable(&text);
    assert_eq!(
        text,
        format!("cannot reach DynamoDB at {endpoint}: connection refused")
    );
    assert!(e.is_retryable());
}

/// Set in the child process of [`no_credentials_message_names_the_fix`].
const CHILD: &str = "DYNAMQ_TEST_NO_CREDENTIALS_CHILD";

/// No credentials anywhere: the environment emptied, HOME an empty directory (no
/// ~/.aws/config), instance metadata off. Runs itself again as a child process, because the
/// SDK reads the process environment and the other tests run in threads of this one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_credentials_message_names_the_fix() {
    if std::env::var_os(CHILD).is_some() {
        let client = connect(&config(refused_endpoint(), false)).await;
        let e = check_tables(&client, "")
            .await
            .expect_err("there are no credentials");
        let text = e.to_string();
        println!("message: {text}");
        assert!(matches!(e, StoreError::NoCredentials { .. }), "{e:?}");
        assert_readable(&text);
        assert!(text.starts_with("no AWS credentials found"), "{text}");
        for fix in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "access_key_id",
        ] {
            assert!(text.contains(fix), "{fix} not named in: {text}");
        }
        return;
    }
    let home = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("the test binary");
    let out = Command::new(exe)
        .args([
            "--exact",
            "no_credentials_message_names_the_fix",
            "--nocapture",
        ])
        .env_clear()
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env(CHILD, "1")
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "child failed:\n{stdout}\n{stderr}");
    // The child really ran the test (a filter that matched nothing also succeeds).
    assert!(stdout.contains("message: no AWS credentials"), "{stdout}");
}

/// Serves every request on `listener` with the same DynamoDB error answer.
fn answer_every_request_with(listener: TcpListener, status: &'static str, body: &'static str) {
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let _ = serve(conn, status, body);
            });
        }
    });
}

fn serve(conn: TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut conn = conn;
    loop {
        let mut length = 0usize;
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((name, value)) = l.split_once(':')
                && name.eq_ignore_ascii_case("content-length")
            {
                length = value.trim().parse().unwrap_or(0);
            }
        }
        let mut request = vec![0; length];
        reader.read_exact(&mut request)?;
        write!(
            conn,
            "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.0\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )?;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttling_shows_the_aws_code_and_message() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
    answer_every_request_with(
        listener,
        "400 Bad Request",
        r#"{"__type":"com.amazonaws.dynamodb.v20120810#ThrottlingException","message":"Rate exceeded"}"#,
    );
    let client = connect(&config(endpoint, true)).await;
    let e = check_tables(&client, "")
        .await
        .expect_err("every answer is an error");
    let text = e.to_string();
    assert_readable(&text);
    assert_eq!(
        text,
        "DynamoDB DescribeTable on mqtt_client: ThrottlingException: Rate exceeded"
    );
    assert!(e.is_retryable());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_table_says_to_create_it() {
    let server = shared();
    let prefix = unique_prefix("none");
    let store = DynamoStore::connect(&server.config(&prefix)).await;
    let e = store
        .client("c1")
        .await
        .expect_err("the tables were never created");
    let text = e.to_string();
    assert_readable(&text);
    assert_eq!(
        text,
        format!(
            "DynamoDB GetItem on {prefix}mqtt_client: no such table at {}: run `dynamq tables \
             create`, or check the region, endpoint and table prefix",
            server.endpoint()
        )
    );
    assert!(!e.is_retryable());
}
