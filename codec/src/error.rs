//! Decode and encode errors.
//!
//! Every protocol violation the decoder detects is a `DecodeError` variant carrying a message
//! that starts with the specification statement it enforces (3.1.1 numbering first, the v5
//! number after it where the two differ; a section sign `§` where the spec states the rule
//! without a statement number) and mapping to the MQTT 5 reason code the broker reports it
//! with. For v3 clients the broker closes the connection, except for the CONNECT errors that
//! have a v3 CONNACK return code (see [`DecodeError::v3_connack_code`]).

use crate::reason::ReasonCode;

/// Why bytes could not be decoded into a packet. "Not enough bytes yet" is not an error: the
/// decoder returns `Ok(None)` for that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The fixed header announces a packet larger than the negotiated maximum. Detected
    /// before the body is buffered.
    #[error("packet of {size} bytes exceeds the maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: u32 },
    /// The bytes cannot be parsed as the packet they claim to be (v5 "Malformed Packet").
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// The packet parses but contains data the protocol does not allow (v5 "Protocol Error").
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    /// CONNECT names a protocol or level this codec does not speak; v3 CONNACK return code 1.
    #[error("unsupported protocol: {0}")]
    UnsupportedProtocol(&'static str),
    /// CONNECT carries a client identifier the protocol does not allow; v3 CONNACK return
    /// code 2.
    #[error("client identifier not valid: {0}")]
    ClientIdNotValid(&'static str),
    /// A topic name (PUBLISH or will topic) is not a valid topic name.
    #[error("topic name invalid: {0}")]
    TopicNameInvalid(&'static str),
    /// A PUBLISH topic alias is not allowed (0).
    #[error("topic alias invalid: {0}")]
    TopicAliasInvalid(&'static str),
}

impl DecodeError {
    /// The MQTT 5 reason code to report this error with (CONNACK before the session exists,
    /// DISCONNECT after).
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            DecodeError::PacketTooLarge { .. } => ReasonCode::PacketTooLarge,
            DecodeError::Malformed(_) => ReasonCode::MalformedPacket,
            DecodeError::Protocol(_) => ReasonCode::ProtocolError,
            DecodeError::UnsupportedProtocol(_) => ReasonCode::UnsupportedProtocolVersion,
            DecodeError::ClientIdNotValid(_) => ReasonCode::ClientIdentifierNotValid,
            DecodeError::TopicNameInvalid(_) => ReasonCode::TopicNameInvalid,
            DecodeError::TopicAliasInvalid(_) => ReasonCode::TopicAliasInvalid,
        }
    }

    /// The v3.1/3.1.1 CONNACK return code to send before closing, for the CONNECT errors
    /// that have one [MQTT-3.1.2-2] [MQTT-3.1.3-8]; `None` means close without a CONNACK
    /// [MQTT-4.8.0-1].
    pub fn v3_connack_code(&self) -> Option<u8> {
        match self {
            DecodeError::UnsupportedProtocol(_) => Some(1),
            DecodeError::ClientIdNotValid(_) => Some(2),
            _ => None,
        }
    }

    /// The statement or explanation carried by the error.
    pub fn message(&self) -> &'static str {
        match self {
            DecodeError::PacketTooLarge { .. } => {
                "[§3.2.2.3.6] packet exceeds the maximum packet size"
            }
            DecodeError::Malformed(m)
            | DecodeError::Protocol(m)
            | DecodeError::UnsupportedProtocol(m)
            | DecodeError::ClientIdNotValid(m)
            | DecodeError::TopicNameInvalid(m)
            | DecodeError::TopicAliasInvalid(m) => m,
        }
    }
}

/// Why a packet could not be encoded. The encoder does not judge whether a packet is wise to
/// send (a test client may want to send a packet id of 0); it only refuses what the wire
/// format cannot represent or what exceeds a size limit.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The remaining length would exceed 268,435,455, the largest variable byte integer.
    #[error("packet remaining length {0} exceeds 268,435,455")]
    RemainingLengthTooLarge(usize),
    /// The whole packet would exceed the receiver's maximum packet size; nothing was written.
    #[error("packet of {size} bytes exceeds the receiver's maximum packet size of {max} bytes")]
    PacketTooLarge { size: usize, max: u32 },
    /// A string or binary field is longer than 65,535 bytes.
    #[error("a string or binary field exceeds 65,535 bytes")]
    FieldTooLong,
    /// A value has no wire representation (e.g. a QoS>0 PUBLISH without packet id, a
    /// subscription identifier above 268,435,455, AUTH in v3).
    #[error("cannot encode: {0}")]
    Unrepresentable(&'static str),
}
