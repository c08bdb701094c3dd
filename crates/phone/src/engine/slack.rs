//! Timer coalescing for [`super::Phone::poll_timeout`].

use std::time::{Duration, Instant};

use super::ActiveCall;

/// The most a timer is held back to share the voice frame's wake-up.
pub const MAX_SLACK: Duration = Duration::from_millis(20);

/// Timer coalescing: while a call sends voice, the frame clock ticks every
/// packet time anyway, so a timer due at most one packet time (and at most
/// [`MAX_SLACK`]) before the next tick waits for that tick. Playout then runs
/// on the capture clock, as a sound card's duplex callback does: a frame is
/// played up to one packet time later than the jitter buffer's schedule (a
/// fixed offset, never a frame sooner, so no packet counts as lost that would
/// not have otherwise). str0m's timers (RTCP, consent, stats) wait likewise.
/// While the path is being restored every timer runs on time: ICE checks and
/// restart offers set how soon voice is back.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Slack {
    /// The next voice frame, when one is being sent and the path is up.
    tick: Option<Instant>,
    /// The packet time.
    frame: Duration,
}

impl Slack {
    pub(super) fn of(call: Option<&ActiveCall>) -> Self {
        let Some(c) = call else {
            return Slack::default();
        };
        let Some(tx) = c.tx.as_ref().filter(|_| !c.roam.is_active()) else {
            return Slack::default();
        };
        Slack {
            tick: Some(tx.poll_timeout()),
            frame: Duration::from_millis(u64::from(tx.settings().frame_ms)),
        }
    }

    /// The packet time, if voice is being sent (the frame clock ticks).
    pub(super) fn frame(&self) -> Option<Duration> {
        self.tick.map(|_| self.frame)
    }

    /// The next voice frame's deadline, if voice is being sent.
    pub(super) fn tick(&self) -> Option<Instant> {
        self.tick
    }

    /// `deadline`, or the next frame tick when that is at most one window later.
    pub(super) fn defer(&self, deadline: Option<Instant>) -> Option<Instant> {
        let d = deadline?;
        match self.tick {
            Some(tick) if d <= tick && tick.duration_since(d) <= self.frame.min(MAX_SLACK) => {
                Some(tick)
            }
            _ => Some(d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn timers_within_a_frame_before_the_tick_wait_for_it() {
        let t0 = Instant::now();
        let tick = t0 + 20 * MS;
        let s = Slack {
            tick: Some(tick),
            frame: 20 * MS,
        };
        assert_eq!(s.frame(), Some(20 * MS));
        assert_eq!(s.defer(Some(t0 + 5 * MS)), Some(tick));
        assert_eq!(s.defer(Some(t0)), Some(tick));
        assert_eq!(s.defer(Some(tick)), Some(tick));
        // After the tick: a wake-up of its own (never earlier than asked).
        assert_eq!(s.defer(Some(tick + MS)), Some(tick + MS));
        // More than a window before the tick: on time.
        assert_eq!(s.defer(Some(t0 - MS)), Some(t0 - MS));
        assert_eq!(s.defer(None), None);
    }

    #[test]
    fn without_a_voice_tick_timers_run_on_time() {
        let t0 = Instant::now();
        let idle = Slack::of(None);
        assert_eq!(idle.defer(Some(t0 + 5 * MS)), Some(t0 + 5 * MS));
        assert_eq!(idle.frame(), None);
    }
}
