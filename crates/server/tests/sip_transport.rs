//! The SIP driver's transports and robustness, with raw sockets: malformed
//! datagrams, TCP framing and keepalive, TLS, WebSocket (RFC 7118), and
//! bindings surviving a restart.

mod sip_support;

use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::sync::Arc;
use std::time::Duration;

use sip_support::TestServer;

const OPTIONS: &str = "OPTIONS sip:localhost SIP/2.0\r\n\
    Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKopt\r\n\
    From: <sip:probe@localhost>;tag=1\r\n\
    To: <sip:localhost>\r\n\
    Call-ID: opt-1\r\n\
    CSeq: 1 OPTIONS\r\n\
    Max-Forwards: 70\r\n\
    Content-Length: 0\r\n\r\n";

fn udp_client(server: &TestServer) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.connect(server.sip_udp()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s
}

fn recv_text(s: &UdpSocket) -> Option<String> {
    let mut buf = [0u8; 65_536];
    let n = s.recv(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

fn with_transport(msg: &str, transport: &str, branch: &str) -> String {
    msg.replace("SIP/2.0/UDP", &format!("SIP/2.0/{transport}"))
        .replace("z9hG4bKopt", branch)
}

#[test]
fn malformed_datagrams_get_400_or_silence_and_the_server_keeps_working() {
    let server = TestServer::start("transport-malformed");
    let c = udp_client(&server);
    c.send(b"\x00\xff\x13garbage that is not SIP").unwrap();
    c.send(&[0u8; 3000]).unwrap();
    let bad_cseq = OPTIONS.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE");
    c.send(bad_cseq.as_bytes()).unwrap();
    let answer = recv_text(&c).expect("a 400");
    assert!(
        answer.starts_with("SIP/2.0 400 Bad Request (CSeq method"),
        "{answer}"
    );
    let bad_length = OPTIONS.replace("Content-Length: 0", "Content-Length: 500");
    c.send(bad_length.as_bytes()).unwrap();
    assert!(recv_text(&c).unwrap().starts_with("SIP/2.0 400"));
    let injected = OPTIONS.replace("To: <sip:localhost>", "To: <sip:localhost>\rX-Evil: 1");
    c.send(injected.as_bytes()).unwrap();
    c.send(OPTIONS.as_bytes()).unwrap();
    let ok = recv_text(&c).expect("still answering");
    assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
}

#[test]
fn tcp_frames_fragmented_messages_and_answers_keepalives() {
    let server = TestServer::start("transport-tcp");
    let mut s = TcpStream::connect(server.addr("SIP", "tcp")).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    s.write_all(b"\r\n\r\n").unwrap();
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).unwrap();
    assert_eq!(&pong, b"\r\n");
    let msg = with_transport(OPTIONS, "TCP", "z9hG4bKtcp1");
    let (a, b) = msg.split_at(40);
    s.write_all(a.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    s.write_all(b.as_bytes()).unwrap();
    let text = read_sip(&mut s);
    assert!(text.starts_with("SIP/2.0 200 OK"), "{text}");
    // A half-open peer (headers never finish) does not block anyone else.
    let mut stalled = TcpStream::connect(server.addr("SIP", "tcp")).unwrap();
    stalled
        .write_all(b"OPTIONS sip:localhost SIP/2.0\r\nVia: SIP/2.0/TCP x")
        .unwrap();
    s.write_all(with_transport(OPTIONS, "TCP", "z9hG4bKtcp2").as_bytes())
        .unwrap();
    assert!(read_sip(&mut s).starts_with("SIP/2.0 200 OK"));
    // A stream without Content-Length cannot be framed: that connection closes.
    let mut broken = TcpStream::connect(server.addr("SIP", "tcp")).unwrap();
    broken
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    broken
        .write_all(OPTIONS.replace("Content-Length: 0\r\n", "").as_bytes())
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(broken.read(&mut buf).unwrap_or(0), 0, "closed");
}

/// Read one SIP message (headers and Content-Length body) from a stream.
fn read_sip(s: &mut impl Read) -> String {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        data.push(byte[0]);
    }
    let text = String::from_utf8_lossy(&data).into_owned();
    let len: usize = text
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    let _ = s.read_exact(&mut body);
    text + &String::from_utf8_lossy(&body)
}

fn tls_client(server: &TestServer) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let pem = std::fs::read(server.data.join("tls").join("cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(server.addr("SIP", "tls")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

#[test]
fn tls_carries_sip() {
    let server = TestServer::start("transport-tls");
    let mut s = tls_client(&server);
    s.write_all(with_transport(OPTIONS, "TLS", "z9hG4bKtls").as_bytes())
        .unwrap();
    let text = read_sip(&mut s);
    assert!(text.starts_with("SIP/2.0 200 OK"), "{text}");
}

#[test]
fn websocket_sip_on_the_https_listener() {
    let server = TestServer::start("transport-ws");
    let pem = std::fs::read(server.data.join("tls").join("cert.pem")).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(server.addr("HTTPS", "tcp")).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    s.write_all(
        b"GET /sip HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
          Sec-WebSocket-Protocol: sip\r\n\r\n",
    )
    .unwrap();
    let head = read_http_head(&mut s);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("sec-websocket-protocol: sip"),
        "{head}"
    );
    let msg = with_transport(OPTIONS, "WSS", "z9hG4bKws");
    s.write_all(&ws_frame(msg.as_bytes())).unwrap();
    let reply = read_ws_text(&mut s);
    assert!(reply.starts_with("SIP/2.0 200 OK"), "{reply}");
}

fn read_http_head(s: &mut impl Read) -> String {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).unwrap_or(0) == 0 {
            break;
        }
        data.push(byte[0]);
    }
    String::from_utf8_lossy(&data).into_owned()
}

/// A masked text frame (clients must mask, RFC 6455 §5.3).
fn ws_frame(payload: &[u8]) -> Vec<u8> {
    let mask = [1u8, 2, 3, 4];
    let mut f = vec![0x81];
    if payload.len() < 126 {
        f.push(0x80 | payload.len() as u8);
    } else {
        f.push(0x80 | 126);
        f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    f.extend_from_slice(&mask);
    f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    f
}

fn read_ws_text(s: &mut impl Read) -> String {
    let mut h = [0u8; 2];
    s.read_exact(&mut h).unwrap();
    assert_eq!(h[0] & 0x0f, 1, "a text frame");
    let len = match h[1] & 0x7f {
        126 => {
            let mut l = [0u8; 2];
            s.read_exact(&mut l).unwrap();
            u16::from_be_bytes(l) as usize
        }
        127 => panic!("unexpectedly large frame"),
        n => n as usize,
    };
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload).unwrap();
    String::from_utf8(payload).unwrap()
}

#[test]
fn bindings_survive_a_restart() {
    if sip_support::sipp().is_none() {
        return;
    }
    let mut server = TestServer::start("transport-restart");
    let port = sip_support::free_port().to_string();
    let inf = std::env::temp_dir().join(format!("natter-restart-{}.csv", std::process::id()));
    std::fs::write(
        &inf,
        "SEQUENTIAL\nbob;localhost;[authentication username=bob password=bob-pw]\n",
    )
    .unwrap();
    let target = server.sip_udp().to_string();
    let sf = sip_support::scenario("register_only.xml");
    let args = [
        target.as_str(),
        "-sf",
        sf.to_str().unwrap(),
        "-inf",
        inf.to_str().unwrap(),
        "-i",
        "127.0.0.1",
        "-p",
        &port,
        "-m",
        "1",
        "-timeout",
        "20s",
        "-timeout_error",
        "-nostdin",
        "-error_file",
        "/dev/null",
    ];
    let (ok, out) = sip_support::run_sipp(&args, Duration::from_secs(30));
    assert!(ok, "{out}");
    std::thread::sleep(Duration::from_millis(1500)); // write-behind batch
    let data = server.data.clone();
    server.stop();
    let restarted = TestServer::start_in(data);
    // Bob is reachable without registering again: OPTIONS-free proof is an
    // INVITE that reaches his port. Listen there and let alice call.
    let bob = UdpSocket::bind(format!("127.0.0.1:{port}")).unwrap();
    bob.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let caller =
        std::env::temp_dir().join(format!("natter-restart-caller-{}.csv", std::process::id()));
    std::fs::write(
        &caller,
        "SEQUENTIAL\nalice;localhost;[authentication username=alice password=alice-pw];bob\n",
    )
    .unwrap();
    let target = restarted.sip_udp().to_string();
    let sf = sip_support::scenario("call.xml");
    let caller_port = sip_support::free_port().to_string();
    let args: Vec<String> = [
        target.as_str(),
        "-sf",
        sf.to_str().unwrap(),
        "-inf",
        caller.to_str().unwrap(),
        "-i",
        "127.0.0.1",
        "-p",
        &caller_port,
        "-m",
        "1",
        "-timeout",
        "5s",
        "-nostdin",
        "-error_file",
        "/dev/null",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let t = std::thread::spawn(move || {
        let a: Vec<&str> = args.iter().map(String::as_str).collect();
        sip_support::run_sipp(&a, Duration::from_secs(10))
    });
    let mut buf = [0u8; 65_536];
    let n = bob
        .recv(&mut buf)
        .expect("the INVITE reaches bob's restored binding");
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("INVITE sip:bob@127.0.0.1:"), "{text}");
    drop(bob);
    let _ = t.join();
}
