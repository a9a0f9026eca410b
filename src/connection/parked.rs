//! A connection taken apart to hibernate, and put back together when it is woken: what it
//! keeps while it has no task (`Parked`), the step from the main loop into the poller
//! (`drive`), and back (`resume`). The poller itself is `hibernate`.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dynamq_codec::decode::Decoder;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf, WriteHalf};
use tokio::time::Instant;

use super::negotiated::Negotiated;
use super::{Conn, End, Io};
use crate::broker::Broker;
use crate::session::Session;
use crate::transport::Transport;

/// What a hibernating connection keeps: everything of `Conn` but its task, stream, buffers
/// and in-flight state (which waits in the session meanwhile). This record is what an idle
/// connection costs.
pub(crate) struct Parked {
    broker: Arc<Broker>,
    pub(super) session: Arc<Session>,
    conn_id: u64,
    neg: Negotiated,
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
    let keepalive_deadline = (parked.neg.keep_alive > 0).then_some(deadline);
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
        Err((socket, parked)) => {
            // Not parked (logged): the connection goes on awake, in a task of its own, and
            // does not try again.
            respawn(parked, socket, deadline, false);
        }
    }
}

/// Gives a hibernating (or not parked) connection a task again; `may_hibernate`: it may
/// hibernate again when it goes quiet. (A plain function, so that `drive` does not contain
/// its own future.)
pub(crate) fn respawn(
    parked: Box<Parked>,
    socket: std::net::TcpStream,
    deadline: std::time::Instant,
    may_hibernate: bool,
) {
    let tasks = parked.broker.tasks.clone();
    tasks.spawn(resume(parked, socket, deadline.into(), may_hibernate));
}

/// A hibernating connection woken: it gets a task, a stream and its in-flight state back.
async fn resume(
    parked: Box<Parked>,
    socket: std::net::TcpStream,
    deadline: Instant,
    may_hibernate: bool,
) {
    // The peer's address is not kept while hibernating; the socket still knows it.
    let peer = socket
        .peer_addr()
        .map_or_else(|_| "?".to_string(), |a| a.to_string());
    let stream = match tokio::net::TcpStream::from_std(socket) {
        Ok(s) => s,
        Err(e) => return lost(parked, peer, e).await,
    };
    let (reader, writer) = tokio::io::split(stream);
    let conn = Conn::from_parked(*parked, peer, deadline, reader, writer, may_hibernate);
    drive(conn).await;
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
        false,
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
            && self.paused.is_none()
            && self.slow.is_none()
            && self.acks.is_none()
            && self.late.is_none()
            && !self.session.has_sendable(self.inflight_room())
    }

    /// Takes the connection apart to hibernate; its in-flight state waits in the session.
    fn into_parked(self) -> (R, W, Box<Parked>) {
        self.session.put_carried(self.carried);
        let parked = Box::new(Parked {
            broker: self.broker,
            session: self.session,
            conn_id: self.conn_id,
            neg: self.neg,
        });
        (self.reader, self.writer, parked)
    }

    /// Puts a woken connection back together, its keepalive running out at `deadline` as
    /// before it hibernated.
    fn from_parked(
        p: Parked,
        peer: String,
        deadline: Instant,
        reader: R,
        writer: W,
        may_hibernate: bool,
    ) -> Conn<R, W> {
        let hibernate_after = hibernate_after(&p.broker, may_hibernate);
        let io = Io {
            reader,
            writer,
            rbuf: BytesMut::new(),
            decoder: Decoder::with_protocol(p.neg.protocol, p.broker.config.mqtt.max_packet_size),
            peer,
        };
        let mut conn = Conn::new(p.broker, p.session, p.conn_id, p.neg, io, hibernate_after);
        conn.deadline = deadline;
        conn
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every idle connection is this record (BENCHMARKS.md, memory per idle connection): what
    /// was negotiated at CONNECT must keep fitting in it.
    #[test]
    fn parked_record_stays_small() {
        assert!(
            std::mem::size_of::<Parked>() <= 64,
            "Parked is {} bytes",
            std::mem::size_of::<Parked>()
        );
    }
}
