//! `natter serve` and `natter user` as a user runs them: first start, reuse
//! of the data directory, the HTTPS page, clean stop, and clear errors.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;

fn args(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

#[test]
fn first_start_creates_data_dir_and_second_reuses_it() {
    let dir = TempDir::new("serve-data");
    let data = dir.path().join("d");
    let http = loopback(free_port()).to_string();
    let a = only(&[("--http", http.clone())], &data);
    let mut s = Serve::start(&args(&a));
    for f in ["natter.db", "tls/cert.pem", "tls/key.pem", "turn-secret"] {
        assert!(data.join(f).exists(), "{f} missing after first start");
    }
    let secret = std::fs::read_to_string(data.join("turn-secret")).unwrap();
    let cert = std::fs::read_to_string(data.join("tls/cert.pem")).unwrap();
    assert!(
        s.stdout
            .iter()
            .any(|l| l.contains("HTTPS") && l.contains(&http)),
        "{:?}",
        s.stdout
    );
    assert!(s.signal_and_wait("TERM", Duration::from_secs(5)).success());

    let mut s = Serve::start(&args(&a));
    assert_eq!(
        std::fs::read_to_string(data.join("turn-secret")).unwrap(),
        secret
    );
    assert_eq!(
        std::fs::read_to_string(data.join("tls/cert.pem")).unwrap(),
        cert
    );
    assert!(s.signal_and_wait("INT", Duration::from_secs(5)).success());
}

#[test]
fn https_page_says_what_the_server_is() {
    let dir = TempDir::new("serve-https");
    let http = loopback(free_port()).to_string();
    let a = only(
        &[("--http", http.clone()), ("--domain", "example.org".into())],
        dir.path(),
    );
    let _s = Serve::start(&args(&a));
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "5", &format!("https://{http}/")])
        .output()
        .expect("curl is needed for this test");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        body.contains("natter") && body.contains("example.org"),
        "{body}"
    );
    assert!(body.contains("TURN relay"), "{body}");
}

#[test]
fn port_in_use_names_the_flag_and_exits_nonzero() {
    let dir = TempDir::new("serve-inuse");
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = held.local_addr().unwrap().to_string();
    let a = only(&[("--http", addr.clone())], dir.path());
    let out = natter().arg("serve").args(&a).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--http") && err.contains(&addr) && err.contains("already"),
        "{err}"
    );
}

#[test]
fn bad_config_key_and_bad_value_are_named() {
    let dir = TempDir::new("serve-badcfg");
    let cfg = dir.path().join("natter.toml");
    std::fs::write(&cfg, "domain = \"example.org\"\nrelay_portz = \"1-2\"\n").unwrap();
    let out = natter()
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("relay_portz"));

    let out = natter()
        .args(["serve", "--relay-ports", "70000-80000"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--relay-ports"));
}

#[test]
fn config_file_is_used_and_flags_win() {
    let dir = TempDir::new("serve-cfg");
    let (p1, p2) = (free_port(), free_port());
    let cfg = dir.path().join("natter.toml");
    let text = format!(
        "data = \"{}\"\nsip = \"off\"\nsips = \"off\"\nturn = \"off\"\nturns = \"off\"\nhttp = \"127.0.0.1:{p1}\"\n",
        dir.path().join("d").display()
    );
    std::fs::write(&cfg, text).unwrap();
    let cfg_s = cfg.display().to_string();
    let flag = format!("127.0.0.1:{p2}");
    let s = Serve::start(&["--config", &cfg_s, "--http", &flag]);
    assert!(s.stdout.iter().any(|l| l.contains(&flag)), "{:?}", s.stdout);
    assert!(dir.path().join("d/natter.db").exists());
}

#[test]
fn user_commands_round_trip() {
    let dir = TempDir::new("user");
    let d = dir.path().display().to_string();
    let run = |a: &[&str]| {
        natter()
            .arg("user")
            .args(a)
            .args(["--data", &d])
            .output()
            .unwrap()
    };
    let out = run(&["add", "+1 (415) 555-0100"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("+14155550100") && text.contains("password: "),
        "{text}"
    );
    assert!(run(&["add", "alice", "--password", "pw"]).status.success());
    let dup = run(&["add", "alice", "--password", "pw"]);
    assert!(!dup.status.success());
    assert!(String::from_utf8_lossy(&dup.stderr).contains("natter user passwd alice"));
    let list = String::from_utf8_lossy(&run(&["list"]).stdout).to_string();
    assert_eq!(list.lines().collect::<Vec<_>>(), ["+14155550100", "alice"]);
    assert!(run(&["passwd", "alice", "--password", "new"])
        .status
        .success());
    assert!(run(&["remove", "alice"]).status.success());
    assert!(!run(&["remove", "alice"]).status.success());

    let csv = dir.path().join("a.csv");
    let lines: String = (0..2000).map(|i| format!("+1415{i:07},pw{i}\n")).collect();
    std::fs::write(&csv, lines).unwrap();
    let out = run(&["import", &csv.display().to_string()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("imported 2000 new"));
}

#[test]
fn user_domain_keys_accounts_for_that_domain() {
    let dir = TempDir::new("user-domain");
    let d = dir.path().display().to_string();
    let run = |a: &[&str]| {
        natter()
            .arg("user")
            .args(a)
            .args(["--data", &d])
            .output()
            .unwrap()
    };
    let keys = |id: &str| {
        let store = natter_store::Store::open(&dir.path().join("natter.db")).unwrap();
        (
            store.realm().unwrap(),
            store.digest_keys(id).unwrap().unwrap(),
        )
    };
    let out = run(&["add", "bob", "--password", "pw", "--domain", "Example.ORG"]);
    assert!(out.status.success(), "{out:?}");
    let (realm, bob) = keys("bob");
    assert_eq!(realm.as_deref(), Some("example.org"));
    let want = natter_store::DigestKeys::derive("bob", "example.org", "pw");
    assert_eq!(
        (bob.realm, bob.md5, bob.sha256),
        (want.realm, want.md5, want.sha256)
    );

    // Moving to another domain warns about accounts keyed for the old one.
    let out = run(&["add", "carol", "--password", "pw", "--domain", "other.net"]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("1 account(s)") && err.contains("passwd"),
        "{err}"
    );
    assert_eq!(keys("carol").1.realm, "other.net");

    let bad = run(&["add", "dave", "--domain", "not a domain"]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("domain") && err.contains("example.org"),
        "{err}"
    );
}
