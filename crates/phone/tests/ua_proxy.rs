//! The user agent against natter's own registrar and proxy core, in memory.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use natter_phone::sip::{CallId, EndReason, RegFailure, UaConfig, UaEvent, UserAgent};
use natter_sip::auth::{Accounts, DigestKeys};
use natter_sip::flow::{ConnId, Input, Transport};
use natter_sip::{Server, ServerConfig};

const DOMAIN: &str = "example.org";
const SERVER: &str = "192.0.2.1:5060";

struct Users;

impl Accounts for Users {
    fn digest_keys(&self, user: &str) -> Option<DigestKeys> {
        let pw = match user {
            "alice" => "wonderland",
            "bob" => "builder",
            "+14155550100" => "carol-pw",
            _ => return None,
        };
        Some(DigestKeys::derive(user, DOMAIN, pw))
    }
}

struct Net {
    now: Instant,
    server: Server,
    phones: Vec<(SocketAddr, Transport, UserAgent)>,
    events: Vec<Vec<UaEvent>>,
}

impl Net {
    fn new() -> Self {
        let now = Instant::now();
        let mut cfg = ServerConfig::new(DOMAIN);
        cfg.seed = 3;
        cfg.secret = [9; 32];
        Net {
            now,
            server: Server::new(cfg, Box::new(Users), now),
            phones: Vec::new(),
            events: Vec::new(),
        }
    }

    fn phone(&mut self, user: &str, pw: &str, transport: Transport) -> usize {
        let i = self.phones.len();
        let local: SocketAddr = format!("203.0.113.{}:40000", i + 10).parse().unwrap();
        let mut cfg = UaConfig::new(user, pw, "192.0.2.1", transport, local);
        cfg.seed = Some(i as u64 + 1);
        self.phones.push((local, transport, UserAgent::new(cfg)));
        self.events.push(Vec::new());
        i
    }

    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.phones.len() {
                while let Some(bytes) = self.phones[i].2.poll_transmit() {
                    moved = true;
                    let (remote, transport, _) = self.phones[i];
                    let conn_id = (transport != Transport::Udp).then_some(ConnId(i as u64));
                    let input = Input {
                        transport,
                        local: SERVER.parse().unwrap(),
                        remote,
                        conn_id,
                        bytes: &bytes,
                    };
                    self.server.handle_input(self.now, input);
                }
            }
            while let Some(t) = self.server.poll_transmit() {
                moved = true;
                let i = self
                    .phones
                    .iter()
                    .position(|p| p.0 == t.flow.remote)
                    .unwrap();
                self.phones[i].2.handle_input(self.now, &t.bytes);
            }
            for i in 0..self.phones.len() {
                while let Some(e) = self.phones[i].2.poll_event() {
                    self.events[i].push(e);
                }
            }
            if !moved {
                return;
            }
        }
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.pump();
            let next = self
                .phones
                .iter()
                .filter_map(|p| p.2.poll_timeout())
                .chain(self.server.poll_timeout())
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    for p in &mut self.phones {
                        p.2.handle_timeout(self.now);
                    }
                    self.server.handle_timeout(self.now);
                }
                _ => break,
            }
        }
        self.now = end;
        self.pump();
    }

    fn ua(&mut self, i: usize) -> &mut UserAgent {
        &mut self.phones[i].2
    }

    fn take(&mut self, i: usize) -> Vec<UaEvent> {
        std::mem::take(&mut self.events[i])
    }

    fn register(&mut self, i: usize) {
        let now = self.now;
        self.ua(i).register(now);
        self.pump();
        let ev = self.take(i);
        assert!(
            matches!(ev.as_slice(), [UaEvent::Registered { .. }]),
            "{ev:?}"
        );
    }
}

fn incoming(ev: &[UaEvent]) -> (CallId, String, Vec<u8>) {
    match ev {
        [UaEvent::Incoming { call, from, sdp }] => (call.clone(), from.clone(), sdp.clone()),
        other => panic!("expected one incoming call, got {other:?}"),
    }
}

#[test]
fn register_learns_the_domain_from_the_realm_and_refreshes() {
    let mut net = Net::new();
    let a = net.phone("alice", "wonderland", Transport::Tcp);
    let now = net.now;
    net.ua(a).register(now);
    net.pump();
    let ev = net.take(a);
    assert_eq!(
        ev,
        vec![UaEvent::Registered {
            aor: "sip:alice@example.org".into(),
            expires: 300
        }]
    );
    assert_eq!(net.ua(a).domain(), DOMAIN);
    assert_eq!(net.server.location().lookup("alice", net.now).count(), 1);
    // An hour later the binding is still there: refreshes went out and were accepted.
    net.advance(Duration::from_secs(3600));
    assert_eq!(net.server.location().lookup("alice", net.now).count(), 1);
    let refreshes = net
        .take(a)
        .iter()
        .filter(|e| matches!(e, UaEvent::Registered { .. }))
        .count();
    assert!(
        refreshes >= 14,
        "{refreshes} refreshes in an hour of 300 s registrations"
    );
}

#[test]
fn wrong_password_is_named() {
    let mut net = Net::new();
    let a = net.phone("alice", "guess", Transport::Tcp);
    let now = net.now;
    net.ua(a).register(now);
    net.pump();
    let ev = net.take(a);
    assert_eq!(
        ev,
        vec![UaEvent::RegistrationFailed(RegFailure::WrongPassword {
            user: "alice".into()
        })]
    );
    assert!(ev_text(&ev).contains("wrong password for alice"));
    assert!(!net.ua(a).is_registered());
}

fn ev_text(ev: &[UaEvent]) -> String {
    match ev {
        [UaEvent::RegistrationFailed(f)] => f.to_string(),
        _ => String::new(),
    }
}

#[test]
fn call_rings_is_answered_and_hung_up_through_the_proxy() {
    for transport in [Transport::Tcp, Transport::Udp] {
        let mut net = Net::new();
        let a = net.phone("alice", "wonderland", transport);
        let b = net.phone("bob", "builder", transport);
        net.register(a);
        net.register(b);
        let now = net.now;
        let call = net.ua(a).call(now, "bob", b"v=0 offer".to_vec());
        net.pump();
        let (bcall, from, sdp) = incoming(&net.take(b));
        assert_eq!(from, "alice");
        assert_eq!(sdp, b"v=0 offer");
        assert_eq!(net.take(a), vec![UaEvent::Ringing { call: call.clone() }]);

        net.ua(b).answer(now, &bcall, b"v=0 answer".to_vec());
        net.pump();
        assert_eq!(
            net.take(a),
            vec![UaEvent::Answered {
                call: call.clone(),
                sdp: b"v=0 answer".to_vec()
            }]
        );
        assert_eq!(
            net.take(b),
            vec![UaEvent::Confirmed {
                call: bcall.clone()
            }]
        );

        // A re-INVITE (ICE restart) is handed up; the callee answers it with new SDP.
        assert!(net.ua(a).reinvite(now, &call, b"v=0 offer2".to_vec()));
        assert!(
            !net.ua(a).reinvite(now, &call, b"v=0 offer3".to_vec()),
            "one re-INVITE at a time"
        );
        net.pump();
        assert_eq!(
            net.take(b),
            vec![UaEvent::Updated {
                call: bcall.clone(),
                sdp: b"v=0 offer2".to_vec()
            }]
        );
        assert!(
            net.take(a).is_empty(),
            "no answer before the callee gives one"
        );
        net.ua(b)
            .answer_update(now, &bcall, b"v=0 answer2".to_vec());
        net.pump();
        assert_eq!(
            net.take(a),
            vec![UaEvent::Answered {
                call: call.clone(),
                sdp: b"v=0 answer2".to_vec()
            }]
        );

        // Both re-offer at once (glare): each gets 491 and may try again later.
        assert!(net.ua(a).reinvite(now, &call, b"v=0 offer4".to_vec()));
        assert!(net.ua(b).reinvite(now, &bcall, b"v=0 offer5".to_vec()));
        net.pump();
        assert_eq!(
            net.take(a),
            vec![UaEvent::UpdateFailed {
                call: call.clone(),
                code: 491
            }]
        );
        assert_eq!(
            net.take(b),
            vec![UaEvent::UpdateFailed {
                call: bcall.clone(),
                code: 491
            }]
        );
        let (wa, wb) = (
            net.ua(a).reinvite_backoff(&call),
            net.ua(b).reinvite_backoff(&bcall),
        );
        assert!(wa >= Duration::from_millis(2100) && wa <= Duration::from_secs(4));
        assert!(wb <= Duration::from_secs(2));

        net.advance(Duration::from_secs(5));
        let now = net.now;
        net.ua(a).hangup(now, &call);
        net.pump();
        assert_eq!(
            net.take(a),
            vec![UaEvent::Ended {
                call,
                reason: EndReason::LocalHangup
            }]
        );
        assert_eq!(
            net.take(b),
            vec![UaEvent::Ended {
                call: bcall,
                reason: EndReason::RemoteHangup
            }]
        );
        net.advance(Duration::from_secs(64));
        let open = net.server.open_state();
        assert_eq!(
            (open.dialogs, open.client_transactions),
            (0, 0),
            "{transport:?}: {open:?}"
        );
    }
}

#[test]
fn failures_say_what_happened() {
    let mut net = Net::new();
    let a = net.phone("alice", "wonderland", Transport::Tcp);
    let b = net.phone("bob", "builder", Transport::Tcp);
    net.register(a);
    net.register(b);
    let now = net.now;

    let c = net.ua(a).call(now, "nobody", b"sdp".to_vec());
    net.pump();
    assert_eq!(
        net.take(a),
        vec![UaEvent::Ended {
            call: c,
            reason: EndReason::UnknownNumber {
                target: "nobody".into()
            }
        }]
    );

    let c = net.ua(a).call(now, "+14155550100", b"sdp".to_vec());
    net.pump();
    assert_eq!(
        net.take(a),
        vec![UaEvent::Ended {
            call: c,
            reason: EndReason::Offline {
                target: "+14155550100".into()
            }
        }]
    );

    for (code, want) in [
        (
            486,
            EndReason::Busy {
                target: "bob".into(),
            },
        ),
        (
            603,
            EndReason::Declined {
                target: "bob".into(),
            },
        ),
        (
            488,
            EndReason::NoCommonCodec {
                target: "bob".into(),
            },
        ),
    ] {
        let c = net.ua(a).call(now, "bob", b"sdp".to_vec());
        net.pump();
        let (bc, _, _) = incoming(&net.take(b));
        net.ua(b).reject(now, &bc, code);
        net.pump();
        let ev = net.take(a);
        assert_eq!(
            ev,
            vec![
                UaEvent::Ringing { call: c.clone() },
                UaEvent::Ended {
                    call: c,
                    reason: want
                }
            ]
        );
        net.take(b);
    }
}

#[test]
fn caller_cancels_while_it_rings() {
    let mut net = Net::new();
    let a = net.phone("alice", "wonderland", Transport::Tcp);
    let b = net.phone("bob", "builder", Transport::Tcp);
    net.register(a);
    net.register(b);
    let now = net.now;
    let c = net.ua(a).call(now, "bob", b"sdp".to_vec());
    net.pump();
    let (bc, _, _) = incoming(&net.take(b));
    net.ua(a).hangup(now, &c);
    net.pump();
    assert_eq!(
        net.take(b),
        vec![UaEvent::Ended {
            call: bc,
            reason: EndReason::Cancelled
        }]
    );
    assert_eq!(
        net.take(a),
        vec![
            UaEvent::Ringing { call: c.clone() },
            UaEvent::Ended {
                call: c,
                reason: EndReason::LocalHangup
            }
        ]
    );
}

#[test]
fn garbage_never_breaks_the_agent() {
    let mut net = Net::new();
    let a = net.phone("alice", "wonderland", Transport::Tcp);
    net.register(a);
    let now = net.now;
    for junk in [
        &b"\x00\xff\xfe"[..],
        b"SIP/2.0 200 OK\r\n\r\n",
        b"INVITE sip:alice@example.org SIP/2.0\r\nCall-ID: x\r\n\r\n",
        b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bKnope\r\nCSeq: 1 REGISTER\r\n\r\n",
        b"BYE sip:alice@1.2.3.4 SIP/2.0\r\nVia: SIP/2.0/TCP 1.2.3.4;branch=z9hG4bKx\r\nFrom: <sip:x@y>;tag=1\r\nTo: <sip:alice@example.org>;tag=2\r\nCall-ID: zz\r\nCSeq: 1 BYE\r\n\r\n",
    ] {
        net.ua(a).handle_input(now, junk);
    }
    // The stray BYE got a 481; nothing else happened.
    let sent: Vec<Vec<u8>> = std::iter::from_fn(|| net.ua(a).poll_transmit()).collect();
    assert!(
        sent.iter().any(|m| m.starts_with(b"SIP/2.0 481")),
        "{sent:?}"
    );
    assert!(net.ua(a).is_registered());
}
