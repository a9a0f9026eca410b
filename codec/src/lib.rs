//! dynamq-codec: MQTT 3.1, 3.1.1 and 5.0 packets to and from bytes, with no I/O.
//!
//! - `packet`: the packet structs (one per control packet, shared by all versions).
//! - `reason`: MQTT 5 reason codes and their v3 equivalents.
//! - `decode`: check-then-parse decoding; the maximum packet size is checked from the fixed
//!   header before the body is buffered; payloads are slices of the read buffer.
//! - `encode`: encoding of every packet for a given protocol version.
//! - `error`: decode/encode errors, each naming the spec statement it enforces and the
//!   reason code it maps to.
//! - `topic`: topic name and topic filter validation.

pub mod packet;
pub mod reason;

pub use packet::*;
pub use reason::ReasonCode;
