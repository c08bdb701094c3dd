//! The TURN limits set through `serve`'s configuration (the `--turn-*` flags)
//! reach the relay: a tiny STUN client on loopback, no external tools.

mod turn_common;

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use natter_turn::server::{rest_password, UserKeys};
use natter_turn::stun::{
    self, attr_type, Attribute, Class, IntegrityKey, MessageBuilder, Method, TransactionId,
};
use turn_common::*;

fn socket() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    s
}

fn tid(n: u8) -> TransactionId {
    TransactionId::new([n; 12])
}

/// An Allocate; with `auth` = (user, password, realm, nonce) it carries integrity.
fn allocate_request(n: u8, auth: Option<(&str, &str, &str, &str)>) -> Vec<u8> {
    let mut b = MessageBuilder::new(Class::Request, Method::ALLOCATE, tid(n));
    b.add(&Attribute::RequestedTransport(17));
    if let Some((user, pw, realm, nonce)) = auth {
        b.add(&Attribute::Username(user));
        b.add(&Attribute::Realm(realm));
        b.add(&Attribute::Nonce(nonce));
        let keys = UserKeys::from_password(user, realm, pw);
        b.add_integrity(&IntegrityKey::LongTermMd5(keys.md5));
    }
    b.finish()
}

/// The answer's error code, 0 for success, `None` when nothing came back.
fn answer(s: &UdpSocket) -> Option<(u16, Vec<u8>)> {
    let mut buf = [0u8; 1500];
    let n = s.recv(&mut buf).ok()?;
    let msg = stun::decode(&buf[..n]).unwrap();
    let code = match msg.class() {
        Class::Success => 0,
        _ => msg.error_code().map_or(1, |e| e.code),
    };
    Some((code, buf[..n].to_vec()))
}

/// Allocate with REST credentials for `user`: the 401 dance, then the real
/// request. Returns the answer's code and the socket (its 5-tuple owns the allocation).
fn allocate(server: SocketAddr, user: &str) -> (u16, UdpSocket) {
    let s = socket();
    s.send_to(&allocate_request(1, None), server).unwrap();
    let (code, bytes) = answer(&s).expect("a 401 challenge");
    assert_eq!(code, 401);
    let msg = stun::decode(&bytes).unwrap();
    let (Some(Ok(Attribute::Realm(realm))), Some(Ok(Attribute::Nonce(nonce)))) =
        (msg.get(attr_type::REALM), msg.get(attr_type::NONCE))
    else {
        panic!("401 without REALM and NONCE");
    };
    let name = format!("{}:{user}", 4_000_000_000u64);
    let pw = rest_password(SECRET.as_bytes(), &name);
    let req = allocate_request(2, Some((&name, &pw, realm, nonce)));
    s.send_to(&req, server).unwrap();
    let code = answer(&s)
        .expect("an answer to the authenticated Allocate")
        .0;
    (code, s)
}

#[test]
fn user_and_total_quotas_from_the_config_refuse_with_486() {
    let t = start_configured(
        false,
        None,
        |c| {
            c.turn_user_quota = 1;
            c.turn_total_quota = 2;
        },
        |c| c,
    );
    let (first, _a) = allocate(t.udp, "carol");
    assert_eq!(first, 0);
    let (second, _b) = allocate(t.udp, "carol");
    assert_eq!(second, 486, "second allocation of one user");
    let (other, _c) = allocate(t.udp, "dave");
    assert_eq!(other, 0);
    let (third, _d) = allocate(t.udp, "erin");
    assert_eq!(third, 486, "third allocation in total");
    assert_eq!(t.handle.allocations(), 2);
    assert_eq!(t.handle.counters().allocations_refused_quota, 2);
}

/// Unauthenticated Allocates answered (401) out of `n` sent at once.
fn challenges_answered(server: SocketAddr, n: u8) -> usize {
    let s = socket();
    for i in 0..n {
        s.send_to(&allocate_request(i, None), server).unwrap();
    }
    let end = Instant::now() + Duration::from_millis(500);
    let mut got = 0;
    while Instant::now() < end {
        match answer(&s) {
            Some((401, _)) => got += 1,
            Some(other) => panic!("unexpected answer {}", other.0),
            None => break,
        }
    }
    got
}

#[test]
fn unauthenticated_rate_from_the_config_drops_the_excess() {
    let limited = start_configured(false, None, |c| c.turn_unauth_rate = 2, |c| c);
    let got = challenges_answered(limited.udp, 40);
    // Burst of five seconds' worth (10), plus at most one token refilled meanwhile.
    assert!(
        (10..=11).contains(&got),
        "{got} answered with --turn-unauth-rate 2"
    );
    assert!(limited.handle.counters().rate_limited >= 29);
    let default = start(false, |c| c);
    assert_eq!(challenges_answered(default.udp, 40), 40);
}
