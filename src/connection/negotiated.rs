//! What a connection agreed with its client at CONNECT, kept in one struct that moves whole
//! between the running connection (`Conn`) and a hibernating one (`Parked`), so that no
//! field can be forgotten on the way through hibernation.
//!
//! Its fields are as compact as what they hold (the client's Receive Maximum is a u16, its
//! Maximum Packet Size a u32), and the will and the topic aliases are boxed only when
//! present: every idle connection carries this record.

use std::collections::HashMap;

use bytes::Bytes;
use dynamq_codec::{LastWill, Protocol, ReasonCode};

use super::ConnError;

#[derive(Debug)]
pub(super) struct Negotiated {
    pub(super) protocol: Protocol,
    /// Seconds; 0 disables the keepalive check.
    pub(super) keep_alive: u16,
    /// Most QoS 1/2 messages in flight to the client: min(its Receive Maximum, ours).
    pub(super) inflight_max: u16,
    /// The client's Maximum Packet Size (`u32::MAX`: none given); larger messages are not
    /// sent to it [MQTT-3.1.2-24].
    pub(super) client_max_packet: u32,
    /// Session Expiry Interval in force; DISCONNECT may change it [MQTT-3.14.2-2].
    pub(super) session_expiry: u32,
    /// Session Expiry Interval given in CONNECT, for the DISCONNECT rule.
    pub(super) connect_session_expiry: u32,
    /// The client's Request Problem Information (v5, default 1): when false, no Reason
    /// String on anything but PUBLISH, CONNACK and DISCONNECT [MQTT-3.1.2-29]. (A bool fits
    /// in the struct's padding: `Parked` stays at 64 bytes.)
    pub(super) problem_info: bool,
    /// The will, until it is published or discarded.
    pub(super) will: Option<Box<LastWill>>,
    pub(super) topic_aliases: TopicAliases,
    /// The client's Topic Alias Maximum (v5; 0 or absent: no aliases to it) [MQTT-3.1.2-27].
    pub(super) client_alias_max: u16,
}

impl Negotiated {
    /// The Reason String to put on an acknowledgement that reports an error: only for v5,
    /// when the client asked for problem information [MQTT-3.1.2-29], and when it cannot
    /// make the packet larger than the client's Maximum Packet Size [MQTT-3.4.2-2].
    pub(super) fn reason_string(&self, why: &str) -> Option<String> {
        self.protocol.is_v5().then_some(())?;
        (self.problem_info && self.fits(why)).then(|| why.to_owned())
    }

    /// A Reason String for a DISCONNECT, which may carry one whatever Request Problem
    /// Information says, within the client's Maximum Packet Size [MQTT-3.14.2-3].
    pub(super) fn disconnect_reason_string(&self, why: &str) -> Option<String> {
        (self.protocol.is_v5() && self.fits(why)).then(|| why.to_owned())
    }

    /// A packet of at most 32 bytes besides the string stays within the client's maximum.
    fn fits(&self, why: &str) -> bool {
        why.len().saturating_add(32) <= self.client_max_packet as usize
    }
}

/// Topic aliases (v5), both ways. Inbound: alias `n` is slot `n - 1` [MQTT-3.3.2-12].
/// Outbound: see [`OutAliases`]. Boxed, and only once one is used: most clients never do.
#[derive(Debug, Default)]
pub(super) struct TopicAliases(Option<Box<Aliases>>);

#[derive(Debug, Default)]
struct Aliases {
    inbound: Vec<Option<Bytes>>,
    outbound: OutAliases,
}

/// The aliases the server gives the topics it sends, within the client's Topic Alias
/// Maximum [MQTT-3.1.2-26] [MQTT-3.3.2-11]. Policy: **least recently used replacement**.
/// A topic gets an alias the first time it is sent (PUBLISH with the topic and the alias); later PUBLISHes
/// on it carry the alias and an empty topic. Once every alias is taken, a new topic takes
/// the alias of the topic sent longest ago, remapping it (a PUBLISH with a topic and an
/// alias always sets the mapping, spec 3.3.2.3.4). At most [`OUT_ALIASES_CAP`] aliases,
/// whatever the client allows, so a connection's map stays small.
#[derive(Debug, Default)]
struct OutAliases {
    by_topic: HashMap<Bytes, u16>,
    /// Alias `n` is slot `n - 1`: its topic and when it was last sent.
    slots: Vec<(Bytes, u64)>,
    tick: u64,
}

/// Most aliases the server uses on one connection.
pub(super) const OUT_ALIASES_CAP: u16 = 64;

/// The alias a PUBLISH to the client carries, and whether it must also carry the topic
/// (the alias is new or remapped).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct OutAlias {
    pub(super) alias: u16,
    pub(super) with_topic: bool,
}

impl TopicAliases {
    /// Resolves the alias of a PUBLISH: a topic with an alias sets it, an empty topic with an
    /// alias uses it. `max` is the Topic Alias Maximum we announced.
    pub(super) fn resolve(
        &mut self,
        alias: u16,
        topic: &mut Bytes,
        max: u16,
    ) -> Result<(), ConnError> {
        if alias == 0 || alias > max {
            return Err(ConnError::protocol(
                ReasonCode::TopicAliasInvalid,
                "[MQTT-3.3.2-9] topic alias is 0 or above the Topic Alias Maximum",
            ));
        }
        let i = usize::from(alias) - 1;
        if topic.is_empty() {
            let known = self.0.as_ref().and_then(|a| a.inbound.get(i)).cloned();
            match known.flatten() {
                Some(t) => *topic = t,
                None => {
                    return Err(ConnError::protocol(
                        ReasonCode::ProtocolError,
                        "[MQTT-3.3.2-12] topic alias not yet mapped to a topic (a Protocol Error, spec 3.3.2.3.4)",
                    ));
                }
            }
        } else {
            let aliases = &mut self.0.get_or_insert_with(Default::default).inbound;
            if aliases.len() <= i {
                aliases.resize(i + 1, None);
            }
            aliases[i] = Some(topic.clone());
        }
        Ok(())
    }

    /// The alias to send `topic` with, for a client whose Topic Alias Maximum is
    /// `client_max` (0: none, never an alias [MQTT-3.1.2-27]). Nothing changes until
    /// [`TopicAliases::sent`] says the PUBLISH went out.
    pub(super) fn outbound(&mut self, topic: &Bytes, client_max: u16) -> Option<OutAlias> {
        let cap = client_max.min(OUT_ALIASES_CAP);
        if cap == 0 || topic.is_empty() {
            return None;
        }
        let out = &self.0.get_or_insert_with(Default::default).outbound;
        if let Some(&alias) = out.by_topic.get(topic) {
            return Some(OutAlias {
                alias,
                with_topic: false,
            });
        }
        let alias = if out.slots.len() < usize::from(cap) {
            out.slots.len() + 1
        } else {
            let lru = out.slots.iter().enumerate().min_by_key(|(_, (_, t))| *t);
            lru.map_or(1, |(i, _)| i + 1)
        };
        Some(OutAlias {
            alias: u16::try_from(alias).unwrap_or(1),
            with_topic: true,
        })
    }

    /// The PUBLISH carrying `topic` with `alias` was written: records the mapping (if new)
    /// and the use.
    pub(super) fn sent(&mut self, topic: &Bytes, alias: OutAlias) {
        let Some(a) = self.0.as_mut() else { return };
        let out = &mut a.outbound;
        out.tick += 1;
        let i = usize::from(alias.alias) - 1;
        if alias.with_topic {
            if let Some((old, _)) = out.slots.get(i) {
                out.by_topic.remove(old);
            }
            if i < out.slots.len() {
                out.slots[i] = (topic.clone(), out.tick);
            } else {
                out.slots.push((topic.clone(), out.tick));
            }
            out.by_topic.insert(topic.clone(), alias.alias);
        } else if let Some(slot) = out.slots.get_mut(i) {
            slot.1 = out.tick;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn send(a: &mut TopicAliases, topic: &str, max: u16) -> Option<OutAlias> {
        let t = Bytes::copy_from_slice(topic.as_bytes());
        let out = a.outbound(&t, max)?;
        a.sent(&t, out);
        Some(out)
    }

    fn alias(alias: u16, with_topic: bool) -> Option<OutAlias> {
        Some(OutAlias { alias, with_topic })
    }

    #[test]
    fn no_alias_when_the_client_allows_none() {
        let mut a = TopicAliases::default();
        assert_eq!(send(&mut a, "t", 0), None);
        assert!(a.0.is_none(), "nothing allocated");
    }

    #[test]
    fn a_topic_keeps_its_alias_and_the_least_recently_used_is_replaced() {
        let mut a = TopicAliases::default();
        assert_eq!(send(&mut a, "a", 2), alias(1, true));
        assert_eq!(send(&mut a, "a", 2), alias(1, false));
        assert_eq!(send(&mut a, "b", 2), alias(2, true));
        assert_eq!(send(&mut a, "a", 2), alias(1, false));
        // Full: "b" was sent longest ago, so "c" takes its alias, with its topic.
        assert_eq!(send(&mut a, "c", 2), alias(2, true));
        assert_eq!(send(&mut a, "c", 2), alias(2, false));
        // "b" comes back on the alias of "a", now the least recently used.
        assert_eq!(send(&mut a, "b", 2), alias(1, true));
        assert_eq!(send(&mut a, "a", 2), alias(2, true));
    }

    #[test]
    fn an_alias_not_sent_is_not_recorded() {
        let mut a = TopicAliases::default();
        let t = Bytes::from_static(b"big");
        assert_eq!(a.outbound(&t, 5), alias(1, true));
        // The PUBLISH was too large for the client and not written: no `sent`.
        assert_eq!(a.outbound(&t, 5), alias(1, true));
    }

    #[test]
    fn at_most_the_servers_cap_whatever_the_client_allows() {
        let mut a = TopicAliases::default();
        for i in 0..OUT_ALIASES_CAP {
            assert_eq!(
                send(&mut a, &format!("t/{i}"), u16::MAX),
                alias(i + 1, true)
            );
        }
        assert_eq!(send(&mut a, "one more", u16::MAX), alias(1, true));
    }
}
