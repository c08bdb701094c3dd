//! One allocation: its relay, lifetime, permissions, channels and bandwidth budget.
//!
//! Kept small (see the crate README for the measured bytes per allocation):
//! permissions and channels are short vectors searched linearly, because real
//! calls have one to a few peers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{FiveTuple, RelayId};
use crate::stun::{ChannelNumber, TransactionId};

/// RFC 8656 §9: permissions last 300 s.
pub(crate) const PERMISSION_LIFETIME: Duration = Duration::from_secs(300);
/// RFC 8656 §12: channel bindings last 600 s.
pub(crate) const CHANNEL_LIFETIME: Duration = Duration::from_secs(600);

/// An allocation's id in the server (stable while it lives).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AllocationId(pub u32);

impl std::fmt::Display for AllocationId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "alloc-{}", self.0)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Channel {
    pub(crate) number: ChannelNumber,
    pub(crate) peer: SocketAddr,
    pub(crate) expires: Instant,
}

#[derive(Debug)]
pub(crate) struct Allocation {
    pub(crate) client: FiveTuple,
    pub(crate) relay: RelayId,
    /// The address advertised in XOR-RELAYED-ADDRESS.
    pub(crate) relayed: SocketAddr,
    pub(crate) user: Arc<str>,
    pub(crate) expires: Instant,
    /// The Allocate transaction, so a retransmission gets the same answer.
    pub(crate) allocate_tid: TransactionId,
    pub(crate) reservation: Option<[u8; 8]>,
    pub(crate) permissions: Vec<(IpAddr, Instant)>,
    pub(crate) channels: Vec<Channel>,
    bucket: Bucket,
    /// The `allocation` span its log lines go in (disabled, and free, when
    /// the log filter drops it).
    pub(crate) span: tracing::Span,
}

impl Allocation {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        client: FiveTuple,
        relay: RelayId,
        relayed: SocketAddr,
        user: Arc<str>,
        expires: Instant,
        allocate_tid: TransactionId,
        now: Instant,
        bandwidth: u64,
    ) -> Self {
        Allocation {
            client,
            relay,
            relayed,
            user,
            expires,
            allocate_tid,
            reservation: None,
            permissions: Vec::new(),
            channels: Vec::new(),
            bucket: Bucket::new(now, bandwidth),
            span: tracing::Span::none(),
        }
    }

    pub(crate) fn has_permission(&self, now: Instant, ip: IpAddr) -> bool {
        self.permissions
            .iter()
            .any(|(p, exp)| *p == ip && *exp > now)
    }

    /// Install or refresh; false when the per-allocation limit is reached.
    pub(crate) fn permit(&mut self, now: Instant, ip: IpAddr, max: usize) -> bool {
        let exp = now + PERMISSION_LIFETIME;
        if let Some(p) = self.permissions.iter_mut().find(|(p, _)| *p == ip) {
            p.1 = exp;
            return true;
        }
        self.permissions.retain(|(_, e)| *e > now);
        if self.permissions.len() + self.channels.len() >= max {
            return false;
        }
        self.permissions.push((ip, exp));
        true
    }

    pub(crate) fn channel_by_number(&self, now: Instant, n: u16) -> Option<&Channel> {
        self.channels
            .iter()
            .find(|c| c.number.get() == n && c.expires > now)
    }

    pub(crate) fn channel_by_peer(&self, now: Instant, peer: SocketAddr) -> Option<&Channel> {
        self.channels
            .iter()
            .find(|c| c.peer == peer && c.expires > now)
    }

    /// Bind or refresh; `Err` when the number or peer is bound otherwise (400),
    /// `Ok(false)` when the limit is reached.
    pub(crate) fn bind_channel(
        &mut self,
        now: Instant,
        n: ChannelNumber,
        peer: SocketAddr,
        max: usize,
    ) -> Result<bool, ()> {
        // An expired binding keeps its number and peer for 5 more minutes (RFC 8656 §12).
        let reusable = |c: &Channel| c.expires + PERMISSION_LIFETIME <= now;
        self.channels.retain(|c| !reusable(c));
        for c in &mut self.channels {
            match (c.number == n, c.peer == peer) {
                (true, true) => {
                    c.expires = now + CHANNEL_LIFETIME;
                    return Ok(true);
                }
                (true, false) | (false, true) => return Err(()),
                _ => {}
            }
        }
        if self.permissions.len() + self.channels.len() >= max {
            return Ok(false);
        }
        self.channels.push(Channel {
            number: n,
            peer,
            expires: now + CHANNEL_LIFETIME,
        });
        Ok(true)
    }

    /// Drop expired permissions and channels.
    pub(crate) fn sweep(&mut self, now: Instant) {
        self.permissions.retain(|(_, e)| *e > now);
        self.channels
            .retain(|c| c.expires + PERMISSION_LIFETIME > now);
    }

    /// Spend `bytes` of the bandwidth budget; false means drop the packet.
    pub(crate) fn spend(&mut self, now: Instant, bytes: usize) -> bool {
        self.bucket.spend(now, bytes as u64)
    }
}

/// A token bucket refilled at `rate` per second, holding at most `cap`.
#[derive(Debug, Clone)]
pub(crate) struct Bucket {
    rate: u64,
    cap: u64,
    tokens: u64,
    last: Instant,
}

impl Bucket {
    /// A bucket holding one second's worth.
    pub(crate) fn new(now: Instant, rate: u64) -> Self {
        Self::with_capacity(now, rate, rate)
    }

    pub(crate) fn with_capacity(now: Instant, rate: u64, cap: u64) -> Self {
        Bucket {
            rate,
            cap,
            tokens: cap,
            last: now,
        }
    }

    /// True when the bucket is full (nothing spent recently).
    pub(crate) fn is_full(&self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs();
        self.tokens + elapsed.saturating_mul(self.rate) >= self.cap
    }

    pub(crate) fn spend(&mut self, now: Instant, n: u64) -> bool {
        let elapsed = now.saturating_duration_since(self.last);
        if !elapsed.is_zero() {
            let add = (elapsed.as_micros() as u64).saturating_mul(self.rate) / 1_000_000;
            if add > 0 {
                self.tokens = (self.tokens + add).min(self.cap);
                self.last = now;
            }
        }
        if self.tokens >= n {
            self.tokens -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Transport;

    fn alloc(now: Instant) -> Allocation {
        let t = FiveTuple {
            transport: Transport::Udp,
            client: "203.0.113.1:1000".parse().unwrap(),
            server: "192.0.2.1:3478".parse().unwrap(),
        };
        Allocation::new(
            t,
            RelayId(1),
            "192.0.2.1:50000".parse().unwrap(),
            "u".into(),
            now + Duration::from_secs(600),
            TransactionId::new([0; 12]),
            now,
            10_000,
        )
    }

    #[test]
    fn permissions_expire_after_five_minutes_and_refresh() {
        let t0 = Instant::now();
        let mut a = alloc(t0);
        let ip = "198.51.100.1".parse().unwrap();
        assert!(a.permit(t0, ip, 8));
        assert!(a.has_permission(t0 + Duration::from_secs(299), ip));
        assert!(!a.has_permission(t0 + Duration::from_secs(300), ip));
        assert!(a.permit(t0 + Duration::from_secs(200), ip, 8));
        assert!(a.has_permission(t0 + Duration::from_secs(499), ip));
    }

    #[test]
    fn channel_rules() {
        let t0 = Instant::now();
        let mut a = alloc(t0);
        let p1: SocketAddr = "198.51.100.1:5000".parse().unwrap();
        let p2: SocketAddr = "198.51.100.2:5000".parse().unwrap();
        let c1 = ChannelNumber::new(0x4000).unwrap();
        let c2 = ChannelNumber::new(0x4001).unwrap();
        assert_eq!(a.bind_channel(t0, c1, p1, 8), Ok(true));
        assert_eq!(
            a.bind_channel(t0, c1, p2, 8),
            Err(()),
            "number bound to another peer"
        );
        assert_eq!(
            a.bind_channel(t0, c2, p1, 8),
            Err(()),
            "peer bound to another number"
        );
        assert_eq!(a.bind_channel(t0, c1, p1, 8), Ok(true), "refresh");
        assert!(a
            .channel_by_number(t0 + Duration::from_secs(599), 0x4000)
            .is_some());
        assert!(a
            .channel_by_number(t0 + Duration::from_secs(600), 0x4000)
            .is_none());
        // Expired but within the 5-minute quarantine: still cannot rebind elsewhere.
        assert_eq!(
            a.bind_channel(t0 + Duration::from_secs(700), c1, p2, 8),
            Err(())
        );
        assert_eq!(
            a.bind_channel(t0 + Duration::from_secs(900), c1, p2, 8),
            Ok(true)
        );
    }

    #[test]
    fn bucket_limits_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(t0, 1000);
        assert!(b.spend(t0, 1000));
        assert!(!b.spend(t0, 1));
        assert!(b.spend(t0 + Duration::from_millis(500), 500));
        assert!(!b.spend(t0 + Duration::from_millis(500), 1));
    }

    #[test]
    fn peer_limit_counts_permissions_and_channels() {
        let t0 = Instant::now();
        let mut a = alloc(t0);
        assert!(a.permit(t0, "198.51.100.1".parse().unwrap(), 2));
        assert_eq!(
            a.bind_channel(
                t0,
                ChannelNumber::new(0x4000).unwrap(),
                "198.51.100.1:1".parse().unwrap(),
                2
            ),
            Ok(true)
        );
        assert!(!a.permit(t0, "198.51.100.3".parse().unwrap(), 2));
    }
}
