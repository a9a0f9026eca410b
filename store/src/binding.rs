//! Bindings: which broker [`Event`] runs which store [`Action`], for which topics. EMQX calls
//! one such line a "hook" (`backend.dynamo.hook.<event>.<n>`) and the action its "function";
//! here a [`Binding`] is that line, whether it came from the tutorial's file
//! ([`crate::backend_conf`]), the TOML `[[hooks]]` section, or [`default_bindings`].

use std::fmt;
use std::time::Duration;

/// A broker event an action can be bound to (EMQX's names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    ClientConnected,
    ClientDisconnected,
    SessionCreated,
    SessionSubscribed,
    SessionUnsubscribed,
    MessagePublish,
    MessageAcked,
}

impl Event {
    pub const ALL: [Event; 7] = [
        Event::ClientConnected,
        Event::ClientDisconnected,
        Event::SessionCreated,
        Event::SessionSubscribed,
        Event::SessionUnsubscribed,
        Event::MessagePublish,
        Event::MessageAcked,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Event::ClientConnected => "client.connected",
            Event::ClientDisconnected => "client.disconnected",
            Event::SessionCreated => "session.created",
            Event::SessionSubscribed => "session.subscribed",
            Event::SessionUnsubscribed => "session.unsubscribed",
            Event::MessagePublish => "message.publish",
            Event::MessageAcked => "message.acked",
        }
    }

    pub fn from_name(name: &str) -> Option<Event> {
        Event::ALL.into_iter().find(|e| e.name() == name)
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An action (EMQX's "function"), run by [`crate::actions::Actions`]. See DESIGN.md "The
/// actions" for what each one does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Action {
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

impl Action {
    pub const ALL: [Action; 12] = [
        Action::OnClientConnected,
        Action::OnClientDisconnected,
        Action::OnSubscribeLookup,
        Action::OnMessageFetchForQueue,
        Action::OnMessageFetchForPubsub,
        Action::OnRetainLookup,
        Action::OnAckedDelete,
        Action::OnMessagePublish,
        Action::OnMessageStore,
        Action::OnMessageRetain,
        Action::OnRetainDelete,
        Action::OnMessageAckedForQueue,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Action::OnClientConnected => "on_client_connected",
            Action::OnClientDisconnected => "on_client_disconnected",
            Action::OnSubscribeLookup => "on_subscribe_lookup",
            Action::OnMessageFetchForQueue => "on_message_fetch_for_queue",
            Action::OnMessageFetchForPubsub => "on_message_fetch_for_pubsub",
            Action::OnRetainLookup => "on_retain_lookup",
            Action::OnAckedDelete => "on_acked_delete",
            Action::OnMessagePublish => "on_message_publish",
            Action::OnMessageStore => "on_message_store",
            Action::OnMessageRetain => "on_message_retain",
            Action::OnRetainDelete => "on_retain_delete",
            Action::OnMessageAckedForQueue => "on_message_acked_for_queue",
        }
    }

    pub fn from_name(name: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The one event this function runs on.
    pub fn event(self) -> Event {
        match self {
            Action::OnClientConnected => Event::ClientConnected,
            Action::OnClientDisconnected => Event::ClientDisconnected,
            Action::OnSubscribeLookup => Event::SessionCreated,
            Action::OnMessageFetchForQueue
            | Action::OnMessageFetchForPubsub
            | Action::OnRetainLookup => Event::SessionSubscribed,
            Action::OnAckedDelete => Event::SessionUnsubscribed,
            Action::OnMessagePublish
            | Action::OnMessageStore
            | Action::OnMessageRetain
            | Action::OnRetainDelete => Event::MessagePublish,
            Action::OnMessageAckedForQueue => Event::MessageAcked,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One binding (EMQX: one hook): `backend.dynamo.hook.<event>.<seq> = {"topic": ..., "action": {"function": ...},
/// "pool": ..., "offline_opts": {...}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub event: Event,
    /// The `<n>` of the key; bindings of one event run in this order.
    pub seq: u32,
    /// Runs only for message topics (or, for session events, subscription filters) matching
    /// this filter; `None` = always.
    pub topic_filter: Option<String>,
    pub action: Action,
    pub pool: Option<String>,
    /// Fetch functions: deliver at most this many messages (the newest ones) per fetch.
    pub max_returned_count: Option<usize>,
    /// Fetch functions: only messages that arrived within this long before the fetch.
    pub time_range: Option<Duration>,
}

impl Binding {
    fn plain(event: Event, seq: u32, topic: Option<&str>, action: Action) -> Binding {
        Binding {
            event,
            seq,
            topic_filter: topic.map(str::to_owned),
            action,
            pool: Some("pool1".to_owned()),
            max_returned_count: None,
            time_range: None,
        }
    }
}

/// The tutorial's ten hooks, used when none are configured.
pub fn default_bindings() -> Vec<Binding> {
    use Action as F;
    use Event as E;
    vec![
        Binding::plain(E::ClientConnected, 1, None, F::OnClientConnected),
        Binding::plain(E::SessionCreated, 1, None, F::OnSubscribeLookup),
        Binding::plain(E::ClientDisconnected, 1, None, F::OnClientDisconnected),
        Binding::plain(
            E::SessionSubscribed,
            1,
            Some("#"),
            F::OnMessageFetchForQueue,
        ),
        Binding::plain(E::SessionSubscribed, 2, Some("#"), F::OnRetainLookup),
        Binding::plain(E::SessionUnsubscribed, 1, Some("#"), F::OnAckedDelete),
        Binding::plain(E::MessagePublish, 1, Some("#"), F::OnMessagePublish),
        Binding::plain(E::MessagePublish, 2, Some("#"), F::OnMessageRetain),
        Binding::plain(E::MessagePublish, 3, Some("#"), F::OnRetainDelete),
        Binding::plain(E::MessageAcked, 1, Some("#"), F::OnMessageAckedForQueue),
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
