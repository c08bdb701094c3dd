//! Timer wake-ups per second in the steady state of a call: the phone's timers
//! (voice frame, playout, str0m's RTCP/consent/stats, live stats, roaming) are
//! coalesced onto the voice frame's tick, so a driver wakes for its timers
//! about once per packet time (20 ms), plus once per received datagram.

mod common;

use std::time::Duration;

use common::{speechy, World};

/// Runs the world until phone `i`'s next timer is past `end`, one of its
/// deadlines at a time; returns how many deadlines it reached.
fn timer_wakeups(w: &mut World, i: usize, span: Duration) -> u32 {
    let end = w.now + span;
    let mut wakes = 0;
    loop {
        w.pump();
        let Some(due) = w.phone(i).poll_timeout() else {
            break;
        };
        if due > end {
            break;
        }
        let step = due.saturating_duration_since(w.now);
        w.run(step);
        wakes += 1;
    }
    w.run(end.saturating_duration_since(w.now));
    wakes
}

#[test]
fn a_call_wakes_about_once_per_frame_for_its_timers() {
    let mut w = World::new();
    let a = w.add("alice", false);
    let b = w.add("bob", false);
    w.connect_call(a, b, "bob", |p| p.set_microphone(speechy(8.0)));
    // Past start-up (DTLS, first RTCP, jitter buffer settling).
    w.run(Duration::from_secs(2));
    let span = Duration::from_secs(4);
    let frames = (span.as_millis() / 20) as u32;
    let caller = timer_wakeups(&mut w, a, span);
    let callee = timer_wakeups(&mut w, b, span);
    eprintln!("timer wake-ups in {span:?}: caller {caller}, callee {callee} ({frames} frames)");
    // One per frame; a few percent more where a timer falls outside a frame's window.
    for (who, n) in [("caller", caller), ("callee", callee)] {
        assert!(
            n >= frames && n <= frames * 105 / 100,
            "{who}: {n} timer wake-ups for {frames} frames"
        );
    }
    // And the call still carries speech.
    let heard = &w.nodes[b].heard;
    let loud = heard.iter().filter(|s| s.unsigned_abs() > 1000).count();
    assert!(loud > 16_000, "the callee heard {loud} loud samples");
}
