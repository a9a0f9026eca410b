//! Starting and stopping the broker: bind every listener, accept until shutdown, then stop
//! accepting, tell v5 clients (DISCONNECT 0x8B), and wait for connections to finish within a
//! deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::broker::Broker;
use crate::connection;
use crate::transport::{tcp, ws};

/// The addresses actually bound (useful with port 0).
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub tcp: Vec<SocketAddr>,
    pub ws: Vec<SocketAddr>,
}

/// Binds every configured listener and starts accepting. Returns once all are bound.
pub async fn start(broker: &Arc<Broker>) -> std::io::Result<Bound> {
    let mut bound = Bound::default();
    for addr in &broker.config.listeners.tcp {
        let l = tcp::bind(*addr).await?;
        let local = l.local_addr()?;
        tracing::info!("MQTT over TCP on {local}");
        bound.tcp.push(local);
        broker
            .tasks
            .spawn(tcp::accept_loop(broker.clone(), l, serve_tcp));
    }
    for addr in &broker.config.listeners.ws {
        let l = tcp::bind(*addr).await?;
        let local = l.local_addr()?;
        tracing::info!(
            "MQTT over WebSocket on ws://{local}{}",
            broker.config.listeners.ws_path
        );
        bound.ws.push(local);
        broker
            .tasks
            .spawn(tcp::accept_loop(broker.clone(), l, serve_ws));
    }
    Ok(bound)
}

async fn serve_tcp(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    connection::serve(broker, stream, peer.to_string()).await;
}

async fn serve_ws(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    let path = broker.config.listeners.ws_path.clone();
    match ws::accept(stream, &path, broker.config.mqtt.max_packet_size).await {
        Ok(ws) => connection::serve(broker, ws, format!("ws://{peer}")).await,
        Err(e) => tracing::info!(peer = %peer, "WebSocket handshake failed: {e}"),
    }
}

/// Stops the broker: connections see the shutdown token, send v5 clients DISCONNECT 0x8B
/// and end; waits up to `deadline` for them.
pub async fn shutdown(broker: &Arc<Broker>, deadline: Duration) {
    broker.shutdown.cancel();
    broker.tasks.close();
    if tokio::time::timeout(deadline, broker.tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} tasks still running after {deadline:?}; exiting anyway",
            broker.tasks.len()
        );
    }
    // Writes still queued for the store go out now; with the store unreachable they would
    // wait forever, so the wait is bounded and what is left is reported.
    if tokio::time::timeout(STORE_FLUSH_DEADLINE, broker.hooks.flush())
        .await
        .is_err()
    {
        let pending = broker.hooks.stats().map_or(0, |s| s.writer.pending);
        tracing::error!(
            pending,
            "store writes not durable after {STORE_FLUSH_DEADLINE:?}; exiting without them"
        );
    }
}

/// How long shutdown waits for the store to take the last writes.
const STORE_FLUSH_DEADLINE: Duration = Duration::from_secs(10);
