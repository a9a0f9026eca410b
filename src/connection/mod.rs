//! One task per client connection: the CONNECT handshake (`handshake`), then one loop that
//! reads packets, writes what is queued for the client, and enforces the keepalive.
//!
//! The loop owns the connection's state (in-flight messages, topic aliases, buffers), so
//! nothing here is locked except the session's queue when taking messages from it. Writes
//! are batched: every packet produced while handling a read, and every queued message, goes
//! into one write buffer that is written whenever the socket accepts it.
//!
//! A TCP connection that goes quiet hibernates: it gives up its task until it is woken
//! (`parked` takes it apart and puts it back together, `hibernate` is where it waits).

mod acks;
mod connect;
pub(crate) mod error;
mod flow;
mod handshake;
pub(crate) mod hibernate;
mod inbound;
mod late;
mod negotiated;
mod outbound;
mod parked;
mod will;

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dynamq_codec::decode::Decoder;
use dynamq_codec::{Disconnect, DisconnectProperties, Packet, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Instant;

use crate::broker::Broker;
use crate::message::ClientId;
use crate::session::{Carried, Session};
use crate::transport::Transport;
pub(crate) use error::ConnError;
pub(crate) use hibernate::Parker;
use negotiated::Negotiated;
pub(crate) use parked::{Parked, respawn};
use parked::{drive, hibernate_after};

/// Stop filling the write buffer from the queue beyond this many bytes.
const WRITE_HIGH_WATER: usize = 64 * 1024;
/// Read buffer sizes: reads start small, double while they fill the buffer, and shrink back
/// when the client goes quiet, so that an idle connection holds little memory.
const READ_MIN: usize = 512;
const READ_MAX: usize = 64 * 1024;

/// How the connection loop ended.
#[derive(Debug)]
enum End {
    /// DISCONNECT received; `will` says whether the will is still to be published (v5 0x04).
    Disconnect { will: bool },
    /// The socket closed or failed.
    Closed,
    /// Another connection took the session over [MQTT-3.1.4-3].
    TakenOver,
    /// The broker is shutting down.
    Shutdown,
    /// A protocol violation, a malformed packet or a keepalive timeout.
    Error(ConnError),
    /// Quiet for `hibernate_after`: the connection gives up its task (see `hibernate`).
    Hibernate,
}

/// The state of one connected client.
struct Conn<R, W> {
    broker: Arc<Broker>,
    session: Arc<Session>,
    /// This connection's id: it owns the session while `session.owned_by(conn_id)`.
    conn_id: u64,
    client_id: ClientId,
    /// Peer address, for log lines.
    peer: String,
    /// What was agreed at CONNECT (and may change: DISCONNECT's session expiry, aliases).
    neg: Negotiated,
    reader: R,
    writer: W,
    rbuf: BytesMut,
    wbuf: BytesMut,
    decoder: Decoder,
    /// When the keepalive runs out (1.5 times it after the last packet) [MQTT-3.1.2-22].
    deadline: Instant,
    /// Last read or write; the connection hibernates `hibernate_after` later.
    active_at: Instant,
    /// `None`: this connection does not hibernate (its transport cannot, or it is disabled).
    hibernate_after: Option<Duration>,
    /// In-flight state, owned here while connected and handed back to the session at the end.
    carried: Carried,
    /// Scratch for messages taken from the session queue.
    batch: Vec<crate::message::Delivery>,
    /// How much room to give the next read (between READ_MIN and READ_MAX).
    read_hint: usize,
    /// Set while this client is not read because a subscriber's queue it published to is
    /// over its bound (flow control, see `flow`).
    paused: Option<Box<flow::Pause>>,
    /// Set while this client's own queue is full: since when, and its progress then (see
    /// `check_slow_consumer`).
    slow: Option<(Instant, u64)>,
    /// Acknowledgements waiting for the store (`store.durability = "sync"`).
    acks: Option<Box<acks::PendingAcks>>,
    /// Store reads that missed their deadline, still running (see `late`).
    late: Option<Box<late::LateReads>>,
}

/// A connection's byte stream and what has been read from it, handed from the handshake
/// (or a wake-up) to the running connection.
struct Io<R, W> {
    reader: R,
    writer: W,
    /// Bytes read and not yet decoded (a client may send packets right behind CONNECT).
    rbuf: BytesMut,
    /// Knows the protocol version since CONNECT.
    decoder: Decoder,
    peer: String,
}

/// Serves one accepted connection until it ends. Never panics on client input; every
/// violation is logged with the client id and the statement it breaks. `identity`: the user
/// name the transport has verified (a client certificate's CN, `tls.cn_as_username`); it
/// replaces the CONNECT's user name and needs no password. Only the handshake holds it, so
/// a running connection is no larger for it.
pub(crate) async fn serve<S: Transport>(
    broker: Arc<Broker>,
    stream: S,
    peer: String,
    identity: Option<Arc<str>>,
) {
    if let Some(conn) = handshake::handshake(broker, stream, peer, identity).await {
        drive(conn).await;
    }
}

/// How long after the last packet the keepalive runs out: 1.5 times the keepalive
/// [MQTT-3.1.2-22]. Zero when there is no keepalive.
fn keepalive_window(keep_alive: u16) -> Duration {
    Duration::from_millis(u64::from(keep_alive) * 1500)
}

/// Writes `buf` whole, giving up after a second (used for last words to a client).
pub(super) async fn write_with_deadline<W: AsyncWrite + Unpin>(
    w: &mut W,
    buf: &[u8],
) -> std::io::Result<()> {
    match tokio::time::timeout(Duration::from_secs(1), async {
        w.write_all(buf).await?;
        w.flush().await?;
        w.shutdown().await
    })
    .await
    {
        Ok(r) => r,
        Err(_) => Err(std::io::ErrorKind::TimedOut.into()),
    }
}

/// Reads and discards what the client still sends, until it closes, for at most
/// `DRAIN_TIME` and `DRAIN_BYTES`.
async fn drain_input<R: AsyncRead + Unpin>(reader: &mut R) {
    let _ = tokio::time::timeout(DRAIN_TIME, async {
        // On the heap: an array here would enlarge every connection task's future.
        let mut buf = vec![0u8; 4096];
        let mut left = DRAIN_BYTES;
        while left > 0 {
            match reader.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    })
    .await;
}

/// How long, and how much, a connection closed for a violation reads after its DISCONNECT.
const DRAIN_TIME: Duration = Duration::from_millis(500);
const DRAIN_BYTES: usize = 1 << 20;

impl<R, W> Conn<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// A connection that owns `session` and takes over its in-flight state; its keepalive
    /// starts now.
    fn new(
        broker: Arc<Broker>,
        session: Arc<Session>,
        conn_id: u64,
        neg: Negotiated,
        io: Io<R, W>,
        hibernate_after: Option<Duration>,
    ) -> Conn<R, W> {
        let now = Instant::now();
        Conn {
            client_id: session.client_id.clone(),
            carried: session.take_carried(),
            broker,
            session,
            conn_id,
            peer: io.peer,
            deadline: now + keepalive_window(neg.keep_alive),
            neg,
            reader: io.reader,
            writer: io.writer,
            rbuf: io.rbuf,
            wbuf: BytesMut::new(),
            decoder: io.decoder,
            active_at: now,
            hibernate_after,
            batch: Vec::new(),
            read_hint: READ_MIN,
            paused: None,
            slow: None,
            acks: None,
            late: None,
        }
    }

    /// Encodes a packet into the write buffer.
    fn send(&mut self, p: &Packet) {
        if let Err(e) = dynamq_codec::encode::encode(p, self.neg.protocol, &mut self.wbuf) {
            tracing::error!(client = %self.client_id, "cannot encode packet: {e}");
        }
    }

    /// The main loop. Returns why it ended.
    async fn run(&mut self) -> End {
        let shutdown = self.broker.shutdown.clone();
        let session = self.session.clone();
        loop {
            if !session.owned_by(self.conn_id) {
                // Another connection claimed the session and woke this one [MQTT-3.1.4-3].
                return self.drain_before_takeover().await;
            }
            self.pump_queue();
            let slow_at = match self.check_slow_consumer() {
                Ok(at) => at,
                Err(e) => return End::Error(e),
            };
            let want_write = !self.wbuf.is_empty();
            let spare = self.size_read_buffer();
            // One timer: the keepalive deadline or the time to hibernate, whichever is first.
            // None while paused: the client is not read, so neither applies (the pause has
            // its own deadline, and restarts the keepalive when it ends).
            let hibernate_at = self.hibernate_after.map(|d| self.active_at + d);
            let reading = self.paused.is_none() && !self.acks_full();
            let timer = match (self.neg.keep_alive > 0, hibernate_at) {
                _ if !reading => None,
                (true, Some(h)) => Some(self.deadline.min(h)),
                (true, None) => Some(self.deadline),
                (false, h) => h,
            };
            let timer = match (timer, slow_at) {
                (Some(t), Some(s)) => Some(t.min(s)),
                (t, s) => t.or(s),
            };
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return End::Shutdown,
                r = self.writer.write(&self.wbuf), if want_write => match r {
                    Ok(0) => return End::Closed,
                    Ok(n) => {
                        self.broker.metrics.add_bytes_sent(n);
                        let _ = self.wbuf.split_to(n);
                        if self.hibernate_after.is_some() {
                            self.active_at = Instant::now();
                        }
                        if self.wbuf.is_empty() && self.writer.flush().await.is_err() {
                            return End::Closed;
                        }
                    }
                    Err(_) => return End::Closed,
                },
                r = self.reader.read_buf(&mut self.rbuf), if reading => match r {
                    Ok(0) => return End::Closed,
                    Err(e) => match ConnError::from_read(e) {
                        e @ ConnError::Transport(_) => return End::Error(e),
                        _ => return End::Closed,
                    },
                    Ok(n) => {
                        self.broker.metrics.add_bytes_received(n);
                        self.adapt_read_hint(n, spare);
                        // Bytes keep a connection from hibernating; only complete packets
                        // restart its keepalive (see `handle_input`).
                        if self.hibernate_after.is_some() {
                            self.active_at = Instant::now();
                        }
                        match self.handle_input().await {
                            Ok(None) => {}
                            Ok(Some(end)) => return end,
                            Err(e) => return End::Error(e),
                        }
                    }
                },
                r = acks::PendingAcks::head_ready(self.acks.as_deref_mut()), if self.acks.is_some() => {
                    if let Err(e) = self.release_acks(r) {
                        return End::Error(e);
                    }
                    if reading {
                        continue;
                    }
                    // Read again: what was read and not handled when reading stopped.
                    match self.handle_input().await {
                        Ok(None) => {}
                        Ok(Some(end)) => return end,
                        Err(e) => return End::Error(e),
                    }
                }
                r = late::LateReads::next(self.late.as_deref_mut()), if self.late.is_some() => {
                    self.on_late_read(r).await;
                }
                // Also wakes the connection when another one takes the session over.
                _ = session.notify.notified() => {}
                _ = flow::ready(&self.broker, self.paused.as_deref_mut()), if self.paused.is_some() => {
                    self.end_pause();
                    // What was read and not handled when the pause began.
                    match self.handle_input().await {
                        Ok(None) => {}
                        Ok(Some(end)) => return end,
                        Err(e) => return End::Error(e),
                    }
                }
                _ = tokio::time::sleep_until(timer.unwrap_or(self.deadline)), if timer.is_some() => {
                    let now = Instant::now();
                    if self.neg.keep_alive > 0 && now >= self.deadline {
                        return End::Error(ConnError::KeepAliveTimeout(self.neg.keep_alive));
                    }
                    if hibernate_at.is_some_and(|h| now >= h) {
                        if self.is_quiet() {
                            return End::Hibernate;
                        }
                        self.active_at = now;
                    }
                }
            }
        }
    }

    /// Taken over: what this client sent before the new connection came is still handled (an
    /// acknowledgement sent just before reconnecting must count), without waiting for more.
    async fn drain_before_takeover(&mut self) -> End {
        for _ in 0..16 {
            let spare = self.size_read_buffer();
            // A zero timeout still polls the read once: it takes only what has arrived.
            match tokio::time::timeout(Duration::ZERO, self.reader.read_buf(&mut self.rbuf)).await {
                Ok(Ok(n)) if n > 0 => {
                    self.broker.metrics.add_bytes_received(n);
                    self.adapt_read_hint(n, spare);
                    match self.handle_input().await {
                        Ok(None) => {}
                        Ok(Some(end)) => return end,
                        Err(e) => return End::Error(e),
                    }
                }
                _ => break,
            }
        }
        End::TakenOver
    }

    /// Gives the read buffer room for the next read; returns the room. An empty buffer much
    /// larger than needed is let go.
    fn size_read_buffer(&mut self) -> usize {
        if self.rbuf.is_empty() && self.rbuf.capacity() > 4 * self.read_hint {
            self.rbuf = BytesMut::new();
        }
        if self.rbuf.capacity() - self.rbuf.len() < self.read_hint / 4 {
            self.rbuf.reserve(self.read_hint);
        }
        self.rbuf.capacity() - self.rbuf.len()
    }

    /// A read that filled the room asks for more next time; a small one for less.
    fn adapt_read_hint(&mut self, n: usize, room: usize) {
        if n >= room {
            self.read_hint = (self.read_hint * 2).min(READ_MAX);
        } else if n < self.read_hint / 8 {
            self.read_hint = (self.read_hint / 2).max(READ_MIN);
        }
    }

    /// Decodes and handles every complete packet in the read buffer, until flow control
    /// pauses the client (the rest waits in the buffer).
    /// Every complete packet restarts the keepalive; bytes alone do not, so a client that
    /// trickles a packet a byte at a time is still timed out [MQTT-3.1.2-22].
    async fn handle_input(&mut self) -> Result<Option<End>, ConnError> {
        let mut decoded = false;
        let mut yielded = false;
        while self.paused.is_none() && !self.acks_full() {
            let Some(packet) = self.decoder.decode(&mut self.rbuf)? else {
                break;
            };
            decoded = true;
            if !yielded && matches!(packet, Packet::Publish(_)) {
                // Before routing: let the connections woken with this one read first. A
                // SUBSCRIBE that reached the broker just before this PUBLISH must be in the
                // router when it is routed, as in a single-threaded broker; tokio runs the
                // task it woke last first (its LIFO slot), which inverted that order (see
                // `router` for the rest of the window). Once per batch of input.
                yielded = true;
                tokio::task::yield_now().await;
            }
            if let Some(end) = self.handle(packet).await? {
                return Ok(Some(end));
            }
        }
        if decoded && self.neg.keep_alive > 0 {
            self.deadline = Instant::now() + keepalive_window(self.neg.keep_alive);
        }
        Ok(None)
    }

    /// Ends the connection: last words to the client, the will, the session's fate.
    async fn finish(mut self, end: End) {
        self.close_late_windows();
        let conn_id = self.conn_id;
        let mut publish_will = true;
        let mut reason = None;
        // The DISCONNECT's Reason String: what the log says.
        let mut why = String::new();
        match &end {
            End::Disconnect { will } => publish_will = *will,
            End::Closed | End::Hibernate => {}
            // Kicked through the HTTP API, or taken over by a new connection.
            End::TakenOver if self.session.kicked() => {
                reason = Some(ReasonCode::AdministrativeAction);
                why = "disconnected by an administrator".into();
            }
            End::TakenOver => {
                reason = Some(ReasonCode::SessionTakenOver);
                why = "another connection with this client id took the session over".into();
            }
            End::Shutdown => {
                reason = Some(ReasonCode::ServerShuttingDown);
                why = "the server is shutting down".into();
                publish_will = false;
            }
            End::Error(e) => {
                reason = e.disconnect_reason();
                why = e.to_string();
                if e.is_violation() {
                    self.broker.metrics.inc_protocol_errors();
                    tracing::warn!(client = %self.client_id, peer = %self.peer, "closing connection: {e}");
                } else {
                    tracing::info!(client = %self.client_id, peer = %self.peer, "closing connection: {e}");
                }
            }
        }
        if let (Some(reason), true) = (reason, self.neg.protocol.is_v5()) {
            let properties = DisconnectProperties {
                reason_string: self.neg.disconnect_reason_string(&why),
                ..DisconnectProperties::default()
            };
            self.send(&Packet::Disconnect(Disconnect {
                reason_code: reason,
                properties,
            }));
        }
        if !self.wbuf.is_empty() || !matches!(end, End::Closed) {
            let buf = std::mem::take(&mut self.wbuf);
            let _ = write_with_deadline(&mut self.writer, &buf).await;
        }
        if reason.is_some() && matches!(end, End::Error(_)) {
            // Half-closed above. A client that broke a rule may still be sending: closing
            // with its bytes unread would reset the connection, and a reset can destroy the
            // DISCONNECT before the client reads its reason code.
            drain_input(&mut self.reader).await;
        }

        // Hand the in-flight state back before anyone else can own the session.
        let expiry = self.neg.session_expiry;
        self.session.put_carried(std::mem::take(&mut self.carried));
        self.session.with_state(|st| st.expiry_interval = expiry);
        // The will too, while the session is still ours: published now, or (v5 Will Delay)
        // left pending in the session, where a reconnect that claims the session after the
        // release below finds it and cancels it [MQTT-3.1.3-9].
        if let Some(w) = if publish_will {
            self.neg.will.take()
        } else {
            None
        } {
            self.publish_will(*w, expiry).await;
        }
        let detached = self.session.release(conn_id);
        self.broker
            .persistence
            .client_disconnected(&self.client_id, expiry);
        match detached {
            // Still ours: the session ends now or when its expiry interval runs out. Either
            // way, what it had not finished through shared subscriptions goes to other
            // members (`router::shared`), but at shutdown, when every member leaves.
            Some(_) if expiry == 0 => self.broker.end_session(&self.session).await,
            Some(detaches) => {
                if !matches!(end, End::Shutdown) {
                    self.broker.redispatch_shared(&self.session);
                }
                self.broker
                    .schedule_expiry(self.session.clone(), detaches, expiry)
            }
            // Taken over: the new connection owns the session now.
            None => {}
        }
        tracing::debug!(client = %self.client_id, ?end, "disconnected");
    }
}
