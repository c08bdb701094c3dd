//! Abuse protection: failed-authentication lockout keyed on account and
//! source address, and a token-bucket rate limit per source address.
//!
//! Lockout state is kept for any user name, existing or not, so answers
//! never reveal whether an account exists.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Limits; defaults in the field docs.
#[derive(Debug, Clone, PartialEq)]
pub struct GuardConfig {
    /// Failed attempts within `window` that lock an account for a source. Default 5.
    pub max_failures: u32,
    /// Default 5 minutes.
    pub window: Duration,
    /// How long a lock lasts. Default 15 minutes.
    pub lock_for: Duration,
    /// Requests per second per source address; 0 disables. Default 200.
    pub rate: u32,
    /// Burst allowance per source address. Default 400.
    pub burst: u32,
    /// Loopback sources skip the rate limit (benchmarks, local tools). Default true.
    pub exempt_loopback: bool,
    /// Most sources tracked at once; beyond it new sources are refused
    /// (fail closed under a flood). Default 1,000,000.
    pub max_tracked: usize,
}

impl Default for GuardConfig {
    fn default() -> Self {
        GuardConfig {
            max_failures: 5,
            window: Duration::from_secs(300),
            lock_for: Duration::from_secs(900),
            rate: 200,
            burst: 400,
            exempt_loopback: true,
            max_tracked: 1_000_000,
        }
    }
}

#[derive(Debug)]
struct Failures {
    count: u32,
    first: Instant,
    locked_until: Option<Instant>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Lockout and rate-limit state.
#[derive(Debug)]
pub struct Guard {
    cfg: GuardConfig,
    failures: HashMap<(Box<str>, IpAddr), Failures>,
    buckets: HashMap<IpAddr, Bucket>,
}

impl Guard {
    pub fn new(cfg: GuardConfig) -> Guard {
        Guard {
            cfg,
            failures: HashMap::new(),
            buckets: HashMap::new(),
        }
    }

    /// Take one token for `source`; false means drop the request.
    pub fn allow(&mut self, now: Instant, source: IpAddr) -> bool {
        if self.cfg.rate == 0 || (self.cfg.exempt_loopback && source.is_loopback()) {
            return true;
        }
        if self.buckets.len() >= self.cfg.max_tracked && !self.buckets.contains_key(&source) {
            return false;
        }
        let (rate, burst) = (f64::from(self.cfg.rate), f64::from(self.cfg.burst.max(1)));
        let bucket = self.buckets.entry(source).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// When `account` is locked for `source`, the time left.
    pub fn locked(&self, now: Instant, account: &str, source: IpAddr) -> Option<Duration> {
        let f = self.failures.get(&(account.into(), source))?;
        let until = f.locked_until?;
        (until > now).then(|| until - now)
    }

    /// Count a failed attempt; returns true when this locked the account.
    pub fn record_failure(&mut self, now: Instant, account: &str, source: IpAddr) -> bool {
        if self.failures.len() >= self.cfg.max_tracked {
            self.purge(now);
        }
        let f = self
            .failures
            .entry((account.into(), source))
            .or_insert(Failures {
                count: 0,
                first: now,
                locked_until: None,
            });
        if now.saturating_duration_since(f.first) > self.cfg.window {
            *f = Failures {
                count: 0,
                first: now,
                locked_until: None,
            };
        }
        f.count += 1;
        if f.count >= self.cfg.max_failures && f.locked_until.is_none() {
            f.locked_until = Some(now + self.cfg.lock_for);
            return true;
        }
        false
    }

    /// A successful login clears the failures for that account and source.
    pub fn record_success(&mut self, account: &str, source: IpAddr) {
        if !self.failures.is_empty() {
            self.failures.remove(&(account.into(), source));
        }
    }

    /// Forget state that no longer matters.
    pub fn purge(&mut self, now: Instant) {
        let (window, lock_for) = (self.cfg.window, self.cfg.lock_for);
        self.failures.retain(|_, f| match f.locked_until {
            Some(until) => until > now,
            None => now.saturating_duration_since(f.first) <= window.max(lock_for),
        });
        let full_after =
            Duration::from_secs_f64(f64::from(self.cfg.burst) / f64::from(self.cfg.rate.max(1)));
        self.buckets
            .retain(|_, b| now.saturating_duration_since(b.at) <= full_after);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 9));
    const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 10));

    #[test]
    fn lockout_after_max_failures_per_account_and_source() {
        let t0 = Instant::now();
        let mut g = Guard::new(GuardConfig::default());
        for i in 1..5 {
            assert!(!g.record_failure(t0, "alice", SRC), "attempt {i}");
        }
        assert!(g.locked(t0, "alice", SRC).is_none());
        assert!(g.record_failure(t0, "alice", SRC));
        assert_eq!(g.locked(t0, "alice", SRC), Some(Duration::from_secs(900)));
        assert!(
            g.locked(t0, "alice", OTHER).is_none(),
            "other sources unaffected"
        );
        assert!(
            g.locked(t0, "bob", SRC).is_none(),
            "other accounts unaffected"
        );
        assert!(
            g.locked(t0 + Duration::from_secs(901), "alice", SRC)
                .is_none(),
            "lock ends"
        );
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t0 = Instant::now();
        let mut g = Guard::new(GuardConfig::default());
        for i in 0..10u64 {
            g.record_failure(t0 + Duration::from_secs(i * 100), "alice", SRC);
        }
        assert!(g
            .locked(t0 + Duration::from_secs(900), "alice", SRC)
            .is_none());
    }

    #[test]
    fn success_resets_and_purge_forgets() {
        let t0 = Instant::now();
        let mut g = Guard::new(GuardConfig::default());
        for _ in 0..4 {
            g.record_failure(t0, "alice", SRC);
        }
        g.record_success("alice", SRC);
        assert!(!g.record_failure(t0, "alice", SRC));
        g.purge(t0 + Duration::from_secs(3600));
        assert!(g.failures.is_empty());
    }

    #[test]
    fn token_bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let cfg = GuardConfig {
            rate: 10,
            burst: 20,
            ..GuardConfig::default()
        };
        let mut g = Guard::new(cfg);
        let allowed = (0..30).filter(|_| g.allow(t0, SRC)).count();
        assert_eq!(allowed, 20);
        let later = t0 + Duration::from_millis(500);
        let allowed = (0..30).filter(|_| g.allow(later, SRC)).count();
        assert_eq!(allowed, 5);
        assert!(
            g.allow(later, "127.0.0.1".parse().unwrap()),
            "loopback exempt"
        );
    }
}
