//! Shared helpers for the SIP driver tests: an in-process `natter serve`
//! on loopback with a fresh data directory and a few accounts.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use natter_server::{Config, Listening, ShutdownTrigger};

pub const DOMAIN: &str = "localhost";
pub const USERS: &[(&str, &str)] = &[
    ("alice", "alice-pw"),
    ("bob", "bob-pw"),
    ("carol", "carol-pw"),
];

pub struct TestServer {
    pub data: PathBuf,
    pub listening: Vec<Listening>,
    trigger: Option<ShutdownTrigger>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Start with SIP on UDP+TCP, TLS and HTTPS on loopback ports chosen by the OS.
    pub fn start(name: &str) -> TestServer {
        let data =
            std::env::temp_dir().join(format!("natter-sip-test-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        TestServer::start_in(data)
    }

    /// Start on an existing data directory (restart tests).
    pub fn start_in(data: PathBuf) -> TestServer {
        std::fs::create_dir_all(&data).unwrap();
        let store = natter_store::Store::open(&data.join("natter.db")).unwrap();
        store.ensure_realm(DOMAIN).unwrap();
        for (user, pw) in USERS {
            let id = natter_store::AccountId::parse(user).unwrap();
            let _ = store.add_account(&id, pw);
        }
        drop(store);
        let loopback = |p| Some(SocketAddr::from(([127, 0, 0, 1], p)));
        let config = Config {
            data: data.clone(),
            domain: DOMAIN.into(),
            sip: loopback(0),
            sips: loopback(0),
            turn: None,
            turns: None,
            http: loopback(0),
            log: "warn".into(),
            ..Config::default()
        };
        let (trigger, shutdown) = natter_server::Shutdown::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let r = natter_server::run(config, shutdown, |s| {
                    let _ = tx.send(s.listening.clone());
                })
                .await;
                if let Err(e) = r {
                    eprintln!("server failed: {e}");
                }
            });
        });
        let listening = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("server started");
        TestServer {
            data,
            listening,
            trigger: Some(trigger),
            thread: Some(thread),
        }
    }

    pub fn addr(&self, service: &str, transport: &str) -> SocketAddr {
        self.listening
            .iter()
            .find(|l| l.service == service && l.transport == transport)
            .unwrap_or_else(|| panic!("no {service}/{transport} listener in {:?}", self.listening))
            .addr
    }

    pub fn sip_udp(&self) -> SocketAddr {
        self.addr("SIP", "udp")
    }

    /// Stop and wait (the data directory stays for restarts).
    pub fn stop(&mut self) {
        if let Some(t) = self.trigger.take() {
            t.trigger();
        }
        if let Some(th) = self.thread.take() {
            let _ = th.join();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sipp binary, or `None` with a loud SKIPPED line.
pub fn sipp() -> Option<PathBuf> {
    natter_lab::testing::require_tool("sipp scenarios", "sipp", "sip-tester")
}

/// The repository's `tests/sipp` directory.
pub fn scenario(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/sipp")
        .join(name)
}

/// Run one sipp scenario to completion; returns (success, stdout+stderr).
pub fn run_sipp(args: &[&str], timeout: Duration) -> (bool, String) {
    let sipp = sipp().expect("checked by the caller");
    let mut child = std::process::Command::new(sipp)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("sipp starts");
    let start = std::time::Instant::now();
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A free UDP port on loopback for a sipp instance.
#[allow(unused_imports)] // not every test binary runs sipp
pub use natter_lab::testing::free_udp_port as free_port;
