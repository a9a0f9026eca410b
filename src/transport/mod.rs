//! Transports: how bytes reach the connection task. TCP as it is; WebSocket as a byte stream
//! of binary frames. Each listener accepts and hands a stream to `connection::serve`.

pub mod tcp;
pub mod ws;
