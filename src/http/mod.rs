//! The HTTP endpoints, on the `--http` listeners:
//! - `GET /metrics` (`metrics`): counters and gauges in the Prometheus text format;
//! - `GET /health` and `GET /health/ready` (here): liveness, and readiness (the store
//!   answers);
//! - the REST API under `/api/v5` (`clients`, `retainer`), JSON, with the paths and shapes
//!   of EMQX's REST API v5 where they fit.
//!
//! Every path but `/health*` requires the bearer token (`listeners.http_token`) once one is
//! set (`token`); `Config::validate` requires one when a listener is not on loopback.

mod clients;
mod json;
mod metrics;
mod retainer;
mod token;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use dynamq_store::store::Store;

use crate::broker::Broker;

/// Serves the endpoints on `listener` until the broker shuts down.
pub(crate) async fn serve(broker: Arc<Broker>, listener: tokio::net::TcpListener) {
    let shutdown = broker.shutdown.clone();
    if let Err(e) = axum::serve(listener, app(broker))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
    {
        tracing::error!("HTTP endpoint stopped: {e}");
    }
}

/// The routes: the protected ones behind the token check, then `/health*`.
fn app(broker: Arc<Broker>) -> Router {
    let protected = Router::new()
        .route("/metrics", get(metrics::metrics))
        .route("/api/v5/stats", get(clients::stats))
        .route("/api/v5/clients", get(clients::list))
        .route(
            "/api/v5/clients/{clientid}",
            get(clients::get_one).delete(clients::kick),
        )
        .route("/api/v5/subscriptions", get(clients::subscriptions))
        .route("/api/v5/topics", get(clients::topics))
        .route("/api/v5/retainer/messages", get(retainer::list))
        .route(
            "/api/v5/retainer/message/{*topic}",
            get(retainer::get_one).delete(retainer::delete),
        )
        .route("/api/v5/publish", post(retainer::publish))
        .route_layer(middleware::from_fn_with_state(
            broker.clone(),
            token::require,
        ));
    Router::new()
        .route("/health", get(live))
        .route("/health/ready", get(ready))
        .merge(protected)
        .with_state(broker)
}

/// Binds the HTTP listeners (before any client is accepted) and returns them.
pub(crate) async fn bind(addrs: &[SocketAddr]) -> std::io::Result<Vec<tokio::net::TcpListener>> {
    let mut out = Vec::with_capacity(addrs.len());
    for addr in addrs {
        out.push(crate::transport::tcp::bind(*addr).await?);
    }
    Ok(out)
}

/// Liveness: the process answers.
async fn live() -> &'static str {
    "live"
}

/// How long the readiness probe waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: 200 once the broker serves (the listeners are up before this one answers)
/// and its store answers a read (one client lookup); without a store, 200.
async fn ready(State(broker): State<Arc<Broker>>) -> impl IntoResponse {
    let Some(actions) = broker.persistence.actions() else {
        return (StatusCode::OK, "ready".to_string());
    };
    let probe = Box::pin(actions.store().client("$dynamq/ready-probe"));
    match tokio::time::timeout(READY_TIMEOUT, probe).await {
        Ok(Ok(_)) => (StatusCode::OK, "ready".to_string()),
        Ok(Err(e)) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store not ready: {e}"),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("store not ready: no answer within {READY_TIMEOUT:?}"),
        ),
    }
}
