//! The command line: one subcommand per mode, with the options shared by all of them.

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "dynamq-bench",
    version,
    about = "MQTT load generator: connections, publishers, subscribers, end-to-end runs",
    after_help = "Progress goes to stderr every second; the summary is one JSON line on stdout."
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub mode: Mode,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Mode {
    /// Open N connections at a rate and hold them open (idle, with keepalive pings).
    Conn(ConnArgs),
    /// N publishers, at a rate or as fast as possible.
    Pub(PubArgs),
    /// N subscribers to a filter, counting what they receive.
    Sub(SubArgs),
    /// S subscribers and P publishers in one process: end-to-end throughput, latency, loss.
    Run(RunArgs),
    /// No broker: mqtt_msg items straight to a DynamoDB endpoint (BatchWriteItem or PutItem).
    DynamoRaw(DynamoRawArgs),
}

#[derive(Debug, Clone, Args)]
pub(crate) struct Common {
    /// Broker host (IP address).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 1883)]
    pub port: u16,
    /// 3 or 4: MQTT 3.1.1; 5: MQTT 5.0.
    #[arg(long = "mqtt-version", default_value_t = 4)]
    pub mqtt_version: u8,
    /// Hard bound on the whole run, in seconds; the run reports what it has by then.
    #[arg(long, default_value_t = 60.0)]
    pub max_secs: f64,
    /// Keepalive announced in CONNECT, in seconds (0: none).
    #[arg(long, default_value_t = 60)]
    pub keepalive: u16,
    /// Client ids are PREFIX-<pid>-<role><index>.
    #[arg(long, default_value = "bench")]
    pub client_prefix: String,
    /// Runtime threads; 1 runs everything on one thread (best when pinned to one core).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Connection handshakes in progress at once, at most.
    #[arg(long, default_value_t = 100)]
    pub connect_concurrency: usize,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct PublishOpts {
    /// Number of publishers.
    #[arg(long, default_value_t = 1)]
    pub pubs: u32,
    /// Messages per publisher.
    #[arg(long, default_value_t = 10_000)]
    pub count: u64,
    /// Messages per second per publisher; 0: as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    #[arg(long, default_value_t = 0)]
    pub qos: u8,
    /// Payload bytes (at least 16: timestamp, publisher index, sequence number).
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Topic; `%i` is replaced by the publisher's index.
    #[arg(long, default_value = "bench/%i")]
    pub topic: String,
    /// QoS 1/2 messages in flight per publisher, at most.
    #[arg(long, default_value_t = 100)]
    pub inflight: usize,
}

#[derive(Debug, Clone, Args)]
pub(crate) struct SubscribeOpts {
    /// Number of subscribers.
    #[arg(long, default_value_t = 1)]
    pub subs: u32,
    /// Topic filter; `%i` is replaced by the subscriber's index.
    #[arg(long, default_value = "bench/#")]
    pub filter: String,
}

#[derive(Debug, Args)]
pub(crate) struct ConnArgs {
    #[command(flatten)]
    pub common: Common,
    /// Number of connections.
    #[arg(long, default_value_t = 1000)]
    pub conns: u32,
    /// New connections per second; 0: as fast as the handshake concurrency allows.
    #[arg(long, default_value_t = 0.0)]
    pub rate: f64,
    /// How long to hold the connections open once all are up, in seconds.
    #[arg(long, default_value_t = 5.0)]
    pub hold_secs: f64,
    /// The broker's process id: its VmRSS is read before and after connecting.
    #[arg(long)]
    pub broker_pid: Option<u32>,
}

#[derive(Debug, Args)]
pub(crate) struct PubArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub publish: PublishOpts,
}

#[derive(Debug, Args)]
pub(crate) struct SubArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub subscribe: SubscribeOpts,
    #[arg(long, default_value_t = 0)]
    pub qos: u8,
    /// Stop once each subscriber has received this many messages on average (0: run until
    /// --max-secs).
    #[arg(long, default_value_t = 0)]
    pub count: u64,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub common: Common,
    #[command(flatten)]
    pub publish: PublishOpts,
    #[command(flatten)]
    pub subscribe: SubscribeOpts,
    /// Subscription QoS (default: --qos).
    #[arg(long)]
    pub sub_qos: Option<u8>,
    /// After the publishers finish, stop once nothing arrived for this long, in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub drain_secs: f64,
    /// More subscribers to the same filter that never read after their SUBACK (stalled
    /// consumers); they are not counted: the summary is about the others.
    #[arg(long, default_value_t = 0)]
    pub stalled: u32,
}

#[derive(Debug, Args)]
pub(crate) struct DynamoRawArgs {
    /// Endpoint URL of the DynamoDB-compatible server, e.g. http://127.0.0.1:28000.
    #[arg(long)]
    pub endpoint: String,
    #[arg(long, default_value = "us-west-2")]
    pub region: String,
    /// Table name prefix (the items go to PREFIXmqtt_msg).
    #[arg(long, default_value = "")]
    pub prefix: String,
    /// Create the six tables first (idempotent).
    #[arg(long)]
    pub create_tables: bool,
    /// Items to write.
    #[arg(long, default_value_t = 50_000)]
    pub items: u64,
    /// Items per request: 2..=25 sends BatchWriteItem, 1 sends PutItem.
    #[arg(long, default_value_t = 25)]
    pub batch: usize,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Payload characters per item.
    #[arg(long, default_value_t = 32)]
    pub payload_size: usize,
    /// Hard bound on the run, in seconds; the summary counts what was written by then.
    #[arg(long = "max-secs", default_value_t = 60.0)]
    pub common_max_secs: f64,
    /// Accepted for symmetry with the other modes (there is no progress line).
    #[arg(long)]
    pub quiet: bool,
}
