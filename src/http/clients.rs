//! The REST API on clients and what they subscribe to: `/api/v5/stats`,
//! `/api/v5/clients` (list, get one, `DELETE` kicks), `/api/v5/subscriptions` and
//! `/api/v5/topics`. Everything is read from the session registry at the time of the
//! request; lists are sorted (client id, then topic) so that pages are stable.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dynamq_codec::topic;
use serde_json::{Value, json};

use super::json::{self, Query};
use crate::broker::Broker;
use crate::message::ClientId;
use crate::session::{ADMIN_CONN, Session};

/// How long a kick waits for the kicked connection to hand its session back.
const KICK_WAIT: Duration = Duration::from_secs(5);

/// The sessions, sorted by client id.
fn sessions(broker: &Broker) -> Vec<Arc<Session>> {
    let mut all = broker.registry.all();
    all.sort_unstable_by(|a, b| a.client_id.cmp(&b.client_id));
    all
}

/// `GET /api/v5/stats`: EMQX's `stats` names, plus the message counters.
pub(super) async fn stats(State(broker): State<Arc<Broker>>) -> Response {
    let all = broker.registry.all();
    let online = all.iter().filter(|s| s.is_online()).count();
    let (mut subs, mut shared) = (0usize, 0usize);
    let mut topics = BTreeSet::new();
    for s in &all {
        s.with_state(|st| {
            for filter in st.subscriptions.keys() {
                subs += 1;
                shared += usize::from(topic::is_shared(filter));
                topics.insert(route_of(filter).to_string());
            }
        });
    }
    let m = &broker.metrics;
    let body = json!({
        "connections.count": online,
        "live_connections.count": online,
        "sessions.count": all.len(),
        "subscriptions.count": subs,
        "subscriptions.shared.count": shared,
        "topics.count": topics.len(),
        "retained.count": broker.router.retained.len(),
        "messages.received": m.messages_received.load(Ordering::Relaxed),
        "messages.sent": m.messages_sent.load(Ordering::Relaxed),
        "bytes.received": m.bytes_received.load(Ordering::Relaxed),
        "bytes.sent": m.bytes_sent.load(Ordering::Relaxed),
    });
    json::reply(StatusCode::OK, &body)
}

/// One client in EMQX's field names (those dynamq knows).
fn client_json(broker: &Broker, s: &Session) -> Value {
    let (subscriptions, expiry) = s.with_state(|st| (st.subscriptions.len(), st.expiry_interval));
    json!({
        "clientid": s.client_id.as_str(),
        "node": broker.config.node_name,
        "connected": s.is_online(),
        "subscriptions_cnt": subscriptions,
        "mqueue_len": s.queued_len(),
        "mqueue_max": broker.config.mqtt.max_queued_messages,
        // u32::MAX: the session never expires.
        "expiry_interval": expiry,
    })
}

/// `GET /api/v5/clients?like_clientid=PREFIX&page=&limit=`: sessions, connected or not.
pub(super) async fn list(State(broker): State<Arc<Broker>>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let page = match q.page() {
        Ok(p) => p,
        Err(m) => return json::bad_request(&m),
    };
    let like = q.get("like_clientid").unwrap_or("");
    let items = sessions(&broker)
        .iter()
        .filter(|s| s.client_id.as_str().starts_with(like))
        .map(|s| client_json(&broker, s))
        .collect();
    json::reply(StatusCode::OK, &page.of(items))
}

fn client_not_found() -> Response {
    json::error(
        StatusCode::NOT_FOUND,
        "CLIENTID_NOT_FOUND",
        "Client ID not found",
    )
}

/// `GET /api/v5/clients/{clientid}`.
pub(super) async fn get_one(State(broker): State<Arc<Broker>>, Path(id): Path<String>) -> Response {
    match broker.registry.get(&ClientId::new(&id)) {
        Some(s) => json::reply(StatusCode::OK, &client_json(&broker, &s)),
        None => client_not_found(),
    }
}

/// `DELETE /api/v5/clients/{clientid}`: ends the client's connection (a v5 client gets
/// DISCONNECT 0x98 Administrative action) and its session, as EMQX's kick-out: 204, or
/// 404 if there is no such session.
pub(super) async fn kick(State(broker): State<Arc<Broker>>, Path(id): Path<String>) -> Response {
    if kick_client(&broker, &ClientId::new(&id)).await {
        tracing::info!(client = %id, "client kicked through the HTTP API");
        StatusCode::NO_CONTENT.into_response()
    } else {
        client_not_found()
    }
}

/// Claims the session as a takeover does, with an `ADMIN_CONN` id: the connection that
/// owns it sees it lost it, tells a v5 client 0x98 (`Session::kicked`), hands its state
/// back and closes (its will is published, as after a takeover); then the session ends.
/// False if there is no session.
async fn kick_client(broker: &Broker, id: &ClientId) -> bool {
    loop {
        let Some(session) = broker.registry.get(id) else {
            return false;
        };
        let conn = ADMIN_CONN | broker.next_conn_id();
        let prev = match session.claim(conn) {
            Ok(prev) => prev,
            // Ended between the lookup and the claim: look again.
            Err(_) => {
                tokio::task::yield_now().await;
                continue;
            }
        };
        if prev.is_some() {
            session.notify.notify_one();
            if let Some(slot) = session.parked() {
                broker.parker.wake(slot);
            }
        }
        if !session.wait_handover(conn, KICK_WAIT).await {
            tracing::warn!(client = %id, "kicked connection did not finish within {KICK_WAIT:?}");
        }
        broker.end_session(&session).await;
        session.release(conn);
        broker.metrics.inc_clients_kicked();
        return true;
    }
}

/// The filter a subscription routes on: a shared one's filter without `$share/GROUP/`.
fn route_of(filter: &str) -> &str {
    topic::parse_shared(filter).map_or(filter, |(_, real)| real)
}

/// `GET /api/v5/subscriptions?clientid=&topic=&page=&limit=`: every subscription, with its
/// options.
pub(super) async fn subscriptions(
    State(broker): State<Arc<Broker>>,
    RawQuery(q): RawQuery,
) -> Response {
    let q = Query::parse(q.as_deref());
    let page = match q.page() {
        Ok(p) => p,
        Err(m) => return json::bad_request(&m),
    };
    let (want_client, want_topic) = (q.get("clientid"), q.get("topic"));
    let mut items = Vec::new();
    for s in sessions(&broker) {
        if want_client.is_some_and(|c| c != s.client_id.as_str()) {
            continue;
        }
        let mut subs: Vec<Value> = s.with_state(|st| {
            st.subscriptions
                .iter()
                .filter(|(filter, _)| want_topic.is_none_or(|t| t == filter.as_str()))
                .map(|(filter, sub)| {
                    json!({
                        "clientid": s.client_id.as_str(),
                        "topic": filter,
                        "qos": sub.options.qos as u8,
                        "nl": u8::from(sub.options.no_local),
                        "rap": u8::from(sub.options.retain_as_published),
                        "rh": sub.options.retain_handling as u8,
                        "node": broker.config.node_name,
                    })
                })
                .collect()
        });
        subs.sort_unstable_by(|a, b| a["topic"].as_str().cmp(&b["topic"].as_str()));
        items.extend(subs);
    }
    json::reply(StatusCode::OK, &page.of(items))
}

/// `GET /api/v5/topics?page=&limit=`: the routes, EMQX's way: each topic filter with at
/// least one subscriber (a shared subscription's without its `$share/GROUP/`).
pub(super) async fn topics(State(broker): State<Arc<Broker>>, RawQuery(q): RawQuery) -> Response {
    let q = Query::parse(q.as_deref());
    let page = match q.page() {
        Ok(p) => p,
        Err(m) => return json::bad_request(&m),
    };
    let mut routes = BTreeSet::new();
    for s in broker.registry.all() {
        s.with_state(|st| {
            for filter in st.subscriptions.keys() {
                routes.insert(route_of(filter).to_string());
            }
        });
    }
    let items = routes
        .into_iter()
        .map(|t| json!({"topic": t, "node": broker.config.node_name}))
        .collect();
    json::reply(StatusCode::OK, &page.of(items))
}
