//! A publisher: writes `count` PUBLISH packets, as fast as possible or at a rate, keeping up
//! to `inflight` QoS 1/2 messages unacknowledged so that the broker sees a pipeline, not a
//! ping-pong.
//!
//! Every payload starts with a 16-byte header: the send time in nanoseconds (see
//! [`Clock`]), the publisher's index and the message's sequence number, all big-endian. The
//! PUBLISH is encoded once from a template and the header patched in place in the write
//! buffer, so a message costs no allocation.

use std::time::{Duration, Instant};

use bytes::Bytes;
use dynamq_codec::{Packet, PubResp, Publish, PublishProperties, QoS, encode_publish};
use tokio_util::sync::CancellationToken;

use crate::client::Client;
use crate::error::ClientError;
use crate::stats::{Clock, Stats};
use std::sync::atomic::Ordering::Relaxed;

/// Bytes of the payload header: timestamp, publisher index, sequence number.
pub(crate) const HEADER_LEN: usize = 16;

/// Bytes encoded per write when not throttled: big enough to amortise the syscall, small
/// enough that the timestamps in a batch are fresh.
const BATCH_BYTES: usize = 64 * 1024;

/// What one publisher does.
#[derive(Debug, Clone)]
pub(crate) struct PubPlan {
    /// Written into each payload, so subscribers can tell publishers apart.
    pub index: u32,
    pub topic: Bytes,
    pub qos: QoS,
    pub count: u64,
    /// Payload bytes, at least [`HEADER_LEN`].
    pub size: usize,
    /// QoS 1/2 messages sent and not yet acknowledged, at most.
    pub inflight: usize,
    /// Messages per second; 0 for as fast as possible.
    pub rate: f64,
    pub keep_alive: u16,
    pub clock: Clock,
}

/// How far a publisher got; kept by the caller so it survives an error.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct PubProgress {
    pub sent: u64,
    /// Messages the broker took responsibility for: written (QoS 0), acknowledged (QoS 1/2).
    /// Deliveries are expected for these.
    pub completed: u64,
}

/// Runs one publisher on a connected client until its count is sent and acknowledged, or
/// `stop`.
pub(crate) async fn publish(
    client: &mut Client,
    plan: &PubPlan,
    stats: &Stats,
    stop: &CancellationToken,
    progress: &mut PubProgress,
) -> Result<(), ClientError> {
    let mut template = Publish {
        dup: false,
        qos: plan.qos,
        retain: false,
        topic: plan.topic.clone(),
        packet_id: None,
        properties: PublishProperties::default(),
        payload: Bytes::from(vec![0u8; plan.size]),
    };
    let qos0 = plan.qos == QoS::AtMostOnce;
    let window = if qos0 {
        usize::MAX
    } else {
        plan.inflight
            .min(usize::from(client.receive_maximum))
            .max(1)
    };
    let batch_max = (BATCH_BYTES / (plan.size + plan.topic.len() + 8)).max(1) as u64;
    let mut ids = PacketIds::new();
    let mut ping = ping_interval(plan.keep_alive);
    let start = Instant::now();
    loop {
        let due = if plan.rate > 0.0 {
            ((start.elapsed().as_secs_f64() * plan.rate) as u64 + 1).min(plan.count)
        } else {
            plan.count
        };
        let room = window.saturating_sub(ids.outstanding) as u64;
        let n = due.saturating_sub(progress.sent).min(room).min(batch_max);
        for _ in 0..n {
            if !qos0 {
                template.packet_id = Some(ids.take()?);
            }
            encode_publish(&template, client.protocol, &mut client.wbuf)?;
            let end = client.wbuf.len();
            let header = &mut client.wbuf[end - plan.size..end - plan.size + HEADER_LEN];
            header[..8].copy_from_slice(&plan.clock.now_ns().to_be_bytes());
            header[8..12].copy_from_slice(&plan.index.to_be_bytes());
            header[12..].copy_from_slice(&(progress.sent as u32).to_be_bytes());
            progress.sent += 1;
        }
        if n > 0 {
            if !client.flush_until(stop).await? {
                return Ok(());
            }
            stats.sent.fetch_add(n, Relaxed);
            if qos0 {
                progress.completed += n;
            }
        }
        if progress.sent == plan.count && ids.outstanding == 0 {
            return Ok(());
        }
        let can_send = progress.sent < plan.count && ids.outstanding < window;
        if qos0 && can_send && plan.rate <= 0.0 {
            // Unthrottled QoS 0 never waits: let the other tasks of this thread run.
            tokio::task::yield_now().await;
            if stop.is_cancelled() {
                return Ok(());
            }
            continue;
        }
        let next_due = start + Duration::from_secs_f64(progress.sent as f64 / plan.rate.max(1e-9));
        tokio::select! {
            r = client.read_more(), if !qos0 => {
                r?;
                let done = handle_acks(client, &mut ids, plan.qos)?;
                progress.completed += done;
                stats.acked.fetch_add(done, Relaxed);
                if !client.flush_until(stop).await? {
                    return Ok(());
                }
            }
            _ = tokio::time::sleep_until(next_due.into()), if plan.rate > 0.0 && can_send => {}
            _ = ping.tick() => {
                client.push(&Packet::PingReq)?;
                if !client.flush_until(stop).await? {
                    return Ok(());
                }
            }
            _ = stop.cancelled() => return Ok(()),
        }
    }
}

/// Handles every packet in the read buffer; returns the number of publishes completed.
/// PUBRELs are queued in the write buffer, to go out with the next batch.
fn handle_acks(client: &mut Client, ids: &mut PacketIds, qos: QoS) -> Result<u64, ClientError> {
    let mut done = 0;
    while let Some(packet) = client.next_packet()? {
        match packet {
            Packet::PubAck(ack) if qos == QoS::AtLeastOnce => {
                ids.release(ack.packet_id)?;
                done += u64::from(!ack.reason_code.is_error());
            }
            Packet::PubRec(rec) if qos == QoS::ExactlyOnce => {
                if rec.reason_code.is_error() {
                    ids.release(rec.packet_id)?;
                } else {
                    client.push(&Packet::PubRel(PubResp::new(rec.packet_id)))?;
                }
            }
            Packet::PubComp(comp) if qos == QoS::ExactlyOnce => {
                ids.release(comp.packet_id)?;
                done += 1;
            }
            Packet::PingResp => {}
            Packet::Disconnect(_) => return Err(ClientError::Closed),
            _ => return Err(ClientError::Unexpected("packet for a publisher")),
        }
    }
    Ok(done)
}

/// A PINGREQ timer at half the keepalive (never, for keepalive 0).
pub(crate) fn ping_interval(keep_alive: u16) -> tokio::time::Interval {
    let period = match keep_alive {
        0 => Duration::from_secs(86_400),
        k => Duration::from_millis(u64::from(k) * 500),
    };
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// Packet identifiers in use by unacknowledged QoS 1/2 publishes.
struct PacketIds {
    in_use: Vec<bool>,
    last: u16,
    outstanding: usize,
}

impl PacketIds {
    fn new() -> PacketIds {
        PacketIds {
            in_use: vec![false; 65_536],
            last: 0,
            outstanding: 0,
        }
    }

    /// A free non-zero identifier. The window is below 65,535, so one exists.
    fn take(&mut self) -> Result<u16, ClientError> {
        for _ in 0..u16::MAX {
            self.last = self.last.checked_add(1).unwrap_or(1);
            let slot = &mut self.in_use[usize::from(self.last)];
            if !*slot {
                *slot = true;
                self.outstanding += 1;
                return Ok(self.last);
            }
        }
        Err(ClientError::Unexpected("exhaustion of packet identifiers"))
    }

    fn release(&mut self, id: u16) -> Result<(), ClientError> {
        let slot = &mut self.in_use[usize::from(id)];
        if !*slot {
            return Err(ClientError::Unexpected("ack for a packet id not in flight"));
        }
        *slot = false;
        self.outstanding -= 1;
        Ok(())
    }
}
