//! Transports: how bytes reach the connection task. TCP as it is; TLS over TCP; WebSocket
//! (over TCP or TLS) as a byte stream of binary frames. Each listener accepts and hands a
//! stream to `connection::serve`.

pub mod tcp;
pub mod tls;
pub mod ws;
