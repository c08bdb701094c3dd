//! Small helpers every test harness in the workspace needs: a temporary
//! directory removed on drop, free loopback ports, and a tool check that skips
//! through [`crate::skip`] (so `NATTER_REQUIRE_LAB=1` turns a missing tool
//! into a failure).

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

/// A fresh, empty directory under the system temp dir, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// `natter-test-TAG-PID-N`: unique per process and call.
    ///
    /// # Panics
    /// When the directory cannot be created (a test cannot go on without it).
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("natter-test-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        if let Err(e) = std::fs::create_dir_all(&path) {
            panic!("cannot create {}: {e}", path.display());
        }
        TempDir(path)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A loopback port free for both UDP and TCP right now.
///
/// # Panics
/// When loopback cannot be bound at all.
pub fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("loopback TCP binds");
        let port = tcp
            .local_addr()
            .expect("a bound socket has an address")
            .port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// A loopback UDP port free right now.
///
/// # Panics
/// When loopback cannot be bound at all.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("loopback UDP binds")
        .port()
}

/// The path of `tool` on `PATH`; when missing, reports the skip of `test`
/// with how to install it (`package`) and returns `None`.
pub fn require_tool(test: &str, tool: &str, package: &str) -> Option<PathBuf> {
    let found = crate::which(tool);
    if found.is_none() {
        crate::skip(
            test,
            &format!("{tool} is not installed (apt-get install {package})"),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dirs_are_distinct_and_removed() {
        let (a, b) = (TempDir::new("t"), TempDir::new("t"));
        assert_ne!(a.path(), b.path());
        assert!(a.path().is_dir());
        let kept = a.path().to_owned();
        drop(a);
        assert!(!kept.exists());
    }

    #[test]
    fn free_port_binds_both_protocols() {
        let port = free_port();
        let _tcp = TcpListener::bind(("127.0.0.1", port)).expect("TCP port was free");
        let _udp = UdpSocket::bind(("127.0.0.1", port)).expect("UDP port was free");
    }

    #[test]
    fn require_tool_finds_sh() {
        assert!(require_tool("t", "sh", "dash").is_some());
    }
}
