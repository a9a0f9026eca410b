//! The bearer token of the HTTP endpoints (`Authorization: Bearer TOKEN`): compared in
//! constant time, never logged.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::json;
use crate::broker::Broker;

/// Lets the request through if no token is configured or it carries the right one; else
/// 401 with `WWW-Authenticate: Bearer`.
pub(super) async fn require(
    State(broker): State<Arc<Broker>>,
    req: Request,
    next: Next,
) -> Response {
    match &broker.config.listeners.http_token {
        Some(token) if !authorized(req.headers(), token.expose()) => (
            [(header::WWW_AUTHENTICATE, "Bearer")],
            json::error(
                StatusCode::UNAUTHORIZED,
                "BAD_TOKEN",
                "a valid bearer token is required (Authorization: Bearer TOKEN)",
            ),
        )
            .into_response(),
        _ => next.run(req).await,
    }
}

/// True if `headers` carry `Authorization: Bearer <expected>`.
fn authorized(headers: &HeaderMap, expected: &str) -> bool {
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
    else {
        return false;
    };
    // Constant time in the contents (a different length fails at once, which tells only
    // the length).
    given.as_bytes().ct_eq(expected.as_bytes()).into()
}

/// The token of a `Bearer TOKEN` header value (the scheme is case-insensitive).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(auth: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        if let Some(a) = auth {
            h.insert(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn token_checks() {
        assert!(authorized(&headers(Some("Bearer s3cret")), "s3cret"));
        assert!(authorized(&headers(Some("bearer  s3cret ")), "s3cret"));
        assert!(!authorized(&headers(None), "s3cret"));
        assert!(!authorized(&headers(Some("Bearer s3cre")), "s3cret"));
        assert!(!authorized(&headers(Some("Bearer s3cretx")), "s3cret"));
        assert!(!authorized(&headers(Some("Basic s3cret")), "s3cret"));
        assert!(!authorized(&headers(Some("Bearer")), "s3cret"));
        assert!(!authorized(&headers(Some("s3cret")), "s3cret"));
    }
}
