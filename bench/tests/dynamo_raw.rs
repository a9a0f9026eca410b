//! `dynamq-bench dynamo-raw` against a real dynalite: both request patterns write every
//! item asked for, and the summary counts them. (The benchmark itself runs in bench/run.sh
//! --dynamo, never in CI.) `DYNALITE_CLI` overrides where dynalite's cli.js is.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills dynalite however the test ends.
struct Dynalite(Child);

impl Drop for Dynalite {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_dynalite() -> (Dynalite, u16) {
    let cli = std::env::var_os("DYNALITE_CLI").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../tests/node/node_modules/dynalite/cli.js")
        },
        PathBuf::from,
    );
    assert!(cli.exists(), "dynalite not found at {}", cli.display());
    let port = TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local address")
        .port();
    let child = Command::new("node")
        .arg(&cli)
        .args(["--port", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dynalite");
    let dynalite = Dynalite(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "dynalite did not listen on {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (dynalite, port)
}

fn raw(port: u16, args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_dynamq-bench"))
        .args([
            "dynamo-raw",
            "--endpoint",
            &format!("http://127.0.0.1:{port}"),
        ])
        .args(["--create-tables", "--prefix", "t_", "--max-secs", "60"])
        .args(args)
        .output()
        .expect("run dynamq-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "dynamq-bench failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("summary is not one JSON line ({e}): {stdout}"))
}

#[test]
fn batch_write_and_put_item_write_every_item() {
    let (_dynalite, port) = start_dynalite();
    // 60 items in requests of 25: two full requests and one of 10.
    let batch = raw(
        port,
        &["--items", "60", "--batch", "25", "--concurrency", "2"],
    );
    assert_eq!(batch["request"], "BatchWriteItem", "{batch}");
    assert_eq!(batch["written"], 60, "{batch}");
    assert_eq!(batch["errors"], 0, "{batch}");
    let requests = batch["requests"].as_u64().expect("requests");
    assert!((3..=6).contains(&requests), "{batch}");
    // One PutItem per item.
    let put = raw(
        port,
        &["--items", "10", "--batch", "1", "--concurrency", "8"],
    );
    assert_eq!(put["request"], "PutItem", "{put}");
    assert_eq!(put["written"], 10, "{put}");
    assert_eq!(put["requests"], 10, "{put}");
    assert_eq!(put["errors"], 0, "{put}");
}

#[test]
fn a_batch_over_the_dynamodb_limit_is_refused() {
    let output = Command::new(env!("CARGO_BIN_EXE_dynamq-bench"))
        .args([
            "dynamo-raw",
            "--endpoint",
            "http://127.0.0.1:9",
            "--batch",
            "26",
        ])
        .output()
        .expect("run dynamq-bench");
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--batch must be within 1..=25"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
