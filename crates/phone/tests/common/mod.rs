//! An in-memory world for whole calls: natter's SIP server core and TURN server
//! core, phones on a simulated IP network, time injected.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use natter_phone::sip::UaConfig;
use natter_phone::turn_client::{TurnConfig, TurnTransport};
use natter_phone::{Phone, PhoneConfig, PhoneEvent, PhoneTransmit};
use natter_sip::auth::{Accounts, DigestKeys};
use natter_sip::flow::{ConnId, Input, Transport};
use natter_turn::binding::Source;
use natter_turn::server::{
    FiveTuple, Granted, PeerPolicy, Relay, RelayAllocator, RelayError, RelayId, RelayRequest,
    Server as TurnServer, ServerConfig as TurnServerConfig, Transport as TurnTransportS, UserKeys,
    PEER_HEADROOM, PEER_TAILROOM,
};

pub const DOMAIN: &str = "example.org";
pub const SERVER_IP: &str = "192.0.2.1";

pub fn sip_addr() -> SocketAddr {
    format!("{SERVER_IP}:5060").parse().unwrap()
}
pub fn turn_addr() -> SocketAddr {
    format!("{SERVER_IP}:3478").parse().unwrap()
}

pub fn password(user: &str) -> Option<&'static str> {
    match user {
        "alice" => Some("wonderland"),
        "bob" => Some("builder"),
        _ => None,
    }
}

struct Users;
impl Accounts for Users {
    fn digest_keys(&self, user: &str) -> Option<DigestKeys> {
        password(user).map(|pw| DigestKeys::derive(user, DOMAIN, pw))
    }
}

#[derive(Default)]
pub struct MemRelays {
    next: u16,
}
impl RelayAllocator for MemRelays {
    fn allocate(&mut self, _req: RelayRequest) -> Result<Granted, RelayError> {
        let port = 50_000 + self.next * 2;
        self.next += 1;
        let relay = Relay {
            id: RelayId(u32::from(port)),
            addr: SocketAddr::new(SERVER_IP.parse().unwrap(), port),
        };
        Ok(Granted {
            relay,
            reserved: None,
        })
    }
    fn release(&mut self, _id: RelayId) {}
}

/// One phone on the simulated network.
pub struct Node {
    pub phone: Phone,
    /// Its SIP flow's address and its media socket's address.
    pub sip: SocketAddr,
    pub media: SocketAddr,
    /// The SIP connection's id at the server (a new one after a move).
    pub conn: u64,
    pub events: Vec<PhoneEvent>,
    pub heard: Vec<i16>,
}

pub struct World {
    pub now: Instant,
    pub sip: natter_sip::Server,
    pub turn: TurnServer<MemRelays>,
    pub nodes: Vec<Node>,
    /// Drop datagrams between phones' own addresses (only the relay gets through).
    pub block_direct: bool,
    /// Every datagram that crossed the simulated wire between phones or relays: (from, to, bytes).
    pub wire: Vec<(SocketAddr, SocketAddr, Vec<u8>)>,
    /// Drop every media datagram (direct and through TURN): the path is dead.
    pub cut_media: bool,
    /// Drop one in this many direct phone-to-phone datagrams (0: none).
    pub lose_one_in: u32,
    direct_sent: u32,
    next_conn: u64,
}

impl World {
    pub fn new() -> Self {
        let now = Instant::now();
        let mut cfg = natter_sip::ServerConfig::new(DOMAIN);
        cfg.seed = 5;
        let tcfg = TurnServerConfig::new(DOMAIN, turn_addr())
            .set_seed(5)
            .set_peer_policy(PeerPolicy::allowing(vec![
                "10.0.0.0/8".parse().unwrap(),
                "192.0.2.0/24".parse().unwrap(),
            ]));
        World {
            now,
            sip: natter_sip::Server::new(cfg, Box::new(Users), now),
            turn: TurnServer::new(tcfg, MemRelays::default(), now, 1_700_000_000),
            nodes: Vec::new(),
            block_direct: false,
            wire: Vec::new(),
            cut_media: false,
            lose_one_in: 0,
            direct_sent: 0,
            next_conn: 100,
        }
    }

    pub fn add(&mut self, user: &str, force_relay: bool) -> usize {
        self.add_configured(user, force_relay, |_| {})
    }

    /// [`World::add`], with `tune` applied to the phone's settings.
    pub fn add_configured(
        &mut self,
        user: &str,
        force_relay: bool,
        tune: impl FnOnce(&mut PhoneConfig),
    ) -> usize {
        let i = self.nodes.len();
        let ip: IpAddr = format!("10.0.0.{}", i + 1).parse().unwrap();
        let sip = SocketAddr::new(ip, 40_000);
        let media = SocketAddr::new(ip, 41_000);
        let pw = password(user).unwrap();
        let mut ua = UaConfig::new(user, pw, SERVER_IP, Transport::Tcp, sip);
        ua.seed = Some(100 + i as u64);
        let turn = TurnConfig::new(turn_addr(), TurnTransport::Udp, user, pw);
        let mut cfg = PhoneConfig::new(ua, media, Some(turn));
        cfg.force_relay = force_relay;
        tune(&mut cfg);
        self.nodes.push(Node {
            phone: Phone::new(cfg),
            sip,
            media,
            conn: i as u64,
            events: Vec::new(),
            heard: Vec::new(),
        });
        i
    }

    /// Node `i` moves to `ip` (new network): its old addresses go dead, it gets
    /// a new SIP connection and media socket, and the phone is told so.
    pub fn move_node(&mut self, i: usize, ip: IpAddr) {
        let n = &mut self.nodes[i];
        n.sip = SocketAddr::new(ip, n.sip.port() + 1);
        n.media = SocketAddr::new(ip, n.media.port() + 1);
        n.conn = self.next_conn;
        self.next_conn += 1;
        let (now, sip, media) = (self.now, n.sip, n.media);
        n.phone.handle_sip_flow(now, sip);
        n.phone.handle_media_moved(now, media);
    }

    /// Node `i`'s SIP connection breaks (the server sees it close) and the
    /// phone connects again from a new port on the same address.
    pub fn reconnect_sip(&mut self, i: usize) {
        let old = ConnId(self.nodes[i].conn);
        self.sip.handle_connection_closed(old);
        let n = &mut self.nodes[i];
        n.sip = SocketAddr::new(n.sip.ip(), n.sip.port() + 1);
        n.conn = self.next_conn;
        self.next_conn += 1;
        let (now, sip) = (self.now, n.sip);
        n.phone.handle_sip_flow(now, sip);
    }

    pub fn phone(&mut self, i: usize) -> &mut Phone {
        &mut self.nodes[i].phone
    }

    /// Deliver everything queued, repeatedly, at the current time.
    pub fn pump(&mut self) {
        for _ in 0..10_000 {
            let mut moved = false;
            for i in 0..self.nodes.len() {
                while let Some(t) = self.nodes[i].phone.poll_transmit() {
                    moved = true;
                    self.send_from(i, t);
                }
                while let Some(e) = self.nodes[i].phone.poll_event() {
                    self.nodes[i].events.push(e);
                }
                while let Some(a) = self.nodes[i].phone.poll_audio() {
                    self.nodes[i].heard.extend(a);
                }
            }
            while let Some(t) = self.sip.poll_transmit() {
                moved = true;
                // Nothing answers at an address a phone has left.
                let conn = t.flow.conn.map(|c| c.0);
                let to = self.nodes.iter().position(|n| n.sip == t.flow.remote);
                if let Some(i) = to.filter(|&i| conn.is_none() || conn == Some(self.nodes[i].conn))
                {
                    let now = self.now;
                    self.nodes[i].phone.handle_sip(now, &t.bytes);
                }
            }
            while let Some(t) = self.turn.poll_transmit() {
                moved = true;
                if let Some(i) = self.nodes.iter().position(|n| n.media == t.to.client) {
                    let now = self.now;
                    self.nodes[i]
                        .phone
                        .handle_udp(now, turn_addr(), &t.payload, true);
                }
            }
            if !moved {
                return;
            }
        }
        panic!("the network never went quiet");
    }

    fn send_from(&mut self, i: usize, t: PhoneTransmit) {
        let now = self.now;
        match t {
            PhoneTransmit::Sip(bytes) => {
                let input = Input {
                    transport: Transport::Tcp,
                    local: sip_addr(),
                    remote: self.nodes[i].sip,
                    conn_id: Some(ConnId(self.nodes[i].conn)),
                    bytes: &bytes,
                };
                self.sip.handle_input(now, input);
            }
            _ if self.cut_media => {}
            PhoneTransmit::Turn(bytes) => self.deliver_to_turn(self.nodes[i].media, &bytes),
            PhoneTransmit::Udp { to, bytes } => {
                let from = self.nodes[i].media;
                if to == turn_addr() {
                    return self.deliver_to_turn(from, &bytes);
                }
                if to.ip().to_string() == SERVER_IP {
                    return; // a relay address without going through TURN: no route in this model
                }
                if self.block_direct {
                    return;
                }
                self.direct_sent = self.direct_sent.wrapping_add(1);
                if self.lose_one_in > 0 && self.direct_sent.is_multiple_of(self.lose_one_in) {
                    return;
                }
                self.wire.push((from, to, bytes.clone()));
                if let Some(j) = self.nodes.iter().position(|n| n.media == to) {
                    self.nodes[j].phone.handle_udp(now, from, &bytes, false);
                }
            }
        }
    }

    fn deliver_to_turn(&mut self, client: SocketAddr, bytes: &[u8]) {
        let now = self.now;
        if let Some(user) = self.turn.user_to_look_up(now, bytes) {
            let keys = password(&user).map(|pw| UserKeys::from_password(&user, DOMAIN, pw));
            self.turn.set_user_keys(now, &user, keys);
        }
        let tuple = FiveTuple {
            transport: TurnTransportS::Udp,
            client,
            server: turn_addr(),
        };
        let fwd = self
            .turn
            .handle_client(now, tuple, Source::Primary, bytes)
            .map(|f| (f.relay, f.peer, f.data.to_vec()));
        let Some((relay, peer, data)) = fwd else {
            return;
        };
        let from = SocketAddr::new(SERVER_IP.parse().unwrap(), relay.0 as u16);
        self.wire.push((from, peer, data.clone()));
        if peer.ip().to_string() == SERVER_IP {
            // Relay to relay: hand it to the other allocation.
            let mut buf = vec![0u8; PEER_HEADROOM + data.len() + PEER_TAILROOM];
            buf[PEER_HEADROOM..PEER_HEADROOM + data.len()].copy_from_slice(&data);
            let range = PEER_HEADROOM..PEER_HEADROOM + data.len();
            if let Some(out) =
                self.turn
                    .handle_peer(now, RelayId(u32::from(peer.port())), from, &mut buf, range)
            {
                if let Some(j) = self.nodes.iter().position(|n| n.media == out.to.client) {
                    self.nodes[j]
                        .phone
                        .handle_udp(now, turn_addr(), &buf[out.range], true);
                }
            }
        } else {
            // Relay to a phone's host address: plain UDP from the relay (never blocked:
            // `block_direct` only stops phone-to-phone datagrams).
            if let Some(j) = self.nodes.iter().position(|n| n.media == peer) {
                self.nodes[j].phone.handle_udp(now, from, &data, false);
            }
        }
    }

    /// Run until `d` has passed.
    pub fn run(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.pump();
            let next = self
                .nodes
                .iter()
                .filter_map(|n| n.phone.poll_timeout())
                .chain(self.sip.poll_timeout())
                .chain([self.turn.poll_timeout()])
                .min();
            match next {
                Some(t) if t <= end => {
                    self.now = t.max(self.now);
                    let now = self.now;
                    for n in &mut self.nodes {
                        n.phone.handle_timeout(now);
                    }
                    self.sip.handle_timeout(now);
                    self.turn.handle_timeout(now);
                }
                _ => break,
            }
        }
        self.now = end;
        self.pump();
    }

    /// Nodes `a` and `b` register; `a`, its microphone set by `mic`, calls
    /// `callee` (b's user) and `b` answers. Returns once both are connected.
    pub fn connect_call(&mut self, a: usize, b: usize, callee: &str, mic: impl FnOnce(&mut Phone)) {
        let now = self.now;
        self.phone(a).register(now);
        self.phone(b).register(now);
        self.run(Duration::from_millis(100));
        assert!(self.phone(a).is_registered() && self.phone(b).is_registered());
        mic(self.phone(a));
        let now = self.now;
        self.phone(a).dial(now, callee).expect("dial");
        let incoming = |e: &PhoneEvent| matches!(e, PhoneEvent::Incoming { .. });
        assert!(
            self.run_until(b, Duration::from_secs(2), incoming),
            "{:?}",
            self.nodes[b].events
        );
        let now = self.now;
        self.phone(b).answer(now).expect("answer");
        for i in [a, b] {
            let connected = |e: &PhoneEvent| matches!(e, PhoneEvent::Connected { .. });
            assert!(
                self.run_until(i, Duration::from_secs(5), connected),
                "{:?}",
                self.nodes[i].events
            );
        }
    }

    /// Run until `pred` holds for node `i`'s events, at most `limit`.
    pub fn run_until(
        &mut self,
        i: usize,
        limit: Duration,
        pred: impl Fn(&PhoneEvent) -> bool,
    ) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if self.nodes[i].events.iter().any(&pred) {
                return true;
            }
            self.run(Duration::from_millis(10));
        }
        self.nodes[i].events.iter().any(&pred)
    }
}

/// A speech-like test signal at the phone's PCM rate (`voice::OPUS_RATE`):
/// gliding harmonics with a syllable envelope.
pub fn speechy(seconds: f64) -> Vec<i16> {
    let rate = f64::from(natter_phone::voice::OPUS_RATE);
    let n = (seconds * rate) as usize;
    let mut phase = 0.0f64;
    (0..n)
        .map(|i| {
            let t = i as f64 / rate;
            let f0 = 140.0 + 40.0 * (t * 2.3).sin();
            phase += f0 / rate;
            let env = (0.5 - 0.5 * (t * std::f64::consts::TAU * 3.0).cos()).powf(1.5);
            let mut s = 0.0;
            for h in 1..=8 {
                s += (phase * h as f64 * std::f64::consts::TAU).sin() / h as f64;
            }
            (s * env * 7000.0) as i16
        })
        .collect()
}

pub fn counts(map: &HashMap<String, u32>) -> String {
    format!("{map:?}")
}
