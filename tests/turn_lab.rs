//! TURN through real Linux NAT: a client behind a symmetric NAT and a peer behind a
//! port-restricted cone NAT each allocate on `natter serve` and exchange data through
//! their relays (the case hole punching cannot solve).
//!
//! Each client is this test binary re-run inside its lab host (the ignored
//! `turn_lab_client` test, driven by `NATTER_TURN_LAB`). Needs root; otherwise the
//! test prints a loud `SKIPPED` line and passes.

use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use natter_lab::{Lab, NatKind};
use natter_turn::server::{rest_password, UserKeys};
use natter_turn::stun::{
    self, attr_type, Attribute, ChannelData, ChannelNumber, Class, IntegrityKey, MessageBuilder,
    Method, TransactionId,
};

const NATTER: &str = env!("CARGO_BIN_EXE_natter");
const SECRET: &str = "lab-turn-secret-0123456789";
const PACKETS: usize = 50;

#[test]
fn symmetric_nat_client_relays_to_a_peer_behind_another_nat() {
    let test = "turn_lab::symmetric_nat_client_relays_to_a_peer_behind_another_nat";
    let mut lab = match natter_lab::lab_available() {
        Ok(()) => Lab::new("turnlab").expect("build the lab"),
        Err(why) => return natter_lab::skip(test, &why),
    };
    let (primary, _) = lab.server_ips();
    let work =
        std::env::temp_dir().join(format!("natter-turn-lab-{}", lab.server_host().namespace()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).unwrap();
    let data = work.join("data");
    let (turn, relay_ip) = (format!("{primary}:3478"), primary.to_string());
    let args = [
        "serve",
        "--turn",
        &turn,
        "--relay-ip",
        &relay_ip,
        "--turns",
        "off",
        "--sip",
        "off",
        "--sips",
        "off",
        "--http",
        "off",
        "--turn-secret",
        SECRET,
        "--data",
        data.to_str().unwrap(),
    ];
    let mut server = lab
        .server_host()
        .spawn(NATTER, &args)
        .expect("start natter serve");
    server
        .wait_for_output("Stop with Ctrl-C", Duration::from_secs(20))
        .expect("natter serve starts in the lab");

    let nat_a = lab.add_nat(NatKind::Symmetric).unwrap();
    let a = lab.add_host_behind(&nat_a).unwrap();
    let nat_b = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let b = lab.add_host_behind(&nat_b).unwrap();
    let exe = std::env::current_exe().unwrap();
    let exe = exe.to_str().unwrap();
    let spawn = |host: &natter_lab::Host, role: &str| {
        let spec = format!(
            "NATTER_TURN_LAB={role},{other},{turn},{}",
            work.display(),
            other = if role == "a" { "b" } else { "a" }
        );
        host.spawn(
            "env",
            &[
                &spec,
                exe,
                "--exact",
                "turn_lab_client",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ],
        )
        .unwrap()
    };
    let (pa, pb) = (spawn(&a, "a"), spawn(&b, "b"));
    let (oa, ob) = (
        pa.finish(Duration::from_secs(60)).unwrap(),
        pb.finish(Duration::from_secs(60)).unwrap(),
    );
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let (ta, tb) = (text(&oa), text(&ob));
    server.kill();
    let _ = std::fs::remove_dir_all(&work);
    println!("client behind symmetric NAT:\n{ta}\npeer behind cone NAT:\n{tb}");
    let want = format!("RECEIVED {PACKETS}/{PACKETS}");
    assert!(
        ta.contains(&want),
        "client behind symmetric NAT:\n{ta}\npeer:\n{tb}"
    );
    assert!(
        tb.contains(&want),
        "peer behind cone NAT:\n{tb}\nclient:\n{ta}"
    );
    // Both were seen from their NAT's public address, not their private one.
    assert!(ta.contains(&format!("MAPPED {}:", nat_a.wan_ip())), "{ta}");
    assert!(tb.contains(&format!("MAPPED {}:", nat_b.wan_ip())), "{tb}");
}

/// One lab client; does nothing unless run by the test above.
#[test]
#[ignore = "runs inside a lab host, started by symmetric_nat_client_relays_to_a_peer_behind_another_nat"]
fn turn_lab_client() {
    let Ok(spec) = std::env::var("NATTER_TURN_LAB") else {
        return;
    };
    let parts: Vec<&str> = spec.split(',').collect();
    let (role, other, server, dir) = (
        parts[0],
        parts[1],
        parts[2].parse().unwrap(),
        Path::new(parts[3]),
    );
    let mut c = LabClient::new(server, role);
    let (relay, mapped) = c.allocate();
    println!("MAPPED {mapped} RELAY {relay}");
    publish(dir, &format!("{role}.relay"), &relay.to_string());
    let peer: SocketAddr = wait_for(dir, &format!("{other}.relay")).parse().unwrap();
    c.ok(
        Method::CREATE_PERMISSION,
        &[Attribute::XorPeerAddress(peer)],
    );
    c.ok(
        Method::CHANNEL_BIND,
        &[
            Attribute::ChannelNumber(0x4000),
            Attribute::XorPeerAddress(peer),
        ],
    );
    publish(dir, &format!("{role}.ready"), "1");
    wait_for(dir, &format!("{other}.ready"));
    let got = c.exchange(role, other);
    println!("RECEIVED {got}/{PACKETS}");
}

fn publish(dir: &Path, name: &str, value: &str) {
    let tmp = dir.join(format!("{name}.tmp"));
    std::fs::write(&tmp, value).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

fn wait_for(dir: &Path, name: &str) -> String {
    let path: PathBuf = dir.join(name);
    let end = Instant::now() + Duration::from_secs(30);
    while Instant::now() < end {
        if let Ok(s) = std::fs::read_to_string(&path) {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the other client never wrote {name}");
}

struct LabClient {
    sock: UdpSocket,
    server: SocketAddr,
    user: String,
    key: IntegrityKey,
    nonce: Option<String>,
    tid: u32,
}

impl LabClient {
    fn new(server: SocketAddr, role: &str) -> Self {
        let expiry = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let user = format!("{expiry}:lab-{role}");
        let keys =
            UserKeys::from_password(&user, "localhost", &rest_password(SECRET.as_bytes(), &user));
        let sock = UdpSocket::bind("0.0.0.0:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        LabClient {
            sock,
            server,
            user,
            key: IntegrityKey::LongTermMd5(keys.md5),
            nonce: None,
            tid: 0,
        }
    }

    /// A request with the 401/438 dance; panics unless it succeeds.
    fn ok(&mut self, method: Method, attrs: &[Attribute<'_>]) -> Vec<u8> {
        for _ in 0..6 {
            self.tid += 1;
            let mut t = [0u8; 12];
            t[..4].copy_from_slice(&self.tid.to_be_bytes());
            let tid = TransactionId::new(t);
            let mut b = MessageBuilder::new(Class::Request, method, tid);
            for a in attrs {
                b.add(a);
            }
            if let Some(n) = &self.nonce {
                b.add(&Attribute::Username(&self.user));
                b.add(&Attribute::Realm("localhost"));
                b.add(&Attribute::Nonce(n));
                b.add_integrity(&self.key);
            }
            self.sock.send_to(&b.finish(), self.server).unwrap();
            let Some(answer) = self.answer(tid) else {
                continue;
            };
            let m = stun::decode(&answer).unwrap();
            if m.class() == Class::Success {
                return answer;
            }
            match m.get(attr_type::NONCE) {
                Some(Ok(Attribute::Nonce(n))) => self.nonce = Some(n.to_owned()),
                _ => panic!("{method:?} refused: {:?}", m.error_code()),
            }
        }
        panic!("{method:?}: no success after retries");
    }

    fn answer(&self, tid: TransactionId) -> Option<Vec<u8>> {
        let mut buf = [0u8; 1500];
        let end = Instant::now() + Duration::from_secs(1);
        while Instant::now() < end {
            let Ok((n, _)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            if stun::decode(&buf[..n]).is_ok_and(|m| m.transaction_id() == tid) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    }

    fn allocate(&mut self) -> (SocketAddr, SocketAddr) {
        let a = self.ok(Method::ALLOCATE, &[Attribute::RequestedTransport(17)]);
        let m = stun::decode(&a).unwrap();
        (
            m.address(attr_type::XOR_RELAYED_ADDRESS).unwrap(),
            m.xor_mapped_address().unwrap(),
        )
    }

    /// Send PACKETS ChannelData at 20 ms intervals; count the other side's.
    fn exchange(&self, role: &str, other: &str) -> usize {
        let ch = ChannelNumber::new(0x4000).unwrap();
        self.sock
            .set_read_timeout(Some(Duration::from_millis(5)))
            .unwrap();
        let mut seen = std::collections::BTreeSet::new();
        let mut buf = [0u8; 1500];
        let mut next = Instant::now();
        let mut sent = 0;
        let end_by = Instant::now() + Duration::from_secs(PACKETS as u64 / 50 + 5);
        while Instant::now() < end_by && (sent < PACKETS || seen.len() < PACKETS) {
            if sent < PACKETS && Instant::now() >= next {
                let payload = format!("{role}-{sent}");
                let cd = ChannelData {
                    channel: ch,
                    data: payload.as_bytes(),
                }
                .encode(false);
                self.sock.send_to(&cd, self.server).unwrap();
                sent += 1;
                next += Duration::from_millis(20);
            }
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                if let Ok(cd) = ChannelData::decode(&buf[..n]) {
                    let text = String::from_utf8_lossy(cd.data).to_string();
                    if cd.channel == ch && text.starts_with(&format!("{other}-")) {
                        seen.insert(text);
                    }
                }
            }
        }
        let missing: Vec<usize> = (0..PACKETS)
            .filter(|i| !seen.contains(&format!("{other}-{i}")))
            .collect();
        if !missing.is_empty() {
            println!("MISSING {missing:?}");
        }
        seen.len()
    }
}
