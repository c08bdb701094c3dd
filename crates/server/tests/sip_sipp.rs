//! sipp (a SIP implementation nobody here wrote) against `natter serve`:
//! registration with digest, unregistration, calls through the proxy,
//! CANCEL, 404 and 480. Skips loudly when sipp is missing.

mod sip_support;

use std::time::Duration;

use sip_support::{free_port, run_sipp, scenario, sipp, TestServer, DOMAIN};

/// A CSV injection file with `USER;DOMAIN;[authentication …]` lines.
fn users_file(name: &str, lines: &[(&str, &str)]) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("natter-sipp-{name}-{}.csv", std::process::id()));
    let mut text = String::from("SEQUENTIAL\n");
    for (user, pw) in lines {
        text.push_str(&format!("{user};{DOMAIN};[authentication username={user} password={pw}]\n"));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn common_args<'a>(server: &'a str, port: &'a str, inf: &'a str, sf: &'a str) -> Vec<&'a str> {
    vec![server, "-sf", sf, "-inf", inf, "-i", "127.0.0.1", "-p", port, "-m", "1", "-timeout", "20s", "-timeout_error", "-nostdin", "-trace_err", "-error_file", "/dev/null"]
}

#[test]
fn sipp_registers_with_digest_and_unregisters() {
    if sipp().is_none() {
        return;
    }
    let server = TestServer::start("sipp-register");
    let target = server.sip_udp().to_string();
    let inf = users_file("register", &[("alice", "alice-pw")]);
    let sf = scenario("register.xml");
    let port = free_port().to_string();
    let args = common_args(&target, &port, inf.to_str().unwrap(), sf.to_str().unwrap());
    let (ok, out) = run_sipp(&args, Duration::from_secs(30));
    assert!(ok, "sipp register scenario failed:\n{out}");
}

#[test]
fn sipp_wrong_password_is_refused() {
    if sipp().is_none() {
        return;
    }
    let server = TestServer::start("sipp-wrong");
    let target = server.sip_udp().to_string();
    let inf = users_file("wrong", &[("alice", "not-the-password")]);
    let sf = scenario("register.xml");
    let port = free_port().to_string();
    let args = common_args(&target, &port, inf.to_str().unwrap(), sf.to_str().unwrap());
    let (ok, out) = run_sipp(&args, Duration::from_secs(30));
    assert!(!ok, "a wrong password must not register:\n{out}");
}
