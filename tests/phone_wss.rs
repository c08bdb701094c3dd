//! `natter phone --transport wss`: SIP over secure WebSocket (RFC 7118) to the
//! server's HTTPS listener at `/sip`, on loopback. Two phones register over WSS
//! (trusting the server's own certificate with `--ca`), call, talk and hang up.

mod common;

use std::time::Duration;

use common::{
    add_user, call_when_reachable, finish, free_port, loopback, natter, serve_alice_and_bob, Serve,
    TempDir,
};
use natter_phone::media::wav::{read_wav_at, WavWriter};

/// Two seconds of gliding harmonics at 16 kHz.
fn write_tone(path: &std::path::Path) {
    let rate = 16_000u32;
    let mut phase = 0.0f64;
    let samples: Vec<i16> = (0..rate * 2)
        .map(|i| {
            let t = f64::from(i) / f64::from(rate);
            phase += (160.0 + 50.0 * (t * 2.0).sin()) / f64::from(rate);
            let s: f64 = (1..=6)
                .map(|h| (phase * f64::from(h) * std::f64::consts::TAU).sin() / f64::from(h))
                .sum();
            (s * 6000.0) as i16
        })
        .collect();
    let mut w = WavWriter::create(path, rate).expect("talk.wav");
    w.write(&samples).expect("talk.wav");
    w.finish().expect("talk.wav");
}

#[test]
fn phones_register_and_call_over_secure_websocket() {
    let dir = TempDir::new("phone-wss");
    let (http, turn) = (free_port(), free_port());
    let listeners = [
        ("--sip", loopback(free_port()).to_string()),
        ("--turn", loopback(turn).to_string()),
        ("--http", loopback(http).to_string()),
    ];
    let (data, _serve) = serve_alice_and_bob(dir.path(), &listeners);

    let cert = data.join("tls").join("cert.pem");
    let (talk, heard) = (dir.path().join("talk.wav"), dir.path().join("heard.wav"));
    write_tone(&talk);
    let server = format!("localhost:{http}");
    let turn = loopback(turn).to_string();
    let phone = |user: &str, pw: &str| {
        let mut c = natter();
        c.args([
            "phone",
            "--server",
            &server,
            "--transport",
            "wss",
            "--turn",
            &turn,
        ]);
        c.args(["--user", user, "--password", pw, "--ca"])
            .arg(&cert);
        c
    };
    let callee = phone("bob", "bob-pw-2")
        .args(["--answer", "--timeout", "20", "--record"])
        .arg(&heard)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the callee");
    let (status, err) = call_when_reachable(|| {
        let mut c = phone("alice", "alice-pw-1");
        c.args(["--call", "bob", "--play"]).arg(&talk);
        c
    });
    let (callee_out, callee_err) = finish(callee, Duration::from_secs(10));
    assert!(status.success(), "caller:\n{err}\ncallee:\n{callee_err}");
    assert!(err.contains("registered as sip:alice@"), "{err}");
    assert!(err.contains("connected:"), "{err}");
    assert!(
        callee_out.is_some_and(|s| s.success()),
        "callee: {callee_out:?}\n{callee_err}"
    );
    let heard = read_wav_at(&heard, 16_000).expect("heard.wav").samples;
    let loud = heard.iter().filter(|s| s.unsigned_abs() > 1000).count();
    assert!(
        loud > 16_000 / 2,
        "the callee heard almost nothing ({loud} loud samples of {})",
        heard.len()
    );
}

#[test]
fn a_wss_phone_names_an_untrusted_certificate() {
    let dir = TempDir::new("phone-wss-untrusted");
    let data = dir.path().join("data");
    add_user(&data, "alice", "alice-pw-1");
    let http = free_port();
    let listeners = [
        ("--sip", loopback(free_port()).to_string()),
        ("--http", loopback(http).to_string()),
    ];
    let _serve = Serve::only(&listeners, &data);
    let out = natter()
        .args([
            "phone",
            "--server",
            &format!("localhost:{http}"),
            "--transport",
            "wss",
        ])
        .args([
            "--user",
            "alice",
            "--password",
            "alice-pw-1",
            "--turn-transport",
            "udp",
        ])
        .args(["--turn", &loopback(free_port()).to_string(), "--answer"])
        .output()
        .expect("natter phone");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("untrusted TLS certificate"), "{err}");
    assert!(err.contains("--ca"), "the message names the fix: {err}");
}
