//! The timer table: every deadline of the core in one ordered map, so
//! `poll_timeout` is the first key and no callbacks exist.
//!
//! Each timer (a transaction and a kind) has at most one deadline: setting
//! it again moves it, and a timer that no longer means anything is removed
//! when its transaction changes state or ends. So the first key is always a
//! live deadline and the driver never wakes for nothing. Every operation is
//! O(log n) (the ordered map) plus O(1) (the index by timer).

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// What a deadline is for. Letters are the RFC 3261 §17 timer names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Timer {
    /// Housekeeping: expire bindings, purge lockout and caches.
    Sweep,
    /// Client transaction `tx`: A/E (retransmit request), B/F (give up),
    /// C (proxy INVITE, §16.6 step 11), D/K/M (linger, then forget).
    Client { tx: u64, kind: ClientTimer },
    /// Server transaction `tx`: G (retransmit final response), H/J/L (forget).
    Server { tx: u64, kind: ServerTimer },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ClientTimer {
    /// Timer A (INVITE) or E (non-INVITE).
    Retransmit,
    /// Timer B or F; after a CANCEL, the deadline for the branch's answer.
    Timeout,
    /// Timer C.
    C,
    /// Retransmit a CANCEL we sent for this branch.
    CancelRetransmit,
    /// Timers D, K, M: the transaction may be forgotten.
    Linger,
}

impl ClientTimer {
    const ALL: [ClientTimer; 5] = [
        ClientTimer::Retransmit,
        ClientTimer::Timeout,
        ClientTimer::C,
        ClientTimer::CancelRetransmit,
        ClientTimer::Linger,
    ];
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ServerTimer {
    /// Timer G.
    Retransmit,
    /// Timers H, I, J, L: the transaction may be forgotten.
    Linger,
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    table: BTreeMap<(Instant, u64), Timer>,
    /// Where each armed timer sits in `table`.
    armed: HashMap<Timer, (Instant, u64)>,
    seq: u64,
}

impl Timers {
    /// Arm `timer` for `at`, replacing the deadline it had.
    pub(crate) fn set(&mut self, at: Instant, timer: Timer) {
        self.cancel(timer);
        self.seq += 1;
        self.table.insert((at, self.seq), timer);
        self.armed.insert(timer, (at, self.seq));
    }

    /// Arm `timer` for `at` unless it is already armed for earlier.
    pub(crate) fn set_no_later(&mut self, at: Instant, timer: Timer) {
        if self.armed.get(&timer).is_none_or(|(old, _)| *old > at) {
            self.set(at, timer);
        }
    }

    /// Disarm `timer` (nothing happens when it is not armed).
    pub(crate) fn cancel(&mut self, timer: Timer) {
        if let Some(slot) = self.armed.remove(&timer) {
            self.table.remove(&slot);
        }
    }

    /// Disarm every timer of client transaction `tx` but `keep`.
    pub(crate) fn cancel_client(&mut self, tx: u64, keep: Option<ClientTimer>) {
        for kind in ClientTimer::ALL {
            if Some(kind) != keep {
                self.cancel(Timer::Client { tx, kind });
            }
        }
    }

    /// Disarm every timer of server transaction `tx`.
    pub(crate) fn cancel_server(&mut self, tx: u64) {
        for kind in [ServerTimer::Retransmit, ServerTimer::Linger] {
            self.cancel(Timer::Server { tx, kind });
        }
    }

    /// The earliest armed deadline.
    pub(crate) fn next(&self) -> Option<Instant> {
        self.table.keys().next().map(|(at, _)| *at)
    }

    /// Remove and return the first timer due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Timer> {
        let first = self.table.first_entry()?;
        if first.key().0 > now {
            return None;
        }
        let timer = first.remove();
        self.armed.remove(&timer);
        Some(timer)
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

    #[test]
    fn a_timer_has_one_deadline_and_cancelled_ones_are_gone() {
        let t0 = Instant::now();
        let s = |n: u64| t0 + Duration::from_secs(n);
        let c = |tx: u64, kind: ClientTimer| Timer::Client { tx, kind };
        let mut t = Timers::default();
        t.set(s(1), c(1, ClientTimer::C));
        t.set(s(9), c(1, ClientTimer::C)); // pushed back
        assert_eq!((t.next(), t.len()), (Some(s(9)), 1));
        t.set_no_later(s(12), c(1, ClientTimer::C));
        assert_eq!(t.next(), Some(s(9)), "not moved later");
        t.set_no_later(s(3), c(1, ClientTimer::C));
        assert_eq!(t.next(), Some(s(3)), "moved earlier");

        t.set(s(2), c(1, ClientTimer::Retransmit));
        t.set(s(4), c(1, ClientTimer::Linger));
        t.set(s(5), c(2, ClientTimer::Retransmit));
        t.cancel_client(1, Some(ClientTimer::Linger));
        assert_eq!((t.next(), t.len()), (Some(s(4)), 2));
        t.cancel(c(1, ClientTimer::Linger));
        assert_eq!((t.next(), t.len()), (Some(s(5)), 1));
        assert_eq!(t.pop_due(s(5)), Some(c(2, ClientTimer::Retransmit)));
        t.cancel(c(2, ClientTimer::Retransmit)); // no longer armed: no-op
        assert_eq!((t.next(), t.len(), t.armed.len()), (None, 0, 0));

        t.set(
            s(1),
            Timer::Server {
                tx: 7,
                kind: ServerTimer::Retransmit,
            },
        );
        t.set(
            s(2),
            Timer::Server {
                tx: 7,
                kind: ServerTimer::Linger,
            },
        );
        t.cancel_server(7);
        assert_eq!((t.len(), t.armed.len()), (0, 0));
    }
}
