//! Calls that survive a change of network, in memory: the caller moves to a new
//! address mid-call (new SIP connection, new media socket), or the media path
//! dies for a while; the call reconnects with an ICE restart (re-INVITE through
//! natter's proxy core) and voice resumes. A path that never comes back ends
//! the call with a reason.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{speechy, World};
use natter_phone::sip::EndReason;
use natter_phone::voice::OPUS_RATE;
use natter_phone::PhoneEvent;

const TALK_S: f64 = 6.0;

/// Alice calls Bob and talks; returns the world once both are connected.
fn connected_call(force_relay: bool) -> World {
    let mut w = World::new();
    let a = w.add("alice", force_relay);
    let b = w.add("bob", false);
    w.connect_call(a, b, "bob", |p| p.set_microphone(speechy(TALK_S)));
    w
}

fn is_connected(e: &PhoneEvent) -> bool {
    matches!(e, PhoneEvent::Connected { .. })
}

fn count(events: &[PhoneEvent], pred: impl Fn(&PhoneEvent) -> bool) -> usize {
    events.iter().filter(|e| pred(e)).count()
}

/// Run until node `i` is connected again (a second `Connected`); returns how long it took.
/// The path of the last `Connected` event.
fn last_path(events: &[PhoneEvent]) -> natter_phone::media_session::PathInfo {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            PhoneEvent::Connected { path } => Some(*path),
            _ => None,
        })
        .expect("connected")
}

fn until_reconnected(w: &mut World, i: usize, limit: Duration) -> Duration {
    let start = w.now;
    let end = start + limit;
    while w.now < end {
        if count(&w.nodes[i].events, is_connected) >= 2 {
            return w.now - start;
        }
        w.run(Duration::from_millis(10));
    }
    panic!("node {i} did not reconnect: {:?}", w.nodes[i].events);
}

/// Correlation of what bob heard in `[from, to)` seconds of the call with
/// alice's speech (best lag up to 0.5 s).
fn heard_correlation(w: &World, from_s: f64, to_s: f64) -> f64 {
    let sent = speechy(TALK_S);
    let heard = &w.nodes[1].heard;
    let rate = f64::from(OPUS_RATE);
    let (from, to) = ((from_s * rate) as usize, (to_s * rate) as usize);
    assert!(heard.len() >= to, "bob heard only {} samples", heard.len());
    natter_media::quality::compare(
        &sent[from..to],
        &heard[from..to + (OPUS_RATE as usize / 2).min(heard.len() - to)],
        OPUS_RATE,
        Duration::from_millis(500),
    )
    .correlation
}

#[test]
fn the_caller_moves_to_a_new_network_and_the_call_carries_on() {
    let mut w = connected_call(false);
    let (a, b) = (0, 1);
    w.run(Duration::from_millis(1500));
    let old_media = w.nodes[a].media;
    let moved_at = w.now;
    w.move_node(a, IpAddr::from([10, 0, 9, 1]));
    let took = until_reconnected(&mut w, a, Duration::from_secs(5));
    assert!(
        took < Duration::from_millis(1000),
        "alice reconnected after {took:?}"
    );
    until_reconnected(&mut w, b, Duration::from_secs(2));
    // Events: Connected, Reconnecting, Connected on the new address.
    let ev = &w.nodes[a].events;
    let seq: Vec<&str> = ev
        .iter()
        .filter_map(|e| match e {
            PhoneEvent::Connected { .. } => Some("connected"),
            PhoneEvent::Reconnecting => Some("reconnecting"),
            PhoneEvent::Ended { .. } => Some("ended"),
            _ => None,
        })
        .collect();
    assert_eq!(seq, ["connected", "reconnecting", "connected"], "{ev:?}");
    let path = last_path(ev);
    assert_eq!(
        path.local_addr, w.nodes[a].media,
        "new path from the new address"
    );
    assert_ne!(path.local_addr, old_media);
    assert_eq!(
        count(&w.nodes[b].events, |e| matches!(
            e,
            PhoneEvent::Reconnecting
        )),
        1
    );
    // Talk on, then check the speech after the move reached bob.
    w.run(Duration::from_millis(2500));
    let after = (w.now - moved_at).as_secs_f64();
    let t_move = 1.5 + 0.05; // seconds into the call when alice moved (plus setup)
    let c = heard_correlation(&w, t_move + 1.0, t_move + after - 0.5);
    eprintln!("alice reconnected in {took:?}; correlation after the move {c:.3}");
    assert!(c > 0.7, "bob's audio after the move does not match: {c:.3}");
    let now = w.now;
    w.phone(a).hangup(now);
    w.run(Duration::from_millis(200));
    assert!(
        w.nodes[b].events.iter().any(|e| matches!(
            e,
            PhoneEvent::Ended {
                reason: EndReason::RemoteHangup,
                ..
            }
        )),
        "the BYE reached bob over alice's new flow: {:?}",
        w.nodes[b].events
    );
}

#[test]
fn a_relayed_call_gets_a_new_allocation_after_a_move() {
    let mut w = connected_call(true);
    w.run(Duration::from_millis(500));
    w.move_node(0, IpAddr::from([10, 0, 9, 1]));
    until_reconnected(&mut w, 0, Duration::from_secs(5));
    let path = last_path(&w.nodes[0].events);
    assert!(path.relayed, "{path:?}");
    assert_eq!(path.local.as_str(), "relay");
}

#[test]
fn a_path_that_dies_and_returns_is_restarted_without_a_move() {
    let mut w = connected_call(false);
    w.run(Duration::from_millis(500));
    w.cut_media = true;
    assert!(w.run_until(0, Duration::from_secs(3), |e| matches!(
        e,
        PhoneEvent::Reconnecting
    )));
    w.run(Duration::from_secs(2));
    w.cut_media = false;
    let took = until_reconnected(&mut w, 0, Duration::from_secs(10));
    eprintln!("reconnected {took:?} after the path came back");
    assert!(
        count(&w.nodes[0].events, |e| matches!(
            e,
            PhoneEvent::Ended { .. }
        )) == 0
    );
}

#[test]
fn a_path_that_never_returns_ends_the_call_with_a_reason() {
    let mut w = connected_call(false);
    w.run(Duration::from_millis(500));
    let cut = w.now;
    w.cut_media = true;
    let ended = |e: &PhoneEvent| matches!(e, PhoneEvent::Ended { .. });
    assert!(w.run_until(0, Duration::from_secs(20), ended));
    let took = w.now - cut;
    assert!(
        took >= Duration::from_secs(15) && took < Duration::from_secs(18),
        "ended after {took:?}"
    );
    let reason = w.nodes[0]
        .events
        .iter()
        .find_map(|e| match e {
            PhoneEvent::Ended { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .expect("ended");
    let text = reason.to_string();
    assert!(matches!(reason, EndReason::ConnectionLost(_)), "{text}");
    assert!(text.contains("15 s"), "{text}");
    assert!(
        w.run_until(1, Duration::from_secs(3), ended),
        "bob got the BYE"
    );
}

#[test]
fn a_broken_sip_connection_is_replaced_and_the_call_stays_reachable() {
    let mut w = connected_call(false);
    w.run(Duration::from_millis(500));
    w.reconnect_sip(0);
    w.run(Duration::from_millis(500));
    let registered = |e: &PhoneEvent| matches!(e, PhoneEvent::Registered { .. });
    assert_eq!(count(&w.nodes[0].events, registered), 2, "registered again");
    assert_eq!(
        count(&w.nodes[0].events, |e| matches!(
            e,
            PhoneEvent::Reconnecting
        )),
        0,
        "media never stopped"
    );
    // Bob hangs up: the server must send the BYE over alice's new connection.
    let now = w.now;
    w.phone(1).hangup(now);
    w.run(Duration::from_millis(200));
    assert!(
        w.nodes[0].events.iter().any(|e| matches!(
            e,
            PhoneEvent::Ended {
                reason: EndReason::RemoteHangup,
                ..
            }
        )),
        "{:?}",
        w.nodes[0].events
    );
}

#[test]
fn a_quiet_call_with_dtx_is_not_mistaken_for_a_dead_path() {
    let mut w = World::new();
    let dtx = |c: &mut natter_phone::PhoneConfig| c.encoder.dtx = true;
    let a = w.add_configured("alice", false, dtx);
    let b = w.add_configured("bob", false, dtx);
    let now = w.now;
    w.phone(a).register(now);
    w.phone(b).register(now);
    w.run(Duration::from_millis(100));
    let now = w.now;
    w.phone(a).dial(now, "bob").unwrap();
    w.run(Duration::from_millis(300));
    let now = w.now;
    w.phone(b).answer(now).unwrap();
    assert!(w.run_until(a, Duration::from_secs(5), is_connected));
    // Neither microphone has anything to say: DTX sends (almost) nothing.
    w.run(Duration::from_secs(12));
    for i in [a, b] {
        let ev = &w.nodes[i].events;
        assert_eq!(
            count(ev, |e| matches!(e, PhoneEvent::Reconnecting)),
            0,
            "{ev:?}"
        );
    }
}

#[test]
fn the_callee_moves_and_restarts_ice_itself() {
    let mut w = connected_call(false);
    let (a, b) = (0, 1);
    w.run(Duration::from_millis(1000));
    w.move_node(b, IpAddr::from([10, 0, 8, 2]));
    let took = until_reconnected(&mut w, b, Duration::from_secs(5));
    assert!(
        took < Duration::from_secs(1),
        "bob reconnected after {took:?}"
    );
    until_reconnected(&mut w, a, Duration::from_secs(2));
    let path = last_path(&w.nodes[b].events);
    assert_eq!(
        path.local_addr, w.nodes[b].media,
        "bob's new address carries the call"
    );
    // Alice talks on; bob still hears her after his move.
    w.run(Duration::from_millis(2500));
    let c = heard_correlation(&w, 1.6, 3.2);
    assert!(c > 0.7, "bob's audio after his move: {c:.3}");
}
