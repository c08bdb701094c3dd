//! CPU cost of the registration hot path, without sockets:
//! `cargo run --release -p natter-sip --example hot_path`.
//!
//! Prints nanoseconds per parse, per parse+serialize round trip, and per
//! complete digest registration (REGISTER → 401 → REGISTER with
//! credentials → 200) through `Server`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use natter_sip::auth::{Accounts, DigestKeys};
use natter_sip::flow::{Input, Transport};
use natter_sip::{parse, Limits, Server, ServerConfig};

const REGISTER: &str = "REGISTER sip:example.org SIP/2.0\r\n\
    Via: SIP/2.0/UDP 10.0.0.2:5060;rport;branch=z9hG4bK-524287-1---abcdef\r\n\
    Max-Forwards: 70\r\n\
    Contact: <sip:user1@10.0.0.2:5060;rinstance=ab12>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-000A95A0E128>\";reg-id=1\r\n\
    To: <sip:user1@example.org>\r\n\
    From: <sip:user1@example.org>;tag=2a3b4c5d\r\n\
    Call-ID: OTg3ZjQ1YzFmNTFkYjU3NjI4ZjQ2ZjA2YjY5YzI1MzE\r\n\
    CSeq: 1 REGISTER\r\n\
    Expires: 3600\r\n\
    Allow: INVITE, ACK, CANCEL, BYE, NOTIFY, REFER, MESSAGE, OPTIONS, INFO, SUBSCRIBE\r\n\
    Supported: replaces, outbound, path\r\n\
    User-Agent: Bench/1.0\r\n\
    Content-Length: 0\r\n\r\n";

struct Mem(HashMap<String, DigestKeys>);
impl Accounts for Mem {
    fn digest_keys(&self, user: &str) -> Option<DigestKeys> {
        self.0.get(user).cloned()
    }
}

fn per_op(n: u32, f: impl FnMut(u32)) -> f64 {
    let mut f = f;
    let t = Instant::now();
    for i in 0..n {
        f(i);
    }
    t.elapsed().as_nanos() as f64 / f64::from(n)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let limits = Limits::default();
    let n = 200_000;
    let parse_ns = per_op(n, |_| {
        std::hint::black_box(parse(REGISTER.as_bytes(), &limits).ok());
    });
    let round_ns = per_op(n, |_| {
        let m = parse(REGISTER.as_bytes(), &limits).ok();
        std::hint::black_box(m.map(|m| m.to_bytes()));
    });
    println!(
        "parse REGISTER ({} bytes): {parse_ns:.0} ns",
        REGISTER.len()
    );
    println!("parse + serialize:         {round_ns:.0} ns");

    let users = 10_000u32;
    let keys: HashMap<String, DigestKeys> = (0..users)
        .map(|i| {
            (
                format!("user{i}"),
                DigestKeys::derive(&format!("user{i}"), "example.org", "pw"),
            )
        })
        .collect();
    let mut t = Instant::now();
    let mut server = Server::new(ServerConfig::new("example.org"), Box::new(Mem(keys)), t);
    let flow = |i: u32| Input {
        transport: Transport::Udp,
        local: "192.0.2.1:5060".parse().expect("literal"),
        remote: std::net::SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 5060)),
        conn_id: None,
        bytes: &[],
    };
    let regs = 100_000u32;
    let start = Instant::now();
    for i in 0..regs {
        t += Duration::from_micros(10);
        let user = format!("user{}", i % users);
        let first = REGISTER
            .replace("user1", &user)
            .replace("abcdef", &format!("{i}a"))
            .replace("1 REGISTER", &format!("{} REGISTER", 2 * i + 1));
        server.handle_input(
            t,
            Input {
                bytes: first.as_bytes(),
                ..flow(i)
            },
        );
        let challenge = server.poll_transmit().expect("a challenge");
        let text = String::from_utf8_lossy(&challenge.bytes).into_owned();
        let nonce = text
            .split("nonce=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .expect("nonce");
        let ha1 = hex(&Md5::digest(format!("{user}:example.org:pw").as_bytes()));
        let ha2 = hex(&Md5::digest(b"REGISTER:sip:example.org"));
        let resp = hex(&Md5::digest(
            format!("{ha1}:{nonce}:00000001:c:auth:{ha2}").as_bytes(),
        ));
        let auth = format!("Authorization: Digest username=\"{user}\", realm=\"example.org\", nonce=\"{nonce}\", uri=\"sip:example.org\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"c\"\r\n");
        let second = first
            .replace(&format!("{i}a"), &format!("{i}b"))
            .replace(
                &format!("{} REGISTER", 2 * i + 1),
                &format!("{} REGISTER", 2 * i + 2),
            )
            .replace("Expires:", &format!("{auth}Expires:"));
        server.handle_input(
            t,
            Input {
                bytes: second.as_bytes(),
                ..flow(i)
            },
        );
        let ok = server.poll_transmit().expect("an answer");
        assert!(
            ok.bytes.starts_with(b"SIP/2.0 200"),
            "{}",
            String::from_utf8_lossy(&ok.bytes)
        );
        while server.poll_event().is_some() {}
    }
    let per = start.elapsed().as_nanos() as f64 / f64::from(regs);
    println!(
        "digest registration (2 requests, 2 answers), incl. building the client side: {per:.0} ns"
    );
    println!("bindings held: {}", server.location().len());
}
