//! Why a connection ended, and what the client is told.

use dynamq_codec::ReasonCode;
use dynamq_codec::error::DecodeError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// A protocol violation found by the broker (not the codec). The message starts with the
    /// statement it violates.
    #[error("{msg}")]
    Protocol {
        reason: ReasonCode,
        msg: &'static str,
    },
    #[error("keepalive timeout: no packet within 1.5 x {0} s [MQTT-3.1.2-24]")]
    KeepAliveTimeout(u16),
    #[error("no CONNECT within {0} s")]
    ConnectTimeout(u64),
    /// The client's queue stayed full and it took nothing from it for this many ms
    /// (`slow_consumer_timeout_ms`).
    #[error("slow consumer: its full queue saw no progress for {0} ms")]
    SlowConsumer(u64),
    /// A QoS 1/2 message could not be stored (sync durability) and a v3 client cannot be
    /// told otherwise.
    #[error("a QoS 1/2 message could not be stored (store.durability = sync)")]
    NotStored,
}

impl ConnError {
    pub(crate) fn protocol(reason: ReasonCode, msg: &'static str) -> ConnError {
        ConnError::Protocol { reason, msg }
    }

    /// The reason code for a v5 DISCONNECT, if the client should get one.
    pub(crate) fn disconnect_reason(&self) -> Option<ReasonCode> {
        match self {
            ConnError::Io(_) | ConnError::ConnectTimeout(_) => None,
            ConnError::Decode(e) => Some(e.reason_code()),
            ConnError::Protocol { reason, .. } => Some(*reason),
            ConnError::KeepAliveTimeout(_) => Some(ReasonCode::KeepAliveTimeout),
            ConnError::SlowConsumer(_) => Some(ReasonCode::QuotaExceeded),
            ConnError::NotStored => Some(ReasonCode::UnspecifiedError),
        }
    }

    /// True for a misbehaving client (logged at warn and counted), false for a network end.
    pub(crate) fn is_violation(&self) -> bool {
        matches!(self, ConnError::Decode(_) | ConnError::Protocol { .. })
    }
}
