//! What can go wrong with one client connection.
//!
//! A failed client is counted and the first failure is quoted in the summary; it never
//! stops the other clients, so a benchmark always ends with a report.

use dynamq_codec::{DecodeError, EncodeError, ReasonCode};

#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    #[error("connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("malformed packet from the broker: {0}")]
    Decode(#[from] DecodeError),
    #[error("cannot encode: {0}")]
    Encode(#[from] EncodeError),
    #[error("the broker refused the connection: {0:?}")]
    Refused(ReasonCode),
    #[error("the broker refused the subscription: {0:?}")]
    SubscribeRefused(ReasonCode),
    #[error("the broker closed the connection")]
    Closed,
    #[error("unexpected {0} from the broker")]
    Unexpected(&'static str),
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
}
