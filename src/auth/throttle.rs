//! Slowing down password guessing: each failed authentication from an address makes the
//! refusal of the next one from that address wait longer (doubling, up to `MAX_DELAY`), so
//! that repeated guesses are answered slower, never faster. An address that fails no more
//! for `FORGET_AFTER` starts again from nothing.
//!
//! The map of addresses is bounded (`MAX_ADDRESSES`): when it is full and holds no stale
//! entry, a new address is treated as having failed often (the longest delay), so that
//! many addresses cannot push out the ones being slowed down. Only refusals wait: a client
//! with the right password is never delayed.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// The delay after the second failure in a row; it doubles with each further one.
const FIRST_DELAY: Duration = Duration::from_millis(250);
/// The longest a refusal waits.
pub(crate) const MAX_DELAY: Duration = Duration::from_secs(8);
/// An address that has not failed for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(300);
/// Addresses remembered at most.
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

/// Failed authentications by address. Locked only for a map operation, never across an
/// `.await`.
#[derive(Debug, Default)]
pub(crate) struct Throttle {
    failures: Mutex<HashMap<IpAddr, Failures>>,
}

impl Throttle {
    /// Records a failure from `addr`; returns how long to wait before refusing it.
    pub(crate) fn failed(&self, addr: IpAddr) -> Duration {
        self.failed_at(addr, Instant::now())
    }

    fn failed_at(&self, addr: IpAddr, now: Instant) -> Duration {
        let mut map = self.failures.lock();
        if !map.contains_key(&addr) && map.len() >= MAX_ADDRESSES {
            map.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
            if map.len() >= MAX_ADDRESSES {
                return MAX_DELAY;
            }
        }
        let f = map.entry(addr).or_insert(Failures {
            count: 0,
            last: now,
        });
        if now.duration_since(f.last) >= FORGET_AFTER {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last = now;
        delay_for(f.count)
    }

    /// Addresses remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.failures.lock().len()
    }
}

/// No delay for a first failure (a typo); then `FIRST_DELAY`, doubling, up to `MAX_DELAY`.
fn delay_for(count: u32) -> Duration {
    if count <= 1 {
        return Duration::ZERO;
    }
    let doublings = (count - 2).min(16);
    FIRST_DELAY.saturating_mul(1 << doublings).min(MAX_DELAY)
}

/// The IP address in a peer as the transports write it (`1.2.3.4:5`, `ws://[::1]:5`,
/// `tls://...`).
pub(crate) fn peer_ip(peer: &str) -> Option<IpAddr> {
    let addr = peer.rsplit_once("://").map_or(peer, |(_, a)| a);
    addr.parse::<std::net::SocketAddr>().ok().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_grows_and_is_bounded() {
        let t = Throttle::default();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let now = Instant::now();
        let delays: Vec<Duration> = (0..10).map(|_| t.failed_at(a, now)).collect();
        assert_eq!(delays[0], Duration::ZERO);
        assert_eq!(delays[1], FIRST_DELAY);
        assert_eq!(delays[2], FIRST_DELAY * 2);
        assert!(delays.windows(2).all(|w| w[0] <= w[1]), "{delays:?}");
        assert_eq!(delays[9], MAX_DELAY);
        // Another address starts from nothing.
        assert_eq!(
            t.failed_at("10.0.0.2".parse().unwrap(), now),
            Duration::ZERO
        );
        // Forgotten after a quiet while.
        assert_eq!(t.failed_at(a, now + FORGET_AFTER), Duration::ZERO);
        assert_eq!(delay_for(u32::MAX), MAX_DELAY);
    }

    #[test]
    fn map_is_bounded() {
        let t = Throttle::default();
        let now = Instant::now();
        for i in 0..MAX_ADDRESSES as u32 {
            t.failed_at(IpAddr::from(i.to_be_bytes()), now);
        }
        assert_eq!(t.len(), MAX_ADDRESSES);
        // Full of fresh entries: a new address gets the longest delay and is not added.
        let new = IpAddr::from([255, 255, 255, 255]);
        assert_eq!(t.failed_at(new, now), MAX_DELAY);
        assert_eq!(t.len(), MAX_ADDRESSES);
        // Stale entries make room.
        assert_eq!(t.failed_at(new, now + FORGET_AFTER), Duration::ZERO);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn peers() {
        assert_eq!(peer_ip("127.0.0.1:5"), Some([127, 0, 0, 1].into()));
        assert_eq!(peer_ip("ws://[::1]:80"), Some("::1".parse().unwrap()));
        assert_eq!(peer_ip("tls://10.1.2.3:8883"), Some([10, 1, 2, 3].into()));
        assert_eq!(peer_ip("nonsense"), None);
    }
}
