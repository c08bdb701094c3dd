//! The probe against the real STUN Binding core (`natter_turn::binding`) over a simulated
//! network with simulated NATs of every RFC 4787 kind. Time is virtual.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use natter_turn::binding::{BindingConfig, BindingServer, Source};

use super::classify::Behaviour::{self, *};
use super::engine::{Engine, SocketId};
use super::{probe_with, Network, ProbeReport};

const PRIMARY: &str = "192.0.2.10:3478";
const ALTERNATE: &str = "192.0.2.11:3479";
const TIMEOUT: Duration = Duration::from_millis(3000);

fn addr(text: &str) -> SocketAddr {
    text.parse().unwrap()
}

/// A NAT between the probe's two sockets and the server.
struct SimNat {
    mapping: Behaviour,
    filtering: Behaviour,
    public_ip: std::net::IpAddr,
    next_port: u16,
    /// (local socket, destination key) -> public port.
    ports: HashMap<(SocketId, String), u16>,
    /// public port -> local socket.
    owners: HashMap<u16, SocketId>,
    /// (public port, remote key) allowed in.
    allowed: HashSet<(u16, String)>,
}

impl SimNat {
    fn new(mapping: Behaviour, filtering: Behaviour) -> Self {
        Self {
            mapping,
            filtering,
            public_ip: addr("203.0.113.2:0").ip(),
            next_port: 40_000,
            ports: HashMap::new(),
            owners: HashMap::new(),
            allowed: HashSet::new(),
        }
    }

    fn key(behaviour: Behaviour, remote: SocketAddr) -> String {
        match behaviour {
            EndpointIndependent => String::new(),
            AddressDependent => remote.ip().to_string(),
            AddressAndPortDependent => remote.to_string(),
        }
    }

    fn outbound(&mut self, socket: SocketId, to: SocketAddr) -> SocketAddr {
        let key = (socket, Self::key(self.mapping, to));
        let next = &mut self.next_port;
        let port = *self.ports.entry(key).or_insert_with(|| {
            *next += 1;
            *next
        });
        self.owners.insert(port, socket);
        self.allowed.insert((port, Self::key(self.filtering, to)));
        SocketAddr::new(self.public_ip, port)
    }

    fn inbound(&self, from: SocketAddr, to: SocketAddr) -> Option<SocketId> {
        let socket = *self.owners.get(&to.port())?;
        self.allowed
            .contains(&(to.port(), Self::key(self.filtering, from)))
            .then_some(socket)
    }
}

/// The simulated network: zero-latency delivery, virtual clock, optional NAT, and a
/// budget of requests to drop (to exercise retransmission).
struct SimNetwork {
    now: Instant,
    server: Option<BindingServer>,
    nat: Option<SimNat>,
    local: SocketAddr,
    drop_first: u32,
    sent: u32,
}

impl SimNetwork {
    fn new(server: Option<BindingServer>, nat: Option<SimNat>) -> Self {
        Self {
            now: Instant::now(),
            server,
            nat,
            local: addr("10.0.0.2:5000"),
            drop_first: 0,
            sent: 0,
        }
    }

    fn local_of(&self, socket: SocketId) -> SocketAddr {
        let port = if socket == SocketId::Mapping {
            5000
        } else {
            5001
        };
        SocketAddr::new(self.local.ip(), port)
    }

    fn deliver(&mut self, engine: &mut Engine, socket: SocketId, to: SocketAddr, payload: &[u8]) {
        self.sent += 1;
        if self.sent <= self.drop_first {
            return;
        }
        let Some(server) = &self.server else { return };
        let from = match &mut self.nat {
            Some(nat) => nat.outbound(socket, to),
            None => self.local_of(socket),
        };
        let Some(source) = [
            Source::Primary,
            Source::AltPort,
            Source::AltIp,
            Source::AltBoth,
        ]
        .into_iter()
        .find(|s| {
            server.local_addr(*s) == to
                && (server.config().alternate.is_some() || *s == Source::Primary)
        }) else {
            return; // nothing listens there
        };
        let Some(reply) = server.handle(source, from, payload) else {
            return;
        };
        let reply_from = server.local_addr(reply.from);
        let target = match &self.nat {
            Some(nat) => nat.inbound(reply_from, reply.to),
            None => Some(socket).filter(|_| reply.to == self.local_of(socket)),
        };
        if let Some(socket) = target {
            engine.handle_input(self.now, socket, reply_from, &reply.payload);
        }
    }
}

impl Network for SimNetwork {
    fn now(&self) -> Instant {
        self.now
    }

    fn drive(&mut self, engine: &mut Engine) {
        loop {
            while let Some(transmit) = engine.poll_transmit() {
                self.deliver(engine, transmit.socket, transmit.to, &transmit.payload);
            }
            let Some(deadline) = engine.poll_timeout() else {
                break;
            };
            self.now = self.now.max(deadline);
            engine.handle_timeout(self.now);
        }
    }
}

fn server(rfc5780: bool) -> BindingServer {
    let config = BindingConfig::new(addr(PRIMARY));
    let config = if rfc5780 {
        config.with_alternate(addr(ALTERNATE)).unwrap()
    } else {
        config
    };
    BindingServer::new(config)
}

fn probe(network: &mut SimNetwork) -> anyhow::Result<ProbeReport> {
    let local = Some(network.local_of(SocketId::Mapping));
    probe_with(
        network,
        Engine::new(TIMEOUT, 9),
        addr(PRIMARY),
        local,
        TIMEOUT,
    )
}

fn behind(mapping: Behaviour, filtering: Behaviour) -> ProbeReport {
    let mut network = SimNetwork::new(Some(server(true)), Some(SimNat::new(mapping, filtering)));
    probe(&mut network).unwrap()
}

#[test]
fn every_nat_kind_is_classified_with_rfc5780() {
    for mapping in [
        EndpointIndependent,
        AddressDependent,
        AddressAndPortDependent,
    ] {
        for filtering in [
            EndpointIndependent,
            AddressDependent,
            AddressAndPortDependent,
        ] {
            let report = behind(mapping, filtering);
            assert_eq!(
                (report.mapping, report.filtering),
                (mapping, Some(filtering)),
                "{report:#?}"
            );
            assert!(report.rfc5780 && report.mapping_measured && report.behind_nat);
            assert_eq!(report.public_address.ip(), addr("203.0.113.2:0").ip());
            assert!(report.notes.is_empty(), "{:?}", report.notes);
        }
    }
}

#[test]
fn no_nat_is_endpoint_independent_both_ways() {
    let mut network = SimNetwork::new(Some(server(true)), None);
    let report = probe(&mut network).unwrap();
    assert_eq!(report.public_address, addr("10.0.0.2:5000"));
    assert_eq!(
        (report.mapping, report.filtering),
        (EndpointIndependent, Some(EndpointIndependent))
    );
    assert!(!report.behind_nat);
    assert!(report.to_string().contains("no NAT"), "{report}");
}

#[test]
fn without_rfc5780_filtering_is_unknown_and_mapping_is_flagged_as_assumed() {
    let mut network = SimNetwork::new(
        Some(server(false)),
        Some(SimNat::new(EndpointIndependent, AddressAndPortDependent)),
    );
    let report = probe(&mut network).unwrap();
    assert_eq!(report.filtering, None);
    assert!(!report.rfc5780);
    assert!(!report.mapping_measured);
    assert_eq!(report.mapping, AddressAndPortDependent);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["filtering"], "unknown");
    assert_eq!(json["mapping"], "address-and-port-dependent");
    assert!(
        report.notes.iter().any(|n| n.contains("assumed")),
        "{:?}",
        report.notes
    );
    assert!(
        report.notes.iter().any(|n| n.contains("RFC 5780")),
        "{:?}",
        report.notes
    );
    assert!(
        report.to_string().contains("assumed, not measured"),
        "{report}"
    );
}

#[test]
fn silent_server_is_a_clear_error_after_the_timeout() {
    let mut network = SimNetwork::new(None, None);
    let started = network.now;
    let err = probe(&mut network).unwrap_err().to_string();
    assert!(
        err.contains(PRIMARY) && err.contains("blocks UDP") && err.contains("3000 ms"),
        "{err}"
    );
    assert_eq!(network.now - started, TIMEOUT);
    // RFC 8489 schedule within 3 s: sends at 0, 0.5 and 1.5 s per socket.
    assert_eq!(network.sent, 6);
}

#[test]
fn lost_requests_are_retransmitted() {
    let mut network = SimNetwork::new(
        Some(server(true)),
        Some(SimNat::new(EndpointIndependent, AddressAndPortDependent)),
    );
    network.drop_first = 2; // both first requests
    let report = probe(&mut network).unwrap();
    assert_eq!(report.rtt_ms, 500);
    assert_eq!(report.filtering, Some(AddressAndPortDependent));
}

#[test]
fn json_has_the_contract_fields() {
    let report = behind(EndpointIndependent, AddressAndPortDependent);
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["public_address"], report.public_address.to_string());
    assert_eq!(json["server"], PRIMARY);
    assert_eq!(json["mapping"], "endpoint-independent");
    assert_eq!(json["filtering"], "address-and-port-dependent");
    assert_eq!(json["rfc5780"], true);
    assert!(json["notes"].as_array().unwrap().is_empty());
    let text = report.to_string();
    assert!(
        text.contains("Public address: 203.0.113.2:") && text.contains("hole punching"),
        "{text}"
    );
}

#[test]
fn resolve_accepts_host_with_and_without_port() {
    use super::resolve;
    assert_eq!(resolve("192.0.2.1").unwrap(), addr("192.0.2.1:3478"));
    assert_eq!(resolve("192.0.2.1:9").unwrap(), addr("192.0.2.1:9"));
    assert_eq!(resolve("[2001:db8::1]:9").unwrap(), addr("[2001:db8::1]:9"));
    assert_eq!(resolve("2001:db8::1").unwrap(), addr("[2001:db8::1]:3478"));
    assert_eq!(resolve("localhost").unwrap().port(), 3478);
    assert!(resolve("no such host!")
        .unwrap_err()
        .to_string()
        .contains("HOST:PORT"));
}

#[test]
fn zero_timeout_is_refused_at_the_edge() {
    let options = super::ProbeOptions {
        timeout: Duration::ZERO,
        ..Default::default()
    };
    let err = super::run(options).unwrap_err().to_string();
    assert!(err.contains("--timeout-ms"), "{err}");
}
