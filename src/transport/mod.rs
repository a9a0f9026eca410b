//! Transports: how bytes reach the connection task. TCP as it is; TLS over TCP; WebSocket
//! (over TCP or TLS) as a byte stream of binary frames. Each listener accepts and hands a
//! stream to `connection::serve`.

pub(crate) mod tcp;
pub(crate) mod tls;
pub(crate) mod ws;

use tokio::io::{AsyncRead, AsyncWrite};

/// A stream a connection runs on. Only a plain TCP socket can hibernate (see
/// `connection::hibernate`): the others hold protocol state (TLS records, WebSocket frames)
/// that lives in their task.
pub(crate) trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {
    /// The socket itself; only called when `can_hibernate` says this transport can.
    fn into_tcp(self) -> std::io::Result<std::net::TcpStream>
    where
        Self: Sized,
    {
        Err(std::io::ErrorKind::Unsupported.into())
    }

    fn can_hibernate(&self) -> bool {
        false
    }
}

impl Transport for tokio::net::TcpStream {
    fn into_tcp(self) -> std::io::Result<std::net::TcpStream> {
        self.into_std()
    }

    fn can_hibernate(&self) -> bool {
        true
    }
}

impl<S: Transport> Transport for tokio_rustls::server::TlsStream<S> {}

impl<S: Transport> Transport for ws::WsStream<S> {}
