//! A subscriber: counts deliveries, detects duplicates, records latency, and acknowledges
//! at once, all the acks of one read in a single write.
//!
//! Duplicates are found with one bitset of sequence numbers per publisher, built from the
//! payload header written by [`crate::publisher`].

use std::sync::atomic::Ordering::{self, Relaxed};

use dynamq_codec::{Packet, PubResp, QoS};
use hdrhistogram::Histogram;
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::ClientError;
use crate::publisher::{HEADER_LEN, ping_interval};
use crate::stats::{Clock, Stats, mono_ns};

/// Latencies are recorded in microseconds, up to this bound (larger ones are clamped).
const MAX_LATENCY_US: u64 = 3_600_000_000;

/// What one subscriber saw; kept by the caller so it survives an error.
pub(crate) struct SubState {
    pub received: u64,
    pub duplicates: u64,
    /// Deliveries whose payload was too short to carry our header.
    pub foreign: u64,
    /// Microseconds from publish to delivery. Two significant digits keep 1,000
    /// subscribers' histograms small.
    pub latency: Histogram<u64>,
    /// Per publisher index, a bitset of the sequence numbers seen.
    seen: Vec<Vec<u64>>,
}

impl SubState {
    pub(crate) fn new() -> SubState {
        SubState {
            received: 0,
            duplicates: 0,
            foreign: 0,
            latency: Histogram::new_with_bounds(1, MAX_LATENCY_US, 2)
                .expect("constant histogram bounds are valid"),
            seen: Vec::new(),
        }
    }

    /// Records one delivery; true if it is a duplicate.
    fn record(&mut self, payload: &[u8], now_ns: u64, clock: Clock) -> bool {
        self.received += 1;
        let Some(header) = payload.get(..HEADER_LEN) else {
            self.foreign += 1;
            return false;
        };
        let field = |at: usize, len: usize| {
            header[at..at + len]
                .iter()
                .fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        };
        let (sent_ns, publisher, seq) = (field(0, 8), field(8, 4) as usize, field(12, 4) as usize);
        let now_ns = match clock {
            Clock::Monotonic => now_ns,
            Clock::Wall => clock.now_ns(),
        };
        let us = (now_ns.saturating_sub(sent_ns) / 1_000).clamp(1, MAX_LATENCY_US);
        let _ = self.latency.record(us);
        if self.seen.len() <= publisher {
            self.seen.resize_with(publisher + 1, Vec::new);
        }
        let bits = &mut self.seen[publisher];
        if bits.len() <= seq / 64 {
            bits.resize((seq / 64 + 1).next_power_of_two(), 0);
        }
        let (word, bit) = (seq / 64, 1u64 << (seq % 64));
        let duplicate = bits[word] & bit != 0;
        bits[word] |= bit;
        if duplicate {
            self.duplicates += 1;
        }
        duplicate
    }
}

impl Default for SubState {
    fn default() -> Self {
        SubState::new()
    }
}

/// Receives on a subscribed client until `stop`.
pub(crate) async fn receive(
    client: &mut Client,
    state: &mut SubState,
    stats: &Stats,
    clock: Clock,
    keep_alive: u16,
    stop: &CancellationToken,
) -> Result<(), ClientError> {
    let mut ping = ping_interval(keep_alive);
    loop {
        tokio::select! {
            r = client.read_more() => r?,
            _ = ping.tick() => {
                client.push(&Packet::PingReq)?;
                if !client.flush_until(stop).await? {
                    return Ok(());
                }
                continue;
            }
            _ = stop.cancelled() => return Ok(()),
        }
        // Everything in this read arrived by now: one clock read serves the whole batch.
        let now = mono_ns();
        let (mut n, mut dups) = (0, 0);
        while let Some(packet) = client.next_packet()? {
            match packet {
                Packet::Publish(p) => {
                    n += 1;
                    dups += u64::from(state.record(&p.payload, now, clock));
                    match (p.qos, p.packet_id) {
                        (QoS::AtMostOnce, _) => {}
                        (QoS::AtLeastOnce, Some(id)) => {
                            client.push(&Packet::PubAck(PubResp::new(id)))?
                        }
                        (QoS::ExactlyOnce, Some(id)) => {
                            client.push(&Packet::PubRec(PubResp::new(id)))?
                        }
                        _ => return Err(ClientError::Unexpected("QoS > 0 PUBLISH without id")),
                    }
                }
                Packet::PubRel(rel) => {
                    client.push(&Packet::PubComp(PubResp::new(rel.packet_id)))?
                }
                Packet::PingResp => {}
                Packet::Disconnect(_) => return Err(ClientError::Closed),
                _ => return Err(ClientError::Unexpected("packet for a subscriber")),
            }
        }
        if !client.flush_until(stop).await? {
            return Ok(());
        }
        if n > 0 {
            stats.received.fetch_add(n, Relaxed);
            stats.duplicates.fetch_add(dups, Relaxed);
            stats.last_recv_ns.fetch_max(now, Ordering::Relaxed);
        }
    }
}
