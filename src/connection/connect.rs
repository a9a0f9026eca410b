//! The rules of CONNECT: validate it, take over or create the session, the CONNACK that
//! accepts or refuses it. (`handshake` runs them in order.)

use std::sync::Arc;
use std::time::Duration;

use dynamq_codec::{ConnAck, ConnAckProperties, Connect, Protocol, ReasonCode};

use crate::auth::Refusal;
use crate::broker::Broker;
use crate::message::ClientId;
use crate::session::Session;

/// What the broker decided about a CONNECT.
pub(super) struct Accepted {
    pub client_id: ClientId,
    /// Set when the broker chose the id [MQTT-3.1.3-6] (v5: told in Assigned Client
    /// Identifier).
    pub assigned: bool,
    /// The keepalive in force (capped by `max_keepalive` for v5 clients).
    pub keep_alive: u16,
    /// Set when the cap changed what the client asked for (v5: Server Keep Alive).
    pub server_keep_alive: Option<u16>,
    /// Seconds the session outlives the connection; `u32::MAX` never expires.
    pub session_expiry: u32,
    /// v5 Response Information for the CONNACK, when the client asked for it (Request
    /// Response Information 1) and `mqtt.response_information` is set: that prefix and the
    /// client id, a topic root for the client's responses [MQTT-3.1.2-28].
    pub response_information: Option<String>,
}

/// Checks a CONNECT against the spec's rules and the broker's limits. `Err` is the CONNACK
/// reason to refuse with.
pub(super) fn validate(
    broker: &Broker,
    c: &Connect,
) -> Result<Accepted, (ReasonCode, &'static str)> {
    let limits = &broker.config.mqtt;
    if c.protocol.is_v5() && c.properties.authentication_method.is_some() {
        // No enhanced authentication method is supported [MQTT-4.12.0-1].
        return Err((
            ReasonCode::BadAuthenticationMethod,
            "[MQTT-4.12.0-1] unsupported authentication method",
        ));
    }
    let (client_id, assigned) = if c.client_id.is_empty() {
        match c.protocol {
            // 3.1 requires 1 to 23 characters.
            Protocol::V310 => {
                return Err((
                    ReasonCode::ClientIdentifierNotValid,
                    "[MQTT-3.1.3-8] empty client id with MQTT 3.1",
                ));
            }
            Protocol::V311 if !c.clean_start => {
                return Err((
                    ReasonCode::ClientIdentifierNotValid,
                    "[MQTT-3.1.3-8] empty client id with CleanSession 0",
                ));
            }
            _ => (ClientId::new(&assigned_id()), true),
        }
    } else if c.client_id.len() > limits.max_client_id_len {
        return Err((
            ReasonCode::ClientIdentifierNotValid,
            "client id longer than the server allows (mqtt.max_client_id_len)",
        ));
    } else {
        (ClientId::new(&c.client_id), false)
    };

    let mut keep_alive = c.keep_alive;
    let mut server_keep_alive = None;
    let cap = limits.max_keepalive;
    if cap > 0 && (keep_alive == 0 || keep_alive > cap) && c.protocol.is_v5() {
        // v5 clients are told the keepalive to use [MQTT-3.2.2-21]. A v3 client cannot be
        // told, so, as with Mosquitto 2 ("max_keepalive ... only applies to MQTT v5
        // clients"), its own keepalive stands.
        keep_alive = cap;
        server_keep_alive = Some(cap);
    }

    let session_expiry = if c.protocol.is_v5() {
        let asked = c.properties.session_expiry_interval.unwrap_or(0);
        match limits.max_session_expiry {
            0 => asked,
            max => asked.min(max),
        }
    } else if c.clean_start {
        0
    } else {
        // A v3.1.1 persistent session never expires, unless the operator caps it (as
        // Mosquitto's persistent_client_expiration does).
        match limits.max_session_expiry {
            0 => u32::MAX,
            max => max,
        }
    };

    let prefix = &limits.response_information;
    let response_information = (c.protocol.is_v5()
        && c.properties.request_response_information == Some(1)
        && !prefix.is_empty())
    .then(|| format!("{prefix}{client_id}"));

    Ok(Accepted {
        client_id,
        assigned,
        keep_alive,
        server_keep_alive,
        session_expiry,
        response_information,
    })
}

/// Checks the CONNECT's user name and password (`Auth::authenticate`). `Err` is the
/// refusing CONNACK, sent after the delay that repeated failures from the peer's address
/// have earned. Logged with the client id and user name, never the password.
pub(super) async fn authenticate(
    broker: &Broker,
    c: &Connect,
    client_id: &ClientId,
    peer: &str,
) -> Result<(), ConnAck> {
    let user = c.username.as_deref();
    let Err(why) = broker.auth.authenticate(user, c.password.as_deref()).await else {
        return Ok(());
    };
    broker.metrics.inc_connects_refused();
    let (reason, msg) = refusal_reason(why);
    let delay = match why {
        Refusal::BadCredentials => {
            broker.metrics.inc_auth_failures();
            broker.auth.failure_delay(peer)
        }
        Refusal::AnonymousNotAllowed => {
            broker.metrics.inc_auth_anonymous_refused();
            Duration::ZERO
        }
        Refusal::StoreUnavailable => Duration::ZERO,
    };
    tracing::warn!(
        peer,
        client = %client_id,
        user = user.unwrap_or(""),
        delay_ms = delay.as_millis() as u64,
        "CONNECT refused ({:#04x}): {msg}",
        reason.code()
    );
    if !delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = broker.shutdown.cancelled() => {}
        }
    }
    Err(refusal(reason, msg, c.protocol))
}

/// The CONNACK reason for a refused authentication (the connection is then closed
/// [MQTT-3.2.2-5]). Credentials that are not accepted get "bad user name or password"
/// (v3.1.1 return code 4, v5 0x86), as EMQX answers and as a client can tell apart from a
/// refusal of who it is; an anonymous client where none is allowed gets "not authorized"
/// (5, 0x87). Mosquitto 2.0 answers 5 / 0x87 to both. A user store that cannot answer gets
/// "server unavailable" (3, 0x88): the client may try again, and is never let in unchecked.
fn refusal_reason(r: Refusal) -> (ReasonCode, &'static str) {
    match r {
        Refusal::BadCredentials => (
            ReasonCode::BadUserNameOrPassword,
            "bad user name or password",
        ),
        Refusal::AnonymousNotAllowed => (
            ReasonCode::NotAuthorized,
            "anonymous clients are not allowed (no user name)",
        ),
        Refusal::StoreUnavailable => (
            ReasonCode::ServerUnavailable,
            "the user store is unavailable",
        ),
    }
}

/// A client id for a client that sent none.
fn assigned_id() -> String {
    format!("dynamq-{:016x}", rand::random::<u64>())
}

/// Becomes the owner of the client's session: kicks any connection that holds it and waits
/// for it to hand back its state [MQTT-3.1.4-3]; with Clean Start, ends the old session and
/// starts a new one [MQTT-3.1.2-4]. A session whose expiry interval is 0 lasts only as
/// long as its connection [MQTT-3.1.2-10] (3.1.1: CleanSession=1), so one found here is
/// ending (its connection is closing, or was just taken over): it is ended too, and a new one
/// started (the store is then not asked for it, see `Persistence::stored_session`). Returns
/// the session, whose in-flight state the connection resumes, and whether it existed before
/// (Session Present).
pub(super) async fn attach(
    broker: &Broker,
    client_id: &ClientId,
    clean_start: bool,
    conn_id: u64,
) -> (Arc<Session>, bool) {
    loop {
        let (session, created) = broker.registry.get_or_create(client_id);
        let prev = match session.claim(conn_id) {
            Ok(prev) => prev,
            Err(_ended) => {
                // Ended between the lookup and the claim; look again.
                tokio::task::yield_now().await;
                continue;
            }
        };
        if prev.is_some() {
            broker.metrics.inc_takeovers();
            // The previous connection sees that it lost the session when woken, hands its
            // in-flight state back and closes [MQTT-3.1.4-3].
            session.notify.notify_one();
            if let Some(slot) = session.parked() {
                broker.parker.wake(slot);
            }
        }
        // Every connection that claimed the session before this one hands its in-flight
        // state back first (the one taken over now, and any still closing from an earlier
        // takeover).
        if !session.wait_handover(conn_id, Duration::from_secs(5)).await {
            tracing::warn!(client = %client_id, "previous connection did not finish within 5 s of takeover");
        }
        // A will waiting for its delay is cancelled by the client's return [MQTT-3.1.3-9].
        session.with_state(|st| {
            if let Some(w) = st.pending_will.take() {
                w.cancel.cancel();
            }
        });
        let ending = session.with_state(|st| st.expiry_interval) == 0;
        if (clean_start || ending) && !created {
            broker.end_session(&session).await;
            session.release(conn_id);
            continue;
        }
        return (session, !created);
    }
}

/// The CONNACK for an accepted CONNECT.
pub(super) fn connack(broker: &Broker, protocol: Protocol, a: &Accepted, present: bool) -> ConnAck {
    let limits = &broker.config.mqtt;
    let mut properties = ConnAckProperties::default();
    if protocol.is_v5() {
        properties.receive_maximum = Some(limits.receive_maximum);
        properties.maximum_packet_size = Some(limits.max_packet_size);
        properties.topic_alias_maximum = Some(limits.topic_alias_maximum);
        properties.retain_available = Some(1);
        properties.wildcard_subscription_available = Some(1);
        properties.subscription_identifiers_available = Some(1);
        properties.shared_subscription_available = Some(1);
        if a.assigned {
            properties.assigned_client_identifier = Some(a.client_id.to_string());
        }
        properties.server_keep_alive = a.server_keep_alive;
        properties.response_information = a.response_information.clone();
        if limits.max_session_expiry > 0 && a.session_expiry != u32::MAX {
            properties.session_expiry_interval = Some(a.session_expiry);
        }
    }
    ConnAck {
        session_present: present,
        reason_code: ReasonCode::Success,
        properties,
    }
}

/// The CONNACK refusing a CONNECT; Session Present is 0 [MQTT-3.2.2-6].
pub(super) fn refusal(reason: ReasonCode, msg: &str, protocol: Protocol) -> ConnAck {
    let mut properties = ConnAckProperties::default();
    if protocol.is_v5() {
        properties.reason_string = Some(msg.to_string());
    }
    ConnAck {
        session_present: false,
        reason_code: reason,
        properties,
    }
}
