//! Helpers shared by the decoder's rejection tests: framing a body, decoding it, and
//! asserting the error's reason code and cited statement.
#![allow(dead_code)]

use bytes::BytesMut;
use dynamq_codec::{DecodeError, Decoder, Packet, Protocol, ReasonCode};

pub(crate) const MAX: u32 = 1 << 20;

/// Frames `body` with a first byte and a remaining length.
pub(crate) fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

pub(crate) fn decode(
    protocol: Option<Protocol>,
    bytes: &[u8],
) -> Result<Option<Packet>, DecodeError> {
    let mut d = match protocol {
        Some(p) => Decoder::with_protocol(p, MAX),
        None => Decoder::new(MAX),
    };
    d.decode(&mut BytesMut::from(bytes))
}

/// Asserts `bytes` fails to decode with an error of reason `reason` citing `statement`.
#[track_caller]
pub(crate) fn rejects(
    protocol: Option<Protocol>,
    bytes: &[u8],
    reason: ReasonCode,
    statement: &str,
) {
    match decode(protocol, bytes) {
        Err(e) => {
            assert_eq!(e.reason_code(), reason, "{e}");
            assert!(
                e.message().starts_with('['),
                "message must start with a statement: {e}"
            );
            assert!(
                e.message().contains(statement),
                "{e} does not cite {statement}"
            );
        }
        Ok(p) => panic!("expected an error citing {statement}, decoded {p:?}"),
    }
}

#[track_caller]
pub(crate) fn accepts(protocol: Option<Protocol>, bytes: &[u8]) -> Packet {
    match decode(protocol, bytes) {
        Ok(Some(p)) => p,
        other => panic!("expected a packet, got {other:?}"),
    }
}

pub(crate) const V3: Option<Protocol> = Some(Protocol::V311);
pub(crate) const V5: Option<Protocol> = Some(Protocol::V5);
pub(crate) const MALFORMED: ReasonCode = ReasonCode::MalformedPacket;
pub(crate) const PROTOCOL: ReasonCode = ReasonCode::ProtocolError;

/// A CONNECT body: protocol name, level, flags, keep alive 60, then `rest`.
pub(crate) fn connect(name: &[u8], level: u8, flags: u8, rest: &[u8]) -> Vec<u8> {
    let mut body = vec![0, name.len() as u8];
    body.extend_from_slice(name);
    body.extend_from_slice(&[level, flags, 0, 60]);
    body.extend_from_slice(rest);
    frame(0x10, &body)
}

pub(crate) const CID: &[u8] = &[0, 1, b'c'];
