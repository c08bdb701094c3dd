//! `natter probe [HOST[:PORT]]`: what a STUN server sees of this machine, and how the NAT
//! in between behaves (RFC 5780 §4.3 mapping and §4.4 filtering tests).
//!
//! The STUN work is the sans-IO [`engine::Engine`]; this file is the thin driver (two UDP
//! sockets and a receive thread each) and the report.
//!
//! Sockets: mapping tests run on one socket, filtering tests on another, so that the
//! mapping tests' requests to the server's other addresses do not open the filter the
//! filtering tests measure.

mod classify;
mod engine;
mod tcp;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde::{Serialize, Serializer};

pub use classify::Behaviour;
use classify::{classify_filtering, classify_mapping, FilterObservation};
use engine::{Answer, Engine, Outcome, SocketId, TestId};

/// The STUN port used when HOST has none.
pub const DEFAULT_PORT: u16 = 3478;
/// How long each test waits for its answer unless `--timeout-ms` says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(3000);

/// What to probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeOptions {
    /// `HOST[:PORT]`: an IP address or DNS name, port 3478 by default. Default `127.0.0.1:3478`.
    pub server: String,
    /// How long each STUN test waits for an answer (retransmitting on the RFC 8489
    /// schedule meanwhile). The probe runs two rounds, so it takes at most twice this.
    pub timeout: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            server: format!("127.0.0.1:{DEFAULT_PORT}"),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// The result of a probe. `Display` is for people; `Serialize` gives the `--json` form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProbeReport {
    /// The public address (IP:PORT) the server saw: XOR-MAPPED-ADDRESS.
    pub public_address: SocketAddr,
    /// Mapping behaviour; always one of the three words (see `mapping_measured`).
    pub mapping: Behaviour,
    /// Filtering behaviour, or "unknown" without RFC 5780 on the server.
    #[serde(serialize_with = "behaviour_or_unknown")]
    pub filtering: Option<Behaviour>,
    /// The server address probed.
    pub server: SocketAddr,
    /// Whether the server offered RFC 5780 (OTHER-ADDRESS).
    pub rfc5780: bool,
    /// The server's alternate address (OTHER-ADDRESS), if offered.
    pub alternate_server: Option<SocketAddr>,
    /// This machine's address toward the server (the mapping test socket).
    pub local_address: Option<SocketAddr>,
    /// False when the server saw exactly the local address.
    pub behind_nat: bool,
    /// False when the mapping could not be measured and the worst case was assumed.
    pub mapping_measured: bool,
    /// Round-trip time of the first answer, in milliseconds.
    pub rtt_ms: u64,
    /// What was inferred, assumed or could not be tested.
    pub notes: Vec<String>,
}

/// Runs the probe against `options.server`. Fails with a message naming the server when
/// it does not answer at all.
pub fn run(options: ProbeOptions) -> anyhow::Result<ProbeReport> {
    if options.timeout < Duration::from_millis(1) {
        bail!(
            "--timeout-ms must be at least 1 (it is how long each STUN test waits for an answer)"
        );
    }
    let server = resolve(&options.server)?;
    let mut sockets = Sockets::bind(server)?;
    let local_address = local_address_toward(server, sockets.mapping_port());
    let engine = Engine::new(options.timeout, rand::random());
    let report = probe_with(&mut sockets, engine, server, local_address, options.timeout);
    sockets.stop();
    report.map_err(|err| match err.downcast::<NoAnswer>() {
        Ok(silent) => explain_silence(silent),
        Err(other) => other,
    })
}

/// No answer over UDP: ask once over TCP to tell "UDP blocked" from "server down".
fn explain_silence(silent: NoAnswer) -> anyhow::Error {
    match tcp::binding_over_tcp(silent.server, silent.timeout) {
        Some(mapped) => anyhow::anyhow!(
            "no STUN answer over UDP from {} within {} ms ({} requests sent), but the server \
             answered over TCP and sees you as {mapped}: this network blocks UDP. Calls can \
             still use natter's TURN relay over TCP or TLS",
            silent.server,
            silent.timeout.as_millis(),
            silent.sends
        ),
        None => anyhow::Error::new(silent),
    }
}

/// The first test got no answer at all.
#[derive(Debug)]
struct NoAnswer {
    server: SocketAddr,
    timeout: Duration,
    sends: u32,
}

impl fmt::Display for NoAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no STUN answer from {} within {} ms ({} requests sent): the server may be down or \
             not serving STUN on that port, or this network blocks UDP; check HOST:PORT, or try \
             from another network",
            self.server,
            self.timeout.as_millis(),
            self.sends
        )
    }
}

impl std::error::Error for NoAnswer {}

/// Moves an [`Engine`]'s datagrams until all its tests have ended: the real sockets, or a
/// simulated network in the tests.
trait Network {
    /// The current time.
    fn now(&self) -> Instant;
    /// Runs `engine` until every started test has an outcome.
    fn drive(&mut self, engine: &mut Engine);
}

/// The probe's two rounds over any [`Network`].
fn probe_with(
    network: &mut impl Network,
    mut engine: Engine,
    server: SocketAddr,
    local: Option<SocketAddr>,
    timeout: Duration,
) -> anyhow::Result<ProbeReport> {
    let now = network.now();
    let first = engine.start(now, SocketId::Mapping, server, false, false);
    let filter_base = engine.start(now, SocketId::Filtering, server, false, false);
    network.drive(&mut engine);
    let answer = first_answer(&engine, first, server, timeout)?;
    let filter_base_ok = engine.answer(filter_base).is_some();
    let round = SecondRound::start(&mut engine, network.now(), server, &answer, filter_base_ok);
    network.drive(&mut engine);
    Ok(round.report(&engine, server, answer, local))
}

/// Tests of the second round, started once the first answer told us what the server offers.
struct SecondRound {
    alternate: Option<SocketAddr>,
    mapping: Vec<(SocketAddr, TestId)>,
    change_both: Option<(SocketAddr, TestId)>,
    change_port: Option<(SocketAddr, TestId)>,
}

impl SecondRound {
    fn start(
        engine: &mut Engine,
        now: Instant,
        server: SocketAddr,
        answer: &Answer,
        filter_base_ok: bool,
    ) -> Self {
        let alternate = answer
            .other
            .filter(|other| other.ip() != server.ip() && other.port() != server.port());
        let mut round = Self {
            alternate,
            mapping: Vec::new(),
            change_both: None,
            change_port: None,
        };
        let mapping_to = |engine: &mut Engine, dest: SocketAddr| {
            (
                dest,
                engine.start(now, SocketId::Mapping, dest, false, false),
            )
        };
        match alternate {
            Some(other) => {
                // RFC 5780 §4.3 test II (other IP, same port), III (other IP and port), and
                // the same IP on the other port, which separates the cases directly.
                for dest in [
                    SocketAddr::new(other.ip(), server.port()),
                    other,
                    SocketAddr::new(server.ip(), other.port()),
                ] {
                    round.mapping.push(mapping_to(engine, dest));
                }
                if filter_base_ok {
                    round.change_both = Some((
                        other,
                        engine.start(now, SocketId::Filtering, server, true, true),
                    ));
                    let port_only = SocketAddr::new(server.ip(), other.port());
                    round.change_port = Some((
                        port_only,
                        engine.start(now, SocketId::Filtering, server, false, true),
                    ));
                }
            }
            None => {
                // No RFC 5780: many STUN servers also answer on the next port.
                if let Some(port) = server.port().checked_add(1) {
                    round
                        .mapping
                        .push(mapping_to(engine, SocketAddr::new(server.ip(), port)));
                }
            }
        }
        round
    }

    fn report(
        &self,
        engine: &Engine,
        server: SocketAddr,
        first: Answer,
        local: Option<SocketAddr>,
    ) -> ProbeReport {
        let mut notes = Vec::new();
        let mut observations = vec![(server, first.mapped)];
        observations.extend(
            self.mapping
                .iter()
                .filter_map(|&(dest, test)| Some((dest, engine.answer(test)?.mapped))),
        );
        if self.alternate.is_none() && observations.len() > 1 {
            notes.push(format!("the server offers no RFC 5780 alternate address; compared against {} which also answered STUN", observations[1].0));
        }
        let mapping = classify_mapping(local, &observations);
        notes.extend(mapping.note.clone());
        let filtering = classify_filtering(
            self.observe(engine, self.change_both),
            self.observe(engine, self.change_port),
        );
        let filtering = filtering.map_err(|why| notes.push(why)).ok();
        ProbeReport {
            public_address: first.mapped,
            mapping: mapping.behaviour,
            filtering,
            server,
            rfc5780: self.alternate.is_some(),
            alternate_server: self.alternate,
            local_address: local,
            behind_nat: local != Some(first.mapped),
            mapping_measured: mapping.measured,
            rtt_ms: u64::try_from(first.rtt.as_millis()).unwrap_or(u64::MAX),
            notes,
        }
    }

    fn observe(&self, engine: &Engine, test: Option<(SocketAddr, TestId)>) -> FilterObservation {
        let Some((expected, test)) = test else {
            return FilterObservation::Unavailable;
        };
        match engine.outcome(test) {
            Some(Outcome::Answered(answer)) if answer.from == expected => {
                FilterObservation::Answered
            }
            Some(Outcome::Answered(_)) => FilterObservation::WrongSource,
            Some(Outcome::TimedOut) => FilterObservation::Silent,
            Some(Outcome::Refused { .. }) | None => FilterObservation::Unavailable,
        }
    }
}

/// The first test's answer, or the error a user sees when there is none.
fn first_answer(
    engine: &Engine,
    test: TestId,
    server: SocketAddr,
    timeout: Duration,
) -> anyhow::Result<Answer> {
    match engine.outcome(test) {
        Some(Outcome::Answered(answer)) => Ok(*answer),
        Some(Outcome::Refused { code, reason }) => {
            bail!("the STUN server at {server} refused the Binding request ({code} {reason}); is it a STUN server?")
        }
        _ => Err(NoAnswer {
            server,
            timeout,
            sends: engine.sends(test),
        }
        .into()),
    }
}

/// Parses `HOST[:PORT]` (IPv6 in brackets when a port is given), resolving names.
fn resolve(server: &str) -> anyhow::Result<SocketAddr> {
    if let Ok(addr) = server.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(ip) = server
        .trim_matches(|c| c == '[' || c == ']')
        .parse::<IpAddr>()
    {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    let with_port = if server.contains(':') {
        server.to_owned()
    } else {
        format!("{server}:{DEFAULT_PORT}")
    };
    let mut addrs = with_port.to_socket_addrs().with_context(|| {
        format!(
            "cannot resolve STUN server {server:?}: give HOST or HOST:PORT, e.g. 192.0.2.10:3478"
        )
    })?;
    let first = addrs.next();
    first.with_context(|| format!("STUN server {server:?} resolves to no address"))
}

/// The local address the OS uses toward `server`, with the mapping socket's port.
fn local_address_toward(server: SocketAddr, port: u16) -> Option<SocketAddr> {
    let probe = UdpSocket::bind(unspecified(server)).ok()?;
    probe.connect(server).ok()?;
    Some(SocketAddr::new(probe.local_addr().ok()?.ip(), port))
}

fn unspecified(server: SocketAddr) -> SocketAddr {
    match server {
        SocketAddr::V4(_) => SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
        SocketAddr::V6(_) => SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
    }
}

/// A datagram received on one of the two sockets.
struct Datagram {
    socket: SocketId,
    from: SocketAddr,
    bytes: Vec<u8>,
}

/// The two UDP sockets and their receive threads.
struct Sockets {
    mapping: UdpSocket,
    filtering: UdpSocket,
    received: mpsc::Receiver<Datagram>,
    stop: Arc<AtomicBool>,
    readers: Vec<JoinHandle<()>>,
}

impl Sockets {
    fn bind(server: SocketAddr) -> anyhow::Result<Self> {
        let bind = || {
            UdpSocket::bind(unspecified(server))
                .context("cannot open a local UDP socket for the probe")
        };
        let (mapping, filtering) = (bind()?, bind()?);
        let (sender, received) = mpsc::channel();
        let stop = Arc::new(AtomicBool::new(false));
        let mut readers = Vec::new();
        for (id, socket) in [
            (SocketId::Mapping, &mapping),
            (SocketId::Filtering, &filtering),
        ] {
            let socket = socket
                .try_clone()
                .context("cannot share the probe's UDP socket")?;
            socket.set_read_timeout(Some(Duration::from_millis(50)))?;
            let (sender, stop) = (sender.clone(), Arc::clone(&stop));
            readers.push(std::thread::spawn(move || {
                read_loop(id, &socket, &sender, &stop)
            }));
        }
        Ok(Self {
            mapping,
            filtering,
            received,
            stop,
            readers,
        })
    }

    fn mapping_port(&self) -> u16 {
        self.mapping.local_addr().map_or(0, |addr| addr.port())
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for reader in self.readers {
            let _ = reader.join();
        }
    }
}

impl Network for Sockets {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn drive(&mut self, engine: &mut Engine) {
        loop {
            while let Some(transmit) = engine.poll_transmit() {
                let socket = match transmit.socket {
                    SocketId::Mapping => &self.mapping,
                    SocketId::Filtering => &self.filtering,
                };
                if let Err(err) = socket.send_to(&transmit.payload, transmit.to) {
                    tracing::debug!(to = %transmit.to, %err, "probe send failed; treated as loss");
                }
            }
            let Some(deadline) = engine.poll_timeout() else {
                break;
            };
            let wait = deadline.saturating_duration_since(Instant::now());
            if let Ok(datagram) = self.received.recv_timeout(wait) {
                engine.handle_input(
                    Instant::now(),
                    datagram.socket,
                    datagram.from,
                    &datagram.bytes,
                );
            }
            engine.handle_timeout(Instant::now());
        }
    }
}

fn read_loop(id: SocketId, socket: &UdpSocket, sender: &mpsc::Sender<Datagram>, stop: &AtomicBool) {
    let mut buffer = [0u8; 1500];
    while !stop.load(Ordering::Relaxed) {
        if let Ok((len, from)) = socket.recv_from(&mut buffer) {
            let datagram = Datagram {
                socket: id,
                from,
                bytes: buffer[..len].to_vec(),
            };
            if sender.send(datagram).is_err() {
                return;
            }
        }
    }
}

fn behaviour_or_unknown<S: Serializer>(
    value: &Option<Behaviour>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.map_or("unknown", Behaviour::as_str))
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.alternate_server {
            Some(alternate) => writeln!(
                f,
                "STUN server:    {} (RFC 5780, alternate {alternate})",
                self.server
            )?,
            None => writeln!(f, "STUN server:    {} (no RFC 5780)", self.server)?,
        }
        write!(f, "Public address: {}", self.public_address)?;
        match (self.behind_nat, self.local_address) {
            (false, _) => writeln!(f, " (no NAT: this is this machine's own address)")?,
            (true, Some(local)) => writeln!(f, " (this machine is {local}, behind a NAT)")?,
            (true, None) => writeln!(f)?,
        }
        writeln!(f, "Mapping:        {}", self.mapping_sentence())?;
        writeln!(f, "Filtering:      {}", self.filtering_sentence())?;
        for note in &self.notes {
            writeln!(f, "Note:           {note}")?;
        }
        Ok(())
    }
}

impl ProbeReport {
    fn mapping_sentence(&self) -> String {
        let word = self.mapping;
        let guess = if self.mapping_measured {
            ""
        } else {
            " (assumed, not measured)"
        };
        match word {
            Behaviour::EndpointIndependent if !self.behind_nat => format!(
                "{word}: every destination sees the same address, so peer-to-peer calls will work"
            ),
            Behaviour::EndpointIndependent => format!(
                "{word}: your NAT keeps the same public port for every destination, so peer-to-peer calls will work through hole punching"
            ),
            Behaviour::AddressDependent => format!(
                "{word}{guess}: your NAT picks a new public port for each server or peer address, so direct calls to people who are also behind a NAT often fail and natter relays them through its TURN server"
            ),
            Behaviour::AddressAndPortDependent => format!(
                "{word}{guess}: your NAT picks a new public port for each destination (a \"symmetric\" NAT), so direct calls to people who are also behind a NAT usually fail and natter relays them through its TURN server"
            ),
        }
    }

    fn filtering_sentence(&self) -> String {
        match self.filtering {
            None => "unknown: the server cannot test it (needs RFC 5780, `natter serve --stun-alt IP:PORT`)".to_owned(),
            Some(word @ Behaviour::EndpointIndependent) => {
                format!("{word}: once you have sent from your public address, anyone can reach you there")
            }
            Some(word @ Behaviour::AddressDependent) => {
                format!("{word}: only hosts you have sent to can reach you (from any of their ports)")
            }
            Some(word @ Behaviour::AddressAndPortDependent) => format!(
                "{word}: only the exact addresses and ports you have sent to can reach you; hole punching works when both sides send"
            ),
        }
    }
}

#[cfg(test)]
mod tests;
