//! The handshake: from an accepted stream to a running connection. Reads CONNECT, refuses
//! it or accepts it (`connect`), attaches the session, looks for a session kept in the
//! store, answers CONNACK, restores stored subscriptions and resends what was in flight.
//! The connection's loop (`Conn::run`) starts where this ends.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use dynamq_codec::decode::Decoder;
use dynamq_codec::{ConnAck, Connect, Packet, Protocol, ReasonCode};
use tokio::io::{AsyncRead, AsyncReadExt, ReadHalf, WriteHalf};
use tokio::time::Instant;

use super::late::{self, LateRead};
use super::negotiated::{Negotiated, TopicAliases};
use super::{Conn, ConnError, Io, READ_MIN, connect, hibernate_after, write_with_deadline};
use crate::broker::Broker;
use crate::transport::Transport;

/// Runs the handshake on an accepted stream. `None`: the connection ended during it
/// (refused, closed, or broke a rule, each logged). `identity`: see `connection::serve`.
pub(super) async fn handshake<S: Transport>(
    broker: Arc<Broker>,
    stream: S,
    peer: String,
    identity: Option<Arc<str>>,
) -> Option<Conn<ReadHalf<S>, WriteHalf<S>>> {
    let can_hibernate = stream.can_hibernate();
    broker.metrics.inc_connections_accepted();
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut rbuf = BytesMut::with_capacity(READ_MIN);
    let mut decoder = Decoder::new(broker.config.mqtt.max_packet_size);

    let connect = match read_connect(&broker, &mut reader, &mut rbuf, &mut decoder).await {
        Ok(Some(c)) => c,
        Ok(None) => return None,
        Err(e) => {
            if let ConnError::Decode(d) = &e
                && let Some(code) = d.v3_connack_code()
            {
                // An unknown protocol level gets CONNACK 0x01 before the close [MQTT-3.1.2-2].
                let ack = ConnAck {
                    session_present: false,
                    reason_code: ReasonCode::from_v3_connack(code)
                        .unwrap_or(ReasonCode::UnsupportedProtocolVersion),
                    properties: Default::default(),
                };
                last_words(&mut writer, ack, Protocol::V311).await;
            }
            if e.is_violation() {
                broker.metrics.inc_protocol_errors();
                tracing::warn!(peer = %peer, "closing connection before CONNECT: {e}");
            } else {
                tracing::debug!(peer = %peer, "connection ended before CONNECT: {e}");
            }
            return None;
        }
    };
    let protocol = connect.protocol;

    let accepted = match connect::validate(&broker, &connect) {
        Ok(a) => a,
        Err((reason, msg)) => {
            broker.metrics.inc_connects_refused();
            tracing::warn!(peer = %peer, client = %connect.client_id, "CONNECT refused ({:#04x}): {msg}", reason.code());
            last_words(
                &mut writer,
                connect::refusal(reason, msg, protocol),
                protocol,
            )
            .await;
            return None;
        }
    };

    // A verified certificate's CN is the user name, whatever the CONNECT says (as with
    // Mosquitto's use_identity_as_username); the certificate has authenticated it.
    let username: Option<&str> = match &identity {
        Some(cn) => Some(cn),
        None => {
            let checked =
                connect::authenticate(&broker, &connect, &accepted.client_id, &peer).await;
            if let Err(ack) = checked {
                last_words(&mut writer, ack, protocol).await;
                return None;
            }
            connect.username.as_deref()
        }
    };

    let conn_id = broker.next_conn_id();
    let clean_start = connect.clean_start;
    let (session, present) =
        connect::attach(&broker, &accepted.client_id, clean_start, conn_id).await;
    session.with_state(|st| st.expiry_interval = accepted.session_expiry);
    // After attach, which may end an old session of the same client (and forget its rules).
    broker.auth.admit(&session, username);

    let neg = negotiate(&broker, *connect, &accepted);
    let io = Io {
        reader,
        writer,
        rbuf,
        decoder,
        peer,
    };
    let hibernate_after = hibernate_after(&broker, can_hibernate);
    let mut conn = Conn::new(broker.clone(), session, conn_id, neg, io, hibernate_after);

    // A session not in memory may be in the store (after a restart, or from another node):
    // on_subscribe_lookup gives its subscriptions, and in sync durability its QoS 2 packet
    // ids not yet released. A client that resumes gets them back and Session Present; with
    // Clean Start they are deleted [MQTT-3.1.2-4].
    // The store is read for at most `store.read_timeout_ms`: past it the CONNACK goes
    // without (Session Present from memory), and the read is acted on when it completes.
    let keep_rel = conn.keeps_awaiting_rel();
    // The client's item is written whole at connect: with the ids the session keeps (those
    // in memory, or those the store had), none with Clean Start or when none are kept.
    let in_memory_rel: BTreeSet<u16> = if keep_rel {
        conn.carried.awaiting_rel.iter().copied().collect()
    } else {
        BTreeSet::new()
    };
    let reads: Pin<Box<dyn Future<Output = LateRead> + Send>> = {
        let broker = broker.clone();
        let client = conn.client_id.clone();
        Box::pin(async move {
            let want_rel = keep_rel && !clean_start;
            let stored = broker
                .persistence
                .stored_session(&client, present, want_rel)
                .await;
            let rel = if present {
                in_memory_rel
            } else if want_rel {
                stored.awaiting_rel.clone()
            } else {
                BTreeSet::new()
            };
            broker.persistence.client_connected(&client, rel).await;
            LateRead::Session {
                stored,
                clean_start,
            }
        })
    };
    let read = late::with_deadline(reads, broker.persistence.read_timeout()).await;
    let (restore, stale) = match read {
        Ok(LateRead::Session { stored, .. }) if clean_start => (Vec::new(), stored.subscriptions),
        Ok(LateRead::Session { stored, .. }) => {
            conn.carried.awaiting_rel.extend(stored.awaiting_rel);
            (stored.subscriptions, Vec::new())
        }
        Ok(LateRead::Replay { .. }) => (Vec::new(), Vec::new()),
        Err(read) => {
            conn.add_late_read("session lookup at CONNECT", read);
            (Vec::new(), Vec::new())
        }
    };
    let present = present || !restore.is_empty() || !conn.carried.awaiting_rel.is_empty();
    conn.send(&Packet::ConnAck(connect::connack(
        &broker, protocol, &accepted, present,
    )));
    broker.metrics.inc_connects();
    tracing::debug!(client = %conn.client_id, peer = %conn.peer, ?protocol, present, "connected");
    for (filter, _) in stale {
        broker
            .persistence
            .session_unsubscribed(&conn.client_id, &filter);
    }
    conn.restore_subscriptions(restore).await;
    conn.resend_inflight();
    Some(conn)
}

/// What the CONNECT and the broker's limits agree on.
fn negotiate(broker: &Broker, connect: Connect, accepted: &connect::Accepted) -> Negotiated {
    let props = &connect.properties;
    Negotiated {
        protocol: connect.protocol,
        keep_alive: accepted.keep_alive,
        inflight_max: props
            .receive_maximum
            .unwrap_or(u16::MAX)
            .min(broker.config.mqtt.max_inflight),
        client_max_packet: props.maximum_packet_size.unwrap_or(u32::MAX),
        problem_info: props.request_problem_information != Some(0),
        session_expiry: accepted.session_expiry,
        connect_session_expiry: accepted.session_expiry,
        will: connect.will.map(Box::new),
        topic_aliases: TopicAliases::default(),
        client_alias_max: props.topic_alias_maximum.unwrap_or(0),
    }
}

/// Sends a CONNACK that ends the connection, and closes it.
async fn last_words<W: tokio::io::AsyncWrite + Unpin>(
    writer: &mut W,
    ack: ConnAck,
    protocol: Protocol,
) {
    let mut buf = BytesMut::new();
    if dynamq_codec::encode::encode(&Packet::ConnAck(ack), protocol, &mut buf).is_ok() {
        let _ = write_with_deadline(writer, &buf).await;
    }
}

/// Reads until the first packet is complete. `Ok(None)`: the peer closed first.
async fn read_connect<R: AsyncRead + Unpin>(
    broker: &Broker,
    reader: &mut R,
    rbuf: &mut BytesMut,
    decoder: &mut Decoder,
) -> Result<Option<Box<dynamq_codec::Connect>>, ConnError> {
    let secs = broker.config.mqtt.connect_timeout;
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(p) = decoder.decode(rbuf)? {
            return match p {
                Packet::Connect(c) => Ok(Some(c)),
                _ => Err(ConnError::protocol(
                    ReasonCode::ProtocolError,
                    "[MQTT-3.1.0-1] first packet is not CONNECT",
                )),
            };
        }
        rbuf.reserve(READ_MIN);
        match tokio::time::timeout_at(deadline, reader.read_buf(rbuf)).await {
            Err(_) => return Err(ConnError::ConnectTimeout(secs)),
            Ok(Ok(0)) => return Ok(None),
            Ok(Ok(_)) => {}
            Ok(Err(e)) => return Err(ConnError::from_read(e)),
        }
    }
}
