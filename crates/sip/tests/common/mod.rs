//! Test harness: a `Server` with in-memory accounts, injected time, and a
//! tiny user agent that builds requests and answers digest challenges.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use md5::{Digest as _, Md5};
use natter_sip::auth::{Accounts, DigestKeys};
use natter_sip::flow::{ConnId, Flow, Input, Transport};
use natter_sip::{Event, HeaderName, Limits, Message, Server, ServerConfig};

pub const DOMAIN: &str = "example.org";

pub struct MemAccounts(pub HashMap<String, DigestKeys>);

impl Accounts for MemAccounts {
    fn digest_keys(&self, user: &str) -> Option<DigestKeys> {
        self.0.get(user).cloned()
    }
}

pub struct Harness {
    pub server: Server,
    pub now: Instant,
    pub local: SocketAddr,
}

pub fn config() -> ServerConfig {
    let mut cfg = ServerConfig::new(DOMAIN);
    cfg.secret = [1; 32];
    cfg.seed = 42;
    cfg.guard.exempt_loopback = false;
    cfg
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(config())
    }

    pub fn with_config(cfg: ServerConfig) -> Harness {
        let accounts: HashMap<String, DigestKeys> = [
            ("alice", "alice-pw"),
            ("bob", "bob-pw"),
            ("+14155550100", "num-pw"),
        ]
        .into_iter()
        .map(|(u, p)| (u.to_string(), DigestKeys::derive(u, DOMAIN, p)))
        .collect();
        let now = Instant::now();
        Harness {
            server: Server::new(cfg, Box::new(MemAccounts(accounts)), now),
            now,
            local: "192.0.2.1:5060".parse().unwrap(),
        }
    }

    pub fn udp(&self, remote: &str) -> Flow {
        Flow {
            transport: Transport::Udp,
            local: self.local,
            remote: remote.parse().unwrap(),
            conn: None,
        }
    }

    pub fn tcp(&self, remote: &str, conn: u64) -> Flow {
        Flow {
            transport: Transport::Tcp,
            local: self.local,
            remote: remote.parse().unwrap(),
            conn: Some(ConnId(conn)),
        }
    }

    pub fn input(&mut self, flow: Flow, bytes: &[u8]) {
        self.server.handle_input(
            self.now,
            Input {
                transport: flow.transport,
                local: flow.local,
                remote: flow.remote,
                conn_id: flow.conn,
                bytes,
            },
        );
    }

    pub fn send(&mut self, flow: Flow, msg: &Message) {
        self.input(flow, &msg.to_bytes());
    }

    /// Everything the server sent, parsed.
    pub fn drain(&mut self) -> Vec<(Flow, Message)> {
        let mut out = Vec::new();
        while let Some(t) = self.server.poll_transmit() {
            let msg = natter_sip::parse(&t.bytes, &Limits::default())
                .expect("server sent an unparsable message");
            out.push((t.flow, msg));
        }
        out
    }

    /// Exactly one message must have been sent; return it.
    pub fn one(&mut self) -> (Flow, Message) {
        let mut all = self.drain();
        assert_eq!(all.len(), 1, "expected one message, got {all:#?}");
        all.remove(0)
    }

    pub fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.server.poll_event()).collect()
    }

    /// Move time forward, firing every timer on the way.
    pub fn advance(&mut self, by: Duration) {
        let end = self.now + by;
        while let Some(at) = self.server.poll_timeout() {
            if at > end {
                break;
            }
            self.now = self.now.max(at);
            self.server.handle_timeout(self.now);
        }
        self.now = end;
    }
}

/// A minimal UA for building requests.
pub struct Ua {
    pub user: String,
    pub password: String,
    pub call_id: String,
    pub tag: String,
    pub cseq: u32,
    pub branch_n: u32,
    pub contact_host: String,
}

impl Ua {
    pub fn new(user: &str, password: &str, contact_host: &str) -> Ua {
        Ua {
            user: user.into(),
            password: password.into(),
            call_id: format!("call-{user}-{contact_host}"),
            tag: format!("tag-{user}"),
            cseq: 0,
            branch_n: 0,
            contact_host: contact_host.into(),
        }
    }

    pub fn branch(&mut self) -> String {
        self.branch_n += 1;
        format!("z9hG4bK-{}-{}", self.user, self.branch_n)
    }

    pub fn register(&mut self, extra: &[(&str, &str)]) -> Message {
        self.cseq += 1;
        let mut m = Message::request(natter_sip::Method::Register, format!("sip:{DOMAIN}"));
        let branch = self.branch();
        m.push(
            HeaderName::Via,
            format!("SIP/2.0/UDP {};rport;branch={branch}", self.contact_host),
        );
        m.push(HeaderName::MaxForwards, "70");
        m.push(
            HeaderName::From,
            format!("<sip:{}@{DOMAIN}>;tag={}", self.user, self.tag),
        );
        m.push(HeaderName::To, format!("<sip:{}@{DOMAIN}>", self.user));
        m.push(HeaderName::CallId, self.call_id.clone());
        m.push(HeaderName::CSeq, format!("{} REGISTER", self.cseq));
        for (name, value) in extra {
            m.push(HeaderName::parse(name), *value);
        }
        m
    }

    pub fn contact(&self) -> String {
        format!("<sip:{}@{}>", self.user, self.contact_host)
    }

    pub fn invite(&mut self, to: &str) -> Message {
        self.cseq += 1;
        let mut m = Message::request(natter_sip::Method::Invite, format!("sip:{to}@{DOMAIN}"));
        let branch = self.branch();
        m.push(
            HeaderName::Via,
            format!("SIP/2.0/UDP {};branch={branch}", self.contact_host),
        );
        m.push(HeaderName::MaxForwards, "70");
        m.push(
            HeaderName::From,
            format!("<sip:{}@{DOMAIN}>;tag={}", self.user, self.tag),
        );
        m.push(HeaderName::To, format!("<sip:{to}@{DOMAIN}>"));
        m.push(
            HeaderName::CallId,
            format!("{}-{}", self.call_id, self.cseq),
        );
        m.push(HeaderName::CSeq, format!("{} INVITE", self.cseq));
        m.push(HeaderName::Contact, self.contact());
        m.push(HeaderName::ContentType, "application/sdp");
        m.body = b"v=0\r\no=- 1 1 IN IP4 192.0.2.50\r\ns=-\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
            .to_vec();
        m
    }

    /// Answer a 401/407 challenge on `req` (MD5, qop=auth).
    pub fn authorize(&mut self, req: &Message, challenge: &Message) -> Message {
        let (ask, answer) = if challenge.code() == Some(407) {
            (
                HeaderName::ProxyAuthenticate,
                HeaderName::ProxyAuthorization,
            )
        } else {
            (HeaderName::WwwAuthenticate, HeaderName::Authorization)
        };
        let md5 = challenge
            .headers_named(&ask)
            .find(|c| c.contains("MD5"))
            .expect("an MD5 challenge");
        let nonce = md5
            .split("nonce=\"")
            .nth(1)
            .unwrap()
            .split('"')
            .next()
            .unwrap();
        let method = req.method().unwrap().as_str().to_owned();
        let uri = req.request_uri().unwrap().to_owned();
        let h = |s: String| hex(&Md5::digest(s.as_bytes()));
        let ha1 = h(format!("{}:{DOMAIN}:{}", self.user, self.password));
        let ha2 = h(format!("{method}:{uri}"));
        let response = h(format!("{ha1}:{nonce}:00000001:abc:auth:{ha2}"));
        let mut next = req.clone();
        self.cseq += 1;
        let seq = self.cseq;
        next.set(HeaderName::CSeq, format!("{seq} {method}"));
        let branch = self.branch();
        next.set(
            HeaderName::Via,
            format!("SIP/2.0/UDP {};rport;branch={branch}", self.contact_host),
        );
        next.push(
            answer,
            format!(
                "Digest username=\"{}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", uri=\"{uri}\", response=\"{response}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc\"",
                self.user
            ),
        );
        next
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Register `ua` from `flow` with the harness, answering the challenge.
pub fn register(h: &mut Harness, ua: &mut Ua, flow: Flow, extra: &[(&str, &str)]) -> Message {
    let req = ua.register(extra);
    h.send(flow, &req);
    let (_, challenge) = h.one();
    assert_eq!(challenge.code(), Some(401), "{challenge:?}");
    let req = ua.authorize(&req, &challenge);
    h.send(flow, &req);
    h.one().1
}
