//! A connection taken apart to hibernate, and put back together when it is woken: what it
//! keeps while it has no task (`Parked`), the step from the main loop into the poller
//! (`drive`), and back (`resume`). The poller itself is `hibernate`.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dynamq_codec::decode::Decoder;
use dynamq_codec::{LastWill, Protocol};
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::time::Instant;

use super::{Conn, End, READ_MIN};
use crate::broker::Broker;
use crate::session::Session;
use crate::transport::Transport;

/// What a hibernating connection keeps: everything of `Conn` but its task, stream, buffers
/// and in-flight state (which waits in the session meanwhile).
pub(crate) struct Parked {
    broker: Arc<Broker>,
    pub(super) session: Arc<Session>,
    conn_id: u64,
    protocol: Protocol,
    keep_alive: u16,
    /// Whether the connection may hibernate again once woken.
    hibernate: bool,
    inflight_max: u16,
    /// The client's Maximum Packet Size (`u32::MAX`: none given).
    client_max_packet: u32,
    session_expiry: u32,
    connect_session_expiry: u32,
    /// Boxed with the will: both are usually absent, and this record is what an idle
    /// connection costs.
    #[allow(clippy::box_collection)] // 8 bytes instead of a Vec's 24 in every idle connection
    topic_aliases: Option<Box<Vec<Option<bytes::Bytes>>>>,
    will: Option<Box<LastWill>>,
}

pub(super) fn hibernate_after(broker: &Broker, can_hibernate: bool) -> Option<Duration> {
    match broker.config.mqtt.hibernate_after_ms {
        0 => None,
        _ if !can_hibernate => None,
        ms => Some(Duration::from_millis(ms)),
    }
}

/// Runs the connection until it ends or hibernates.
pub(super) async fn drive<S: Transport>(mut conn: Conn<ReadHalf<S>, WriteHalf<S>>) {
    let end = conn.run().await;
    if !matches!(end, End::Hibernate) {
        // Boxed, like the rarer packet handlers: a connection task is as large as its
        // largest await point, and busy connections should not pay for the end.
        return Box::pin(conn.finish(end)).await;
    }
    let deadline = conn.deadline;
    let room = conn.inflight_room();
    let peer = std::mem::take(&mut conn.peer);
    let (reader, writer, parked) = conn.into_parked();
    // run() only hibernates transports that can.
    let socket = match reader.unsplit(writer).into_tcp() {
        Ok(socket) => socket,
        Err(e) => return Box::pin(lost(parked, peer, e)).await,
    };
    let deadline = deadline.into_std();
    let keepalive_deadline = (parked.keep_alive > 0).then_some(deadline);
    let session = parked.session.clone();
    let conn_id = parked.conn_id;
    let broker = parked.broker.clone();
    match broker.parker.park(socket, parked, keepalive_deadline) {
        Ok(slot) => {
            broker.metrics.inc_hibernations();
            // What happened between the last look and the parking must not be missed: a
            // message queued, a takeover, the shutdown. (Each of them also checks for a
            // parked owner after it happens.)
            if session.has_sendable(room)
                || !session.owned_by(conn_id)
                || broker.shutdown.is_cancelled()
            {
                broker.parker.wake(slot);
            }
        }
        Err((socket, mut parked)) => {
            // Not parked (logged): the connection goes on awake, in a task of its own.
            parked.hibernate = false;
            respawn(parked, socket, deadline);
        }
    }
}

/// Gives a hibernating (or not parked) connection a task again. (A plain function, so that
/// `drive` does not contain its own future.)
pub(crate) fn respawn(
    parked: Box<Parked>,
    socket: std::net::TcpStream,
    deadline: std::time::Instant,
) {
    let tasks = parked.broker.tasks.clone();
    tasks.spawn(resume(parked, socket, deadline.into()));
}

/// A hibernating connection woken: it gets a task, a stream and its in-flight state back.
async fn resume(parked: Box<Parked>, socket: std::net::TcpStream, deadline: Instant) {
    // The peer's address is not kept while hibernating; the socket still knows it.
    let peer = socket
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let stream = match tokio::net::TcpStream::from_std(socket) {
        Ok(s) => s,
        Err(e) => return lost(parked, peer, e).await,
    };
    let (reader, writer) = tokio::io::split(stream);
    drive(Conn::from_parked(*parked, peer, deadline, reader, writer)).await;
}

/// The socket of a hibernating connection could not be taken back: the connection ends
/// as if it had closed (its will is published, its session released).
async fn lost(parked: Box<Parked>, peer: String, e: std::io::Error) {
    tracing::warn!(client = %parked.session.client_id, peer = %peer, "lost a hibernating connection's socket: {e}");
    let conn = Conn::from_parked(
        *parked,
        peer,
        Instant::now(),
        tokio::io::empty(),
        tokio::io::sink(),
    );
    conn.finish(End::Closed).await;
}

impl<R, W> Conn<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Nothing half-read, nothing to write, nothing queued that could be sent (a QoS 1/2
    /// message waiting for room in flight waits for an acknowledgement, which is a read):
    /// the connection may hibernate.
    pub(super) fn is_quiet(&self) -> bool {
        self.rbuf.is_empty()
            && self.wbuf.is_empty()
            && !self.session.has_sendable(self.inflight_room())
    }

    /// Takes the connection apart to hibernate; its in-flight state waits in the session.
    fn into_parked(self) -> (R, W, Box<Parked>) {
        self.session.put_carried(self.carried);
        let parked = Box::new(Parked {
            broker: self.broker,
            session: self.session,
            conn_id: self.conn_id,
            protocol: self.protocol,
            keep_alive: self.keep_alive,
            hibernate: self.hibernate_after.is_some(),
            // Both come from u16 and u32 values.
            inflight_max: u16::try_from(self.inflight_max).unwrap_or(u16::MAX),
            client_max_packet: u32::try_from(self.client_max_packet).unwrap_or(u32::MAX),
            session_expiry: self.session_expiry,
            connect_session_expiry: self.connect_session_expiry,
            topic_aliases: (!self.topic_aliases.is_empty()).then(|| Box::new(self.topic_aliases)),
            will: self.will.map(Box::new),
        });
        (self.reader, self.writer, parked)
    }

    /// Puts a woken connection back together.
    fn from_parked(p: Parked, peer: String, deadline: Instant, reader: R, writer: W) -> Conn<R, W> {
        let carried = p.session.take_carried();
        let max_packet = p.broker.config.mqtt.max_packet_size;
        let hibernate_after = if p.hibernate {
            hibernate_after(&p.broker, true)
        } else {
            None
        };
        Conn {
            client_id: p.session.client_id.clone(),
            broker: p.broker,
            session: p.session,
            conn_id: p.conn_id,
            peer,
            protocol: p.protocol,
            reader,
            writer,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::new(),
            decoder: Decoder::with_protocol(p.protocol, max_packet),
            keep_alive: p.keep_alive,
            deadline,
            active_at: Instant::now(),
            hibernate_after,
            carried,
            inflight_max: usize::from(p.inflight_max),
            client_max_packet: match p.client_max_packet {
                u32::MAX => usize::MAX,
                m => m as usize,
            },
            topic_aliases: p.topic_aliases.map(|b| *b).unwrap_or_default(),
            will: p.will.map(|w| *w),
            session_expiry: p.session_expiry,
            connect_session_expiry: p.connect_session_expiry,
            batch: Vec::new(),
            read_hint: READ_MIN,
        }
    }
}
