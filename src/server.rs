//! Starting and stopping the broker: bind every listener, accept until shutdown, then stop
//! accepting, tell v5 clients (DISCONNECT 0x8B), and wait for connections to finish within a
//! deadline.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::broker::Broker;
use crate::connection;
use crate::transport::tls::{self, TlsError};
use crate::transport::{tcp, ws};
use tokio_rustls::TlsAcceptor;

/// The addresses actually bound (useful with port 0).
#[derive(Debug, Clone, Default)]
pub struct Bound {
    pub tcp: Vec<SocketAddr>,
    pub ws: Vec<SocketAddr>,
    pub tls: Vec<SocketAddr>,
    pub wss: Vec<SocketAddr>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot load the retained messages from the store")]
    Retained(#[source] dynamq_store::ActionsError),
}

/// Loads the retained messages the store keeps, binds every configured listener, then starts
/// accepting on all of them: a listener that cannot bind stops the start before any client
/// is accepted.
pub async fn start(broker: &Arc<Broker>) -> Result<Bound, StartError> {
    let retained = broker
        .persistence
        .retained_messages()
        .await
        .map_err(StartError::Retained)?;
    for msg in retained.into_iter().flatten() {
        broker.router.retained.set(&msg);
    }
    // In the background: a Scan of mqtt_client must not delay the start, nor the shutdown.
    let b = broker.clone();
    broker.tasks.spawn(async move {
        tokio::select! {
            _ = b.persistence.expire_sessions() => {}
            _ = b.shutdown.cancelled() => {}
        }
    });
    let l = &broker.config.listeners;
    let t = &broker.config.tls;
    let acceptor = match (&t.cert_file, &t.key_file) {
        (Some(cert), Some(key)) if !l.tls.is_empty() || !l.wss.is_empty() => {
            Some(tls::acceptor(tls::TlsFiles {
                cert,
                key,
                client_ca: t.ca_file.as_deref(),
            })?)
        }
        _ => None,
    };
    let http = crate::http::bind(&l.http).await?;
    let mut listeners = Vec::new();
    for (addrs, kind) in [
        (&l.tcp, Kind::Tcp),
        (&l.ws, Kind::Ws),
        (&l.tls, Kind::Tls),
        (&l.wss, Kind::Wss),
    ] {
        for addr in addrs {
            listeners.push((tcp::bind(*addr).await?, kind));
        }
    }
    let mut bound = Bound::default();
    let sys_interval = broker.config.mqtt.sys_interval;
    if sys_interval > 0 {
        broker.tasks.spawn(crate::sys::run(
            broker.clone(),
            Duration::from_secs(sys_interval),
        ));
    }
    for listener in http {
        let token = if broker.config.listeners.http_token.is_some() {
            "token required but on /health"
        } else {
            "no token"
        };
        tracing::info!(
            "HTTP on http://{}: /metrics, /health, /api/v5 ({token})",
            listener.local_addr()?
        );
        broker
            .tasks
            .spawn(crate::http::serve(broker.clone(), listener));
    }
    let path = &l.ws_path;
    for (listener, kind) in listeners {
        let local = listener.local_addr()?;
        let b = broker.clone();
        match (kind, acceptor.clone()) {
            (Kind::Tcp, _) => {
                tracing::info!("MQTT over TCP on {local}");
                bound.tcp.push(local);
                broker.tasks.spawn(tcp::accept_loop(b, listener, serve_tcp));
            }
            (Kind::Ws, _) => {
                tracing::info!("MQTT over WebSocket on ws://{local}{path}");
                bound.ws.push(local);
                broker.tasks.spawn(tcp::accept_loop(b, listener, serve_ws));
            }
            (Kind::Tls, Some(acc)) => {
                tracing::info!("MQTT over TLS on {local}{}", client_certs(broker));
                bound.tls.push(local);
                broker
                    .tasks
                    .spawn(tcp::accept_loop(b, listener, move |b, s, p| {
                        serve_tls(b, s, p, acc.clone())
                    }));
            }
            (Kind::Wss, Some(acc)) => {
                tracing::info!(
                    "MQTT over WebSocket over TLS on wss://{local}{path}{}",
                    client_certs(broker)
                );
                bound.wss.push(local);
                broker
                    .tasks
                    .spawn(tcp::accept_loop(b, listener, move |b, s, p| {
                        serve_wss(b, s, p, acc.clone())
                    }));
            }
            // validate() requires the files for these listeners, so the acceptor exists.
            (Kind::Tls | Kind::Wss, None) => {}
        }
    }
    Ok(bound)
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Tcp,
    Ws,
    Tls,
    Wss,
}

/// What the start-up line of a TLS listener says about client certificates.
fn client_certs(broker: &Broker) -> &'static str {
    match (&broker.config.tls.ca_file, broker.config.tls.cn_as_username) {
        (None, _) => "",
        (Some(_), false) => " (client certificate required)",
        (Some(_), true) => " (client certificate required; its CN is the user name)",
    }
}

async fn serve_tcp(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    connection::serve(broker, stream, peer.to_string(), None).await;
}

async fn serve_ws(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr) {
    let path = broker.config.listeners.ws_path.clone();
    match ws::accept(stream, &path, broker.config.mqtt.max_packet_size).await {
        Ok(ws) => connection::serve(broker, ws, format!("ws://{peer}"), None).await,
        Err(e) => tracing::info!(peer = %peer, "WebSocket handshake failed: {e}"),
    }
}

async fn serve_tls(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr, acc: TlsAcceptor) {
    let Some((tls, identity)) = tls_handshake(&broker, &acc, stream, peer).await else {
        return;
    };
    connection::serve(broker, tls, format!("tls://{peer}"), identity).await;
}

async fn serve_wss(broker: Arc<Broker>, stream: TcpStream, peer: SocketAddr, acc: TlsAcceptor) {
    let Some((tls, identity)) = tls_handshake(&broker, &acc, stream, peer).await else {
        return;
    };
    let path = broker.config.listeners.ws_path.clone();
    match ws::accept(tls, &path, broker.config.mqtt.max_packet_size).await {
        Ok(ws) => connection::serve(broker, ws, format!("wss://{peer}"), identity).await,
        Err(e) => tracing::info!(peer = %peer, "WebSocket handshake failed: {e}"),
    }
}

/// The TLS handshake, and with `tls.cn_as_username` the client certificate's CN (the
/// identity the connection authenticates as). A failure (no client certificate, or one that
/// does not chain to `tls.ca_file`, or not TLS at all) is counted and logged at most once a
/// second with the peer's address; so is a verified certificate without a CN when the CN is
/// to be the user name (the connection is then closed: it has no identity to act as).
async fn tls_handshake(
    broker: &Broker,
    acc: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
) -> Option<(tokio_rustls::server::TlsStream<TcpStream>, Option<Arc<str>>)> {
    let failed = |why: &dyn std::fmt::Display| {
        broker.metrics.inc_tls_handshake_failures();
        if let Some(suppressed) = broker.tls_failure_log.admit() {
            tracing::info!(peer = %peer, suppressed, "TLS handshake failed: {why}");
        }
    };
    let tls = match tls::accept(acc, stream).await {
        Ok(tls) => tls,
        Err(e) => {
            failed(&e);
            return None;
        }
    };
    if !broker.config.tls.cn_as_username {
        return Some((tls, None));
    }
    match tls::peer_common_name(&tls) {
        Some(cn) => Some((tls, Some(cn))),
        None => {
            failed(&"the client certificate has no subject CN to use as the user name");
            None
        }
    }
}

/// Stops the broker: connections see the shutdown token, send v5 clients DISCONNECT 0x8B
/// and end; waits up to `deadline` for them.
pub async fn shutdown(broker: &Arc<Broker>, deadline: Duration) {
    // Hibernating connections get their tasks back, to say goodbye like the others.
    broker.begin_shutdown();
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
    if tokio::time::timeout(STORE_FLUSH_DEADLINE, broker.persistence.flush())
        .await
        .is_err()
    {
        let pending = broker.persistence.stats().map_or(0, |s| s.writer.pending);
        tracing::error!(
            pending,
            "store writes not durable after {STORE_FLUSH_DEADLINE:?}; exiting without them"
        );
    }
}

/// How long shutdown waits for the store to take the last writes.
const STORE_FLUSH_DEADLINE: Duration = Duration::from_secs(10);
