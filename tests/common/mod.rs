//! What the broker's integration tests share: starting and stopping a real broker in the
//! test's own process (`start`), and a small MQTT client built on `dynamq-codec` that speaks
//! packets, not an API, so that a test sees exactly what went over the wire (`Client`).
//!
//! Every broker start and stop is in `start` and `TestBroker` below, so that a change to the
//! broker's construction (its config, its persistence, `server::start`) is adapted here once.
//!
//! Every wait is bounded (`WAIT`, or the duration a test gives): a broker that does not
//! answer fails the test instead of hanging it.

// Each test file compiles this module on its own and uses only part of it.
#![allow(dead_code)]

pub(crate) mod queue;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use dynamq::broker::Broker;
use dynamq::config::{Config, StoreKind};
use dynamq::persistence::Persistence;
use dynamq::server;
use dynamq_codec::decode::Decoder;
use dynamq_codec::{
    ConnAck, Connect, ConnectProperties, Disconnect, LastWill, Packet, Protocol, PubResp, Publish,
    PublishProperties, QoS, ReasonCode, SubAck, Subscribe, SubscribeProperties,
    SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// How long a test waits for anything the broker should do promptly.
pub(crate) const WAIT: Duration = Duration::from_secs(5);

/// How long to wait for something that must *not* happen, where no barrier (a PINGREQ, a
/// later message) can prove it did not. Kept short; such checks are rare.
pub(crate) const QUIET: Duration = Duration::from_millis(200);

/// A broker running in this process, listening on 127.0.0.1 on a port of its choosing.
pub(crate) struct TestBroker {
    /// The MQTT over TCP address clients connect to.
    pub addr: SocketAddr,
    /// The broker itself, for its metrics and what it says of its state.
    pub broker: Arc<Broker>,
    /// Set once `stop` ran, so that `Drop` does not stop it again.
    stopped: bool,
}

/// Starts a broker with the test defaults (TCP on 127.0.0.1:0 only, no store, hibernation
/// off), changed by `tune`.
pub(crate) async fn start(tune: impl FnOnce(&mut Config)) -> TestBroker {
    init_logging();
    let mut config = Config::default();
    config.listeners.tcp = vec![SocketAddr::from(([127, 0, 0, 1], 0))];
    config.listeners.ws = Vec::new();
    config.listeners.http = Vec::new();
    config.store.kind = StoreKind::None;
    // Off unless a test is about it: a connection hibernating at a random point of a test
    // about something else would make that test's timing depend on the machine's speed.
    config.mqtt.hibernate_after_ms = 0;
    tune(&mut config);
    config.validate().expect("test configuration is valid");
    let broker = Broker::new(config, Persistence::none());
    let bound = server::start(&broker).await.expect("broker starts");
    TestBroker {
        addr: bound.tcp[0],
        broker,
        stopped: false,
    }
}

/// Logs to the test's captured output; `RUST_LOG=dynamq=debug` shows what the broker did.
fn init_logging() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

impl TestBroker {
    /// Shuts the broker down as `dynamq serve` does on SIGTERM, within `WAIT`.
    pub(crate) async fn stop(mut self) {
        self.stopped = true;
        server::shutdown(&self.broker, WAIT).await;
    }

    /// A v5 client connected with `client_id`; panics unless the CONNACK is a success.
    pub(crate) async fn connect_v5(
        &self,
        client_id: &str,
        clean: bool,
        props: ConnectProperties,
    ) -> (Client, ConnAck) {
        let mut c = connect_packet(Protocol::V5, client_id, clean);
        c.properties = props;
        self.connect(c).await
    }

    /// A 3.1.1 client connected with `client_id`; panics unless the CONNACK is a success.
    pub(crate) async fn connect_v311(&self, client_id: &str, clean: bool) -> (Client, ConnAck) {
        self.connect(connect_packet(Protocol::V311, client_id, clean))
            .await
    }

    /// Opens a connection and sends `c`; panics unless the CONNACK is a success.
    pub(crate) async fn connect(&self, c: Connect) -> (Client, ConnAck) {
        let mut client = Client::open(self.addr, c.protocol).await;
        let ack = client.handshake(c).await;
        assert_eq!(ack.reason_code, ReasonCode::Success, "CONNACK {ack:?}");
        (client, ack)
    }

    /// A counter of `broker.metrics`, e.g. `b.metric(|m| &m.takeovers)`.
    pub(crate) fn metric(
        &self,
        f: impl FnOnce(&dynamq::metrics::Metrics) -> &std::sync::atomic::AtomicU64,
    ) -> u64 {
        f(&self.broker.metrics).load(Ordering::Relaxed)
    }

    /// Connections hibernating now (the `dynamq_connections_hibernating` gauge).
    pub(crate) fn hibernating(&self) -> usize {
        self.broker.hibernating()
    }

    /// Waits until at least `n` connections hibernate.
    pub(crate) async fn wait_hibernating(&self, n: usize) {
        let what = format!("{n} connections hibernating");
        wait_until(&what, || self.hibernating() >= n).await;
    }

    /// True if a connection owns the session of `client_id` now.
    pub(crate) fn session_online(&self, client_id: &str) -> bool {
        self.broker.client_online(client_id)
    }
}

impl Drop for TestBroker {
    /// A test that panicked before `stop` still stops its broker: its connections see the
    /// shutdown token and its hibernation poller thread ends.
    fn drop(&mut self) {
        if !self.stopped {
            self.broker.begin_shutdown();
        }
    }
}

/// Polls `cond` every few milliseconds until it holds; panics after `WAIT`.
pub(crate) async fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A CONNECT with keepalive 0 (the broker never closes the client for silence), no will.
pub(crate) fn connect_packet(protocol: Protocol, client_id: &str, clean: bool) -> Connect {
    Connect {
        protocol,
        clean_start: clean,
        keep_alive: 0,
        client_id: client_id.to_string(),
        will: None,
        username: None,
        password: None,
        properties: ConnectProperties::default(),
    }
}

/// v5 CONNECT properties that keep the session `secs` seconds after the connection ends.
pub(crate) fn session_expiry(secs: u32) -> ConnectProperties {
    ConnectProperties {
        session_expiry_interval: Some(secs),
        ..ConnectProperties::default()
    }
}

/// A will message on `topic` (QoS 0, not retained, no properties).
pub(crate) fn will(topic: &str, payload: &'static [u8]) -> LastWill {
    LastWill {
        topic: topic.to_string(),
        payload: Bytes::from_static(payload),
        qos: QoS::AtMostOnce,
        retain: false,
        properties: Default::default(),
    }
}

/// What the next read of a connection gave.
// Matched as soon as it is returned; boxing the packet would only make tests wordier.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(crate) enum Next {
    Packet(Packet),
    /// The broker closed the connection (EOF or reset).
    Closed,
    /// Nothing within the time given.
    Timeout,
}

/// An MQTT client at the packet level, one protocol version.
pub(crate) struct Client {
    stream: TcpStream,
    protocol: Protocol,
    rbuf: BytesMut,
    decoder: Decoder,
    /// Packets read while waiting for a specific one (e.g. an ack), handed out first by
    /// `next`, in the order they came.
    pending: VecDeque<Packet>,
    /// The next packet id this client uses for PUBLISH and SUBSCRIBE.
    next_id: u16,
    /// Set once the broker closed the connection.
    closed: bool,
}

impl Client {
    /// A TCP connection to the broker; nothing sent yet.
    pub(crate) async fn open(addr: SocketAddr, protocol: Protocol) -> Client {
        let stream = tokio::time::timeout(WAIT, TcpStream::connect(addr))
            .await
            .expect("TCP connect within the wait")
            .expect("TCP connect");
        stream.set_nodelay(true).expect("TCP_NODELAY");
        Client {
            stream,
            protocol,
            rbuf: BytesMut::with_capacity(4096),
            decoder: Decoder::with_protocol(protocol, 16 * 1024 * 1024),
            pending: VecDeque::new(),
            next_id: 1,
            closed: false,
        }
    }

    pub(crate) fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Sends CONNECT and returns the CONNACK, whatever its reason code.
    pub(crate) async fn handshake(&mut self, c: Connect) -> ConnAck {
        self.send(&Packet::Connect(Box::new(c))).await;
        match self.expect_packet().await {
            Packet::ConnAck(ack) => ack,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// Encodes and writes one packet.
    pub(crate) async fn send(&mut self, p: &Packet) {
        let mut buf = BytesMut::new();
        dynamq_codec::encode(p, self.protocol, &mut buf).expect("test packet encodes");
        self.send_raw(&buf).await;
    }

    /// Writes bytes as they are.
    pub(crate) async fn send_raw(&mut self, bytes: &[u8]) {
        tokio::time::timeout(WAIT, self.stream.write_all(bytes))
            .await
            .expect("write within the wait")
            .expect("write");
    }

    /// The next packet from the broker, or `Closed`, or `Timeout` after `within`.
    pub(crate) async fn next(&mut self, within: Duration) -> Next {
        match self.pending.pop_front() {
            Some(p) => Next::Packet(p),
            None => self.read_packet(Instant::now() + within).await,
        }
    }

    /// Reads for up to `within`, keeping every packet for `next`; true if the broker closed
    /// the connection meanwhile.
    pub(crate) async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            match self.read_packet(deadline).await {
                Next::Packet(p) => self.pending.push_back(p),
                Next::Closed => return true,
                Next::Timeout => return false,
            }
        }
    }

    /// The next packet off the socket (not `pending`).
    async fn read_packet(&mut self, deadline: Instant) -> Next {
        loop {
            match self.decoder.decode(&mut self.rbuf) {
                Ok(Some(p)) => return Next::Packet(p),
                Ok(None) => {}
                Err(e) => panic!("broker sent a packet that does not decode: {e}"),
            }
            if self.closed {
                return Next::Closed;
            }
            self.rbuf.reserve(4096);
            // read_buf is cancel-safe: a read cut short by the timeout loses nothing.
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.rbuf)).await {
                Err(_) => return Next::Timeout,
                Ok(Ok(0)) | Ok(Err(_)) => self.closed = true,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The next packet; panics if none comes within `WAIT` or the connection closes.
    pub(crate) async fn expect_packet(&mut self) -> Packet {
        match self.next(WAIT).await {
            Next::Packet(p) => p,
            other => panic!("expected a packet, got {other:?}"),
        }
    }

    /// The next packet, which must be a PUBLISH.
    pub(crate) async fn expect_publish(&mut self) -> Publish {
        match self.expect_packet().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Reads until the broker closes the connection (within `WAIT`); returns what came first.
    pub(crate) async fn expect_closed(&mut self) -> Vec<Packet> {
        let mut got = Vec::new();
        loop {
            match self.next(WAIT).await {
                Next::Packet(p) => got.push(p),
                Next::Closed => return got,
                Next::Timeout => panic!("connection not closed within {WAIT:?}; got {got:?}"),
            }
        }
    }

    /// Reads until the connection closes; for v5 the last packet must be DISCONNECT with
    /// `reason` (v3 clients are not told, the connection just closes).
    pub(crate) async fn expect_disconnect(&mut self, reason: ReasonCode) -> Vec<Packet> {
        let got = self.expect_closed().await;
        if self.protocol.is_v5() {
            match got.last() {
                Some(Packet::Disconnect(d)) => {
                    assert_eq!(d.reason_code, reason, "DISCONNECT reason; got {got:?}")
                }
                _ => panic!("expected DISCONNECT {reason:?} before the close, got {got:?}"),
            }
        }
        got
    }

    /// PINGREQ, then every packet up to the PINGRESP. The broker answers packets in order, so
    /// whatever it had written for this client before reading the PINGREQ comes first.
    pub(crate) async fn ping(&mut self) -> Vec<Packet> {
        self.send(&Packet::PingReq).await;
        let mut before = Vec::new();
        loop {
            match self.expect_packet().await {
                Packet::PingResp => return before,
                p => before.push(p),
            }
        }
    }

    fn take_id(&mut self) -> u16 {
        let id = self.next_id;
        self.next_id = self.next_id.checked_add(1).unwrap_or(1);
        id
    }

    /// Waits for a packet that `pick` accepts; others are kept for `next`, in order.
    async fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&Packet) -> Option<T>) -> T {
        let mut skipped = Vec::new();
        let deadline = Instant::now() + WAIT;
        let found = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next(left).await {
                Next::Packet(p) => match pick(&p) {
                    Some(t) => break t,
                    None => skipped.push(p),
                },
                other => panic!("expected {what}, got {other:?} after {skipped:?}"),
            }
        };
        // Kept packets go before any that were already pending behind them.
        for p in skipped.into_iter().rev() {
            self.pending.push_front(p);
        }
        found
    }

    /// Subscribes to `filter` and returns the SUBACK.
    pub(crate) async fn subscribe(&mut self, filter: &str, qos: QoS) -> SubAck {
        self.subscribe_with(filter, SubscriptionOptions::qos(qos))
            .await
    }

    pub(crate) async fn subscribe_with(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
    ) -> SubAck {
        let packet_id = self.send_subscribe(filter, options).await;
        self.wait_for("SUBACK", |p| match p {
            Packet::SubAck(a) if a.packet_id == packet_id => Some(a.clone()),
            _ => None,
        })
        .await
    }

    /// Sends SUBSCRIBE without waiting; returns its packet id.
    pub(crate) async fn send_subscribe(
        &mut self,
        filter: &str,
        options: SubscriptionOptions,
    ) -> u16 {
        let packet_id = self.take_id();
        self.send(&Packet::Subscribe(Subscribe {
            packet_id,
            properties: SubscribeProperties::default(),
            filters: vec![(filter.to_string(), options)],
        }))
        .await;
        packet_id
    }

    /// Publishes and completes the QoS flow: PUBACK for QoS 1; PUBREC, PUBREL, PUBCOMP for
    /// QoS 2. Returns the broker's reason code (Success for QoS 0). Packets that arrive
    /// meanwhile are kept for `next`.
    pub(crate) async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> ReasonCode {
        let packet_id = (qos != QoS::AtMostOnce).then(|| self.take_id());
        self.send(&Packet::Publish(Publish {
            dup: false,
            qos,
            retain,
            topic: Bytes::copy_from_slice(topic.as_bytes()),
            packet_id,
            properties: PublishProperties::default(),
            payload: Bytes::copy_from_slice(payload),
        }))
        .await;
        let Some(id) = packet_id else {
            return ReasonCode::Success;
        };
        if qos == QoS::AtLeastOnce {
            return self
                .wait_for("PUBACK", |p| match p {
                    Packet::PubAck(a) if a.packet_id == id => Some(a.reason_code),
                    _ => None,
                })
                .await;
        }
        let reason = self
            .wait_for("PUBREC", |p| match p {
                Packet::PubRec(a) if a.packet_id == id => Some(a.reason_code),
                _ => None,
            })
            .await;
        self.send(&Packet::PubRel(PubResp::new(id))).await;
        self.wait_for("PUBCOMP", |p| match p {
            Packet::PubComp(a) if a.packet_id == id => Some(()),
            _ => None,
        })
        .await;
        reason
    }

    /// Acknowledges a received PUBLISH as the spec says for its QoS: PUBACK for QoS 1;
    /// PUBREC, then PUBREL expected, then PUBCOMP for QoS 2.
    pub(crate) async fn ack(&mut self, p: &Publish) {
        let Some(id) = p.packet_id else { return };
        match p.qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => self.send(&Packet::PubAck(PubResp::new(id))).await,
            QoS::ExactlyOnce => {
                self.send(&Packet::PubRec(PubResp::new(id))).await;
                self.wait_for("PUBREL", |q| match q {
                    Packet::PubRel(r) if r.packet_id == id => Some(()),
                    _ => None,
                })
                .await;
                self.send(&Packet::PubComp(PubResp::new(id))).await;
            }
        }
    }

    /// A normal DISCONNECT, then waits for the broker to close the connection.
    pub(crate) async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Disconnect {
            reason_code: ReasonCode::NormalDisconnection,
            properties: Default::default(),
        }))
        .await;
        self.expect_closed().await;
    }
}
