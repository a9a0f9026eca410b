//! Check-then-parse decoding of MQTT packets.
//!
//! [`Decoder::decode`] first peeks the fixed header; if the packet is larger than the maximum
//! it fails at once, before the body is buffered; if the body has not fully arrived it returns
//! `Ok(None)`; only then does it split the packet off the read buffer (`split_to().freeze()`)
//! and parse it, so PUBLISH topics and payloads are slices of the buffer, not copies. One file
//! per packet family parses the body.

mod connect;
mod publish;
mod subscribe;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::DecodeError;
use crate::packet::{Auth, Disconnect, DisconnectProperties, Packet, Protocol};
use crate::properties;
use crate::reason::{ReasonCode, ReasonContext};
use crate::wire::{Reader, read_varint};

/// The most `decode` reserves in the read buffer for a packet that has not fully arrived.
const RESERVE_AHEAD: usize = 64 * 1024;

// Control packet types: the high nibble of the first byte (spec 2.2.1, v5 2.1.2).
pub const CONNECT: u8 = 1;
pub const CONNACK: u8 = 2;
pub const PUBLISH: u8 = 3;
pub const PUBACK: u8 = 4;
pub const PUBREC: u8 = 5;
pub const PUBREL: u8 = 6;
pub const PUBCOMP: u8 = 7;
pub const SUBSCRIBE: u8 = 8;
pub const SUBACK: u8 = 9;
pub const UNSUBSCRIBE: u8 = 10;
pub const UNSUBACK: u8 = 11;
pub const PINGREQ: u8 = 12;
pub const PINGRESP: u8 = 13;
pub const DISCONNECT: u8 = 14;
pub const AUTH: u8 = 15;

/// Decodes the packets of one connection, one direction.
#[derive(Debug, Clone)]
pub struct Decoder {
    /// The protocol version of the connection: `None` on the server side until CONNECT,
    /// which is the only packet accepted before it [MQTT-3.1.0-1]. After a CONNECT that
    /// fails to decode it holds the level the CONNECT announced (if it got that far), so the
    /// broker can answer with a CONNACK in the client's version.
    protocol: Option<Protocol>,
    /// The largest packet (fixed header included) this side accepts: the server's
    /// configured limit, or the Maximum Packet Size it announced in CONNACK.
    max_packet_size: u32,
}

impl Decoder {
    /// A server-side decoder: the first packet must be CONNECT, which sets the protocol.
    pub fn new(max_packet_size: u32) -> Decoder {
        Decoder {
            protocol: None,
            max_packet_size,
        }
    }

    /// A decoder for a connection whose protocol is already known (e.g. a client).
    pub fn with_protocol(protocol: Protocol, max_packet_size: u32) -> Decoder {
        Decoder {
            protocol: Some(protocol),
            max_packet_size,
        }
    }

    pub fn protocol(&self) -> Option<Protocol> {
        self.protocol
    }

    pub fn max_packet_size(&self) -> u32 {
        self.max_packet_size
    }

    pub fn set_max_packet_size(&mut self, max: u32) {
        self.max_packet_size = max;
    }

    /// Decodes one packet from the front of `buf`.
    ///
    /// `Ok(None)` if `buf` does not yet hold a whole packet ("incomplete" is not an error);
    /// on `Ok(Some(packet))` the packet's bytes have been removed from `buf`. After an error
    /// the connection must be closed; what is left in `buf` is unspecified.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Packet>, DecodeError> {
        let Some((first, remaining, header_len)) = read_fixed_header(buf)? else {
            return Ok(None);
        };
        let total = header_len + remaining;
        if total > self.max_packet_size as usize {
            return Err(DecodeError::PacketTooLarge {
                size: total,
                max: self.max_packet_size,
            });
        }
        let packet_type = first >> 4;
        if self.protocol.is_none() && packet_type != CONNECT {
            return Err(DecodeError::Protocol(
                "[MQTT-3.1.0-1] the first packet from the client must be CONNECT",
            ));
        }
        if buf.len() < total {
            // Make room for the rest of the packet, but not all at once for a large one: the
            // header alone must not make a client able to pin max_packet_size bytes of memory.
            buf.reserve((total - buf.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        let mut packet = buf.split_to(total);
        packet.advance(header_len);
        let body = packet.freeze();
        let packet = match self.protocol {
            Some(protocol) if packet_type != CONNECT => decode_body(first, body, protocol)?,
            _ => {
                if first & 0x0F != 0 {
                    return Err(DecodeError::Malformed(
                        "[MQTT-2.2.2-1] (v5 [MQTT-2.1.3-1]) reserved fixed header flags must be 0",
                    ));
                }
                let mut announced = None;
                let result = connect::connect(body, &mut announced);
                if self.protocol.is_none() {
                    self.protocol = announced;
                }
                result?
            }
        };
        Ok(Some(packet))
    }
}

/// Peeks the fixed header at the start of `buf`: `Ok(None)` if incomplete, else the first
/// byte (packet type and flags), the remaining length and the header's length in bytes.
pub fn read_fixed_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, DecodeError> {
    let Some((&first, rest)) = buf.split_first() else {
        return Ok(None);
    };
    Ok(read_varint(rest)?.map(|(len, n)| (first, len as usize, 1 + n)))
}

/// Parses a packet body (everything after the fixed header) given its first byte. CONNECT
/// is not parsed here: it carries its own protocol version.
fn decode_body(first: u8, body: Bytes, protocol: Protocol) -> Result<Packet, DecodeError> {
    let flags = first & 0x0F;
    let packet_type = first >> 4;
    if packet_type == 0 || (packet_type == AUTH && !protocol.is_v5()) {
        return Err(DecodeError::Malformed(
            "[§2.2.1] (v5 §2.1.2) reserved control packet type",
        ));
    }
    if packet_type == PUBLISH {
        return publish::publish(flags, body, protocol).map(Packet::Publish);
    }
    let expected_flags = match packet_type {
        PUBREL | SUBSCRIBE | UNSUBSCRIBE => 0b0010,
        _ => 0,
    };
    if flags != expected_flags {
        return Err(DecodeError::Malformed(match packet_type {
            PUBREL => "[MQTT-3.6.1-1] PUBREL fixed header flags must be 0010",
            SUBSCRIBE => "[MQTT-3.8.1-1] SUBSCRIBE fixed header flags must be 0010",
            UNSUBSCRIBE => "[MQTT-3.10.1-1] UNSUBSCRIBE fixed header flags must be 0010",
            _ => "[MQTT-2.2.2-1] (v5 [MQTT-2.1.3-1]) reserved fixed header flags must be 0",
        }));
    }
    let mut r = Reader::new(body);
    let packet = match packet_type {
        CONNACK => Packet::ConnAck(connect::connack(&mut r, protocol)?),
        PUBACK => Packet::PubAck(publish::pub_resp(&mut r, protocol, ReasonContext::PubAck)?),
        PUBREC => Packet::PubRec(publish::pub_resp(&mut r, protocol, ReasonContext::PubRec)?),
        PUBREL => Packet::PubRel(publish::pub_resp(&mut r, protocol, ReasonContext::PubRel)?),
        PUBCOMP => Packet::PubComp(publish::pub_resp(&mut r, protocol, ReasonContext::PubComp)?),
        SUBSCRIBE => Packet::Subscribe(subscribe::subscribe(&mut r, protocol)?),
        SUBACK => Packet::SubAck(subscribe::suback(&mut r, protocol)?),
        UNSUBSCRIBE => Packet::Unsubscribe(subscribe::unsubscribe(&mut r, protocol)?),
        UNSUBACK => Packet::UnsubAck(subscribe::unsuback(&mut r, protocol)?),
        PINGREQ => Packet::PingReq,
        PINGRESP => Packet::PingResp,
        DISCONNECT => Packet::Disconnect(disconnect(&mut r, protocol)?),
        AUTH => Packet::Auth(auth(&mut r)?),
        // CONNECT is parsed by the caller; nothing else is left.
        _ => return Err(DecodeError::Protocol("[MQTT-3.1.0-2] unexpected CONNECT")),
    };
    r.finish()?;
    Ok(packet)
}

/// Reads a v5 reason code allowed in `ctx`.
pub(crate) fn reason(
    r: &mut Reader,
    ctx: ReasonContext,
    err: &'static str,
) -> Result<ReasonCode, DecodeError> {
    ReasonCode::from_u8_in(ctx, r.u8()?).ok_or(DecodeError::Malformed(err))
}

/// A packet identifier where one is required: non-zero.
pub(crate) fn packet_id(r: &mut Reader) -> Result<u16, DecodeError> {
    match r.u16()? {
        0 => Err(DecodeError::Protocol(
            "[MQTT-2.3.1-1] (v5 [MQTT-2.2.1-3]) packet identifier is 0",
        )),
        id => Ok(id),
    }
}

fn disconnect(r: &mut Reader, protocol: Protocol) -> Result<Disconnect, DecodeError> {
    let mut d = Disconnect {
        reason_code: ReasonCode::NormalDisconnection,
        properties: DisconnectProperties::default(),
    };
    // The reason code and property length may be omitted (spec 3.14.2.1, 3.14.2.2.1).
    if protocol.is_v5() && !r.is_empty() {
        d.reason_code = reason(
            r,
            ReasonContext::Disconnect,
            "[MQTT-3.14.2-1] DISCONNECT reason code not allowed",
        )?;
        if !r.is_empty() {
            d.properties = properties::read_disconnect(r)?;
        }
    }
    Ok(d)
}

fn auth(r: &mut Reader) -> Result<Auth, DecodeError> {
    let mut a = Auth {
        reason_code: ReasonCode::Success,
        properties: Default::default(),
    };
    // The reason code and property length may be omitted (spec 3.15.2.1, 3.15.2.2.1).
    if !r.is_empty() {
        a.reason_code = reason(
            r,
            ReasonContext::Auth,
            "[MQTT-3.15.2-1] AUTH reason code not allowed",
        )?;
        if !r.is_empty() {
            a.properties = properties::read_auth(r)?;
        }
    }
    Ok(a)
}
