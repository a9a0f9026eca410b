//! Hook events, the functions (actions) that can be bound to them, and a hook binding.
//! Shared by the tutorial-format parser ([`crate::backend_conf`]) and the action logic.

use std::fmt;
use std::time::Duration;

/// A broker event a hook can be bound to (EMQX's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookEvent {
    ClientConnected,
    ClientDisconnected,
    SessionCreated,
    SessionSubscribed,
    SessionUnsubscribed,
    MessagePublish,
    MessageAcked,
}

impl HookEvent {
    pub const ALL: [HookEvent; 7] = [
        HookEvent::ClientConnected,
        HookEvent::ClientDisconnected,
        HookEvent::SessionCreated,
        HookEvent::SessionSubscribed,
        HookEvent::SessionUnsubscribed,
        HookEvent::MessagePublish,
        HookEvent::MessageAcked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HookEvent::ClientConnected => "client.connected",
            HookEvent::ClientDisconnected => "client.disconnected",
            HookEvent::SessionCreated => "session.created",
            HookEvent::SessionSubscribed => "session.subscribed",
            HookEvent::SessionUnsubscribed => "session.unsubscribed",
            HookEvent::MessagePublish => "message.publish",
            HookEvent::MessageAcked => "message.acked",
        }
    }

    pub fn from_name(name: &str) -> Option<HookEvent> {
        HookEvent::ALL.into_iter().find(|e| e.name() == name)
    }
}

impl fmt::Display for HookEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An action (EMQX's "function"). See DESIGN.md "The actions" for what each one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookFunction {
    OnClientConnected,
    OnClientDisconnected,
    OnSubscribeLookup,
    OnMessageFetchForQueue,
    OnMessageFetchForPubsub,
    OnRetainLookup,
    OnAckedDelete,
    OnMessagePublish,
    OnMessageStore,
    OnMessageRetain,
    OnRetainDelete,
    OnMessageAckedForQueue,
}

impl HookFunction {
    pub const ALL: [HookFunction; 12] = [
        HookFunction::OnClientConnected,
        HookFunction::OnClientDisconnected,
        HookFunction::OnSubscribeLookup,
        HookFunction::OnMessageFetchForQueue,
        HookFunction::OnMessageFetchForPubsub,
        HookFunction::OnRetainLookup,
        HookFunction::OnAckedDelete,
        HookFunction::OnMessagePublish,
        HookFunction::OnMessageStore,
        HookFunction::OnMessageRetain,
        HookFunction::OnRetainDelete,
        HookFunction::OnMessageAckedForQueue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            HookFunction::OnClientConnected => "on_client_connected",
            HookFunction::OnClientDisconnected => "on_client_disconnected",
            HookFunction::OnSubscribeLookup => "on_subscribe_lookup",
            HookFunction::OnMessageFetchForQueue => "on_message_fetch_for_queue",
            HookFunction::OnMessageFetchForPubsub => "on_message_fetch_for_pubsub",
            HookFunction::OnRetainLookup => "on_retain_lookup",
            HookFunction::OnAckedDelete => "on_acked_delete",
            HookFunction::OnMessagePublish => "on_message_publish",
            HookFunction::OnMessageStore => "on_message_store",
            HookFunction::OnMessageRetain => "on_message_retain",
            HookFunction::OnRetainDelete => "on_retain_delete",
            HookFunction::OnMessageAckedForQueue => "on_message_acked_for_queue",
        }
    }

    pub fn from_name(name: &str) -> Option<HookFunction> {
        HookFunction::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The one event this function runs on.
    pub fn event(self) -> HookEvent {
        match self {
            HookFunction::OnClientConnected => HookEvent::ClientConnected,
            HookFunction::OnClientDisconnected => HookEvent::ClientDisconnected,
            HookFunction::OnSubscribeLookup => HookEvent::SessionCreated,
            HookFunction::OnMessageFetchForQueue
            | HookFunction::OnMessageFetchForPubsub
            | HookFunction::OnRetainLookup => HookEvent::SessionSubscribed,
            HookFunction::OnAckedDelete => HookEvent::SessionUnsubscribed,
            HookFunction::OnMessagePublish
            | HookFunction::OnMessageStore
            | HookFunction::OnMessageRetain
            | HookFunction::OnRetainDelete => HookEvent::MessagePublish,
            HookFunction::OnMessageAckedForQueue => HookEvent::MessageAcked,
        }
    }
}

impl fmt::Display for HookFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One hook: `backend.dynamo.hook.<event>.<seq> = {"topic": ..., "action": {"function": ...},
/// "pool": ..., "offline_opts": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSpec {
    pub event: HookEvent,
    /// The `<n>` of the key; hooks of one event run in this order.
    pub seq: u32,
    /// Runs only for message topics (or, for session events, subscription filters) matching
    /// this filter; `None` = always.
    pub topic_filter: Option<String>,
    pub function: HookFunction,
    pub pool: Option<String>,
    /// Fetch functions: deliver at most this many messages (the newest ones) per fetch.
    pub max_returned_count: Option<usize>,
    /// Fetch functions: only messages that arrived within this long before the fetch.
    pub time_range: Option<Duration>,
}

impl HookSpec {
    fn plain(event: HookEvent, seq: u32, topic: Option<&str>, function: HookFunction) -> HookSpec {
        HookSpec {
            event,
            seq,
            topic_filter: topic.map(str::to_owned),
            function,
            pool: Some("pool1".to_owned()),
            max_returned_count: None,
            time_range: None,
        }
    }
}

/// The tutorial's ten hooks, used when none are configured.
pub fn default_hooks() -> Vec<HookSpec> {
    use HookEvent as E;
    use HookFunction as F;
    vec![
        HookSpec::plain(E::ClientConnected, 1, None, F::OnClientConnected),
        HookSpec::plain(E::SessionCreated, 1, None, F::OnSubscribeLookup),
        HookSpec::plain(E::ClientDisconnected, 1, None, F::OnClientDisconnected),
        HookSpec::plain(
            E::SessionSubscribed,
            1,
            Some("#"),
            F::OnMessageFetchForQueue,
        ),
        HookSpec::plain(E::SessionSubscribed, 2, Some("#"), F::OnRetainLookup),
        HookSpec::plain(E::SessionUnsubscribed, 1, Some("#"), F::OnAckedDelete),
        HookSpec::plain(E::MessagePublish, 1, Some("#"), F::OnMessagePublish),
        HookSpec::plain(E::MessagePublish, 2, Some("#"), F::OnMessageRetain),
        HookSpec::plain(E::MessagePublish, 3, Some("#"), F::OnRetainDelete),
        HookSpec::plain(E::MessageAcked, 1, Some("#"), F::OnMessageAckedForQueue),
    ]
}

/// Parses EMQX-style durations: `"2h"`, `"30m"`, `"45s"`, `"7d"`, `"1w"`, `"500ms"`, or a bare
/// number of seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => return Some(Duration::from_millis(n)),
        "" | "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3_600)?,
        "d" => n.checked_mul(86_400)?,
        "w" => n.checked_mul(604_800)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}
