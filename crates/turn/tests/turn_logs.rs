//! What an allocation's life looks like in the logs: one `allocation` span
//! (id, relayed address, user) around its lines, and no username or client
//! address unless the operator turned personal data on.

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use natter_turn::server::ServerConfig;

const PEER: &str = "198.51.100.7:6000";
const ALICE: &str = "203.0.113.10:40000";

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);

impl io::Write for Sink {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Run a whole allocation life (allocate, permission, wrong password from
/// another client, expiry) under a debug-level subscriber; return the log.
fn life(cfg: ServerConfig) -> String {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let t0 = Instant::now();
        let mut s = server_with(cfg, t0);
        let mut c = Client::new(ALICE, "alice", "wonderland");
        assert!(c.allocate(&mut s, t0).is_success());
        assert!(c.permit(&mut s, t0, PEER).is_success());
        let mut m = Client::new("203.0.113.99:5000", "mallory", "guess");
        assert_eq!(m.allocate(&mut s, t0).code(), Some(401));
        s.handle_timeout(t0 + Duration::from_secs(601));
        assert_eq!(s.allocation_count(), 0);
    });
    let out = sink.0.lock().unwrap().clone();
    String::from_utf8(out).unwrap()
}

fn line<'a>(log: &'a str, what: &str) -> &'a str {
    log.lines()
        .find(|l| l.contains(what))
        .unwrap_or_else(|| panic!("no {what:?} line in:\n{log}"))
}

#[test]
fn allocation_lines_sit_in_its_span_and_personal_data_is_redacted() {
    let log = life(config());
    let span = "allocation{id=alloc-0 relayed=192.0.2.1:50000 user=~";
    for what in ["allocation created", "permission", "allocation closed"] {
        assert!(line(&log, what).contains(span), "{what}: {log}");
    }
    assert!(line(&log, "allocation closed").contains("Expired"), "{log}");
    let failed = line(&log, "authentication failed");
    assert!(!failed.contains("allocation{"), "not in a span: {failed}");
    for secret in [
        "alice",
        "mallory",
        "203.0.113.10",
        "203.0.113.99",
        "198.51.100.7",
    ] {
        assert!(!log.contains(secret), "{secret} leaked into:\n{log}");
    }
}

#[test]
fn log_pii_shows_users_and_addresses() {
    let log = life(config().set_log_pii(true));
    let created = line(&log, "allocation created");
    assert!(created.contains("user=alice"), "{created}");
    assert!(created.contains("client=203.0.113.10:40000"), "{created}");
    assert!(
        line(&log, "permission").contains("peer=198.51.100.7"),
        "{log}"
    );
    let failed = line(&log, "authentication failed");
    assert!(
        failed.contains("user=mallory") && failed.contains("203.0.113.99"),
        "{failed}"
    );
}
