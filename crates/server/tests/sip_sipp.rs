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
        text.push_str(&format!(
            "{user};{DOMAIN};[authentication username={user} password={pw}]\n"
        ));
    }
    std::fs::write(&path, text).unwrap();
    path
}

fn common_args<'a>(server: &'a str, port: &'a str, inf: &'a str, sf: &'a str) -> Vec<&'a str> {
    vec![
        server,
        "-sf",
        sf,
        "-inf",
        inf,
        "-i",
        "127.0.0.1",
        "-p",
        port,
        "-m",
        "1",
        "-timeout",
        "20s",
        "-timeout_error",
        "-nostdin",
        "-trace_err",
        "-error_file",
        "/dev/null",
    ]
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

/// A caller line: `USER;DOMAIN;[authentication …];CALLEE`.
fn caller_file(name: &str, callee: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!(
        "natter-sipp-{name}-caller-{}.csv",
        std::process::id()
    ));
    let text = format!(
        "SEQUENTIAL\nalice;{DOMAIN};[authentication username=alice password=alice-pw];{callee}\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

/// Register bob from a fresh port (the sipp callee will listen there).
fn register_bob(target: &str) -> String {
    let port = free_port().to_string();
    let inf = users_file("bob", &[("bob", "bob-pw")]);
    let sf = scenario("register_only.xml");
    let args = common_args(target, &port, inf.to_str().unwrap(), sf.to_str().unwrap());
    let (ok, out) = run_sipp(&args, Duration::from_secs(30));
    assert!(ok, "bob could not register:\n{out}");
    port
}

/// Run a callee scenario on `port` and a caller scenario against the server.
fn call(target: &str, callee_port: &str, callee_sf: &str, caller_sf: &str, callee: &str) {
    let callee_args: Vec<String> = [
        "-sf",
        &scenario(callee_sf).to_string_lossy(),
        "-i",
        "127.0.0.1",
        "-p",
        callee_port,
        "-m",
        "1",
        "-timeout",
        "20s",
        "-timeout_error",
        "-nostdin",
        "-error_file",
        "/dev/null",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let callee_thread = std::thread::spawn(move || {
        let args: Vec<&str> = callee_args.iter().map(String::as_str).collect();
        run_sipp(&args, Duration::from_secs(30))
    });
    std::thread::sleep(Duration::from_millis(300)); // let the callee bind
    let inf = caller_file(caller_sf, callee);
    let port = free_port().to_string();
    let sf = scenario(caller_sf);
    let args = common_args(target, &port, inf.to_str().unwrap(), sf.to_str().unwrap());
    let (ok, out) = run_sipp(&args, Duration::from_secs(30));
    let (callee_ok, callee_out) = callee_thread.join().unwrap();
    assert!(
        ok,
        "caller scenario {caller_sf} failed:\n{out}\n--- callee:\n{callee_out}"
    );
    assert!(
        callee_ok,
        "callee scenario {callee_sf} failed:\n{callee_out}"
    );
}

#[test]
fn sipp_call_is_challenged_forked_answered_and_hung_up_along_the_record_route() {
    if sipp().is_none() {
        return;
    }
    let server = TestServer::start("sipp-call");
    let target = server.sip_udp().to_string();
    let bob_port = register_bob(&target);
    call(&target, &bob_port, "callee.xml", "call.xml", "bob");
}

#[test]
fn sipp_caller_cancel_reaches_the_callee_and_ends_in_487() {
    if sipp().is_none() {
        return;
    }
    let server = TestServer::start("sipp-cancel");
    let target = server.sip_udp().to_string();
    let bob_port = register_bob(&target);
    call(
        &target,
        &bob_port,
        "callee_cancel.xml",
        "call_cancel.xml",
        "bob",
    );
}

#[test]
fn sipp_unknown_callee_gets_404_and_unregistered_callee_480() {
    if sipp().is_none() {
        return;
    }
    let server = TestServer::start("sipp-404-480");
    let target = server.sip_udp().to_string();
    for (sf, callee) in [("call_404.xml", "nobody"), ("call_480.xml", "carol")] {
        let inf = caller_file(sf, callee);
        let port = free_port().to_string();
        let sf_path = scenario(sf);
        let args = common_args(
            &target,
            &port,
            inf.to_str().unwrap(),
            sf_path.to_str().unwrap(),
        );
        let (ok, out) = run_sipp(&args, Duration::from_secs(30));
        assert!(ok, "{sf} failed:\n{out}");
    }
}
