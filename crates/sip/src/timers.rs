//! The timer table: every deadline of the core in one ordered map, so
//! `poll_timeout` is the first key and no callbacks exist.
//!
//! Entries are not removed when a transaction ends early; a fired timer whose
//! transaction is gone (or whose generation moved on) is ignored.

use std::collections::BTreeMap;
use std::time::Instant;

/// What a deadline is for. Letters are the RFC 3261 §17 timer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Timer {
    /// Housekeeping: expire bindings, purge lockout and caches.
    Sweep,
    /// Client transaction `tx`: A/E (retransmit request), B/F (give up),
    /// C (proxy INVITE, §16.6 step 11), D/K/M (linger, then forget).
    Client { tx: u64, kind: ClientTimer },
    /// Server transaction `tx`: G (retransmit final response), H/J/L (forget).
    Server { tx: u64, kind: ServerTimer },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientTimer {
    /// Timer A (INVITE) or E (non-INVITE).
    Retransmit,
    /// Timer B or F.
    Timeout,
    /// Timer C.
    C,
    /// Retransmit a CANCEL we sent for this branch.
    CancelRetransmit,
    /// Timers D, K, M: the transaction may be forgotten.
    Linger,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerTimer {
    /// Timer G.
    Retransmit,
    /// Timers H, I, J, L: the transaction may be forgotten.
    Linger,
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    table: BTreeMap<(Instant, u64), Timer>,
    seq: u64,
}

impl Timers {
    pub(crate) fn set(&mut self, at: Instant, timer: Timer) {
        self.seq += 1;
        self.table.insert((at, self.seq), timer);
    }

    pub(crate) fn next(&self) -> Option<Instant> {
        self.table.keys().next().map(|(at, _)| *at)
    }

    /// Remove and return the first timer due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let first = self.table.first_entry()?;
        if first.key().0 > now {
            return None;
        }
        Some(first.remove())
    }

    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn fires_in_deadline_order_and_only_when_due() {
        let t0 = Instant::now();
        let mut t = Timers::default();
        t.set(
            t0 + Duration::from_secs(2),
            Timer::Client {
                tx: 2,
                kind: ClientTimer::C,
            },
        );
        t.set(t0 + Duration::from_secs(1), Timer::Sweep);
        t.set(
            t0 + Duration::from_secs(1),
            Timer::Server {
                tx: 1,
                kind: ServerTimer::Linger,
            },
        );
        assert_eq!(t.next(), Some(t0 + Duration::from_secs(1)));
        assert_eq!(t.pop_due(t0), None);
        let later = t0 + Duration::from_secs(1);
        assert_eq!(t.pop_due(later), Some(Timer::Sweep));
        assert_eq!(
            t.pop_due(later),
            Some(Timer::Server {
                tx: 1,
                kind: ServerTimer::Linger
            })
        );
        assert_eq!(t.pop_due(later), None);
        assert_eq!(t.len(), 1);
    }
}
