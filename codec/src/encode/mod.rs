//! Encoding of every packet for a given protocol version, written straight into the output
//! buffer.
//!
//! Each packet body is produced by one generic function run twice over a `Sink`: into a
//! `Counter` to learn the remaining length and check every field fits, then into the
//! `BytesMut` after a single `reserve`. No intermediate buffer, no allocation beyond the
//! reserve. For v3 the v5-only parts (properties, most reason codes) are dropped.

mod connect;
mod publish;
mod subscribe;

use bytes::BytesMut;

use crate::error::EncodeError;
use crate::packet::{Auth, Disconnect, Packet, Protocol, Publish, PublishRef};
use crate::properties::write_props;
use crate::wire::{Counter, MAX_VARINT, Sink, varint_len};

/// Appends `packet`, encoded for `protocol`, to `buf`. A CONNECT is encoded in the version its
/// own `protocol` field names. On error nothing has been written.
pub fn encode(packet: &Packet, protocol: Protocol, buf: &mut BytesMut) -> Result<(), EncodeError> {
    encode_with_max(packet, protocol, u32::MAX, buf)
}

/// Like [`encode`], but refuses (writing nothing) a packet larger than `max_packet_size`
/// bytes, e.g. the Maximum Packet Size a v5 client announced [MQTT-3.1.2-24].
pub fn encode_with_max(
    packet: &Packet,
    protocol: Protocol,
    max_packet_size: u32,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    if let Packet::Publish(p) = packet {
        return encode_publish_with_max(p, protocol, max_packet_size, buf);
    }
    check(packet, protocol)?;
    let remaining = measure(|c| write_body(packet, protocol, c))?;
    let first = first_byte(packet);
    write_framed(first, remaining, max_packet_size, buf, |b| {
        write_body(packet, protocol, b)
    })
}

/// The number of bytes [`encode`] would write.
pub fn encoded_len(packet: &Packet, protocol: Protocol) -> Result<usize, EncodeError> {
    check(packet, protocol)?;
    let remaining = measure(|c| write_body(packet, protocol, c))?;
    Ok(1 + varint_len(remaining) + remaining)
}

/// Appends a PUBLISH: the broker's hot path, one call per subscriber, without wrapping the
/// message in a [`Packet`].
#[inline]
pub fn encode_publish(
    p: &Publish,
    protocol: Protocol,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    encode_publish_with_max(p, protocol, u32::MAX, buf)
}

/// [`encode_publish`] with a maximum packet size; see [`encode_with_max`].
#[inline]
pub fn encode_publish_with_max(
    p: &Publish,
    protocol: Protocol,
    max_packet_size: u32,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    encode_publish_parts(&p.as_parts(), protocol, max_packet_size, buf)
}

/// Encodes a PUBLISH from borrowed parts (see [`PublishRef`]), with a maximum packet size.
#[inline]
pub fn encode_publish_parts(
    p: &PublishRef<'_>,
    protocol: Protocol,
    max_packet_size: u32,
    buf: &mut BytesMut,
) -> Result<(), EncodeError> {
    publish::check(p)?;
    let remaining = measure(|c| publish::body(p, protocol, c))?;
    write_framed(
        publish::first_byte(p),
        remaining,
        max_packet_size,
        buf,
        |b| publish::body(p, protocol, b),
    )
}

/// Runs the counting pass and turns its findings into errors.
#[inline]
fn measure(body: impl FnOnce(&mut Counter)) -> Result<usize, EncodeError> {
    let mut c = Counter::default();
    body(&mut c);
    if c.field_too_long {
        return Err(EncodeError::FieldTooLong);
    }
    if c.varint_too_large {
        return Err(EncodeError::Unrepresentable(
            "a variable byte integer exceeds 268,435,455",
        ));
    }
    if c.len > MAX_VARINT as usize {
        return Err(EncodeError::RemainingLengthTooLarge(c.len));
    }
    Ok(c.len)
}

/// Writes the fixed header and then the body, after one reserve for the whole packet.
#[inline]
fn write_framed(
    first: u8,
    remaining: usize,
    max_packet_size: u32,
    buf: &mut BytesMut,
    body: impl FnOnce(&mut BytesMut),
) -> Result<(), EncodeError> {
    let total = 1 + varint_len(remaining) + remaining;
    if total > max_packet_size as usize {
        return Err(EncodeError::PacketTooLarge {
            size: total,
            max: max_packet_size,
        });
    }
    buf.reserve(total);
    let start = buf.len();
    buf.u8(first);
    buf.varint(remaining);
    body(buf);
    debug_assert_eq!(
        buf.len() - start,
        total,
        "counting and writing passes disagree"
    );
    Ok(())
}

/// Refuses what the wire format of `protocol` cannot carry.
fn check(packet: &Packet, protocol: Protocol) -> Result<(), EncodeError> {
    match packet {
        Packet::Auth(_) if !protocol.is_v5() => {
            Err(EncodeError::Unrepresentable("AUTH exists only in MQTT 5"))
        }
        Packet::Publish(p) => publish::check(&p.as_parts()),
        _ => Ok(()),
    }
}

fn first_byte(packet: &Packet) -> u8 {
    match packet {
        Packet::Connect(_) => 0x10,
        Packet::ConnAck(_) => 0x20,
        Packet::Publish(p) => publish::first_byte(&p.as_parts()),
        Packet::PubAck(_) => 0x40,
        Packet::PubRec(_) => 0x50,
        Packet::PubRel(_) => 0x62,
        Packet::PubComp(_) => 0x70,
        Packet::Subscribe(_) => 0x82,
        Packet::SubAck(_) => 0x90,
        Packet::Unsubscribe(_) => 0xA2,
        Packet::UnsubAck(_) => 0xB0,
        Packet::PingReq => 0xC0,
        Packet::PingResp => 0xD0,
        Packet::Disconnect(_) => 0xE0,
        Packet::Auth(_) => 0xF0,
    }
}

fn write_body<S: Sink>(packet: &Packet, protocol: Protocol, s: &mut S) {
    match packet {
        Packet::Connect(c) => connect::connect(c, s),
        Packet::ConnAck(c) => connect::connack(c, protocol, s),
        Packet::Publish(p) => publish::body(&p.as_parts(), protocol, s),
        Packet::PubAck(r) | Packet::PubRec(r) | Packet::PubRel(r) | Packet::PubComp(r) => {
            publish::pub_resp(r, protocol, s)
        }
        Packet::Subscribe(p) => subscribe::subscribe(p, protocol, s),
        Packet::SubAck(p) => subscribe::suback(p, protocol, s),
        Packet::Unsubscribe(p) => subscribe::unsubscribe(p, protocol, s),
        Packet::UnsubAck(p) => subscribe::unsuback(p, protocol, s),
        Packet::PingReq | Packet::PingResp => {}
        Packet::Disconnect(d) => disconnect(d, protocol, s),
        Packet::Auth(a) => auth(a, s),
    }
}

fn disconnect<S: Sink>(d: &Disconnect, protocol: Protocol, s: &mut S) {
    if !protocol.is_v5() {
        return;
    }
    // Both may be omitted when they are the defaults (spec 3.14.2.1, 3.14.2.2.1).
    let no_props = d.properties.is_empty();
    if d.reason_code.code() == 0 && no_props {
        return;
    }
    s.u8(d.reason_code.code());
    if !no_props {
        write_props(&d.properties, s);
    }
}

fn auth<S: Sink>(a: &Auth, s: &mut S) {
    // Both may be omitted when the reason is Success and there are no properties (3.15.2.1).
    if a.reason_code.code() == 0 && a.properties.is_empty() {
        return;
    }
    s.u8(a.reason_code.code());
    write_props(&a.properties, s);
}
