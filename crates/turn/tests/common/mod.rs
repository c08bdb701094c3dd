//! Shared harness: an in-memory relay allocator and a TURN client that does the
//! 401 / 438 dance, driving a `Server` with injected time.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Instant;

use natter_turn::binding::Source;
use natter_turn::server::{
    FiveTuple, Granted, Relay, RelayAllocator, RelayError, RelayId, RelayRequest, Server,
    ServerConfig, Transport, UserKeys,
};
use natter_turn::stun::{
    self, attr_type, Attribute, Class, IntegrityKey, Mac, MessageBuilder, Method, TransactionId,
};

pub const REALM: &str = "example.org";
pub const SERVER: &str = "192.0.2.1:3478";
pub const SECRET: &str = "0123456789abcdef-secret";
pub const UNIX_NOW: u64 = 1_700_000_000;

/// Hands out ports 50000, 50002, ... on 192.0.2.1 and remembers what is live.
#[derive(Debug, Default)]
pub struct MemRelays {
    pub next: u16,
    pub live: BTreeSet<u32>,
    pub released: Vec<RelayId>,
    pub fail: Option<RelayError>,
}

impl RelayAllocator for MemRelays {
    fn allocate(&mut self, req: RelayRequest) -> Result<Granted, RelayError> {
        if let Some(e) = self.fail {
            return Err(e);
        }
        let ip = match req.family {
            natter_turn::server::Family::V4 => "192.0.2.1".parse().unwrap(),
            natter_turn::server::Family::V6 => return Err(RelayError::FamilyUnsupported),
        };
        let port = 50_000 + self.next * 2;
        self.next += 1;
        let relay = Relay {
            id: RelayId(u32::from(port)),
            addr: SocketAddr::new(ip, port),
        };
        self.live.insert(u32::from(port));
        let reserved = req.reserve_next.then(|| {
            self.live.insert(u32::from(port) + 1);
            Relay {
                id: RelayId(u32::from(port) + 1),
                addr: SocketAddr::new(ip, port + 1),
            }
        });
        Ok(Granted { relay, reserved })
    }
    fn release(&mut self, id: RelayId) {
        self.live.remove(&id.0);
        self.released.push(id);
    }
}

pub fn config() -> ServerConfig {
    ServerConfig::new(REALM, SERVER.parse().unwrap())
        .set_seed(7)
        .set_rest_secret(SECRET)
        .unwrap()
}

pub fn server_with(cfg: ServerConfig, t0: Instant) -> Server<MemRelays> {
    Server::new(cfg, MemRelays::default(), t0, UNIX_NOW)
}

/// The accounts of the pretend store.
pub fn store_lookup(user: &str) -> Option<UserKeys> {
    match user {
        "alice" => Some(UserKeys::from_password("alice", REALM, "wonderland")),
        "bob" => Some(UserKeys::from_password("bob", REALM, "builder")),
        _ => None,
    }
}

pub fn server(t0: Instant) -> Server<MemRelays> {
    server_with(config(), t0)
}

pub fn tuple(client: &str, transport: Transport) -> FiveTuple {
    FiveTuple {
        transport,
        client: client.parse().unwrap(),
        server: SERVER.parse().unwrap(),
    }
}

/// A TURN client on one 5-tuple.
pub struct Client {
    pub tuple: FiveTuple,
    pub user: String,
    pub password: String,
    pub nonce: Option<String>,
    pub sha256: bool,
    pub tid: u32,
}

/// A decoded answer, owned.
#[derive(Debug, Clone)]
pub struct Answer(pub Vec<u8>);

impl Answer {
    pub fn msg(&self) -> stun::Message<'_> {
        stun::decode(&self.0).unwrap()
    }
    pub fn code(&self) -> Option<u16> {
        self.msg().error_code().map(|e| e.code)
    }
    pub fn is_success(&self) -> bool {
        self.msg().class() == Class::Success
    }
    pub fn addr(&self, typ: u16) -> Option<SocketAddr> {
        self.msg().address(typ)
    }
    pub fn lifetime(&self) -> Option<u32> {
        match self.msg().get(attr_type::LIFETIME) {
            Some(Ok(Attribute::Lifetime(l))) => Some(l),
            _ => None,
        }
    }
}

impl Client {
    pub fn new(client: &str, user: &str, password: &str) -> Self {
        Client {
            tuple: tuple(client, Transport::Udp),
            user: user.into(),
            password: password.into(),
            nonce: None,
            sha256: false,
            tid: 0,
        }
    }

    pub fn key(&self) -> IntegrityKey {
        let k = UserKeys::from_password(&self.user, REALM, &self.password);
        if self.sha256 {
            IntegrityKey::LongTermSha256(k.sha256)
        } else {
            IntegrityKey::LongTermMd5(k.md5)
        }
    }

    pub fn next_tid(&mut self) -> TransactionId {
        self.tid += 1;
        let mut b = [0u8; 12];
        b[..4].copy_from_slice(&self.tid.to_be_bytes());
        TransactionId::new(b)
    }

    /// Encode a request; signed when a nonce is known.
    pub fn encode(&self, method: Method, tid: TransactionId, attrs: &[Attribute<'_>]) -> Vec<u8> {
        let mut b = MessageBuilder::new(Class::Request, method, tid);
        for a in attrs {
            b.add(a);
        }
        if let Some(n) = &self.nonce {
            b.add(&Attribute::Username(&self.user));
            b.add(&Attribute::Realm(REALM));
            b.add(&Attribute::Nonce(n));
            if self.sha256 {
                b.add(&Attribute::PasswordAlgorithms(&[0, 2, 0, 0, 0, 1, 0, 0]));
                b.add(&Attribute::PasswordAlgorithm(2));
                b.add_integrity_sha256(&self.key());
            } else {
                b.add_integrity(&self.key());
            }
        }
        b.add_fingerprint();
        b.finish()
    }

    /// Send one message, return the single answer if any. Like the real driver,
    /// look keys up first when the core asks for them.
    pub fn send_raw(
        &self,
        s: &mut Server<MemRelays>,
        now: Instant,
        bytes: &[u8],
    ) -> Option<Answer> {
        if let Some(user) = s.user_to_look_up(now, bytes) {
            s.set_user_keys(now, &user, store_lookup(&user));
        }
        assert!(s
            .handle_client(now, self.tuple, Source::Primary, bytes)
            .is_none());
        let t = s.poll_transmit()?;
        assert_eq!(t.to, self.tuple);
        assert!(s.poll_transmit().is_none(), "one answer per request");
        Some(Answer(t.payload))
    }

    /// A request with the 401/438 dance; returns the final answer.
    pub fn request(
        &mut self,
        s: &mut Server<MemRelays>,
        now: Instant,
        method: Method,
        attrs: &[Attribute<'_>],
    ) -> Answer {
        for _ in 0..3 {
            let tid = self.next_tid();
            let bytes = self.encode(method, tid, attrs);
            let ans = self.send_raw(s, now, &bytes).expect("an answer");
            let m = ans.msg();
            assert_eq!(m.transaction_id(), tid);
            match m.error_code().map(|e| e.code) {
                Some(401) if self.nonce.is_none() => {}
                Some(438) => {}
                _ => {
                    if self.nonce.is_some() && m.raw_value(attr_type::MESSAGE_INTEGRITY).is_some()
                        || m.raw_value(attr_type::MESSAGE_INTEGRITY_SHA256).is_some()
                    {
                        assert!(
                            m.verify_integrity(&self.key()),
                            "answer signed with our key"
                        );
                        assert_eq!(
                            m.integrity_mac(),
                            Some(if self.sha256 { Mac::Sha256 } else { Mac::Sha1 })
                        );
                    }
                    return ans;
                }
            }
            match m.get(attr_type::NONCE) {
                Some(Ok(Attribute::Nonce(n))) => self.nonce = Some(n.to_owned()),
                other => panic!("challenge without nonce: {other:?}"),
            }
            assert!(matches!(
                m.get(attr_type::REALM),
                Some(Ok(Attribute::Realm(REALM)))
            ));
        }
        panic!("no answer after three tries")
    }

    pub fn allocate(&mut self, s: &mut Server<MemRelays>, now: Instant) -> Answer {
        self.request(
            s,
            now,
            Method::ALLOCATE,
            &[Attribute::RequestedTransport(17)],
        )
    }

    pub fn permit(&mut self, s: &mut Server<MemRelays>, now: Instant, peer: &str) -> Answer {
        self.request(
            s,
            now,
            Method::CREATE_PERMISSION,
            &[Attribute::XorPeerAddress(peer.parse().unwrap())],
        )
    }

    pub fn bind(&mut self, s: &mut Server<MemRelays>, now: Instant, ch: u16, peer: &str) -> Answer {
        self.request(
            s,
            now,
            Method::CHANNEL_BIND,
            &[
                Attribute::ChannelNumber(ch),
                Attribute::XorPeerAddress(peer.parse().unwrap()),
            ],
        )
    }

    pub fn send_indication(&self, peer: &str, data: &[u8]) -> Vec<u8> {
        let mut b =
            MessageBuilder::new(Class::Indication, Method::SEND, TransactionId::new([9; 12]));
        b.add(&Attribute::XorPeerAddress(peer.parse().unwrap()));
        b.add(&Attribute::Data(data));
        b.finish()
    }
}
