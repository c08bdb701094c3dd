//! The TURN client against natter's own TURN server core, in memory, time injected.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use natter_phone::turn_client::{TurnClient, TurnConfig, TurnEvent, TurnFailure, TurnTransport};
use natter_turn::binding::Source;
use natter_turn::server::{
    FiveTuple, Granted, PeerPolicy, Relay, RelayAllocator, RelayError, RelayId, RelayRequest,
    Server, ServerConfig, Transport, UserKeys, PEER_HEADROOM, PEER_TAILROOM,
};

const REALM: &str = "example.org";
const SERVER: &str = "192.0.2.1:3478";

/// Relay ports 50000, 50002, ... on the server's IP; the relay id is the port.
#[derive(Default)]
struct MemRelays {
    next: u16,
}

impl RelayAllocator for MemRelays {
    fn allocate(&mut self, _req: RelayRequest) -> Result<Granted, RelayError> {
        let port = 50_000 + self.next * 2;
        self.next += 1;
        let relay = Relay {
            id: RelayId(u32::from(port)),
            addr: SocketAddr::new("192.0.2.1".parse().unwrap(), port),
        };
        Ok(Granted {
            relay,
            reserved: None,
        })
    }
    fn release(&mut self, _id: RelayId) {}
}

/// A server and some clients on one in-memory network.
struct Net {
    now: Instant,
    server: Server<MemRelays>,
    clients: Vec<(SocketAddr, TurnClient)>,
    /// Datagrams peers received: (client index, from, bytes).
    delivered: Vec<(usize, SocketAddr, Vec<u8>)>,
    /// Drop every client→server datagram while this is > 0 (counts down).
    drop_next: usize,
    lost: usize,
}

impl Net {
    fn new() -> Self {
        let now = Instant::now();
        let cfg = ServerConfig::new(REALM, SERVER.parse().unwrap())
            .set_seed(1)
            .set_peer_policy(PeerPolicy::allowing(vec!["192.0.2.0/24".parse().unwrap()]));
        Net {
            now,
            server: Server::new(cfg, MemRelays::default(), now, 1_700_000_000),
            clients: Vec::new(),
            delivered: Vec::new(),
            drop_next: 0,
            lost: 0,
        }
    }

    fn add(&mut self, addr: &str, user: &str, password: &str) -> usize {
        let mut cfg = TurnConfig::new(SERVER.parse().unwrap(), TurnTransport::Udp, user, password);
        cfg.seed = Some(self.clients.len() as u64 + 10);
        self.clients
            .push((addr.parse().unwrap(), TurnClient::new(cfg)));
        self.clients.len() - 1
    }

    fn tuple(&self, i: usize) -> FiveTuple {
        FiveTuple {
            transport: Transport::Udp,
            client: self.clients[i].0,
            server: SERVER.parse().unwrap(),
        }
    }

    /// Move every queued datagram until nothing is left to move.
    fn pump(&mut self) {
        loop {
            let mut moved = false;
            for i in 0..self.clients.len() {
                while let Some(bytes) = self.clients[i].1.poll_transmit() {
                    moved = true;
                    if self.drop_next > 0 {
                        self.drop_next -= 1;
                        self.lost += 1;
                        continue;
                    }
                    self.deliver_to_server(i, &bytes);
                }
            }
            while let Some(t) = self.server.poll_transmit() {
                moved = true;
                let i = self.index_of(t.to.client);
                self.deliver_from_server(i, &t.payload);
            }
            if !moved {
                return;
            }
        }
    }

    fn deliver_to_server(&mut self, i: usize, bytes: &[u8]) {
        if let Some(user) = self.server.user_to_look_up(self.now, bytes) {
            let keys = match user.as_str() {
                "alice" => Some(UserKeys::from_password("alice", REALM, "wonderland")),
                "bob" => Some(UserKeys::from_password("bob", REALM, "builder")),
                _ => None,
            };
            self.server.set_user_keys(self.now, &user, keys);
        }
        let tuple = self.tuple(i);
        let fwd = self
            .server
            .handle_client(self.now, tuple, Source::Primary, bytes)
            .map(|f| (f.relay, f.peer, f.data.to_vec()));
        if let Some((relay, peer, data)) = fwd {
            // The peer is another allocation's relay: the relay id is its port.
            let from = SocketAddr::new("192.0.2.1".parse().unwrap(), relay.0 as u16);
            let mut buf = vec![0u8; PEER_HEADROOM + data.len() + PEER_TAILROOM];
            buf[PEER_HEADROOM..PEER_HEADROOM + data.len()].copy_from_slice(&data);
            let range = PEER_HEADROOM..PEER_HEADROOM + data.len();
            let to = RelayId(u32::from(peer.port()));
            if let Some(out) = self.server.handle_peer(self.now, to, from, &mut buf, range) {
                let j = self.index_of(out.to.client);
                self.deliver_from_server(j, &buf[out.range]);
            }
        }
    }

    fn deliver_from_server(&mut self, i: usize, bytes: &[u8]) {
        let now = self.now;
        if let Some(d) = self.clients[i].1.handle_input(now, bytes) {
            self.delivered.push((i, d.peer, d.data.to_vec()));
        }
    }

    fn index_of(&self, addr: SocketAddr) -> usize {
        self.clients.iter().position(|(a, _)| *a == addr).unwrap()
    }

    fn advance(&mut self, d: Duration) {
        let end = self.now + d;
        loop {
            self.pump();
            let next = self
                .clients
                .iter()
                .filter_map(|(_, c)| c.poll_timeout())
                .chain([self.server.poll_timeout()])
                .min()
                .unwrap();
            if next > end {
                break;
            }
            self.now = next.max(self.now);
            for (_, c) in &mut self.clients {
                c.handle_timeout(self.now);
            }
            self.server.handle_timeout(self.now);
        }
        self.now = end;
        self.pump();
    }

    fn events(&mut self, i: usize) -> Vec<TurnEvent> {
        std::iter::from_fn(|| self.clients[i].1.poll_event()).collect()
    }
}

fn allocated(net: &mut Net, i: usize) -> SocketAddr {
    net.clients[i].1.allocate(net.now);
    net.pump();
    let relayed = net.clients[i].1.relayed().expect("allocation made");
    let mapped = net.clients[i].1.mapped();
    assert_eq!(mapped, Some(net.clients[i].0));
    let ev = net.events(i);
    assert_eq!(ev, vec![TurnEvent::Allocated { relayed, mapped }]);
    relayed
}

#[test]
fn allocate_with_long_term_auth_then_relay_both_ways_over_channels() {
    let mut net = Net::new();
    let a = net.add("203.0.113.5:40000", "alice", "wonderland");
    let b = net.add("198.51.100.7:41000", "bob", "builder");
    let ra = allocated(&mut net, a);
    let rb = allocated(&mut net, b);
    assert_ne!(ra, rb);
    // Unauthenticated first try, then the signed retry.
    assert_eq!(net.clients[a].1.counters().requests_sent, 2);

    // B must permit A's relay IP before A's data can reach it.
    net.clients[b].1.permit(net.now, ra.ip());
    net.pump();
    assert_eq!(net.events(b), vec![TurnEvent::PermissionCreated(ra.ip())]);

    let now = net.now;
    net.clients[a].1.send_to(now, rb, b"first");
    net.pump();
    net.clients[a].1.send_to(now, rb, b"second");
    net.pump();
    assert_eq!(
        net.events(a),
        vec![
            TurnEvent::PermissionCreated(rb.ip()),
            TurnEvent::ChannelBound(rb)
        ]
    );
    let got: Vec<_> = net.delivered.drain(..).collect();
    assert_eq!(
        got,
        vec![(b, ra, b"first".to_vec()), (b, ra, b"second".to_vec())]
    );
    let ca = net.clients[a].1.counters();
    assert_eq!(
        ca.channel_data_sent, 1,
        "the second packet went as ChannelData"
    );
    assert_eq!(
        ca.send_indications, 1,
        "the first went as a Send indication"
    );

    net.clients[b].1.send_to(now, ra, b"reply");
    net.pump();
    net.clients[b].1.send_to(now, ra, b"reply2");
    net.pump();
    let got: Vec<_> = net.delivered.drain(..).collect();
    assert_eq!(
        got,
        vec![(a, rb, b"reply".to_vec()), (a, rb, b"reply2".to_vec())]
    );
}

#[test]
fn wrong_password_fails_with_a_named_cause() {
    let mut net = Net::new();
    let a = net.add("203.0.113.5:40000", "alice", "not-her-password");
    net.clients[a].1.allocate(net.now);
    net.pump();
    assert!(net.clients[a].1.is_failed());
    assert_eq!(
        net.events(a),
        vec![TurnEvent::Failed(TurnFailure::Unauthorized {
            user: "alice".into()
        })]
    );
    let msg = TurnFailure::Unauthorized {
        user: "alice".into(),
    }
    .to_string();
    assert!(msg.contains("wrong password"), "{msg}");
}

#[test]
fn lost_requests_are_retransmitted() {
    let mut net = Net::new();
    let a = net.add("203.0.113.5:40000", "alice", "wonderland");
    net.drop_next = 2;
    net.clients[a].1.allocate(net.now);
    net.advance(Duration::from_secs(2));
    assert_eq!(net.lost, 2);
    assert!(net.clients[a].1.relayed().is_some());
    assert!(net.clients[a].1.counters().retransmits >= 2);
}

#[test]
fn allocation_permissions_and_channels_survive_an_hour() {
    let mut net = Net::new();
    let a = net.add("203.0.113.5:40000", "alice", "wonderland");
    let b = net.add("198.51.100.7:41000", "bob", "builder");
    let ra = allocated(&mut net, a);
    let rb = allocated(&mut net, b);
    net.clients[b].1.permit(net.now, ra.ip());
    let now = net.now;
    net.clients[a].1.send_to(now, rb, b"x");
    net.pump();
    net.delivered.clear();
    // Ten minutes is the allocation and channel lifetime, five the permission's.
    net.advance(Duration::from_secs(3600));
    assert_eq!(net.server.allocation_count(), 2);
    let now = net.now;
    net.clients[a].1.send_to(now, rb, b"still here");
    net.pump();
    assert_eq!(net.delivered, vec![(b, ra, b"still here".to_vec())]);
    assert!(!net.clients[a].1.is_failed());
    // The nonce expires every 10 minutes: 438 answers were absorbed by retries.
    let c = net.clients[a].1.counters();
    assert!(c.requests_sent > 10, "refreshes were sent: {c:?}");
}

#[test]
fn close_releases_the_allocation() {
    let mut net = Net::new();
    let a = net.add("203.0.113.5:40000", "alice", "wonderland");
    allocated(&mut net, a);
    assert_eq!(net.server.allocation_count(), 1);
    let now = net.now;
    net.clients[a].1.close(now);
    net.pump();
    assert_eq!(net.server.allocation_count(), 0);
}
