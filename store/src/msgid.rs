//! The EMQX-compatible message id: 128 bits = microsecond timestamp (64) | node and process
//! hash (48) | sequence (16), written to the store as EMQX writes it: the id's decimal string,
//! encoded with EMQX's "base62".
//!
//! That encoding is base64-like over the decimal string's bytes: each full 6-bit group becomes
//! one character of `A-Z a-z 0-8` (values 0..=60) or a two-character escape `9A` `9B` `9C`
//! (61, 62, 63). The tail is not padded the way base64 pads: a 4-bit or 2-bit remainder is
//! written as the character of that small value itself (so the tutorial's `...MjJ` ends in the
//! digits "29", not "22" as a base64 decoder would say). Encoded ids do not sort in time
//! order: decode to compare.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
#[cfg(not(target_os = "linux"))]
use std::time::{SystemTime, UNIX_EPOCH};

/// A message id. `Ord` is time order (then node hash, then sequence).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgId(pub u128);

/// Why a string is not an encoded msgid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MsgIdError {
    #[error("msgid {0:?}: character {1:?} is not in EMQX's base62 alphabet")]
    BadChar(String, char),
    #[error("msgid {0:?}: truncated `9` escape")]
    TruncatedEscape(String),
    #[error("msgid {0:?}: a tail character carries more bits than are left")]
    BadTail(String),
    #[error("msgid {0:?}: does not decode to a decimal integer below 2^128")]
    NotDecimal(String),
    #[error("msgid {0:?}: empty")]
    Empty(String),
}

impl MsgId {
    /// The timestamp part: microseconds since the Unix epoch.
    pub fn timestamp_micros(self) -> u64 {
        (self.0 >> 64) as u64
    }

    /// The timestamp part in whole seconds, what the tables' `arrived` holds.
    pub fn timestamp_secs(self) -> u64 {
        self.timestamp_micros() / 1_000_000
    }

    /// The 48-bit node and process hash.
    pub fn node_hash(self) -> u64 {
        ((self.0 >> 16) as u64) & 0xFFFF_FFFF_FFFF
    }

    /// The 16-bit sequence.
    pub fn sequence(self) -> u16 {
        self.0 as u16
    }

    /// The smallest id with this timestamp, for "after time T" comparisons.
    pub fn min_at_micros(micros: u64) -> MsgId {
        MsgId((micros as u128) << 64)
    }

    /// EMQX's encoding, the string stored in the tables.
    pub fn encode(self) -> String {
        let decimal = self.0.to_string();
        let bytes = decimal.as_bytes();
        let mut out = String::with_capacity(bytes.len() * 4 / 3 + 4);
        let mut chunks = bytes.chunks_exact(3);
        for c in &mut chunks {
            let v = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
            for shift in [18, 12, 6, 0] {
                push_char(&mut out, ((v >> shift) & 0x3F) as u8);
            }
        }
        match *chunks.remainder() {
            [a, b] => {
                let v = (u32::from(a) << 8) | u32::from(b);
                push_char(&mut out, ((v >> 10) & 0x3F) as u8);
                push_char(&mut out, ((v >> 4) & 0x3F) as u8);
                push_char(&mut out, (v & 0x0F) as u8);
            }
            [a] => {
                push_char(&mut out, a >> 2);
                push_char(&mut out, a & 0x03);
            }
            _ => {}
        }
        out
    }

    /// Parses an encoded id (the inverse of [`MsgId::encode`]).
    pub fn decode(s: &str) -> Result<MsgId, MsgIdError> {
        if s.is_empty() {
            return Err(MsgIdError::Empty(s.to_owned()));
        }
        // Each character carries 6 bits except the last, which carries what completes a byte.
        let chars = s.as_bytes();
        let mut values: Vec<u8> = Vec::with_capacity(chars.len());
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c == b'9' {
                let next = chars
                    .get(i + 1)
                    .ok_or_else(|| MsgIdError::TruncatedEscape(s.to_owned()))?;
                let v = match next {
                    b'A' => 61,
                    b'B' => 62,
                    b'C' => 63,
                    other => return Err(MsgIdError::BadChar(s.to_owned(), char::from(*other))),
                };
                values.push(v);
                i += 2;
            } else {
                values.push(char_value(c).ok_or_else(|| {
                    MsgIdError::BadChar(s.to_owned(), s[i..].chars().next().unwrap_or('?'))
                })?);
                i += 1;
            }
        }
        let mut bytes = Vec::with_capacity(values.len() * 3 / 4 + 1);
        let mut acc: u32 = 0;
        let mut bits: u32 = 0;
        let last = values.len() - 1;
        for (n, v) in values.iter().enumerate() {
            if n == last && bits > 0 {
                // The tail character holds exactly the bits missing to finish the byte.
                let need = 8 - bits;
                if u32::from(*v) >> need != 0 {
                    return Err(MsgIdError::BadTail(s.to_owned()));
                }
                acc = (acc << need) | u32::from(*v);
                bits += need;
            } else {
                acc = (acc << 6) | u32::from(*v);
                bits += 6;
            }
            if bits >= 8 {
                bits -= 8;
                bytes.push((acc >> bits) as u8);
                acc &= (1 << bits) - 1;
            }
        }
        if bits != 0 {
            return Err(MsgIdError::BadTail(s.to_owned()));
        }
        let text = std::str::from_utf8(&bytes).map_err(|_| MsgIdError::NotDecimal(s.to_owned()))?;
        if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(MsgIdError::NotDecimal(s.to_owned()));
        }
        text.parse::<u128>()
            .map(MsgId)
            .map_err(|_| MsgIdError::NotDecimal(s.to_owned()))
    }
}

fn push_char(out: &mut String, v: u8) {
    match v {
        0..=25 => out.push(char::from(b'A' + v)),
        26..=51 => out.push(char::from(b'a' + v - 26)),
        52..=60 => out.push(char::from(b'0' + v - 52)),
        _ => {
            out.push('9');
            out.push(char::from(b'A' + (v & 0x3F) - 61));
        }
    }
}

fn char_value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'8' => Some(c - b'0' + 52),
        _ => None,
    }
}

impl fmt::Debug for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MsgId({})", self.encode())
    }
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.encode())
    }
}

/// Generates ids that are unique and strictly increasing for this process.
///
/// Lock-free: one atomic holds (microseconds since the generator started << 16 | sequence), so
/// 48 bits of elapsed time (~8.9 years of uptime) and a 16-bit sequence. Each id takes
/// `max(now << 16, last + 1)`: when more than 65,536 ids are asked within one microsecond, or
/// the clock steps back, the timestamp part runs ahead of the clock by a little instead of
/// repeating an id.
#[derive(Debug)]
pub struct MsgIdGen {
    base_micros: u64,
    node_hash: u64,
    state: AtomicU64,
}

impl MsgIdGen {
    /// A generator for this node (e.g. `dynamq@host`); the process id is mixed in.
    pub fn new(node: &str) -> MsgIdGen {
        MsgIdGen::with_hash(node_hash(node, std::process::id()))
    }

    fn with_hash(node_hash: u64) -> MsgIdGen {
        MsgIdGen {
            base_micros: now_micros(),
            node_hash: node_hash & 0xFFFF_FFFF_FFFF,
            state: AtomicU64::new(0),
        }
    }

    /// The next id.
    pub fn next_id(&self) -> MsgId {
        let elapsed = now_micros().saturating_sub(self.base_micros);
        let floor = elapsed << 16;
        let prev = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                Some(floor.max(last.wrapping_add(1)))
            })
            // fetch_update only fails when the closure returns None.
            .unwrap_or_else(|last| last);
        let cur = floor.max(prev.wrapping_add(1));
        let micros = self.base_micros + (cur >> 16);
        MsgId(((micros as u128) << 64) | ((self.node_hash as u128) << 16) | (cur & 0xFFFF) as u128)
    }

    /// A time (µs) that splits this generator's ids: every id given before has an earlier
    /// time, every id given after has this time or a later one. The clock moves in ticks,
    /// so "now" cannot split the ids of one tick: the generator moves on to the next
    /// microsecond instead (by at most one per call).
    pub fn mark_micros(&self) -> u64 {
        let floor = now_micros().saturating_sub(self.base_micros) << 16;
        let next_micro = |v: u64| (v | 0xFFFF).wrapping_add(1);
        let prev = self
            .state
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
                let b = floor.max(last.wrapping_add(1));
                // The state is the last id given: the mark's own value ends its micro, so
                // the next id starts the following one.
                Some(if b & 0xFFFF == 0 { b } else { next_micro(b) }.wrapping_sub(1))
            })
            .unwrap_or_else(|last| last);
        let b = floor.max(prev.wrapping_add(1));
        let start = if b & 0xFFFF == 0 { b } else { next_micro(b) };
        self.base_micros + (start >> 16)
    }
}

/// Microseconds since the Unix epoch (0 if the clock is before 1970), from the coarse
/// real-time clock on Linux: it moves in steps of the kernel's tick (1 to 4 ms) and costs a
/// few nanoseconds, where the precise clock costs tens. Msgids take their time from it (their
/// sequence bits keep them unique and increasing within a step), and so does everything
/// compared with a msgid's time (the delay line's due time, `replay_since`), so one clock
/// serves them all.
#[cfg(target_os = "linux")]
pub fn now_micros() -> u64 {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::RealtimeCoarse);
    u64::try_from(t.tv_sec)
        .unwrap_or(0)
        .saturating_mul(1_000_000)
        .saturating_add(u64::try_from(t.tv_nsec).unwrap_or(0) / 1_000)
}

/// Microseconds since the Unix epoch (0 if the clock is before 1970).
#[cfg(not(target_os = "linux"))]
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

// FNV-1a: a stable, dependency-free hash; the value only has to differ between nodes/processes.
fn node_hash(node: &str, pid: u32) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in node.bytes().chain(pid.to_be_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h & 0xFFFF_FFFF_FFFF
}

#[cfg(test)]
mod tests {
    use super::*;

    // (encoded, arrived) from the tutorial's mqtt_retain and mqtt_msg items.
    const TUTORIAL: [(&str, u64); 2] = [
        (
            "Mjg4NDYzOTExMTcxNzQ5MTQwMjU1NzgyMDgxNzU1ODczMjJ",
            1563765995,
        ),
        (
            "Mjg4NDY0MDMyMDA2MzI0MjA4MTcxNDYwNjk0MjQ5MzA4MTJ",
            1563766650,
        ),
    ];

    #[test]
    fn tutorial_ids_decode_to_their_arrival_second() {
        for (s, arrived) in TUTORIAL {
            let id = MsgId::decode(s).expect("tutorial id");
            assert_eq!(id.timestamp_secs(), arrived, "{s}");
            assert_eq!(id.encode(), s, "round trip");
        }
        let first = MsgId::decode(TUTORIAL[0].0).expect("tutorial id");
        assert_eq!(first.0, 28846391117174914025578208175587329);
        assert_eq!(first.timestamp_micros(), 1563765995880379);
    }

    /// A mark splits the ids given before it from those given after, even within one tick
    /// of the coarse clock (thousands of ids share its time).
    #[test]
    fn a_mark_splits_the_ids_of_one_clock_tick() {
        let ids = MsgIdGen::new("mark@test");
        for _ in 0..50 {
            let before: Vec<MsgId> = (0..1_000).map(|_| ids.next_id()).collect();
            let mark = ids.mark_micros();
            let after: Vec<MsgId> = (0..1_000).map(|_| ids.next_id()).collect();
            assert!(before.iter().all(|id| id.timestamp_micros() < mark));
            assert!(after.iter().all(|id| id.timestamp_micros() >= mark));
            // Two marks in a row still split (nothing between them).
            assert!(ids.mark_micros() >= mark);
        }
    }

    #[test]
    fn acked_table_id_is_from_july_2019() {
        let id = MsgId::decode("Mjg4NDY1NDAxMjczMzcyMjUwMjExOTc1MzY4MDY4MzAwODB").expect("id");
        // 2019-07-01T00:00:00Z .. 2019-08-01T00:00:00Z
        assert!((1_561_939_200..1_564_617_600).contains(&id.timestamp_secs()));
        assert_eq!(
            id.encode(),
            "Mjg4NDY1NDAxMjczMzcyMjUwMjExOTc1MzY4MDY4MzAwODB"
        );
    }

    #[test]
    fn escapes_and_short_tails_round_trip() {
        for v in [
            0u128,
            1,
            9,
            12,
            99,
            123,
            999_999,
            u128::MAX,
            1 << 100,
            61,
            62,
            63,
        ] {
            let id = MsgId(v);
            assert_eq!(MsgId::decode(&id.encode()), Ok(id), "{v}");
        }
        // Decimal digits (0x30..0x39) never yield a 6-bit group above 57, so ids never contain
        // the `9A`..`9C` escapes; the decoder still reads them as EMQX's does.
        assert!(matches!(
            MsgId::decode("9AAA"),
            Err(MsgIdError::NotDecimal(_))
        ));
    }

    #[test]
    fn garbage_is_rejected() {
        assert!(MsgId::decode("").is_err());
        assert!(MsgId::decode("!!").is_err());
        assert!(MsgId::decode("9").is_err());
        assert!(MsgId::decode("QUJD").is_err()); // "ABC": not decimal
    }

    #[test]
    fn generator_is_increasing_and_unique_across_threads() {
        let g = std::sync::Arc::new(MsgIdGen::new("test@node"));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let g = g.clone();
                std::thread::spawn(move || {
                    let mut v = Vec::with_capacity(50_000);
                    for _ in 0..50_000 {
                        v.push(g.next_id());
                    }
                    v
                })
            })
            .collect();
        let mut all = Vec::new();
        for h in handles {
            let v = h.join().expect("thread");
            assert!(v.windows(2).all(|w| w[0] < w[1]), "per-thread order");
            all.extend(v);
        }
        let n = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n);
        let now = now_micros();
        let id = g.next_id();
        assert!(
            id.timestamp_micros() + 1_000_000 > now && id.timestamp_micros() < now + 10_000_000
        );
    }
}
