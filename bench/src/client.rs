//! One MQTT client connection: a TCP stream, its read buffer, its write buffer and a decoder.
//!
//! There is no background task and no channel: the task that owns a `Client` encodes packets
//! into `wbuf` and writes them with one `flush` (one syscall for a whole batch), and decodes
//! every packet a single `read_more` brought in. That keeps the load generator cheap enough
//! not to be the bottleneck of the broker it measures.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use dynamq_codec::{
    Connect, ConnectProperties, Decoder, Disconnect, Packet, Protocol, QoS, ReasonCode, Subscribe,
    SubscribeProperties, SubscriptionOptions, encode,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::error::ClientError;

/// The largest packet accepted from the broker (the MQTT maximum).
const MAX_PACKET: u32 = 268_435_460;

/// How a client connects; shared by every client of a run.
#[derive(Debug, Clone)]
pub(crate) struct ClientConfig {
    pub addr: SocketAddr,
    pub protocol: Protocol,
    /// Seconds; the clients send PINGREQ every half of it when otherwise silent.
    pub keep_alive: u16,
    /// Initial read buffer capacity: large for busy clients, small for idle ones (conn mode
    /// holds tens of thousands).
    pub read_capacity: usize,
    /// Bound on CONNECT..CONNACK and SUBSCRIBE..SUBACK.
    pub handshake_timeout: Duration,
}

pub(crate) struct Client {
    stream: TcpStream,
    /// Bytes read from the broker and not yet decoded.
    rbuf: BytesMut,
    /// Packets encoded and not yet written: flushed as one write.
    pub wbuf: BytesMut,
    decoder: Decoder,
    pub protocol: Protocol,
    /// v5: the broker's Receive Maximum from CONNACK, which caps our in-flight window.
    pub receive_maximum: u16,
}

impl Client {
    /// Opens the TCP connection, sends CONNECT (clean session) and waits for a successful
    /// CONNACK.
    pub(crate) async fn connect(
        cfg: &ClientConfig,
        client_id: String,
    ) -> Result<Client, ClientError> {
        let stream = TcpStream::connect(cfg.addr)
            .await
            .map_err(|source| ClientError::Connect {
                addr: cfg.addr.to_string(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let mut client = Client {
            stream,
            rbuf: BytesMut::with_capacity(cfg.read_capacity),
            wbuf: BytesMut::with_capacity(256),
            decoder: Decoder::with_protocol(cfg.protocol, MAX_PACKET),
            protocol: cfg.protocol,
            receive_maximum: u16::MAX,
        };
        let properties = ConnectProperties {
            // Let the broker pipeline as much as it wants to our subscribers.
            receive_maximum: cfg.protocol.is_v5().then_some(u16::MAX),
            ..ConnectProperties::default()
        };
        client.push(&Packet::Connect(Box::new(Connect {
            protocol: cfg.protocol,
            clean_start: true,
            keep_alive: cfg.keep_alive,
            client_id,
            will: None,
            username: None,
            password: None,
            properties,
        })))?;
        client.flush().await?;
        let ack = tokio::time::timeout(cfg.handshake_timeout, client.recv())
            .await
            .map_err(|_| ClientError::Timeout("CONNACK"))??;
        match ack {
            Packet::ConnAck(ack) if ack.reason_code == ReasonCode::Success => {
                client.receive_maximum = ack.properties.receive_maximum.unwrap_or(u16::MAX);
                Ok(client)
            }
            Packet::ConnAck(ack) => Err(ClientError::Refused(ack.reason_code)),
            _ => Err(ClientError::Unexpected("packet before CONNACK")),
        }
    }

    /// Subscribes to one filter and waits for a SUBACK granting it.
    pub(crate) async fn subscribe(
        &mut self,
        filter: String,
        qos: QoS,
        timeout: Duration,
    ) -> Result<(), ClientError> {
        self.push(&Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: SubscribeProperties::default(),
            filters: vec![(filter, SubscriptionOptions::qos(qos))],
        }))?;
        self.flush().await?;
        let ack = tokio::time::timeout(timeout, self.recv())
            .await
            .map_err(|_| ClientError::Timeout("SUBACK"))??;
        match ack {
            Packet::SubAck(ack) => match ack.reason_codes.first() {
                Some(code) if !code.is_error() => Ok(()),
                Some(code) => Err(ClientError::SubscribeRefused(*code)),
                None => Err(ClientError::Unexpected("empty SUBACK")),
            },
            _ => Err(ClientError::Unexpected("packet before SUBACK")),
        }
    }

    /// Encodes `packet` at the end of the write buffer.
    pub(crate) fn push(&mut self, packet: &Packet) -> Result<(), ClientError> {
        Ok(encode(packet, self.protocol, &mut self.wbuf)?)
    }

    /// Writes the whole write buffer, in one syscall when the socket has room.
    pub(crate) async fn flush(&mut self) -> Result<(), ClientError> {
        if !self.wbuf.is_empty() {
            self.stream.write_all(&self.wbuf).await?;
            self.wbuf.clear();
        }
        Ok(())
    }

    /// [`Client::flush`], abandoned at `stop` (a broker that stopped reading must not hang
    /// the run); false if stopped.
    pub(crate) async fn flush_until(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<bool, ClientError> {
        tokio::select! {
            r = self.flush() => r.map(|()| true),
            _ = stop.cancelled() => Ok(false),
        }
    }

    /// Reads whatever the socket has into the read buffer. Cancel safe: a cancelled call
    /// has read nothing.
    pub(crate) async fn read_more(&mut self) -> Result<(), ClientError> {
        if self.rbuf.capacity() - self.rbuf.len() < 512 {
            self.rbuf.reserve(4096);
        }
        match self.stream.read_buf(&mut self.rbuf).await? {
            0 => Err(ClientError::Closed),
            _ => Ok(()),
        }
    }

    /// The next whole packet already in the read buffer, if any.
    pub(crate) fn next_packet(&mut self) -> Result<Option<Packet>, ClientError> {
        Ok(self.decoder.decode(&mut self.rbuf)?)
    }

    /// The next packet, reading as needed.
    pub(crate) async fn recv(&mut self) -> Result<Packet, ClientError> {
        loop {
            if let Some(packet) = self.next_packet()? {
                return Ok(packet);
            }
            self.read_more().await?;
        }
    }

    /// Sends DISCONNECT and closes, ignoring errors (the broker may already be gone), within
    /// a second.
    pub(crate) async fn disconnect(mut self) {
        let bye = async {
            let packet = Packet::Disconnect(Disconnect::new(ReasonCode::NormalDisconnection));
            if self.push(&packet).is_ok() {
                let _ = self.flush().await;
            }
            let _ = self.stream.shutdown().await;
        };
        let _ = tokio::time::timeout(Duration::from_secs(1), bye).await;
    }
}

/// The protocol for `--mqtt-version`: 3 or 4 mean 3.1.1, 5 means 5.0.
pub(crate) fn protocol_for(version: u8) -> Option<Protocol> {
    match version {
        3 | 4 => Some(Protocol::V311),
        5 => Some(Protocol::V5),
        _ => None,
    }
}

/// QoS from its number, for the command line.
pub(crate) fn qos_for(qos: u8) -> Option<QoS> {
    QoS::from_u8(qos)
}
