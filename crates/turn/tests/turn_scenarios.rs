//! TURN lifecycles with injected time: allocations, permissions, channels,
//! credentials, quotas, policy, and bad input.

mod common;

use std::time::{Duration, Instant};

use common::*;
use natter_turn::binding::Source;
use natter_turn::server::{
    rest_password, CloseReason, Event, PeerPolicy, RelayError, Transport, PEER_HEADROOM,
};
use natter_turn::stun::{self, attr_type, Attribute, ChannelData, Class, Method};

const PEER: &str = "198.51.100.7:6000";
const ALICE: &str = "203.0.113.10:40000";

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

#[test]
fn allocate_needs_auth_then_gets_relay_and_mapped_address() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    let ans = c.allocate(&mut s, t0);
    assert!(ans.is_success(), "{:?}", ans.code());
    assert_eq!(
        ans.addr(attr_type::XOR_RELAYED_ADDRESS),
        Some("192.0.2.1:50000".parse().unwrap())
    );
    assert_eq!(
        ans.addr(attr_type::XOR_MAPPED_ADDRESS),
        Some(ALICE.parse().unwrap())
    );
    assert_eq!(ans.lifetime(), Some(600));
    assert_eq!(ans.msg().check_fingerprint(), Ok(true));
    assert_eq!(s.allocation_count(), 1);
    assert_eq!(s.counters().allocations_created, 1);
    assert!(matches!(
        s.poll_event(),
        Some(Event::AllocationCreated { .. })
    ));
}

#[test]
fn allocation_expires_and_refresh_extends_or_deletes() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    c.allocate(&mut s, t0);
    let r = c.request(
        &mut s,
        t0 + secs(500),
        Method::REFRESH,
        &[Attribute::Lifetime(1200)],
    );
    assert_eq!(r.lifetime(), Some(1200));
    s.handle_timeout(t0 + secs(1100));
    assert_eq!(s.allocation_count(), 1, "refreshed until t0+1700");
    s.handle_timeout(t0 + secs(1701));
    assert_eq!(s.allocation_count(), 0);
    assert_eq!(s.relays().released.len(), 1);
    let closed = std::iter::from_fn(|| s.poll_event()).any(|e| {
        matches!(
            e,
            Event::AllocationClosed {
                reason: CloseReason::Expired,
                ..
            }
        )
    });
    assert!(closed);

    let mut c = Client::new("203.0.113.10:40001", "alice", "wonderland");
    c.allocate(&mut s, t0 + secs(1800));
    let r = c.request(
        &mut s,
        t0 + secs(1801),
        Method::REFRESH,
        &[Attribute::Lifetime(0)],
    );
    assert_eq!(r.lifetime(), Some(0));
    assert_eq!(s.allocation_count(), 0);
    let again = c.request(&mut s, t0 + secs(1802), Method::REFRESH, &[]);
    assert_eq!(again.code(), Some(437), "refresh of an unknown allocation");
}

#[test]
fn lifetime_is_clamped_to_max() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    let a = c.request(
        &mut s,
        t0,
        Method::ALLOCATE,
        &[
            Attribute::RequestedTransport(17),
            Attribute::Lifetime(999_999),
        ],
    );
    assert_eq!(a.lifetime(), Some(3600));
}

#[test]
fn retransmitted_allocate_gets_same_answer_other_allocate_gets_437() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    c.allocate(&mut s, t0);
    let tid = stun::TransactionId::new({
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&c.tid.to_be_bytes());
        b
    });
    let again = c.encode(Method::ALLOCATE, tid, &[Attribute::RequestedTransport(17)]);
    let ans = c.send_raw(&mut s, t0 + secs(1), &again).unwrap();
    assert!(ans.is_success());
    assert_eq!(
        ans.addr(attr_type::XOR_RELAYED_ADDRESS),
        Some("192.0.2.1:50000".parse().unwrap())
    );
    assert_eq!(c.allocate(&mut s, t0 + secs(2)).code(), Some(437));
    assert_eq!(s.allocation_count(), 1);
}

#[test]
fn wrong_password_and_unknown_user_get_401() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "not-it");
    // First 401 is the challenge, the signed retry gets 401 again: the loop gives up.
    let tid = c.next_tid();
    let ans = c
        .send_raw(
            &mut s,
            t0,
            &c.encode(Method::ALLOCATE, tid, &[Attribute::RequestedTransport(17)]),
        )
        .unwrap();
    assert_eq!(ans.code(), Some(401));
    c.nonce = ans.msg().get(attr_type::NONCE).and_then(|a| match a {
        Ok(Attribute::Nonce(n)) => Some(n.to_owned()),
        _ => None,
    });
    let tid = c.next_tid();
    let ans = c
        .send_raw(
            &mut s,
            t0,
            &c.encode(Method::ALLOCATE, tid, &[Attribute::RequestedTransport(17)]),
        )
        .unwrap();
    assert_eq!(ans.code(), Some(401));
    assert_eq!(s.counters().auth_failures, 1);
    c.user = "mallory".into();
    let tid = c.next_tid();
    let ans = c
        .send_raw(
            &mut s,
            t0,
            &c.encode(Method::ALLOCATE, tid, &[Attribute::RequestedTransport(17)]),
        )
        .unwrap();
    assert_eq!(ans.code(), Some(401));
    assert_eq!(s.counters().auth_failures, 2);
    assert_eq!(s.allocation_count(), 0);
}

#[test]
fn stale_nonce_gets_438_and_a_new_nonce_works() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    c.allocate(&mut s, t0);
    let old = c.nonce.clone();
    // 700 s later the 600 s nonce is stale; Client::request retries after 438.
    let r = c.request(&mut s, t0 + secs(700), Method::REFRESH, &[]);
    assert!(r.is_success());
    assert_ne!(c.nonce, old);
    assert_eq!(s.counters().stale_nonces, 1);
}

#[test]
fn rest_credentials_like_coturn_use_auth_secret() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let user = format!("{}:carol", UNIX_NOW + 3600);
    let mut c = Client::new(ALICE, &user, &rest_password(SECRET.as_bytes(), &user));
    c.nonce = Some("x".into());
    let tid = c.next_tid();
    assert!(s
        .user_to_look_up(t0, &c.encode(Method::ALLOCATE, tid, &[]))
        .is_none());
    c.nonce = None;
    assert!(c.allocate(&mut s, t0).is_success());
    // The same username is refused once its expiry time has passed.
    let mut late = Client::new(
        "203.0.113.10:40001",
        &user,
        &rest_password(SECRET.as_bytes(), &user),
    );
    assert_eq!(late.allocate(&mut s, t0 + secs(3601)).code(), Some(401));
}

#[test]
fn sha256_password_algorithm_and_mac() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "bob", "builder");
    c.sha256 = true;
    let a = c.allocate(&mut s, t0);
    assert!(a.is_success(), "{:?}", a.code());
    assert!(a
        .msg()
        .raw_value(attr_type::MESSAGE_INTEGRITY_SHA256)
        .is_some());
}

#[test]
fn the_driver_is_asked_to_look_up_uncached_account_users() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "dave", "pw");
    c.nonce = Some("x".into());
    let tid = c.next_tid();
    let req = c.encode(Method::ALLOCATE, tid, &[Attribute::RequestedTransport(17)]);
    assert_eq!(s.user_to_look_up(t0, &req).as_deref(), Some("dave"));
    s.set_user_keys(
        t0,
        "dave",
        Some(natter_turn::server::UserKeys::from_password(
            "dave", REALM, "pw",
        )),
    );
    assert_eq!(s.user_to_look_up(t0, &req), None);
    c.nonce = None;
    assert!(c.allocate(&mut s, t0).is_success());
    let unsigned = Client::new(ALICE, "erin", "pw").encode(Method::ALLOCATE, tid, &[]);
    assert_eq!(
        s.user_to_look_up(t0, &unsigned),
        None,
        "unsigned requests need no keys"
    );
}

#[test]
fn send_needs_permission_then_peer_data_comes_back_as_data_indication() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    c.allocate(&mut s, t0);
    let relay = natter_turn::server::RelayId(50_000);
    let ind = c.send_indication(PEER, b"hello peer");
    assert!(
        s.handle_client(t0, c.tuple, Source::Primary, &ind)
            .is_none(),
        "no permission yet"
    );
    let mut buf = vec![0u8; 200];
    buf[PEER_HEADROOM..PEER_HEADROOM + 5].copy_from_slice(b"early");
    assert!(s
        .handle_peer(
            t0,
            relay,
            PEER.parse().unwrap(),
            &mut buf,
            PEER_HEADROOM..PEER_HEADROOM + 5
        )
        .is_none());

    assert!(c.permit(&mut s, t0, PEER).is_success());
    let fwd = s
        .handle_client(t0, c.tuple, Source::Primary, &ind)
        .expect("forwarded");
    assert_eq!(
        (fwd.relay, fwd.peer, fwd.data),
        (relay, PEER.parse().unwrap(), &b"hello peer"[..])
    );
    // Permission is per IP: another port of the same peer host works too.
    let other_port = c.send_indication("198.51.100.7:7000", b"x");
    assert!(s
        .handle_client(t0, c.tuple, Source::Primary, &other_port)
        .is_some());

    let mut buf = vec![0u8; 200];
    buf[PEER_HEADROOM..PEER_HEADROOM + 5].copy_from_slice(b"reply");
    let out = s
        .handle_peer(
            t0,
            relay,
            PEER.parse().unwrap(),
            &mut buf,
            PEER_HEADROOM..PEER_HEADROOM + 5,
        )
        .unwrap();
    assert_eq!(out.to, c.tuple);
    let m = stun::decode(&buf[out.range.clone()]).unwrap();
    assert_eq!((m.class(), m.method()), (Class::Indication, Method::DATA));
    assert_eq!(
        m.address(attr_type::XOR_PEER_ADDRESS),
        Some(PEER.parse().unwrap())
    );
    assert_eq!(m.raw_value(attr_type::DATA), Some(&b"reply"[..]));

    // Permissions last 300 s.
    assert!(s
        .handle_client(t0 + secs(301), c.tuple, Source::Primary, &ind)
        .is_none());
}

#[test]
fn channels_carry_data_both_ways_with_stream_padding() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    c.tuple.transport = Transport::Tcp;
    c.allocate(&mut s, t0);
    assert!(c.bind(&mut s, t0, 0x4001, PEER).is_success());
    let relay = natter_turn::server::RelayId(50_000);
    let cd = ChannelData {
        channel: stun::ChannelNumber::new(0x4001).unwrap(),
        data: b"voice",
    }
    .encode(true);
    let fwd = s.handle_client(t0, c.tuple, Source::Primary, &cd).unwrap();
    assert_eq!((fwd.peer, fwd.data), (PEER.parse().unwrap(), &b"voice"[..]));
    let unbound = ChannelData {
        channel: stun::ChannelNumber::new(0x4002).unwrap(),
        data: b"x",
    }
    .encode(true);
    assert!(s
        .handle_client(t0, c.tuple, Source::Primary, &unbound)
        .is_none());

    let mut buf = vec![0xEEu8; 100];
    buf[PEER_HEADROOM..PEER_HEADROOM + 5].copy_from_slice(b"audio");
    let out = s
        .handle_peer(
            t0,
            relay,
            PEER.parse().unwrap(),
            &mut buf,
            PEER_HEADROOM..PEER_HEADROOM + 5,
        )
        .unwrap();
    assert_eq!(
        &buf[out.range.clone()],
        &[0x40, 0x01, 0, 5, b'a', b'u', b'd', b'i', b'o', 0, 0, 0]
    );
    // A binding lasts 600 s; the permission it installed 300 s.
    assert!(s
        .handle_client(t0 + secs(301), c.tuple, Source::Primary, &cd)
        .is_none());
    assert!(c.bind(&mut s, t0 + secs(302), 0x4001, PEER).is_success());
    assert!(s
        .handle_client(t0 + secs(303), c.tuple, Source::Primary, &cd)
        .is_some());
    assert!(s
        .handle_client(t0 + secs(903), c.tuple, Source::Primary, &cd)
        .is_none());
    assert_eq!(c.bind(&mut s, t0, 0x3000, PEER).code(), Some(400));
}

#[test]
fn special_peers_get_403_unless_allowed() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    c.allocate(&mut s, t0);
    for peer in [
        "127.0.0.1:5000",
        "10.0.0.1:5000",
        "169.254.169.254:80",
        "100.64.1.1:1",
    ] {
        assert_eq!(c.permit(&mut s, t0, peer).code(), Some(403), "{peer}");
    }
    assert_eq!(
        c.bind(&mut s, t0, 0x4000, "192.168.1.1:5000").code(),
        Some(403)
    );
    assert_eq!(s.counters().peers_refused, 5);

    let cfg = config().set_peer_policy(PeerPolicy::allowing(vec!["127.0.0.0/8".parse().unwrap()]));
    let mut s = server_with(cfg, t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    c.allocate(&mut s, t0);
    assert!(c.permit(&mut s, t0, "127.0.0.1:5000").is_success());
    assert_eq!(c.permit(&mut s, t0, "10.0.0.1:5000").code(), Some(403));
}

#[test]
fn quotas_give_486() {
    let t0 = Instant::now();
    let mut s = server_with(config().set_quotas(2, 3).unwrap(), t0);
    for port in 1..=2 {
        assert!(
            Client::new(&format!("203.0.113.10:{port}"), "alice", "wonderland")
                .allocate(&mut s, t0)
                .is_success()
        );
    }
    assert_eq!(
        Client::new("203.0.113.10:3", "alice", "wonderland")
            .allocate(&mut s, t0)
            .code(),
        Some(486)
    );
    assert!(Client::new("203.0.113.11:1", "bob", "builder")
        .allocate(&mut s, t0)
        .is_success());
    assert_eq!(
        Client::new("203.0.113.11:2", "bob", "builder")
            .allocate(&mut s, t0)
            .code(),
        Some(486),
        "total quota"
    );
    assert_eq!(s.counters().allocations_refused_quota, 2);
}

#[test]
fn allocate_errors_named_by_the_rfc() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    assert_eq!(
        c.request(&mut s, t0, Method::ALLOCATE, &[]).code(),
        Some(400)
    );
    assert_eq!(
        c.request(
            &mut s,
            t0,
            Method::ALLOCATE,
            &[Attribute::RequestedTransport(6)]
        )
        .code(),
        Some(442)
    );
    let fam = [
        Attribute::RequestedTransport(17),
        Attribute::RequestedAddressFamily(2),
    ];
    assert_eq!(
        c.request(&mut s, t0, Method::ALLOCATE, &fam).code(),
        Some(440)
    );
    let fam = [
        Attribute::RequestedTransport(17),
        Attribute::RequestedAddressFamily(9),
    ];
    assert_eq!(
        c.request(&mut s, t0, Method::ALLOCATE, &fam).code(),
        Some(440)
    );
    assert_eq!(
        c.permit(&mut s, t0, PEER).code(),
        Some(437),
        "no allocation yet"
    );
    s.relays_mut().fail = Some(RelayError::NoCapacity);
    assert_eq!(c.allocate(&mut s, t0).code(), Some(508));
    s.relays_mut().fail = None;
    assert!(c.allocate(&mut s, t0).is_success());
    let unknown = [Attribute::Other(stun::RawAttribute {
        typ: 0x7F00,
        value: b"??",
    })];
    let a = c.request(&mut s, t0, Method::REFRESH, &unknown);
    assert_eq!(a.code(), Some(420));
    assert_eq!(
        a.msg().raw_value(attr_type::UNKNOWN_ATTRIBUTES),
        Some(&[0x7F, 0x00][..])
    );
    assert_eq!(c.request(&mut s, t0, Method(0x0FF), &[]).code(), Some(400));
    assert_eq!(c.permit(&mut s, t0, "[2001:db8::1]:5000").code(), Some(443));
}

#[test]
fn even_port_reservation_token_hands_out_the_next_port() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    let a = c.request(
        &mut s,
        t0,
        Method::ALLOCATE,
        &[
            Attribute::RequestedTransport(17),
            Attribute::EvenPort { reserve: true },
        ],
    );
    let relayed = a.addr(attr_type::XOR_RELAYED_ADDRESS).unwrap();
    assert_eq!(relayed.port() % 2, 0);
    let tok = match a.msg().get(attr_type::RESERVATION_TOKEN) {
        Some(Ok(Attribute::ReservationToken(t))) => t,
        other => panic!("{other:?}"),
    };
    let mut c2 = Client::new("203.0.113.10:40002", "alice", "wonderland");
    let b = c2.request(
        &mut s,
        t0,
        Method::ALLOCATE,
        &[
            Attribute::RequestedTransport(17),
            Attribute::ReservationToken(tok),
        ],
    );
    assert_eq!(
        b.addr(attr_type::XOR_RELAYED_ADDRESS).unwrap().port(),
        relayed.port() + 1
    );
    // A second use of the token fails; an unused reservation is released after 30 s.
    let mut c3 = Client::new("203.0.113.10:40003", "alice", "wonderland");
    let again = c3.request(
        &mut s,
        t0,
        Method::ALLOCATE,
        &[
            Attribute::RequestedTransport(17),
            Attribute::ReservationToken(tok),
        ],
    );
    assert_eq!(again.code(), Some(508));
    let mut c4 = Client::new("203.0.113.10:40004", "alice", "wonderland");
    c4.request(
        &mut s,
        t0,
        Method::ALLOCATE,
        &[
            Attribute::RequestedTransport(17),
            Attribute::EvenPort { reserve: true },
        ],
    );
    s.handle_timeout(t0 + secs(31));
    assert!(s
        .relays()
        .released
        .contains(&natter_turn::server::RelayId(50_003)));
}

#[test]
fn another_user_on_the_same_five_tuple_gets_441() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut a = Client::new(ALICE, "alice", "wonderland");
    a.allocate(&mut s, t0);
    let mut b = Client::new(ALICE, "bob", "builder");
    assert_eq!(b.permit(&mut s, t0, PEER).code(), Some(441));
}

#[test]
fn unauthenticated_floods_are_rate_limited_per_source() {
    let t0 = Instant::now();
    let mut s = server_with(config().set_unauth_rate(10, 20).unwrap(), t0);
    let c = Client::new(ALICE, "alice", "wonderland");
    let req = c.encode(
        Method::ALLOCATE,
        stun::TransactionId::new([1; 12]),
        &[Attribute::RequestedTransport(17)],
    );
    let answered = (0..100)
        .filter(|_| c.send_raw(&mut s, t0, &req).is_some())
        .count();
    assert_eq!(answered, 20);
    let other = Client::new("203.0.113.99:1", "alice", "wonderland");
    assert!(
        other.send_raw(&mut s, t0, &req).is_some(),
        "other sources unaffected"
    );
    assert!(c.send_raw(&mut s, t0 + secs(1), &req).is_some(), "refilled");
    assert_eq!(s.counters().rate_limited, 80);
    // The 401 answer stays small relative to the request (figure in the README).
    let ans = other.send_raw(&mut s, t0 + secs(2), &req).unwrap();
    assert_eq!((req.len(), ans.0.len()), (36, 112));
}

#[test]
fn bandwidth_cap_drops_excess() {
    let t0 = Instant::now();
    let mut s = server_with(config().set_bandwidth_cap(10_000).unwrap(), t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    c.allocate(&mut s, t0);
    c.bind(&mut s, t0, 0x4000, PEER);
    let cd = ChannelData {
        channel: stun::ChannelNumber::new(0x4000).unwrap(),
        data: &[0u8; 1000],
    }
    .encode(false);
    let sent = (0..20)
        .filter(|_| s.handle_client(t0, c.tuple, Source::Primary, &cd).is_some())
        .count();
    assert_eq!(sent, 10);
    assert_eq!(s.counters().dropped_bandwidth, 10);
    assert!(s
        .handle_client(t0 + secs(1), c.tuple, Source::Primary, &cd)
        .is_some());
}

#[test]
fn garbage_and_out_of_state_input_leaves_others_untouched() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    c.allocate(&mut s, t0);
    c.bind(&mut s, t0, 0x4000, PEER);
    let stranger = tuple("203.0.113.66:1", Transport::Udp);
    let cd = ChannelData {
        channel: stun::ChannelNumber::new(0x4000).unwrap(),
        data: b"x",
    }
    .encode(false);
    for junk in [
        &b"\x40\x00\xff\xff"[..],
        b"\x00\x01\x00\x04garbage!",
        &cd,
        b"\xff\xff\xff",
        &[0u8; 20],
    ] {
        assert!(s
            .handle_client(t0, stranger, Source::Primary, junk)
            .is_none());
        assert!(
            s.handle_client(t0, c.tuple, Source::Primary, junk)
                .map(|f| f.data)
                != Some(b"garbage!")
        );
    }
    let mut buf = [0u8; 60];
    assert!(s
        .handle_peer(
            t0,
            natter_turn::server::RelayId(1),
            PEER.parse().unwrap(),
            &mut buf,
            48..52
        )
        .is_none());
    assert!(s
        .handle_peer(
            t0,
            natter_turn::server::RelayId(50_000),
            PEER.parse().unwrap(),
            &mut buf,
            2..6
        )
        .is_none());
    while s.poll_transmit().is_some() {}
    assert!(
        s.handle_client(t0, c.tuple, Source::Primary, &cd).is_some(),
        "the real client still relays"
    );
    assert_eq!(s.allocation_count(), 1);
}

#[test]
fn tcp_close_removes_the_allocation() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let mut c = Client::new(ALICE, "alice", "wonderland");
    c.tuple.transport = Transport::Tls;
    c.allocate(&mut s, t0);
    s.handle_client_closed(t0, c.tuple);
    assert_eq!(s.allocation_count(), 0);
    assert_eq!(s.relays().live.len(), 0);
}

#[test]
fn binding_goes_through_the_same_entry_point() {
    let t0 = Instant::now();
    let mut s = server(t0);
    let c = Client::new(ALICE, "alice", "wonderland");
    let req = stun::BindingRequest::new(stun::TransactionId::new([2; 12])).build();
    let a = c.send_raw(&mut s, t0, &req).unwrap();
    assert_eq!(a.msg().xor_mapped_address(), Some(ALICE.parse().unwrap()));
}
