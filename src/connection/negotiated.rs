//! What a connection agreed with its client at CONNECT, kept in one struct that moves whole
//! between the running connection (`Conn`) and a hibernating one (`Parked`), so that no
//! field can be forgotten on the way through hibernation.
//!
//! Its fields are as compact as what they hold (the client's Receive Maximum is a u16, its
//! Maximum Packet Size a u32), and the will and the topic aliases are boxed only when
//! present: every idle connection carries this record.

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

/// Inbound topic aliases (v5): alias `n` is slot `n - 1` [MQTT-3.3.2-12]. Boxed, and only
/// once the client sets one: most clients never do.
#[derive(Debug, Default)]
#[allow(clippy::box_collection)] // 8 bytes instead of a Vec's 24 in every idle connection
pub(super) struct TopicAliases(Option<Box<Vec<Option<Bytes>>>>);

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
            match self.0.as_ref().and_then(|a| a.get(i)).cloned().flatten() {
                Some(t) => *topic = t,
                None => {
                    return Err(ConnError::protocol(
                        ReasonCode::ProtocolError,
                        "[MQTT-3.3.2-12] topic alias not yet mapped to a topic (a Protocol Error, spec 3.3.2.3.4)",
                    ));
                }
            }
        } else {
            let aliases = self.0.get_or_insert_with(Default::default);
            if aliases.len() <= i {
                aliases.resize(i + 1, None);
            }
            aliases[i] = Some(topic.clone());
        }
        Ok(())
    }
}
