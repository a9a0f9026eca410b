//! The data representations of spec section 1.5 (integers, variable byte integers, UTF-8
//! strings, binary data) read from a packet body and written to a [`Sink`].
//!
//! Encoding goes through the `Sink` trait twice: once into a [`Counter`] to learn the
//! remaining length (and whether every field fits), once into the output `BytesMut`. One
//! function per packet then serves both passes, so the length can never disagree with the
//! bytes written.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::DecodeError;

/// The largest value a variable byte integer can hold (spec 1.5.5).
pub(crate) const MAX_VARINT: u32 = 268_435_455;

const TRUNCATED: DecodeError =
    DecodeError::Malformed("[§2.1.4] the remaining length ends inside a field");

/// Reads fields from the body of one packet. The body is a `Bytes` split off the read
/// buffer, so binary fields and the PUBLISH topic and payload are slices of it, not copies.
pub(crate) struct Reader {
    buf: Bytes,
}

impl Reader {
    pub(crate) fn new(buf: Bytes) -> Reader {
        Reader { buf }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Fails unless every byte of the body has been consumed.
    pub(crate) fn finish(&self) -> Result<(), DecodeError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Malformed(
                "[§2.1.4] bytes left over after the last field",
            ))
        }
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.buf.is_empty() {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.buf.len() < 2 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.buf.len() < 4 {
            return Err(TRUNCATED);
        }
        Ok(self.buf.get_u32())
    }

    /// A variable byte integer (spec 1.5.5).
    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        match read_varint(&self.buf)? {
            Some((value, len)) => {
                self.buf.advance(len);
                Ok(value)
            }
            None => Err(TRUNCATED),
        }
    }

    /// The next `len` bytes as a slice of the packet.
    pub(crate) fn take(&mut self, len: usize) -> Result<Bytes, DecodeError> {
        if self.buf.len() < len {
            return Err(TRUNCATED);
        }
        Ok(self.buf.split_to(len))
    }

    /// Everything left in the body.
    pub(crate) fn rest(&mut self) -> Bytes {
        self.buf.split_off(0)
    }

    /// Binary data: a two byte length and that many bytes.
    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u16()?;
        self.take(usize::from(len))
    }

    /// A UTF-8 string, checked and returned as a slice of the packet.
    pub(crate) fn utf8_bytes(&mut self) -> Result<Bytes, DecodeError> {
        let bytes = self.binary()?;
        check_utf8(&bytes)?;
        Ok(bytes)
    }

    /// A UTF-8 string, checked and copied.
    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let len = usize::from(self.u16()?);
        let Some(raw) = self.buf.get(..len) else {
            return Err(TRUNCATED);
        };
        let s = check_utf8(raw)?.to_owned();
        self.buf.advance(len);
        Ok(s)
    }
}

/// Checks the rules for a UTF-8 encoded string (spec 1.5.3 / v5 1.5.4). Surrogates cannot
/// occur: `from_utf8` rejects their encodings as ill-formed.
pub(crate) fn check_utf8(raw: &[u8]) -> Result<&str, DecodeError> {
    let s = std::str::from_utf8(raw).map_err(|_| {
        DecodeError::Malformed("[MQTT-1.5.3-1] (v5 [MQTT-1.5.4-1]) string is not well-formed UTF-8")
    })?;
    if s.contains('\0') {
        return Err(DecodeError::Malformed(
            "[MQTT-1.5.3-2] (v5 [MQTT-1.5.4-2]) string contains U+0000",
        ));
    }
    Ok(s)
}

/// Reads a variable byte integer from the start of `buf`: `Ok(None)` if `buf` ends before
/// the last byte, else the value and the number of bytes it took.
pub(crate) fn read_varint(buf: &[u8]) -> Result<Option<(u32, usize)>, DecodeError> {
    let mut value: u32 = 0;
    for (i, &byte) in buf.iter().take(4).enumerate() {
        value |= u32::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            // A longer encoding than needed ends in a zero byte (except the one-byte 0).
            if i > 0 && byte == 0 {
                return Err(DecodeError::Malformed(
                    "[MQTT-1.5.5-1] variable byte integer not encoded in the minimum number of bytes",
                ));
            }
            return Ok(Some((value, i + 1)));
        }
    }
    if buf.len() >= 4 {
        return Err(DecodeError::Malformed(
            "[§2.2.3] (v5 §1.5.5) variable byte integer longer than four bytes",
        ));
    }
    Ok(None)
}

/// The number of bytes the variable byte integer encoding of `value` takes.
pub(crate) fn varint_len(value: usize) -> usize {
    match value {
        0..=127 => 1,
        128..=16_383 => 2,
        16_384..=2_097_151 => 3,
        _ => 4,
    }
}

/// Where encoded fields go: a [`Counter`] for the sizing pass, a `BytesMut` for the writing
/// pass.
pub(crate) trait Sink {
    fn u8(&mut self, v: u8);
    fn u16(&mut self, v: u16);
    fn u32(&mut self, v: u32);
    fn slice(&mut self, v: &[u8]);
    /// A variable byte integer; the counter flags values above [`MAX_VARINT`].
    fn varint(&mut self, v: usize);
    /// A two byte length then the bytes; the counter flags lengths above 65,535.
    fn binary(&mut self, v: &[u8]);

    fn string(&mut self, v: &str) {
        self.binary(v.as_bytes());
    }
}

/// Counts the bytes a packet body will take and remembers whether any field cannot be
/// represented, so the writing pass can assume every field fits.
#[derive(Default)]
pub(crate) struct Counter {
    pub(crate) len: usize,
    pub(crate) field_too_long: bool,
    pub(crate) varint_too_large: bool,
}

impl Sink for Counter {
    #[inline]
    fn u8(&mut self, _: u8) {
        self.len += 1;
    }
    #[inline]
    fn u16(&mut self, _: u16) {
        self.len += 2;
    }
    #[inline]
    fn u32(&mut self, _: u32) {
        self.len += 4;
    }
    #[inline]
    fn slice(&mut self, v: &[u8]) {
        self.len += v.len();
    }
    #[inline]
    fn varint(&mut self, v: usize) {
        self.varint_too_large |= v > MAX_VARINT as usize;
        self.len += varint_len(v);
    }
    #[inline]
    fn binary(&mut self, v: &[u8]) {
        self.field_too_long |= v.len() > usize::from(u16::MAX);
        self.len += 2 + v.len();
    }
}

impl Sink for BytesMut {
    #[inline]
    fn u8(&mut self, v: u8) {
        self.put_u8(v);
    }
    #[inline]
    fn u16(&mut self, v: u16) {
        self.put_u16(v);
    }
    #[inline]
    fn u32(&mut self, v: u32) {
        self.put_u32(v);
    }
    #[inline]
    fn slice(&mut self, v: &[u8]) {
        self.put_slice(v);
    }
    #[inline]
    fn varint(&mut self, mut v: usize) {
        loop {
            let mut byte = (v & 0x7F) as u8;
            v >>= 7;
            if v > 0 {
                byte |= 0x80;
            }
            self.put_u8(byte);
            if v == 0 {
                break;
            }
        }
    }
    #[inline]
    fn binary(&mut self, v: &[u8]) {
        // The counting pass has rejected longer fields.
        self.put_u16(v.len() as u16);
        self.put_slice(v);
    }
}
