//! Why a connection ended, and what the client is told.

use dynamq_codec::ReasonCode;
use dynamq_codec::error::DecodeError;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    /// The transport under MQTT refused what the client sent: a WebSocket text frame
    /// [MQTT-6.0.0-1] (or another frame or record it cannot carry). Unlike a plain network
    /// end, it is the client's doing, so it is logged and counted as a violation.
    #[error("invalid data on the transport: {0}")]
    Transport(std::io::Error),
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

    /// A read error: `Transport` for data the transport refused (`InvalidData`), else `Io`.
    pub(crate) fn from_read(e: std::io::Error) -> ConnError {
        if e.kind() == std::io::ErrorKind::InvalidData {
            ConnError::Transport(e)
        } else {
            ConnError::Io(e)
        }
    }

    /// The reason code for a v5 DISCONNECT, if the client should get one.
    pub(crate) fn disconnect_reason(&self) -> Option<ReasonCode> {
        match self {
            // No MQTT packet after a transport violation: the network connection is closed
            // [MQTT-6.0.0-1].
            ConnError::Io(_) | ConnError::Transport(_) | ConnError::ConnectTimeout(_) => None,
            ConnError::Decode(e) => Some(e.reason_code()),
            ConnError::Protocol { reason, .. } => Some(*reason),
            ConnError::KeepAliveTimeout(_) => Some(ReasonCode::KeepAliveTimeout),
            ConnError::SlowConsumer(_) => Some(ReasonCode::QuotaExceeded),
            ConnError::NotStored => Some(ReasonCode::UnspecifiedError),
        }
    }

    /// True for a misbehaving client (logged at warn and counted), false for a network end.
    pub(crate) fn is_violation(&self) -> bool {
        matches!(
            self,
            ConnError::Decode(_) | ConnError::Protocol { .. } | ConnError::Transport(_)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::ConnError;
    use std::io::{Error, ErrorKind};

    #[test]
    fn refused_transport_data_is_a_violation_without_a_disconnect_packet() {
        let e = ConnError::from_read(Error::new(ErrorKind::InvalidData, "text frame"));
        assert!(matches!(e, ConnError::Transport(_)));
        assert!(e.is_violation());
        assert_eq!(e.disconnect_reason(), None);
        let e = ConnError::from_read(Error::from(ErrorKind::ConnectionReset));
        assert!(matches!(e, ConnError::Io(_)));
        assert!(!e.is_violation());
    }
}
