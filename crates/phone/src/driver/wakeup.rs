//! The driver's timer, kept so that a phone in a call wakes once per frame.
//!
//! tokio's timer driver writes to its eventfd (one more system call and one
//! more `epoll_wait`) whenever a timer is registered earlier than the
//! driver's next planned wake-up — and right after a frame's timer fires no
//! wake-up is planned, so registering the next frame's timer cost that every
//! frame. While a call sends voice, a guard timer one packet time ahead of the
//! frame timer keeps the next tick planned: registering the frame timer then
//! moves nothing earlier. Each frame the guard is pushed one frame on, which
//! for a pending timer is an atomic store; it stays in the wheel slot of the
//! next tick and, while the cadence holds, never fires.

use std::pin::Pin;
use std::time::Duration;

use tokio::time::{sleep_until, Instant, Sleep};

/// When nothing is due.
const IDLE: Duration = Duration::from_secs(3600);

pub(super) struct Wakeup {
    sleep: Pin<Box<Sleep>>,
    guard: Option<Pin<Box<Sleep>>>,
}

impl Wakeup {
    pub(super) fn new() -> Self {
        Self {
            sleep: Box::pin(sleep_until(Instant::now() + IDLE)),
            guard: None,
        }
    }

    /// Aim at `at` (`None`: nothing due); `period` is the voice cadence, if any.
    pub(super) fn set(&mut self, at: Option<Instant>, period: Option<Duration>) {
        let at = at.unwrap_or_else(|| Instant::now() + IDLE);
        let current = self.sleep.deadline();
        if at < current || (at > current && self.sleep.is_elapsed()) {
            self.sleep.as_mut().reset(at);
        } else if at > current {
            // Pushing a pending timer later leaves its wheel slot behind: the
            // driver would wake there for nothing. A new timer takes the new slot.
            self.sleep = Box::pin(sleep_until(at));
        }
        let Some(period) = period else {
            self.guard = None;
            return;
        };
        let target = at + period;
        match self.guard.as_mut() {
            Some(g) if !g.is_elapsed() && g.deadline() <= target => {
                if g.deadline() < target {
                    g.as_mut().reset(target);
                }
            }
            _ => {
                let mut g = Box::pin(sleep_until(target));
                // Registered now, not at a first poll (it is never polled).
                g.as_mut().reset(target);
                self.guard = Some(g);
            }
        }
    }

    /// The timer to wait on.
    pub(super) fn sleep(&mut self) -> Pin<&mut Sleep> {
        self.sleep.as_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[tokio::test(start_paused = true)]
    async fn fires_at_the_deadline_set_last_and_follows_a_cadence() {
        let t0 = Instant::now();
        let mut w = Wakeup::new();
        w.set(Some(t0 + 50 * MS), None);
        // Moved earlier, then later again while pending.
        w.set(Some(t0 + 10 * MS), None);
        w.set(Some(t0 + 30 * MS), Some(20 * MS));
        w.sleep().await;
        assert_eq!(Instant::now(), t0 + 30 * MS);
        // A cadence of frames: each fires on its tick, the guard never early.
        for k in 1..=5u32 {
            w.set(Some(t0 + 30 * MS + k * 20 * MS), Some(20 * MS));
            w.sleep().await;
            assert_eq!(Instant::now(), t0 + 30 * MS + k * 20 * MS);
        }
        // Nothing due: no wake-up within the hour.
        w.set(None, None);
        let idle = tokio::time::timeout(IDLE - MS, w.sleep()).await;
        assert!(idle.is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn an_unchanged_past_deadline_stays_ready() {
        let t0 = Instant::now();
        let mut w = Wakeup::new();
        w.set(Some(t0 + MS), None);
        w.sleep().await;
        // The engine has not moved its deadline yet: the timer is still due.
        w.set(Some(t0 + MS), None);
        tokio::time::timeout(Duration::ZERO, w.sleep())
            .await
            .expect("a due timer is ready at once");
    }
}
