//! Helpers for tests that run the real `natter` binary.
#![allow(dead_code)]

pub mod lab;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub fn natter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_natter"))
}

#[allow(unused_imports)] // not every test binary uses both
pub use natter_lab::testing::{free_port, TempDir};

pub fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A running `natter serve`, killed on drop.
pub struct Serve {
    pub child: Child,
    pub stdout: Vec<String>,
    lines: mpsc::Receiver<String>,
}

impl Serve {
    /// Start `natter serve ARGS` and wait until it prints that it is serving.
    pub fn start(args: &[&str]) -> Serve {
        let mut child = natter()
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn natter serve");
        let (tx, rx) = mpsc::channel();
        let out = child.stdout.take().expect("stdout piped");
        let err = child.stderr.take().expect("stderr piped");
        let tx2 = tx.clone();
        std::thread::spawn(move || {
            for l in BufReader::new(out).lines().map_while(Result::ok) {
                let _ = tx.send(l);
            }
        });
        std::thread::spawn(move || {
            for l in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx2.send(format!("stderr: {l}"));
            }
        });
        let mut s = Serve {
            child,
            stdout: Vec::new(),
            lines: rx,
        };
        s.wait_for_line("Stop with Ctrl-C", Duration::from_secs(20));
        s
    }

    /// Wait for a line containing `needle`; panics with everything seen so far.
    pub fn wait_for_line(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.stdout.push(l.clone());
                    if l.contains(needle) {
                        return l;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {timeout:?}; output so far:\n{}",
                    self.stdout.join("\n")
                ),
            }
        }
    }

    /// Send a signal by name (e.g. "TERM") and wait for the exit, at most `timeout`.
    pub fn signal_and_wait(&mut self, sig: &str, timeout: Duration) -> std::process::ExitStatus {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(ok.success(), "kill -{sig} failed");
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "natter serve did not stop within {timeout:?} of SIG{sig}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Serve {
    /// `natter serve --data DATA` with only `listeners` on (see [`only`]).
    pub fn only(listeners: &[(&str, String)], data: &Path) -> Serve {
        let args = only(listeners, data);
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        Serve::start(&argv)
    }
}

/// A data directory `dir/data` with the accounts alice (`alice-pw-1`) and
/// bob (`bob-pw-2`), and `natter serve` on it with only `listeners` on and
/// loopback peers allowed (phones relay to each other on 127.0.0.1).
pub fn serve_alice_and_bob(
    dir: &Path,
    listeners: &[(&str, String)],
) -> (std::path::PathBuf, Serve) {
    let data = dir.join("data");
    add_user(&data, "alice", "alice-pw-1");
    add_user(&data, "bob", "bob-pw-2");
    let mut all = listeners.to_vec();
    all.push(("--allow-peer", "127.0.0.0/8".to_string()));
    let serve = Serve::only(&all, &data);
    (data, serve)
}

/// `natter serve` arguments with every listener off except those given.
pub fn only(listeners: &[(&str, String)], data: &Path) -> Vec<String> {
    let mut v = vec!["--data".to_string(), data.display().to_string()];
    for flag in ["--sip", "--sips", "--turn", "--turns", "--http"] {
        let value = listeners
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, a)| a.clone())
            .unwrap_or_else(|| "off".into());
        v.push(flag.into());
        v.push(value);
    }
    for (f, a) in listeners
        .iter()
        .filter(|(f, _)| !["--sip", "--sips", "--turn", "--turns", "--http"].contains(f))
    {
        v.push((*f).into());
        v.push(a.clone());
    }
    v
}

/// `natter user add USER --password PW --data DATA`, which must succeed.
pub fn add_user(data: &Path, user: &str, pw: &str) {
    let out = natter()
        .args(["user", "add", user, "--password", pw, "--data"])
        .arg(data)
        .output()
        .expect("natter user add");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the caller `caller()` builds once the callee (started just before) is
/// reachable: a try that finds it not yet registered is repeated, up to three
/// tries 0.7 s apart. Returns the caller's exit status and stderr.
pub fn call_when_reachable(
    mut caller: impl FnMut() -> Command,
) -> (std::process::ExitStatus, String) {
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        let out = caller().output().expect("run the caller");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        if out.status.success() || !err.contains("not reachable") {
            return (out.status, err);
        }
    }
    panic!("the callee never became reachable");
}

/// Waits up to `within` for `child` to exit (killing it after that) and
/// returns its exit status (`None` when it had to be killed) and its stderr.
pub fn finish(mut child: Child, within: Duration) -> (Option<std::process::ExitStatus>, String) {
    let deadline = Instant::now() + within;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break Some(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        use std::io::Read as _;
        let _ = e.read_to_string(&mut err);
    }
    (status, err)
}
