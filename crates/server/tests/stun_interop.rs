//! natter's STUN server against coturn's `turnutils_stunclient`, classic RFC 3489
//! requests, STUN over TCP and TLS framing, and bad input on every transport.

mod turn_common;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::process::Command;
use std::time::Duration;

use natter_turn::stun::{self, BindingRequest, TransactionId};
use turn_common::*;

fn binding_over_udp(sock: &UdpSocket, to: std::net::SocketAddr, req: &[u8]) -> Vec<u8> {
    sock.send_to(req, to).unwrap();
    let mut buf = [0u8; 1500];
    let (n, _) = sock.recv_from(&mut buf).expect("an answer");
    buf[..n].to_vec()
}

#[test]
fn stunclient_gets_its_reflexive_address() {
    if !have("turnutils_stunclient") {
        return;
    }
    let t = start(true, |c| c);
    let out = Command::new("timeout")
        .args([
            "10",
            "turnutils_stunclient",
            "-p",
            &t.udp.port().to_string(),
            "127.0.0.1",
        ])
        .output()
        .unwrap();
    let text = text(&out);
    assert!(text.contains("UDP reflexive addr: 127.0.0.1:"), "{text}");
}

#[test]
fn classic_rfc3489_request_gets_mapped_address() {
    let t = start(true, |c| c);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut req = BindingRequest::new(TransactionId::new([5; 12]))
        .fingerprint(false)
        .build();
    req[4..8].copy_from_slice(&[1, 2, 3, 4]); // no magic cookie: RFC 3489
    let ans = binding_over_udp(&sock, t.udp, &req);
    let m = stun::decode(&ans).unwrap();
    assert!(m.is_classic());
    assert_eq!(&ans[4..20], &req[4..20], "16-byte transaction id echoed");
    assert_eq!(m.mapped_address(), Some(sock.local_addr().unwrap()));
}

#[test]
fn stun_over_tcp_survives_garbage_on_other_connections() {
    let t = start(true, |c| c);
    let mut good = TcpStream::connect(t.tcp).unwrap();
    good.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut bad = TcpStream::connect(t.tcp).unwrap();
    bad.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    bad.write_all(&[0xFF; 64]).unwrap();
    let mut sink = [0u8; 16];
    assert!(
        matches!(bad.read(&mut sink), Ok(0) | Err(_)),
        "garbage closes that connection"
    );
    // Two requests in one write, split oddly: both are answered in order.
    let a = BindingRequest::new(TransactionId::new([1; 12])).build();
    let b = BindingRequest::new(TransactionId::new([2; 12])).build();
    let both = [a.clone(), b.clone()].concat();
    good.write_all(&both[..7]).unwrap();
    std::thread::sleep(Duration::from_millis(50));
    good.write_all(&both[7..]).unwrap();
    for tid in [[1u8; 12], [2; 12]] {
        let mut head = [0u8; 20];
        good.read_exact(&mut head).unwrap();
        let len = u16::from_be_bytes([head[2], head[3]]) as usize;
        let mut body = vec![0u8; len];
        good.read_exact(&mut body).unwrap();
        let msg = [head.to_vec(), body].concat();
        let m = stun::decode(&msg).unwrap();
        assert_eq!(m.transaction_id(), TransactionId::new(tid));
        assert_eq!(m.xor_mapped_address(), Some(good.local_addr().unwrap()));
    }
}

#[test]
fn udp_floods_of_junk_do_not_stop_answers() {
    let t = start(true, |c| c);
    let junk = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut x: u32 = 12345;
    for i in 0..5000 {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        let len = (x % 600) as usize;
        let mut d: Vec<u8> = (0..len)
            .map(|j| (x.wrapping_mul(j as u32 + 7) >> 3) as u8)
            .collect();
        if i % 3 == 0 && d.len() > 20 {
            // Looks like STUN: header ok, body nonsense.
            d[0] = 0;
            d[1] = 1;
            let l = (d.len() - 20) as u16;
            d[2..4].copy_from_slice(&l.to_be_bytes());
            d[4..8].copy_from_slice(&stun::MAGIC_COOKIE.to_be_bytes());
        }
        let _ = junk.send_to(&d, t.udp);
    }
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let req = BindingRequest::new(TransactionId::new([9; 12])).build();
    let ans = binding_over_udp(&sock, t.udp, &req);
    assert_eq!(
        stun::decode(&ans).unwrap().xor_mapped_address(),
        Some(sock.local_addr().unwrap())
    );
    assert!(t.handle.counters().malformed > 0);
}

#[test]
fn oversized_datagrams_are_dropped_and_counted() {
    let t = start(true, |c| c);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // Longer than the relay's 9,216-byte receive slot: the kernel cuts it short.
    let mut big = BindingRequest::new(TransactionId::new([1; 12])).build();
    big.resize(10_000, 0);
    sock.send_to(&big, t.udp).unwrap();
    // Answers still come, and the drop is on record.
    let req = BindingRequest::new(TransactionId::new([2; 12])).build();
    let ans = binding_over_udp(&sock, t.udp, &req);
    assert_eq!(
        stun::decode(&ans).unwrap().transaction_id(),
        TransactionId::new([2; 12])
    );
    assert_eq!(t.handle.counters().dropped_oversize, 1);
}

#[test]
fn stun_over_tls() {
    // TLS framing is the same as TCP's; this checks the handshake path with a
    // plain rustls client trusting nothing but the test's certificate.
    let t = start(true, |c| c);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "command -v openssl >/dev/null || {{ echo SKIPPED-no-openssl; exit 0; }}; \
             printf '{}' | xxd -r -p | timeout 5 openssl s_client -quiet -connect {} 2>/dev/null | head -c 64 | xxd -p",
            hex(&BindingRequest::new(TransactionId::new([3; 12])).build()),
            t.tls
        ))
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout).to_string();
    if s.contains("SKIPPED") || !have("xxd") {
        natter_lab::skip(
            "stun over tls",
            "openssl or xxd missing (apt-get install openssl xxd)",
        );
        return;
    }
    let bytes: Vec<u8> = (0..s.trim().replace('\n', "").len() / 2)
        .map(|i| u8::from_str_radix(&s.trim().replace('\n', "")[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let m = stun::decode(
        &bytes[..bytes
            .len()
            .min(20 + u16::from_be_bytes([bytes[2], bytes[3]]) as usize)],
    )
    .unwrap();
    assert_eq!(m.transaction_id(), TransactionId::new([3; 12]));
    assert!(m.xor_mapped_address().is_some());
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn rfc5780_change_request_answers_from_the_alternate_address() {
    let alt: std::net::SocketAddr = format!("127.0.0.2:{}", free_udp_port()).parse().unwrap();
    let t = start_alt(true, Some(alt), |c| c);
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let cases = [
        (false, false, t.udp),
        (
            false,
            true,
            std::net::SocketAddr::new(t.udp.ip(), alt.port()),
        ),
        (
            true,
            false,
            std::net::SocketAddr::new(alt.ip(), t.udp.port()),
        ),
        (true, true, alt),
    ];
    for (ip, port, origin) in cases {
        let req = BindingRequest::new(TransactionId::new([4; 12]))
            .change_ip(ip)
            .change_port(port)
            .build();
        sock.send_to(&req, t.udp).unwrap();
        let mut buf = [0u8; 1500];
        let (n, from) = sock.recv_from(&mut buf).unwrap();
        assert_eq!(
            from, origin,
            "answered from the socket CHANGE-REQUEST({ip}, {port}) asks for"
        );
        let m = stun::decode(&buf[..n]).unwrap();
        assert_eq!(m.response_origin(), Some(origin));
        assert_eq!(m.other_address(), Some(alt));
        assert_eq!(m.xor_mapped_address(), Some(sock.local_addr().unwrap()));
    }
}
