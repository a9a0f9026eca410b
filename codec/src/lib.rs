//! dynamq-codec: MQTT 3.1, 3.1.1 and 5.0 packets to and from bytes, with no I/O.
//!
//! - `packet`: the packet structs (one per control packet, shared by all versions).
//! - `reason`: MQTT 5 reason codes, their meaning per packet, and their v3 equivalents.
//! - `decode`: check-then-parse decoding; the maximum packet size is checked from the fixed
//!   header before the body is buffered; payloads are slices of the read buffer.
//! - `encode`: encoding of every packet for a given protocol version, straight into the
//!   output buffer.
//! - `error`: decode/encode errors, each naming the spec statement it enforces and the
//!   reason code it maps to.
//! - `topic`: topic name and topic filter validation, matching, shared subscriptions;
//!   `topic_map`: a map from topics to values with wildcard lookup (retained messages).
//! - `properties` and `wire` (private): MQTT 5 properties and the basic data types, shared
//!   by decoding and encoding.
//!
//! ```
//! use bytes::BytesMut;
//! use dynamq_codec::{ConnAck, Decoder, Packet, ReasonCode, encode};
//!
//! // Server side: the first packet must be CONNECT, which fixes the protocol version.
//! let mut decoder = Decoder::new(1 << 20);
//! let mut read_buf = BytesMut::from(&b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"[..]);
//! let Some(Packet::Connect(connect)) = decoder.decode(&mut read_buf)? else { panic!() };
//! assert_eq!(connect.keep_alive, 60);
//! assert!(read_buf.is_empty());
//!
//! let protocol = decoder.protocol().expect("set by CONNECT");
//! let ack = ConnAck {
//!     session_present: false,
//!     reason_code: ReasonCode::Success,
//!     properties: Default::default(),
//! };
//! let mut write_buf = BytesMut::new();
//! encode(&Packet::ConnAck(ack), protocol, &mut write_buf)?;
//! assert_eq!(&write_buf[..], b"\x20\x02\x00\x00");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod decode;
pub mod encode;
pub mod error;
pub mod packet;
mod properties;
pub mod reason;
pub mod topic;
pub mod topic_map;
mod wire;

pub use decode::{Decoder, read_fixed_header};
pub use encode::{
    encode, encode_publish, encode_publish_parts, encode_publish_with_max, encode_with_max,
    encoded_len,
};
pub use error::{DecodeError, EncodeError};
pub use packet::*;
pub use reason::{ReasonCode, ReasonContext};
