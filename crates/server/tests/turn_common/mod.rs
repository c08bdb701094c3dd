//! Helpers for the STUN/TURN interop tests: an in-process driver on free
//! loopback ports, coturn's tools, and loud skips when they are missing.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;

use natter_server::turn::TurnHandle;
use natter_server::{Config, Listening, Shared, Shutdown, ShutdownTrigger};
use natter_turn::server::ServerConfig;

pub const SECRET: &str = "interop-secret-0123456789";
pub const USER: &str = "alice";
pub const PASSWORD: &str = "wonderland-pw";

/// A running driver; stops when dropped.
pub struct Turn {
    pub udp: SocketAddr,
    pub tcp: SocketAddr,
    pub tls: SocketAddr,
    pub handle: TurnHandle,
    pub shared: Shared,
    _trigger: ShutdownTrigger,
    pub rt: tokio::runtime::Runtime,
    _dir: TempDir,
}

pub use natter_lab::testing::{free_udp_port, TempDir};

/// Is `tool` installed? If not, print the loud skip line.
pub fn have(tool: &str) -> bool {
    natter_lab::testing::require_tool("turn/stun interop", tool, "coturn").is_some()
}

/// Start the driver on 127.0.0.1 with free ports.
pub fn start(
    allow_loopback: bool,
    tune: impl FnOnce(ServerConfig) -> ServerConfig + Send + 'static,
) -> Turn {
    start_alt(allow_loopback, None, tune)
}

/// Like [`start`], with an RFC 5780 alternate address.
pub fn start_alt(
    allow_loopback: bool,
    stun_alt: Option<SocketAddr>,
    tune: impl FnOnce(ServerConfig) -> ServerConfig + Send + 'static,
) -> Turn {
    start_configured(allow_loopback, stun_alt, |_| {}, tune)
}

/// Like [`start_alt`], with a hook on the `serve` configuration (as flags set it).
pub fn start_configured(
    allow_loopback: bool,
    stun_alt: Option<SocketAddr>,
    edit: impl FnOnce(&mut Config),
    tune: impl FnOnce(ServerConfig) -> ServerConfig + Send + 'static,
) -> Turn {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = TempDir::new("turn");
    let store = natter_store::Store::open_in_memory().unwrap();
    store.ensure_realm("localhost").unwrap();
    store
        .add_account(&natter_store::AccountId::parse(USER).unwrap(), PASSWORD)
        .unwrap();
    let data = natter_server::data::DataDir::new(dir.path());
    data.create().unwrap();
    let tls = natter_server::tls::load_or_create(&data, "localhost").unwrap();
    let (trigger, shutdown) = Shutdown::new();
    let mut config = Config {
        data: dir.path().to_owned(),
        turn: Some("127.0.0.1:0".parse().unwrap()),
        turns: Some("127.0.0.1:0".parse().unwrap()),
        relay_ip: Some("127.0.0.1".parse().unwrap()),
        stun_alt,
        relay_ports: (20000, 60000),
        allow_peer: if allow_loopback {
            vec!["127.0.0.0/8".parse().unwrap()]
        } else {
            vec![]
        },
        ..Config::default()
    };
    edit(&mut config);
    let shared = Shared {
        config: Arc::new(config),
        store,
        tls,
        turn_secret: SECRET.into(),
        shutdown,
        sip: Default::default(),
    };
    let (listening, handle) = rt
        .block_on(natter_server::turn::start_with(&shared, tune))
        .expect("driver starts");
    let find = |t: &str| {
        listening
            .iter()
            .find(|l: &&Listening| l.transport == t)
            .unwrap()
            .addr
    };
    Turn {
        udp: find("udp"),
        tcp: find("tcp"),
        tls: find("tls"),
        handle,
        shared,
        _trigger: trigger,
        rt,
        _dir: dir,
    }
}

/// coturn's echo peer on a free port; killed when dropped.
pub struct Peer {
    pub port: u16,
    child: Child,
}
impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn peer() -> Peer {
    let port = free_udp_port();
    let child = Command::new("turnutils_peer")
        .args(["-L", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("turnutils_peer starts");
    std::thread::sleep(std::time::Duration::from_millis(300));
    Peer { port, child }
}

/// Run turnutils_uclient with `args` against `server_port`, to peer `peer_port`.
pub fn uclient(args: &[&str], server_port: u16, peer_port: u16) -> Output {
    let mut cmd = Command::new("timeout");
    cmd.arg("60").arg("turnutils_uclient").args(args);
    cmd.args([
        "-p",
        &server_port.to_string(),
        "-e",
        "127.0.0.1",
        "-r",
        &peer_port.to_string(),
        "127.0.0.1",
    ]);
    cmd.output().expect("turnutils_uclient runs")
}

/// (sent, received, lost) from uclient's closing lines.
pub fn totals(out: &Output) -> (u64, u64, Option<u64>) {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut sent = 0;
    let mut recv = 0;
    let mut lost = None;
    for line in text.lines() {
        if let Some(i) = line.find("tot_send_msgs=") {
            let rest = &line[i + 14..];
            sent = rest
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            if let Some(j) = rest.find("tot_recv_msgs=") {
                recv = rest[j + 14..]
                    .split(|c: char| !c.is_ascii_digit())
                    .next()
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0);
            }
        }
        if let Some(i) = line.find("Total lost packets ") {
            lost = line[i + 19..]
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok());
        }
    }
    (sent, recv, lost)
}

pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
