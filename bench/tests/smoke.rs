//! Tests through the real dynamq binary at its defaults, driven by the load generator: a
//! smoke test (a few hundred QoS 1 messages, one publisher to two subscribers) and the QoS 1
//! burst that must lose nothing; every message must arrive exactly as owed. (The
//! benchmarks themselves never run in CI: see bench/run.sh.)

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Kills the broker however the test ends.
struct Broker {
    child: Child,
    data_dir: PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.data_dir);
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    listener.local_addr().expect("local address").port()
}

fn start_broker(port: u16) -> Broker {
    let binary = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release/dynamq");
    assert!(
        binary.exists(),
        "{} not found: run `cargo build --release --bins` before this test",
        binary.display()
    );
    // One per broker: the embedded store locks its directory.
    let data_dir =
        std::env::temp_dir().join(format!("dynamq-bench-smoke-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&data_dir).expect("create the data dir");
    let child = Command::new(&binary)
        .args([
            "serve",
            "--tcp",
            &format!("127.0.0.1:{port}"),
            "--ws",
            "none",
        ])
        .arg("--data-dir")
        .arg(&data_dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start dynamq");
    let broker = Broker { child, data_dir };
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "dynamq did not listen on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    broker
}

/// Runs dynamq-bench against the broker on `port` and returns its one-line JSON summary.
fn bench(port: u16, args: &[&str]) -> serde_json::Value {
    let output = Command::new(env!("CARGO_BIN_EXE_dynamq-bench"))
        .args(["run", "--port", &port.to_string()])
        .args(args)
        .args(["--max-secs", "60", "--quiet"])
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
fn qos1_one_publisher_two_subscribers_loses_nothing() {
    let port = free_port();
    let _broker = start_broker(port);
    let summary = bench(
        port,
        &[
            "--qos",
            "1",
            "--pubs",
            "1",
            "--subs",
            "2",
            "--count",
            "300",
            "--inflight",
            "20",
            "--topic",
            "smoke/%i",
            "--filter",
            "smoke/#",
        ],
    );
    assert_eq!(summary["published"], 300, "{summary}");
    assert_eq!(summary["expected"], 600, "{summary}");
    assert_eq!(summary["received"], summary["expected"], "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["duplicates"], 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
    assert_eq!(summary["timed_out"], false, "{summary}");
}

/// A burst at the defaults a user runs (embedded store on, default queues and flow
/// control): 10 publishers x 10 subscribers on one topic, 5,000 QoS 1 messages each, every
/// client reading as fast as it can. The publishers outrun the subscribers; no
/// acknowledged message may be dropped (before flow control, 313,673 of the 500,000
/// deliveries were).
#[test]
fn qos1_burst_at_the_defaults_loses_nothing() {
    let port = free_port();
    let _broker = start_broker(port);
    let summary = bench(
        port,
        &[
            "--qos", "1", "--pubs", "10", "--subs", "10", "--count", "5000", "--topic", "burst/t",
            "--filter", "burst/t",
        ],
    );
    assert_eq!(summary["published"], 50_000, "{summary}");
    assert_eq!(summary["expected"], 500_000, "{summary}");
    assert_eq!(summary["received"], summary["expected"], "{summary}");
    assert_eq!(summary["lost"], 0, "{summary}");
    assert_eq!(summary["duplicates"], 0, "{summary}");
    assert_eq!(summary["errors"], 0, "{summary}");
}
