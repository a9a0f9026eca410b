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
