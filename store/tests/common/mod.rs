//! Test harness: a dynalite server (the DynamoDB-compatible test server), SDK clients, and
//! the actions on either store.
//!
//! dynalite runs under a tiny `sh` watchdog that kills it when its stdin closes, so the
//! server dies with the test binary even when statics are never dropped or a test aborts;
//! [`Dynalite`]'s `Drop` closes stdin and waits. `DYNALITE_CLI` overrides the path of
//! `cli.js`; without it the test fails with a pointer to `scripts/install-deps.sh`.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use dynamq_store::actions::{Actions, ActionsConfig, StoreConfig};
use dynamq_store::binding::{Binding, default_bindings};
use dynamq_store::dynamo::DynamoConfig;
use dynamq_store::tables::{Billing, create_tables};

pub(crate) fn dynalite_cli() -> PathBuf {
    if let Some(p) = std::env::var_os("DYNALITE_CLI") {
        return PathBuf::from(p);
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/node/node_modules/dynalite/cli.js")
}

/// A running dynalite. Dropping it stops the server.
pub(crate) struct Dynalite {
    pub port: u16,
    path: Option<PathBuf>,
    child: Option<Child>,
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind an ephemeral port");
    l.local_addr().expect("local addr").port()
}

impl Dynalite {
    /// Starts dynalite on a free port; with `path`, data is kept in LevelDB there.
    pub(crate) fn start(path: Option<&Path>) -> Dynalite {
        let mut d = Dynalite {
            port: free_port(),
            path: path.map(Path::to_path_buf),
            child: None,
        };
        d.spawn();
        d
    }

    fn spawn(&mut self) {
        let cli = dynalite_cli();
        assert!(
            cli.exists(),
            "dynalite not found at {}: run scripts/install-deps.sh (or set DYNALITE_CLI)",
            cli.display()
        );
        let mut args = vec![
            cli.display().to_string(),
            "--host".into(),
            "127.0.0.1".into(),
            "--port".into(),
            self.port.to_string(),
            "--createTableMs".into(),
            "0".into(),
        ];
        if let Some(p) = &self.path {
            args.push("--path".into());
            args.push(p.display().to_string());
        }
        // Watchdog: node runs in the background; when our end of stdin closes (drop, exit,
        // crash), `read` returns and node is killed.
        let script = r#"node "$@" & child=$!; read _unused; kill $child 2>/dev/null; wait $child"#;
        let child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("dynalite")
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn sh for dynalite");
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&self) {
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "dynalite did not listen on {addr} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (data kept if it has a path).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take());
            let _ = child.wait();
        }
        // Make sure the port is really closed before returning.
        let addr: SocketAddr = ([127, 0, 0, 1], self.port).into();
        let start = Instant::now();
        while TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok()
            && start.elapsed() < Duration::from_secs(10)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts it again on the same port.
    pub(crate) fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub(crate) fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub(crate) fn config(&self, prefix: &str) -> DynamoConfig {
        DynamoConfig {
            region: "us-west-2".into(),
            endpoint: Some(self.endpoint()),
            pool_size: 8,
            access_key_id: Some("AKIDTEST".into()),
            secret_access_key: Some("test-secret".into()),
            table_prefix: prefix.into(),
        }
    }

    pub(crate) async fn client(&self) -> dynamq_store::dynamo::DynamoClient {
        dynamq_store::dynamo::connect(&self.config("")).await
    }
}

impl Drop for Dynalite {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One dynalite for the whole test binary; tests isolate themselves by table prefix.
pub(crate) fn shared() -> &'static Dynalite {
    static D: OnceLock<Dynalite> = OnceLock::new();
    D.get_or_init(|| Dynalite::start(None))
}

/// A table prefix unique in this process.
pub(crate) fn unique_prefix(name: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!("t{}_{}_", N.fetch_add(1, Ordering::Relaxed), name)
}

/// Which store a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Embedded,
    Dynamo,
}

/// A store location that can be reopened (restart tests).
pub(crate) struct Place {
    pub kind: Kind,
    pub prefix: String,
    pub dir: Option<tempfile::TempDir>,
}

impl Place {
    pub(crate) async fn new(kind: Kind, name: &str) -> Place {
        match kind {
            Kind::Embedded => Place {
                kind,
                prefix: String::new(),
                dir: Some(tempfile::tempdir().expect("tempdir")),
            },
            Kind::Dynamo => {
                let prefix = unique_prefix(name);
                let client = shared().client().await;
                create_tables(&client, &prefix, Billing::PayPerRequest)
                    .await
                    .expect("create tables");
                Place {
                    kind,
                    prefix,
                    dir: None,
                }
            }
        }
    }

    pub(crate) fn config(&self) -> ActionsConfig {
        let store = match (&self.kind, &self.dir) {
            (Kind::Embedded, Some(dir)) => StoreConfig::Embedded {
                data_dir: dir.path().to_path_buf(),
            },
            _ => StoreConfig::Dynamo(shared().config(&self.prefix)),
        };
        ActionsConfig::new(store, "test@127.0.0.1")
    }

    pub(crate) async fn actions(&self) -> Actions {
        self.actions_with(default_bindings()).await
    }

    pub(crate) async fn actions_with(&self, bindings: Vec<Binding>) -> Actions {
        Actions::new(self.config(), bindings)
            .await
            .expect("actions")
    }
}

/// Declares `$name` twice: `$name::embedded` and `$name::dynamo`, each calling `$body(kind)`.
#[macro_export]
macro_rules! both_stores {
    ($($name:ident => $body:ident;)*) => {
        $(
            mod $name {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn embedded() {
                    super::$body($crate::common::Kind::Embedded).await;
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn dynamo() {
                    super::$body($crate::common::Kind::Dynamo).await;
                }
            }
        )*
    };
}

/// message.publish with a fresh msgid, as the broker does it (asynchronous durability):
/// returns the id.
pub(crate) fn publish(
    b: &Actions,
    msg: dynamq_store::actions::PublishedMessage<'_>,
) -> Result<dynamq_store::msgid::MsgId, dynamq_store::actions::ActionsError> {
    let id = b.next_msgid();
    b.message_published(msg, id, false, None)?;
    Ok(id)
}
