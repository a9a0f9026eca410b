//! TCP listeners with an accept loop that survives transient errors (e.g. out of file
//! descriptors) by backing off instead of exiting.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};

use crate::broker::Broker;

/// Binds `addr`, naming it in the error.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("cannot listen on {addr}: {e}")))
}

/// TCP keepalive probes after `secs` of silence (then every `secs / 4`, at least 1 s, 4
/// probes): a half-open connection whose client vanished without a FIN (power loss, a NAT
/// that forgot it) is found and closed even when its MQTT keepalive is 0. 0: off.
fn set_tcp_keepalive(stream: &TcpStream, secs: u64) {
    if secs == 0 {
        return;
    }
    let ka = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(secs))
        .with_interval(Duration::from_secs((secs / 4).max(1)))
        .with_retries(4);
    if let Err(e) = socket2::SockRef::from(stream).set_tcp_keepalive(&ka) {
        tracing::debug!("cannot set TCP keepalive: {e}");
    }
}

/// Accepts connections until shutdown, calling `handle` for each.
pub(crate) async fn accept_loop<F, Fut>(broker: Arc<Broker>, listener: TcpListener, handle: F)
where
    F: Fn(Arc<Broker>, TcpStream, SocketAddr) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut backoff = Duration::from_millis(5);
    loop {
        let accepted = tokio::select! {
            _ = broker.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                backoff = Duration::from_millis(5);
                // Small packets must not wait for Nagle's algorithm.
                let _ = stream.set_nodelay(true);
                set_tcp_keepalive(&stream, broker.config.mqtt.tcp_keepalive_secs);
                broker.tasks.spawn(handle(broker.clone(), stream, peer));
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        }
    }
}
