//! Proxy scenarios: forking, best response, CANCEL, record-route and
//! in-dialog routing, timers, refusals — all with injected time.

mod common;

use std::time::Duration;

use common::{register, Harness, Ua, DOMAIN};
use natter_sip::flow::{ConnId, Flow, Transport};
use natter_sip::{HeaderName, Message, Method};

struct Call {
    h: Harness,
    alice: Ua,
    alice_flow: Flow,
    bob_flows: Vec<Flow>,
}

/// Bob registers `devices` phones; alice registers one.
fn setup(devices: usize) -> Call {
    let mut h = Harness::new();
    let mut bob_flows = Vec::new();
    for i in 0..devices {
        let flow = h.udp(&format!("198.51.100.{}:5060", 20 + i));
        let mut bob = Ua::new("bob", "bob-pw", &format!("10.0.1.{i}:5060"));
        let contact = bob.contact();
        assert_eq!(
            register(&mut h, &mut bob, flow, &[("Contact", &contact)]).code(),
            Some(200)
        );
        bob_flows.push(flow);
    }
    let alice_flow = h.udp("198.51.100.10:5060");
    let mut alice = Ua::new("alice", "alice-pw", "10.0.0.1:5060");
    let contact = alice.contact();
    register(&mut h, &mut alice, alice_flow, &[("Contact", &contact)]);
    h.events();
    Call {
        h,
        alice,
        alice_flow,
        bob_flows,
    }
}

impl Call {
    /// INVITE → 407 → INVITE with credentials; returns the authorized INVITE
    /// and the forked branches (flow, request) after checking the 100 Trying.
    fn invite(&mut self, to: &str) -> (Message, Vec<(Flow, Message)>) {
        let inv = self.alice.invite(to);
        self.h.send(self.alice_flow, &inv);
        let (_, challenge) = self.h.one();
        assert_eq!(challenge.code(), Some(407), "{challenge:?}");
        let inv = self.alice.authorize(&inv, &challenge);
        self.h.send(self.alice_flow, &inv);
        let mut out = self.h.drain();
        let trying = out.remove(0);
        assert_eq!((trying.0, trying.1.code()), (self.alice_flow, Some(100)));
        (inv, out)
    }

    /// The 200 OK the proxy forwarded to alice since the last drain.
    fn ok_to_alice(&mut self) -> Message {
        let alice = self.alice_flow;
        self.h
            .drain()
            .into_iter()
            .find(|(f, m)| *f == alice && m.code() == Some(200))
            .expect("200 forwarded")
            .1
    }

    /// A response from a branch's device to the request it got.
    fn answer(&mut self, branch: &(Flow, Message), code: u16, tag: &str) {
        let resp = branch.1.response(code, "X", Some(tag));
        self.h.send(branch.0, &resp);
    }
}

#[test]
fn invite_is_challenged_then_forked_to_every_device_over_its_flow() {
    let mut c = setup(2);
    let (inv, branches) = c.invite("bob");
    assert_eq!(branches.len(), 2);
    for (i, (flow, req)) in branches.iter().enumerate() {
        assert_eq!(*flow, c.bob_flows[i]);
        assert_eq!(
            req.request_uri(),
            Some(format!("sip:bob@10.0.1.{i}:5060").as_str())
        );
        assert_eq!(req.max_forwards(), Some(69));
        assert_eq!(req.headers_named(&HeaderName::Via).count(), 2);
        assert!(req
            .top_via()
            .unwrap()
            .branch()
            .unwrap()
            .starts_with("z9hG4bK-nt"));
        assert_eq!(
            req.header(&HeaderName::RecordRoute),
            Some("<sip:192.0.2.1:5060;transport=udp;lr>")
        );
        assert_eq!(
            req.header(&HeaderName::ProxyAuthorization),
            None,
            "credentials are consumed"
        );
        assert_eq!(req.body, inv.body);
    }
}

#[test]
fn first_2xx_wins_other_branches_are_cancelled_and_bye_follows_the_dialog() {
    let mut c = setup(2);
    let (_inv, branches) = c.invite("bob");
    c.answer(&branches[0], 180, "b0");
    let (to, ringing) = c.h.one();
    assert_eq!((to, ringing.code()), (c.alice_flow, Some(180)));
    assert_eq!(
        ringing.headers_named(&HeaderName::Via).count(),
        1,
        "our Via is removed"
    );
    c.answer(&branches[1], 180, "b1");
    c.h.drain();
    c.answer(&branches[1], 200, "b1");
    let out = c.h.drain();
    let ok = out
        .iter()
        .find(|(f, _)| *f == c.alice_flow)
        .expect("200 forwarded");
    assert_eq!(ok.1.code(), Some(200));
    let cancel = out
        .iter()
        .find(|(_, m)| m.method() == Some(&Method::Cancel))
        .expect("CANCEL to branch 0");
    assert_eq!(cancel.0, c.bob_flows[0]);
    assert_eq!(
        cancel.1.top_via().unwrap().branch(),
        branches[0].1.top_via().unwrap().branch()
    );
    assert_eq!(cancel.1.cseq().unwrap().method, Method::Cancel);
    // Branch 0 answers the CANCEL and its INVITE: 487 is absorbed and ACKed.
    c.h.send(c.bob_flows[0], &cancel.1.response(200, "OK", Some("b0")));
    c.answer(&branches[0], 487, "b0");
    let (to, ack) = c.h.one();
    assert_eq!((to, ack.method()), (c.bob_flows[0], Some(&Method::Ack)));

    // ACK and BYE from alice go to the answering device's flow.
    let ok_msg = ok.1.clone();
    let mut ack = in_dialog(&ok_msg, Method::Ack, "z9hG4bK-ack", 2);
    ack.push(HeaderName::Route, "<sip:192.0.2.1:5060;transport=udp;lr>");
    c.h.send(c.alice_flow, &ack);
    let (to, fwd) = c.h.one();
    assert_eq!((to, fwd.method()), (c.bob_flows[1], Some(&Method::Ack)));
    assert_eq!(
        fwd.header(&HeaderName::Route),
        None,
        "our Route is consumed"
    );

    // A stranger cannot end the call.
    let stranger_bye = in_dialog(&ok_msg, Method::Bye, "z9hG4bK-evil", 3);
    let stranger = c.h.udp("203.0.113.66:5060");
    c.h.send(stranger, &stranger_bye);
    let bye = in_dialog(&ok_msg, Method::Bye, "z9hG4bK-bye", 3);
    assert_eq!(c.h.one().1.code(), Some(403));
    c.h.send(c.alice_flow, &bye);
    let (to, fwd_bye) = c.h.one();
    assert_eq!((to, fwd_bye.method()), (c.bob_flows[1], Some(&Method::Bye)));
    c.h.send(c.bob_flows[1], &fwd_bye.response(200, "OK", None));
    let (to, bye_ok) = c.h.one();
    assert_eq!((to, bye_ok.code()), (c.alice_flow, Some(200)));
    // The dialog is gone: a second BYE gets 481.
    let bye2 = in_dialog(&ok_msg, Method::Bye, "z9hG4bK-bye2", 4);
    c.h.send(c.alice_flow, &bye2);
    assert_eq!(c.h.one().1.code(), Some(481));
    assert_no_leaks(&mut c.h);
}

#[test]
fn a_neighbour_behind_the_same_nat_cannot_take_over_a_dialog() {
    let mut c = setup(1);
    let (_inv, branches) = c.invite("bob");
    c.answer(&branches[0], 200, "b0");
    let ok = c.ok_to_alice();
    // Someone else at alice's public address (another port) sends inside the
    // dialog: it cannot be told from alice, so it is routed…
    let neighbour = c.h.udp("198.51.100.10:6000");
    c.h.send(neighbour, &in_dialog(&ok, Method::Info, "z9hG4bK-nb", 2));
    let (to, fwd) = c.h.one();
    assert_eq!((to, fwd.method()), (c.bob_flows[0], Some(&Method::Info)));
    // …but bob's next request still goes to the flow alice registered over.
    let mut bye = Message::request(Method::Bye, "sip:alice@10.0.0.1:5060");
    bye.push(
        HeaderName::Via,
        "SIP/2.0/UDP 10.0.1.0:5060;branch=z9hG4bK-bob-bye",
    );
    bye.push(HeaderName::MaxForwards, "70");
    bye.push(HeaderName::From, ok.header(&HeaderName::To).unwrap());
    bye.push(HeaderName::To, ok.header(&HeaderName::From).unwrap());
    bye.push(HeaderName::CallId, ok.call_id().unwrap());
    bye.push(HeaderName::CSeq, "1 BYE");
    c.h.send(c.bob_flows[0], &bye);
    let (to, fwd) = c.h.one();
    assert_eq!(
        (to, fwd.method()),
        (c.alice_flow, Some(&Method::Bye)),
        "the dialog did not move to the neighbour"
    );
}

/// A request alice sends inside the dialog of a 2xx.
fn in_dialog(ok: &Message, method: Method, branch: &str, seq: u32) -> Message {
    let mut m = Message::request(method.clone(), "sip:bob@10.0.1.1:5060");
    m.push(
        HeaderName::Via,
        format!("SIP/2.0/UDP 10.0.0.1:5060;branch={branch}"),
    );
    m.push(HeaderName::MaxForwards, "70");
    m.push(HeaderName::From, ok.header(&HeaderName::From).unwrap());
    m.push(HeaderName::To, ok.header(&HeaderName::To).unwrap());
    m.push(HeaderName::CallId, ok.call_id().unwrap());
    m.push(HeaderName::CSeq, format!("{seq} {method}"));
    m
}

#[test]
fn all_branches_fail_best_response_goes_up_and_each_is_acked() {
    let mut c = setup(2);
    let (_, branches) = c.invite("bob");
    c.answer(&branches[0], 486, "b0");
    let (to, ack) = c.h.one();
    assert_eq!((to, ack.method()), (c.bob_flows[0], Some(&Method::Ack)));
    c.answer(&branches[1], 404, "b1");
    let out = c.h.drain();
    assert_eq!(out.len(), 2, "{out:#?}");
    let up = out.iter().find(|(f, _)| *f == c.alice_flow).unwrap();
    assert_eq!(up.1.code(), Some(486), "busy is the more useful answer");
    // Timer G retransmits until alice ACKs.
    c.h.advance(Duration::from_millis(600));
    let again = c.h.one();
    assert_eq!(again.1.code(), Some(486));
    let mut ack = up.1.clone();
    ack.start = natter_sip::msg::StartLine::Request {
        method: Method::Ack,
        uri: "sip:bob@example.org".into(),
    };
    ack.set(
        HeaderName::CSeq,
        format!("{} ACK", up.1.cseq().unwrap().seq),
    );
    ack.push(HeaderName::MaxForwards, "70");
    c.h.send(c.alice_flow, &ack);
    assert!(c.h.drain().is_empty(), "ACK for a non-2xx is absorbed");
    c.h.advance(Duration::from_secs(5));
    assert!(
        c.h.drain().is_empty(),
        "no more retransmissions after the ACK"
    );
    assert_no_leaks(&mut c.h);
}

#[test]
fn caller_cancel_is_passed_on_and_ends_in_487() {
    let mut c = setup(2);
    let (inv, branches) = c.invite("bob");
    c.answer(&branches[0], 180, "b0");
    c.answer(&branches[1], 180, "b1");
    c.h.drain();
    let cancel = cancel_for(&inv);
    c.h.send(c.alice_flow, &cancel);
    let out = c.h.drain();
    assert_eq!(out[0].0, c.alice_flow);
    assert_eq!(
        (out[0].1.code(), out[0].1.cseq().unwrap().method),
        (Some(200), Method::Cancel)
    );
    let cancels: Vec<_> = out[1..]
        .iter()
        .filter(|(_, m)| m.method() == Some(&Method::Cancel))
        .collect();
    assert_eq!(cancels.len(), 2);
    c.answer(&branches[0], 487, "b0");
    c.answer(&branches[1], 487, "b1");
    let up: Vec<_> =
        c.h.drain()
            .into_iter()
            .filter(|(f, _)| *f == c.alice_flow)
            .collect();
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].1.code(), Some(487));
}

#[test]
fn cancel_for_nothing_gets_481() {
    let mut c = setup(1);
    let mut cancel = c.alice.invite("bob");
    cancel.start = natter_sip::msg::StartLine::Request {
        method: Method::Cancel,
        uri: "sip:bob@example.org".into(),
    };
    cancel.set(HeaderName::CSeq, "1 CANCEL");
    cancel.body.clear();
    c.h.send(c.alice_flow, &cancel);
    assert_eq!(c.h.one().1.code(), Some(481));
}

#[test]
fn silent_device_gets_retransmissions_then_408() {
    let mut c = setup(1);
    let (_, branches) = c.invite("bob");
    assert_eq!(branches.len(), 1);
    c.h.advance(Duration::from_millis(500));
    let (to, again) = c.h.one();
    assert_eq!(
        (to, again.method()),
        (c.bob_flows[0], Some(&Method::Invite)),
        "timer A"
    );
    c.h.advance(Duration::from_secs(32));
    let up: Vec<_> =
        c.h.drain()
            .into_iter()
            .filter(|(f, _)| *f == c.alice_flow)
            .collect();
    assert_eq!(up.last().unwrap().1.code(), Some(408), "timer B");
}

#[test]
fn ringing_without_answer_is_cancelled_by_timer_c() {
    let mut c = setup(1);
    let (_, branches) = c.invite("bob");
    c.answer(&branches[0], 180, "b0");
    c.h.drain();
    c.h.advance(Duration::from_secs(181));
    let out = c.h.drain();
    let cancel = out
        .iter()
        .find(|(_, m)| m.method() == Some(&Method::Cancel))
        .expect("timer C cancels");
    assert_eq!(cancel.0, c.bob_flows[0]);
    c.answer(&branches[0], 487, "b0");
    let up: Vec<_> =
        c.h.drain()
            .into_iter()
            .filter(|(f, _)| *f == c.alice_flow)
            .collect();
    assert_eq!(up[0].1.code(), Some(487));
}

#[test]
fn refusals_404_480_403_483() {
    let mut c = setup(1);
    let (_, branches) = c.invite("bob");
    assert_eq!(branches.len(), 1);
    // 404: no such account.
    let inv = c.alice.invite("nobody");
    c.h.send(c.alice_flow, &inv);
    let challenge = c.h.one().1;
    let inv = c.alice.authorize(&inv, &challenge);
    c.h.send(c.alice_flow, &inv);
    assert_eq!(c.h.one().1.code(), Some(404));
    // 480: an account with no device.
    let inv = c.alice.invite("+14155550100");
    c.h.send(c.alice_flow, &inv);
    let challenge = c.h.one().1;
    let inv = c.alice.authorize(&inv, &challenge);
    c.h.send(c.alice_flow, &inv);
    assert_eq!(c.h.one().1.code(), Some(480));
    // 403: another domain (never an open relay), before any challenge.
    let mut inv = c.alice.invite("bob");
    inv.set_request_uri("sip:bob@elsewhere.example");
    c.h.send(c.alice_flow, &inv);
    assert_eq!(c.h.one().1.code(), Some(403));
    // 403: from another domain.
    let mut inv = c.alice.invite("bob");
    inv.set(HeaderName::From, "<sip:mallory@evil.example>;tag=m");
    c.h.send(c.alice_flow, &inv);
    assert_eq!(c.h.one().1.code(), Some(403));
    // 403: a Route to somewhere else.
    let mut inv = c.alice.invite("bob");
    inv.push(HeaderName::Route, "<sip:relay.evil.example;lr>");
    c.h.send(c.alice_flow, &inv);
    assert_eq!(c.h.one().1.code(), Some(403));
    // 483: Max-Forwards exhausted.
    let mut inv = c.alice.invite("bob");
    inv.set(HeaderName::MaxForwards, "0");
    c.h.send(c.alice_flow, &inv);
    assert_eq!(c.h.one().1.code(), Some(483));
}

#[test]
fn loop_back_to_ourselves_is_detected() {
    let mut c = setup(0);
    // Bob registers a contact that is the AOR itself: forwarding would loop.
    let flow = c.h.udp("198.51.100.30:5060");
    let mut bob = Ua::new("bob", "bob-pw", "10.0.1.9:5060");
    register(
        &mut c.h,
        &mut bob,
        flow,
        &[("Contact", &format!("<sip:bob@{DOMAIN}>"))],
    );
    let (_, branches) = c.invite("bob");
    let (to, looped) = branches.into_iter().next().unwrap();
    assert_eq!(to, flow);
    // The request comes back to us (as a misconfigured device would send it).
    c.h.send(c.alice_flow, &looped);
    assert_eq!(c.h.one().1.code(), Some(482));
}

#[test]
fn retransmitted_invite_gets_the_last_response_not_a_new_branch() {
    let mut c = setup(1);
    let (inv, branches) = c.invite("bob");
    c.answer(&branches[0], 180, "b0");
    c.h.drain();
    c.h.send(c.alice_flow, &inv);
    let (to, resent) = c.h.one();
    assert_eq!((to, resent.code()), (c.alice_flow, Some(180)));
}

/// Walk time forward by `by`, one `handle_timeout` per deadline the core
/// names; returns the deadlines, less the housekeeping sweeps (every 5 s
/// from `t0`).
fn wakeups(h: &mut Harness, t0: std::time::Instant, by: Duration) -> Vec<Duration> {
    let end = h.now + by;
    let mut seen = Vec::new();
    while let Some(at) = h.server.poll_timeout().filter(|at| *at <= end) {
        h.now = h.now.max(at);
        h.server.handle_timeout(h.now);
        let since = at - t0;
        if !since.as_millis().is_multiple_of(5000) {
            seen.push(since);
        }
    }
    h.now = end;
    seen
}

#[test]
fn finished_transactions_leave_no_dead_deadlines() {
    let mut c = setup(1);
    let t0 = c.h.now;
    let (_inv, branches) = c.invite("bob");
    c.answer(&branches[0], 180, "b0");
    c.h.now += Duration::from_millis(100);
    c.answer(&branches[0], 180, "b0"); // pushes Timer C back
    c.answer(&branches[0], 200, "b0");
    let ok = c.ok_to_alice();
    // Timers A (500 ms), B (32 s), both Timer C deadlines and the server
    // transaction's safety net are dead: only the lingers (Timer M, 64*T1)
    // and the sweep remain.
    let open = c.h.server.open_state();
    assert_eq!(open.timers, 3, "{open:?}");
    assert_eq!(
        c.h.server.poll_timeout(),
        Some(t0 + Duration::from_secs(5)),
        "the next wake-up is the sweep, not the dead Timer A"
    );

    // A BYE answered at once: Timers E and F die with the 200.
    c.h.send(c.alice_flow, &in_dialog(&ok, Method::Bye, "z9hG4bK-bye", 2));
    let (_, bye) = c.h.one();
    c.h.send(c.bob_flows[0], &bye.response(200, "OK", None));
    c.h.one();
    // Both pairs linger 64*T1 from 100 ms, rounded up to the timer grain.
    let done = Duration::from_millis(32_250);
    assert_eq!(
        wakeups(&mut c.h, t0, Duration::from_secs(60)),
        vec![done],
        "one wake-up for the lingers of both transaction pairs, then nothing"
    );
    assert_no_leaks(&mut c.h);
}

#[test]
fn an_answered_cancel_stops_its_retransmissions() {
    let mut c = setup(1);
    let t0 = c.h.now;
    let (inv, branches) = c.invite("bob");
    c.answer(&branches[0], 180, "b0");
    c.h.drain();
    let cancel = cancel_for(&inv);
    c.h.send(c.alice_flow, &cancel);
    let ours =
        c.h.drain()
            .into_iter()
            .find(|(_, m)| m.method() == Some(&Method::Cancel))
            .expect("CANCEL passed on")
            .1;
    c.h.send(c.bob_flows[0], &ours.response(200, "OK", Some("b0")));
    // The CANCEL is answered but the INVITE not yet: the live deadlines are
    // the branch's 64*T1 give-up and Timer C, no CANCEL retransmission.
    assert!(c.h.drain().is_empty());
    assert_eq!(
        wakeups(&mut c.h, t0, Duration::from_secs(10)),
        Vec::<Duration>::new(),
        "no wake-up for the answered CANCEL's Timer E"
    );
    c.answer(&branches[0], 487, "b0");
    let up = c.h.drain();
    assert!(up
        .iter()
        .any(|(f, m)| *f == c.alice_flow && m.code() == Some(487)));
    assert_no_leaks(&mut c.h);
}

fn assert_no_leaks(h: &mut Harness) {
    h.advance(Duration::from_secs(400));
    let open = h.server.open_state();
    assert_eq!(
        (
            open.server_transactions,
            open.client_transactions,
            open.dialogs
        ),
        (0, 0, 0),
        "{open:?}"
    );
    assert_eq!(open.timers, 1, "only the sweep remains");
}

/// An INVITE whose SDP makes it larger than 1,300 bytes once forwarded.
fn large_invite(ua: &mut Ua) -> Message {
    let mut inv = ua.invite("bob");
    for i in 0..40 {
        inv.body.extend_from_slice(
            format!(
                "a=candidate:{i} 1 udp 2130706431 10.0.0.1 {} typ host\r\n",
                4000 + i
            )
            .as_bytes(),
        );
    }
    inv
}

#[test]
fn large_request_goes_over_tcp_then_back_to_udp_when_no_connection_can_be_made() {
    let mut c = setup(1);
    let bob = c.bob_flows[0];
    let inv = large_invite(&mut c.alice);
    c.h.send(c.alice_flow, &inv);
    let (_, challenge) = c.h.one();
    let inv = c.alice.authorize(&inv, &challenge);
    c.h.send(c.alice_flow, &inv);
    let out = c.h.drain();
    assert_eq!(out.len(), 2, "100 Trying and one branch: {out:#?}");
    let (tcp, branch) = &out[1];
    assert_eq!(tcp.transport, Transport::Tcp, "§18.1.1: large → TCP");
    assert_eq!(
        (tcp.remote, tcp.conn),
        (bob.remote, None),
        "same address, new connection"
    );
    assert!(branch.to_bytes().len() > 1300);
    let via = branch.header(&HeaderName::Via).unwrap().to_owned();
    assert!(via.starts_with("SIP/2.0/TCP "), "{via}");
    c.h.advance(Duration::from_secs(2));
    assert!(c.h.drain().is_empty(), "no retransmissions over TCP");

    // The device is behind NAT: the connection cannot be made.
    c.h.server.handle_connect_failed(c.h.now, *tcp);
    let (to, again) = c.h.one();
    assert_eq!(to, bob, "back to the flow it registered on");
    let via_udp = again.header(&HeaderName::Via).unwrap();
    assert_eq!(via_udp, via.replacen("SIP/2.0/TCP", "SIP/2.0/UDP", 1));
    let counters = c.h.server.counters();
    assert_eq!((counters.sent_over_tcp, counters.tcp_fallbacks), (1, 1));
    c.h.advance(Duration::from_millis(500));
    let (to, _) = c.h.one();
    assert_eq!(to, bob, "UDP retransmissions (timer A) after the fallback");

    // The device answers over UDP; the caller gets it.
    let ok = again.response(200, "OK", Some("bob-tag"));
    c.h.send(bob, &ok);
    let up = c.h.drain();
    assert!(
        up.iter()
            .any(|(f, m)| *f == c.alice_flow && m.code() == Some(200)),
        "{up:#?}"
    );

    // The refusal is remembered: the next large request goes straight to UDP.
    let inv2 = large_invite(&mut c.alice);
    c.h.send(c.alice_flow, &inv2);
    let (_, challenge) = c.h.one();
    let inv2 = c.alice.authorize(&inv2, &challenge);
    c.h.send(c.alice_flow, &inv2);
    let out = c.h.drain();
    assert_eq!(out[1].0, bob, "{out:#?}");
    assert!(out[1]
        .1
        .header(&HeaderName::Via)
        .unwrap()
        .starts_with("SIP/2.0/UDP "));
    assert_eq!(c.h.server.counters().tcp_fallbacks, 2);
}

#[test]
fn large_request_over_a_tcp_connection_completes_and_the_dialog_keeps_the_udp_flow() {
    let mut c = setup(1);
    let bob = c.bob_flows[0];
    let inv = large_invite(&mut c.alice);
    c.h.send(c.alice_flow, &inv);
    let (_, challenge) = c.h.one();
    let inv = c.alice.authorize(&inv, &challenge);
    c.h.send(c.alice_flow, &inv);
    let out = c.h.drain();
    let (tcp, branch) = out[1].clone();
    assert_eq!(tcp.transport, Transport::Tcp);
    // The driver connected (connection 9); the device answers on it.
    let conn = Flow {
        conn: Some(ConnId(9)),
        ..tcp
    };
    c.h.send(conn, &branch.response(180, "Ringing", Some("bob-tag")));
    c.h.send(conn, &branch.response(200, "OK", Some("bob-tag")));
    let up: Vec<_> =
        c.h.drain()
            .into_iter()
            .map(|(f, m)| (f, m.code()))
            .collect();
    assert_eq!(up, [(c.alice_flow, Some(180)), (c.alice_flow, Some(200))]);
    assert_eq!(c.h.server.counters().tcp_fallbacks, 0);
    // A small in-dialog request goes to the flow the device registered on.
    let ok = branch.response(200, "OK", Some("bob-tag"));
    let bye = in_dialog(&ok, Method::Bye, "z9hG4bK-bye-large", 2);
    c.h.send(c.alice_flow, &bye);
    let (to, fwd) = c.h.one();
    assert_eq!((to, fwd.method()), (bob, Some(&Method::Bye)));
}

/// The caller's CANCEL of `inv` (RFC 3261 §9.1: same Via, From, To, Call-ID,
/// CSeq number).
fn cancel_for(inv: &Message) -> Message {
    let mut cancel = Message::request(Method::Cancel, inv.request_uri().unwrap());
    for name in [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
    ] {
        cancel.push(name.clone(), inv.header(&name).unwrap());
    }
    cancel.push(
        HeaderName::CSeq,
        format!("{} CANCEL", inv.cseq().unwrap().seq),
    );
    cancel.push(HeaderName::MaxForwards, "70");
    cancel
}
