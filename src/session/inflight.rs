//! Outgoing QoS 1/2 messages sent and not yet acknowledged, in send order, and packet id
//! allocation.

use std::collections::{HashSet, VecDeque};

use foldhash::fast::RandomState;

use crate::message::Delivery;

/// Where an outgoing QoS 1/2 delivery stands: each variant names the acknowledgement awaited.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OutState {
    /// QoS 1 PUBLISH sent; waiting for PUBACK.
    AwaitPubAck,
    /// QoS 2 PUBLISH sent; waiting for PUBREC.
    AwaitPubRec,
    /// PUBREL sent; waiting for PUBCOMP.
    AwaitPubComp,
}

#[derive(Debug, Clone)]
pub(crate) struct OutEntry {
    pub packet_id: u16,
    pub delivery: Delivery,
    pub state: OutState,
}

/// In-flight deliveries in the order they were sent; resends keep that order [MQTT-4.6.0-1].
#[derive(Debug, Default)]
pub(crate) struct Inflight {
    entries: VecDeque<OutEntry>,
    in_use: HashSet<u16, RandomState>,
    next_id: u16,
}

impl Inflight {
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// A packet id not in use by another in-flight message [MQTT-2.2.1-3]. None when all
    /// 65,535 are taken.
    pub(crate) fn next_packet_id(&mut self) -> Option<u16> {
        if self.in_use.len() >= usize::from(u16::MAX) {
            return None;
        }
        loop {
            self.next_id = self.next_id.wrapping_add(1);
            if self.next_id != 0 && !self.in_use.contains(&self.next_id) {
                return Some(self.next_id);
            }
        }
    }

    pub(crate) fn push(&mut self, entry: OutEntry) {
        self.in_use.insert(entry.packet_id);
        self.entries.push_back(entry);
    }

    fn position(&self, packet_id: u16) -> Option<usize> {
        // Acks arrive mostly in order, so the match is nearly always at the front.
        self.entries.iter().position(|e| e.packet_id == packet_id)
    }

    /// The state of `packet_id`, if in flight.
    pub(crate) fn state(&self, packet_id: u16) -> Option<OutState> {
        self.position(packet_id).map(|i| self.entries[i].state)
    }

    /// Removes and returns the entry for `packet_id` if it is in `expected` state.
    pub(crate) fn complete(&mut self, packet_id: u16, expected: OutState) -> Option<OutEntry> {
        let i = self.position(packet_id)?;
        if self.entries[i].state != expected {
            return None;
        }
        let e = self.entries.remove(i)?;
        self.in_use.remove(&packet_id);
        Some(e)
    }

    /// Moves a QoS 2 entry from AwaitPubRec to AwaitPubComp. Returns false if it is not in
    /// that state.
    pub(crate) fn mark_released(&mut self, packet_id: u16) -> bool {
        match self.position(packet_id) {
            Some(i) if self.entries[i].state == OutState::AwaitPubRec => {
                self.entries[i].state = OutState::AwaitPubComp;
                true
            }
            _ => false,
        }
    }

    /// Removes and returns the entries `pred` accepts, in send order; their packet ids are
    /// free again.
    pub(crate) fn take_where(&mut self, mut pred: impl FnMut(&OutEntry) -> bool) -> Vec<OutEntry> {
        let mut taken = Vec::new();
        let mut kept = VecDeque::with_capacity(self.entries.len());
        for e in self.entries.drain(..) {
            if pred(&e) {
                self.in_use.remove(&e.packet_id);
                taken.push(e);
            } else {
                kept.push_back(e);
            }
        }
        self.entries = kept;
        taken
    }

    /// All entries in send order, for resending on reconnect.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &OutEntry> {
        self.entries.iter()
    }
}
