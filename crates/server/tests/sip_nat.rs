//! NAT-facing behaviour of the SIP driver with raw sockets: STUN keepalives
//! on the UDP SIP port (RFC 5626 §8) and requests too large for UDP going
//! over TCP, back to UDP when the device cannot be connected to
//! (RFC 3261 §18.1.1).

mod sip_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::Duration;

use natter_turn::stun::{self, Attribute, BindingRequest, Class, TransactionId};
use sha2::{Digest, Sha256};
use sip_support::TestServer;

fn udp() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s
}

fn recv(s: &UdpSocket) -> Vec<u8> {
    let mut buf = [0u8; 65_536];
    let n = s.recv(&mut buf).expect("an answer within 5 s");
    buf[..n].to_vec()
}

/// The next SIP message on a UDP socket, skipping 100 Trying.
fn recv_sip(s: &UdpSocket) -> String {
    loop {
        let text = String::from_utf8_lossy(&recv(s)).into_owned();
        if !text.starts_with("SIP/2.0 100") {
            return text;
        }
    }
}

#[test]
fn stun_binding_on_the_sip_udp_port_reports_the_public_address() {
    let server = TestServer::start("nat-stun");
    let c = udp();
    c.connect(server.sip_udp()).unwrap();
    let tid = TransactionId::new([0x42; 12]);
    c.send(&BindingRequest::new(tid).build()).unwrap();
    let answer = recv(&c);
    let msg = stun::decode(&answer).expect("a STUN message");
    assert_eq!((msg.class(), msg.transaction_id()), (Class::Success, tid));
    let mapped = msg.attributes().find_map(|a| match a {
        Ok(Attribute::XorMappedAddress(addr)) => Some(addr),
        _ => None,
    });
    assert_eq!(mapped, Some(c.local_addr().unwrap()));
    // Lookalikes are dropped without an answer; SIP still works after them.
    c.send(&[0x00, 0x01, 0x00, 0x04, 0x21, 0x12, 0xa4, 0x42, 9, 9])
        .unwrap();
    c.send(&[0x01; 1200]).unwrap();
    let options = request("OPTIONS", "sip:localhost", &c, "opt", 1, "", "");
    c.send(options.as_bytes()).unwrap();
    let reply = String::from_utf8_lossy(&recv(&c)).into_owned();
    assert!(reply.starts_with("SIP/2.0 200"), "{reply}");
}

#[test]
fn large_invite_goes_over_tcp_to_a_device_that_listens_there() {
    let server = TestServer::start("nat-large-tcp");
    let bob = udp();
    let port = bob.local_addr().unwrap().port();
    let tcp = TcpListener::bind(("127.0.0.1", port)).expect("TCP on bob's UDP port");
    register(&server, &bob, "bob", "bob-pw");
    let alice = udp();
    let call_id = invite_bob(&server, &alice);

    let (mut conn, _) = accept_within(&tcp, Duration::from_secs(5));
    let invite = read_message(&mut conn);
    assert!(
        invite.starts_with(&format!("INVITE sip:bob@127.0.0.1:{port} ")),
        "{invite}"
    );
    assert!(invite.len() > 1300, "{} bytes", invite.len());
    let via = header(&invite, "Via").expect("a Via");
    assert!(via.starts_with("SIP/2.0/TCP "), "top Via names TCP: {via}");
    // Bob rings over the same connection; alice hears it.
    conn.write_all(response(&invite, "180 Ringing").as_bytes())
        .unwrap();
    let ringing = recv_sip(&alice);
    assert!(ringing.starts_with("SIP/2.0 180"), "{ringing}");
    assert_eq!(
        header(&ringing, "Call-ID").as_deref(),
        Some(call_id.as_str())
    );
}

#[test]
fn large_invite_falls_back_to_udp_when_the_device_takes_no_tcp() {
    let server = TestServer::start("nat-large-udp");
    let bob = udp(); // nothing listens on TCP at this port
    let port = bob.local_addr().unwrap().port();
    register(&server, &bob, "bob", "bob-pw");
    let alice = udp();
    invite_bob(&server, &alice);
    let invite = String::from_utf8_lossy(&recv(&bob)).into_owned();
    assert!(
        invite.starts_with(&format!("INVITE sip:bob@127.0.0.1:{port} ")),
        "{invite}"
    );
    let via = header(&invite, "Via").expect("a Via");
    assert!(
        via.starts_with("SIP/2.0/UDP "),
        "top Via back to UDP: {via}"
    );
    bob.send_to(
        response(&invite, "180 Ringing").as_bytes(),
        server.sip_udp(),
    )
    .unwrap();
    assert!(recv_sip(&alice).starts_with("SIP/2.0 180"));
}

/// REGISTER `user` from `sock` with SHA-256 digest; panics unless 200.
fn register(server: &TestServer, sock: &UdpSocket, user: &str, pw: &str) {
    let contact = format!("Contact: <sip:{user}@{}>\r\n", sock.local_addr().unwrap());
    let uri = "sip:localhost";
    let first = request("REGISTER", uri, sock, user, 1, &contact, "");
    sock.send_to(first.as_bytes(), server.sip_udp()).unwrap();
    let challenge = recv_sip(sock);
    assert!(challenge.starts_with("SIP/2.0 401"), "{challenge}");
    let auth = authorization(&challenge, "WWW-Authenticate", "REGISTER", uri, user, pw);
    let extra = format!("{contact}Authorization: {auth}\r\n");
    let second = request("REGISTER", uri, sock, user, 2, &extra, "");
    sock.send_to(second.as_bytes(), server.sip_udp()).unwrap();
    let ok = recv_sip(sock);
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
}

/// Alice sends bob an INVITE of about 2 kB (challenge answered); returns
/// its Call-ID.
fn invite_bob(server: &TestServer, alice: &UdpSocket) -> String {
    let uri = "sip:bob@localhost";
    let sdp: String = (0..30)
        .map(|i| {
            format!(
                "a=candidate:{i} 1 udp 2130706431 192.0.2.1 {} typ host\r\n",
                4000 + i
            )
        })
        .collect();
    let body = format!(
        "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n{sdp}"
    );
    let contact = format!(
        "Contact: <sip:alice@{}>\r\nContent-Type: application/sdp\r\n",
        alice.local_addr().unwrap()
    );
    let first = request("INVITE", uri, alice, "alice", 1, &contact, &body);
    alice.send_to(first.as_bytes(), server.sip_udp()).unwrap();
    let challenge = recv_sip(alice);
    assert!(challenge.starts_with("SIP/2.0 407"), "{challenge}");
    let ack = request("ACK", uri, alice, "alice", 1, "", "");
    alice.send_to(ack.as_bytes(), server.sip_udp()).unwrap();
    let auth = authorization(
        &challenge,
        "Proxy-Authenticate",
        "INVITE",
        uri,
        "alice",
        "alice-pw",
    );
    let extra = format!("{contact}Proxy-Authorization: {auth}\r\n");
    let second = request("INVITE", uri, alice, "alice", 2, &extra, &body);
    alice.send_to(second.as_bytes(), server.sip_udp()).unwrap();
    format!("nat-alice-{}", alice.local_addr().unwrap().port())
}

/// A request from `sock`'s address; `extra` is whole header lines.
fn request(
    method: &str,
    uri: &str,
    sock: &UdpSocket,
    user: &str,
    seq: u32,
    extra: &str,
    body: &str,
) -> String {
    let me = sock.local_addr().unwrap();
    let to = if method == "REGISTER" {
        format!("<sip:{user}@localhost>")
    } else {
        format!("<{uri}>")
    };
    let cseq_method = if method == "ACK" { "ACK" } else { method };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: SIP/2.0/UDP {me};rport;branch=z9hG4bK-{user}-{seq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{user}@localhost>;tag=t-{user}\r\nTo: {to}\r\n\
         Call-ID: nat-{user}-{port}\r\nCSeq: {seq} {cseq_method}\r\n{extra}Content-Length: {len}\r\n\r\n{body}",
        port = me.port(),
        len = body.len(),
    )
}

/// A response to `req` (Vias, From, To with a tag, Call-ID, CSeq copied).
fn response(req: &str, status: &str) -> String {
    let mut out = format!("SIP/2.0 {status}\r\n");
    for line in req.split("\r\n").skip(1).take_while(|l| !l.is_empty()) {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => out.push_str(&format!("{line}\r\n")),
            "to" => out.push_str(&format!("{line};tag=bob-tag\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// The first value of a header (long name), from a message's text.
fn header(msg: &str, name: &str) -> Option<String> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
}

/// Answer the SHA-256 challenge in `challenge`'s `ask` header (qop=auth).
fn authorization(
    challenge: &str,
    ask: &str,
    method: &str,
    uri: &str,
    user: &str,
    pw: &str,
) -> String {
    let offer = challenge
        .split("\r\n")
        .filter_map(|l| l.split_once(':'))
        .filter(|(n, _)| n.eq_ignore_ascii_case(ask))
        .map(|(_, v)| v.trim())
        .find(|v| v.contains("SHA-256"))
        .expect("a SHA-256 challenge");
    let nonce = offer
        .split("nonce=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let h = |s: String| {
        Sha256::digest(s.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    };
    let ha1 = h(format!("{user}:localhost:{pw}"));
    let ha2 = h(format!("{method}:{uri}"));
    let response = h(format!("{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}"));
    format!(
        "Digest username=\"{user}\", realm=\"localhost\", nonce=\"{nonce}\", uri=\"{uri}\", \
         response=\"{response}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c0ffee\""
    )
}

fn accept_within(l: &TcpListener, limit: Duration) -> (TcpStream, SocketAddr) {
    l.set_nonblocking(true).unwrap();
    let start = std::time::Instant::now();
    loop {
        match l.accept() {
            Ok((s, a)) => {
                s.set_nonblocking(false).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                return (s, a);
            }
            Err(_) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("natter did not connect over TCP: {e}"),
        }
    }
}

/// One SIP message from a stream, framed by Content-Length.
fn read_message(s: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&buf).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let len: usize = header(&text, "Content-Length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                return String::from_utf8_lossy(&buf[..end + 4 + len]).into_owned();
            }
        }
        let n = s.read(&mut chunk).expect("the request arrives");
        assert!(n > 0, "connection closed early");
        buf.extend_from_slice(&chunk[..n]);
    }
}
