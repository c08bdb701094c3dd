//! The timer table: every deadline of the core in one ordered map, so
//! `poll_timeout` is the first key and no callbacks exist.
//!
//! Each timer (a transaction and a kind) has at most one deadline: setting
//! it again moves it, and a timer that no longer means anything is removed
//! when its transaction changes state or ends. So the first key is always a
//! live deadline and the driver never wakes for nothing. Every operation is
//! O(log n) (the ordered map) plus O(1) (the index by timer).
//!
//! Deadlines that only end something (give up, forget: B, C, D, F, H, K, M
//! and the safety nets) are rounded up to a [`GRAIN`] from the table's
//! epoch, so that under load the many of them share wake-ups;
//! retransmissions keep their exact time.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

/// Granularity of the deadlines that only end something.
const GRAIN: Duration = Duration::from_millis(250);

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

#[derive(Debug)]
pub(crate) struct Timers {
    table: BTreeMap<(Instant, u64), Timer>,
    /// Where each armed timer sits in `table`.
    armed: HashMap<Timer, (Instant, u64)>,
    seq: u64,
    /// Coarse deadlines are whole [`GRAIN`]s after this.
    epoch: Instant,
}

impl Timer {
    /// Retransmissions and the sweep keep their exact deadline.
    fn exact(&self) -> bool {
        matches!(
            self,
            Timer::Sweep
                | Timer::Client {
                    kind: ClientTimer::Retransmit | ClientTimer::CancelRetransmit,
                    ..
                }
                | Timer::Server {
                    kind: ServerTimer::Retransmit,
                    ..
                }
        )
    }
}

impl Timers {
    pub(crate) fn new(epoch: Instant) -> Timers {
        Timers {
            table: BTreeMap::new(),
            armed: HashMap::new(),
            seq: 0,
            epoch,
        }
    }

    /// `at`, or for a coarse timer the next whole grain at or after it.
    fn deadline(&self, at: Instant, timer: Timer) -> Instant {
        if timer.exact() {
            return at;
        }
        let grain = GRAIN.as_nanos();
        let since = at.saturating_duration_since(self.epoch).as_nanos();
        let rounded = since.div_ceil(grain) * grain;
        u64::try_from(rounded).map_or(at, |n| self.epoch + Duration::from_nanos(n))
    }

    /// Arm `timer` for `at` (rounded up for coarse timers), replacing the
    /// deadline it had.
    pub(crate) fn set(&mut self, at: Instant, timer: Timer) {
        self.arm(self.deadline(at, timer), timer);
    }

    /// Arm `timer` for `at` unless it is already armed for earlier.
    pub(crate) fn set_no_later(&mut self, at: Instant, timer: Timer) {
        let at = self.deadline(at, timer);
        if self.armed.get(&timer).is_none_or(|(old, _)| *old > at) {
            self.arm(at, timer);
        }
    }

    /// Arm `timer` for the deadline `at` (already rounded), replacing its old one.
    fn arm(&mut self, at: Instant, timer: Timer) {
        self.cancel(timer);
        self.seq += 1;
        self.table.insert((at, self.seq), timer);
        self.armed.insert(timer, (at, self.seq));
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
        let mut t = Timers::new(t0);
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
        let mut t = Timers::new(t0);
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

    #[test]
    fn ending_deadlines_share_a_grain_and_retransmissions_stay_exact() {
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        let mut t = Timers::new(t0);
        for (tx, at) in [(1, 32_010), (2, 32_100), (3, 32_250)] {
            let kind = ClientTimer::Linger;
            t.set(ms(at), Timer::Client { tx, kind });
        }
        t.set(
            ms(32_001),
            Timer::Server {
                tx: 9,
                kind: ServerTimer::Linger,
            },
        );
        let kind = ClientTimer::Retransmit;
        t.set(ms(31_999), Timer::Client { tx: 4, kind });
        assert_eq!(t.next(), Some(ms(31_999)), "exact");
        assert!(t.pop_due(ms(31_999)).is_some());
        assert_eq!(t.next(), Some(ms(32_250)), "the lingers, rounded up");
        let due = std::iter::from_fn(|| t.pop_due(ms(32_250))).count();
        assert_eq!((due, t.len()), (4, 0), "one wake-up for all four");
    }
}
