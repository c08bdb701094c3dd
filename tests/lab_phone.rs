//! `natter phone` calls through real Linux NAT: every pairing the lab offers.
//!
//! Each test builds its own lab, starts `natter serve` on the lab server, makes two
//! accounts, starts the callee (`--answer --record`) and the caller (`--call --play`)
//! on the hosts of the pairing, then checks: both exit 0, the path is the one ICE
//! must find (direct wherever a pair can be punched, relay only where none can),
//! and the callee's recording correlates with the caller's speech.
//! Needs root; otherwise every test prints a loud `SKIPPED` line and passes.

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::lab::serve_in_lab;
use natter_lab::{Host, Lab, LabProcess, NatKind};
use natter_phone::media::quality::compare;
use natter_phone::media::wav::read_wav_at;
use serde_json::Value;

mod common;

const NATTER: &str = env!("CARGO_BIN_EXE_natter");

macro_rules! lab_or_skip {
    ($test:expr) => {
        match natter_lab::lab_available() {
            Ok(()) => Lab::new($test).expect("build the lab"),
            Err(why) => return natter_lab::skip($test, &why),
        }
    };
}

struct Server {
    process: LabProcess,
    dir: PathBuf,
    /// The test's name, for `NATTER_LAB_PHONE_KEEP`.
    test: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start_server(lab: &Lab, test: &str) -> Server {
    let dir = std::env::temp_dir().join(format!(
        "natter-lab-phone-{}",
        lab.server_host().namespace()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let users = [("+14155550100", "alice-pw-1"), ("bob", "bob-pw-2")];
    let process = serve_in_lab(lab, &dir.join("data"), &users, false);
    // NATTER_LAB_PHONE_TALK=FILE.wav plays that instead (scripts/bench-phone: real speech).
    match std::env::var_os("NATTER_LAB_PHONE_TALK") {
        Some(talk) => {
            std::fs::copy(&talk, dir.join("talk.wav")).expect("copy NATTER_LAB_PHONE_TALK");
        }
        None => make_speech(&dir.join("talk.wav"), 2),
    }
    Server {
        process,
        dir,
        test: test.to_owned(),
    }
}

/// `secs` seconds of a speech-like signal (gliding harmonics, syllable envelope), 16 kHz.
fn make_speech(path: &Path, secs: u32) {
    let rate = 16_000u32;
    let mut phase = 0.0f64;
    let samples: Vec<i16> = (0..rate * secs)
        .map(|i| {
            let t = f64::from(i) / f64::from(rate);
            phase += (140.0 + 40.0 * (t * 2.3).sin()) / f64::from(rate);
            let env = (0.5 - 0.5 * (t * std::f64::consts::TAU * 3.0).cos()).powf(1.5);
            let s: f64 = (1..=8)
                .map(|h| (phase * f64::from(h) * std::f64::consts::TAU).sin() / f64::from(h))
                .sum();
            (s * env * 7000.0) as i16
        })
        .collect();
    let mut w = natter_phone::media::wav::WavWriter::create(path, rate).expect("write talk.wav");
    w.write(&samples).expect("write talk.wav");
    w.finish().expect("write talk.wav");
}

struct Outcome {
    caller: Value,
    callee: Value,
    correlation: f64,
}

/// Bob (callee) on `callee`, +14155550100 (caller) on `caller`.
fn call(lab: &Lab, server: &Server, caller: &Host, callee: &Host, extra: &[&str]) -> Outcome {
    let (primary, _) = lab.server_ips();
    let srv = primary.to_string();
    let dir = &server.dir;
    let path = |n: &str| dir.join(n).to_str().expect("UTF-8").to_owned();
    let (rec, cs, ce, talk) = (
        path("heard.wav"),
        path("caller.json"),
        path("callee.json"),
        path("talk.wav"),
    );
    // NATTER_LAB_PHONE_LOG=debug shows both phones' logs in the test output.
    let log = std::env::var("NATTER_LAB_PHONE_LOG").unwrap_or_else(|_| "warn".into());
    let mut answer = callee
        .spawn(
            NATTER,
            &[
                "phone",
                "--server",
                &srv,
                "--user",
                "bob",
                "--password",
                "bob-pw-2",
                "--answer",
                "--record",
                &rec,
                "--stats",
                &ce,
                "--timeout",
                "20",
                "--log",
                &log,
            ],
        )
        .expect("start the callee");
    answer
        .wait_for_output("registered as", Duration::from_secs(15))
        .unwrap_or_else(|e| panic!("callee did not register: {e}\n{}", answer.stderr()));
    let mut args = vec![
        "phone",
        "--server",
        &srv,
        "--user",
        "+1 415 555 0100",
        "--password",
        "alice-pw-1",
        "--call",
        "Bob",
        "--play",
        &talk,
        "--stats",
        &cs,
        "--log",
        &log,
    ];
    args.extend_from_slice(extra);
    let out = caller
        .run(NATTER, &args, Duration::from_secs(40))
        .expect("caller ran");
    let caller_err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "caller failed:\n{caller_err}\ncallee:\n{}",
        answer.stderr()
    );
    let status = answer
        .wait_timeout(Duration::from_secs(10))
        .expect("callee wait");
    assert!(
        status.is_some_and(|s| s.success()),
        "callee did not exit 0 after the caller hung up: {status:?}\n{}",
        answer.stderr()
    );
    let read = |p: &str| -> Value {
        serde_json::from_str(&std::fs::read_to_string(p).expect("stats file")).expect("JSON")
    };
    keep(server, &[&talk, &rec, &cs, &ce]);
    let sent = read_wav_at(&talk, 4_000).expect("talk.wav").samples;
    let heard = read_wav_at(&rec, 4_000).expect("heard.wav").samples;
    let whole = compare(&sent, &heard, 4_000, Duration::from_millis(800));
    let correlation = windowed_correlation(&sent, &heard);
    eprintln!(
        "caller: {caller_err}\ncallee: {}\nwhole-file {whole:?}, windowed {correlation:.3}",
        answer.stderr()
    );
    Outcome {
        caller: read(&cs),
        callee: read(&ce),
        correlation,
    }
}

/// With `NATTER_LAB_PHONE_KEEP=DIR`, copy the call's files to `DIR/<test>/`
/// (scripts/bench-phone --lab scores them).
fn keep(server: &Server, files: &[&str]) {
    let Some(root) = std::env::var_os("NATTER_LAB_PHONE_KEEP") else {
        return;
    };
    let to = PathBuf::from(root).join(&server.test);
    std::fs::create_dir_all(&to).expect("NATTER_LAB_PHONE_KEEP directory");
    for f in files {
        let f = Path::new(f);
        if let Some(name) = f.file_name() {
            let _ = std::fs::copy(f, to.join(name));
        }
    }
}

/// Mean over half-second windows of the sent speech of the best normalised
/// correlation with the recording at any lag up to 1 s (4 kHz samples). Unlike
/// one global lag, this survives concealment that shifts the playout timeline.
fn windowed_correlation(sent: &[i16], heard: &[i16]) -> f64 {
    const WIN: usize = 2_000;
    let h: Vec<f64> = heard.iter().map(|&x| f64::from(x)).collect();
    let mut scores = Vec::new();
    for w in sent.chunks_exact(WIN) {
        let w: Vec<f64> = w.iter().map(|&x| f64::from(x)).collect();
        let ew: f64 = w.iter().map(|x| x * x).sum();
        if ew < 1e6 {
            continue; // a quiet window says nothing
        }
        let mut best = 0.0f64;
        for start in (0..h.len().saturating_sub(WIN)).step_by(2) {
            let seg = &h[start..start + WIN];
            let eh: f64 = seg.iter().map(|x| x * x).sum();
            if eh < 1.0 {
                continue;
            }
            let dot: f64 = w.iter().zip(seg).map(|(a, b)| a * b).sum();
            best = best.max(dot / (ew * eh).sqrt());
        }
        scores.push(best);
    }
    if scores.is_empty() {
        return 0.0;
    }
    scores.iter().sum::<f64>() / scores.len() as f64
}

fn check(o: &Outcome, path: &str) {
    eprintln!("caller stats: {}\ncallee stats: {}", o.caller, o.callee);
    // The caller talks (two seconds and more: at least 75 frames reach the callee);
    // the callee's microphone is silent, and with DTX it sends its first frames and
    // then one every 400 ms.
    for (who, s, least) in [("caller", &o.caller, 5), ("callee", &o.callee, 75)] {
        assert_eq!(s["path"], path, "{who}: {s}");
        assert_eq!(s["codec"], "opus", "{who}: {s}");
        assert!(
            s["packets_received"].as_u64().unwrap_or(0) >= least,
            "{who} received too little: {s}"
        );
    }
    assert!(
        o.correlation > 0.6,
        "the callee's recording does not match the caller's speech: {}",
        o.correlation
    );
}

#[test]
fn lab_phone_cone_x_cone_is_direct() {
    let mut lab = lab_or_skip!("lab_phone_cone_x_cone_is_direct");
    let server = start_server(&lab, "lab_phone_cone_x_cone_is_direct");
    let n1 = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let n2 = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let (a, b) = (
        lab.add_host_behind(&n1).unwrap(),
        lab.add_host_behind(&n2).unwrap(),
    );
    let o = call(&lab, &server, &a, &b, &[]);
    check(&o, "direct");
}

/// 10 % loss both ways on the caller's uplink (the lab's impairment router),
/// eight seconds of speech: the callee counts the loss and its RTCP reports
/// turn the caller's FEC on, so the callee conceals far less than was lost,
/// and the speech still comes through.
#[test]
fn lab_phone_lossy_uplink_turns_fec_on() {
    let test = "lab_phone_lossy_uplink_turns_fec_on";
    if let Err(why) = natter_lab::impairment_available() {
        return natter_lab::skip(test, &why);
    }
    let mut lab = lab_or_skip!(test);
    let server = start_server(&lab, test);
    make_speech(&server.dir.join("talk.wav"), 8);
    let n1 = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let n2 = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let (a, b) = (
        lab.add_host_behind(&n1).unwrap(),
        lab.add_host_behind(&n2).unwrap(),
    );
    let lossy = natter_lab::Impairment::none().with_loss(0.10);
    let _link = lab.impair_nat_link(&n1, lossy, lossy).unwrap();
    let o = call(&lab, &server, &a, &b, &[]);
    check(&o, "direct");
    let (caller, callee) = (&o.caller, &o.callee);
    assert_eq!(caller["fec"], true, "the caller's FEC is on: {caller}");
    let loss = callee["loss_pct"].as_f64().unwrap_or(0.0);
    assert!(
        (3.0..25.0).contains(&loss),
        "the callee counts the loss: {callee}"
    );
    let lost_ms = loss / 100.0 * callee["duration_s"].as_f64().unwrap_or(0.0) * 1000.0;
    let concealed = callee["concealed_ms"].as_f64().unwrap_or(f64::MAX);
    eprintln!("lost about {lost_ms:.0} ms of audio, concealed {concealed:.0} ms");
    assert!(concealed < 0.7 * lost_ms, "FEC rebuilt little: {callee}");
}

#[test]
fn lab_phone_cone_x_symmetric_needs_the_relay() {
    // A port-restricted cone only lets in the exact port it sent to; a symmetric NAT
    // uses a new port for every destination: no pair can be punched.
    let mut lab = lab_or_skip!("lab_phone_cone_x_symmetric_needs_the_relay");
    let server = start_server(&lab, "lab_phone_cone_x_symmetric_needs_the_relay");
    let n1 = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let n2 = lab.add_nat(NatKind::Symmetric).unwrap();
    let (a, b) = (
        lab.add_host_behind(&n1).unwrap(),
        lab.add_host_behind(&n2).unwrap(),
    );
    let o = call(&lab, &server, &a, &b, &[]);
    check(&o, "relay");
}

#[test]
fn lab_phone_symmetric_x_symmetric_needs_the_relay() {
    let mut lab = lab_or_skip!("lab_phone_symmetric_x_symmetric_needs_the_relay");
    let server = start_server(&lab, "lab_phone_symmetric_x_symmetric_needs_the_relay");
    let n1 = lab.add_nat(NatKind::Symmetric).unwrap();
    let n2 = lab.add_nat(NatKind::Symmetric).unwrap();
    let (a, b) = (
        lab.add_host_behind(&n1).unwrap(),
        lab.add_host_behind(&n2).unwrap(),
    );
    let o = call(&lab, &server, &a, &b, &[]);
    check(&o, "relay");
}

#[test]
fn lab_phone_same_nat_is_direct_host_to_host() {
    let mut lab = lab_or_skip!("lab_phone_same_nat_is_direct_host_to_host");
    let server = start_server(&lab, "lab_phone_same_nat_is_direct_host_to_host");
    let n = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let (a, b) = (
        lab.add_host_behind(&n).unwrap(),
        lab.add_host_behind(&n).unwrap(),
    );
    let o = call(&lab, &server, &a, &b, &[]);
    check(&o, "direct");
    assert_eq!(o.caller["local_candidate"], "host");
    assert_eq!(o.caller["remote_candidate"], "host");
}

#[test]
fn lab_phone_carrier_grade_nat_x_cone_is_direct() {
    let mut lab = lab_or_skip!("lab_phone_carrier_grade_nat_x_cone_is_direct");
    let server = start_server(&lab, "lab_phone_carrier_grade_nat_x_cone_is_direct");
    let cgn = lab.add_carrier_nat(NatKind::PortRestrictedCone).unwrap();
    let home = lab
        .add_nat_behind(&cgn, NatKind::PortRestrictedCone)
        .unwrap();
    let other = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let (a, b) = (
        lab.add_host_behind(&home).unwrap(),
        lab.add_host_behind(&other).unwrap(),
    );
    let o = call(&lab, &server, &a, &b, &[]);
    check(&o, "direct");
}

#[test]
fn lab_phone_udp_blocked_uses_turn_over_tcp() {
    let mut lab = lab_or_skip!("lab_phone_udp_blocked_uses_turn_over_tcp");
    let server = start_server(&lab, "lab_phone_udp_blocked_uses_turn_over_tcp");
    let blocked = lab.add_nat(NatKind::UdpBlocked).unwrap();
    let other = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let (a, b) = (
        lab.add_host_behind(&blocked).unwrap(),
        lab.add_host_behind(&other).unwrap(),
    );
    let o = call(&lab, &server, &a, &b, &[]);
    check(&o, "relay");
}

#[test]
fn lab_phone_public_host_x_nat_is_direct() {
    let mut lab = lab_or_skip!("lab_phone_public_host_x_nat_is_direct");
    let server = start_server(&lab, "lab_phone_public_host_x_nat_is_direct");
    let n = lab.add_nat(NatKind::Symmetric).unwrap();
    let (a, b) = (
        lab.add_public_host().unwrap(),
        lab.add_host_behind(&n).unwrap(),
    );
    // Even a symmetric NAT reaches a public host: its check creates the mapping
    // the public host answers (peer-reflexive).
    let o = call(&lab, &server, &a, &b, &[]);
    check(&o, "direct");
}

#[test]
fn lab_phone_force_relay_between_cones() {
    let mut lab = lab_or_skip!("lab_phone_force_relay_between_cones");
    let server = start_server(&lab, "lab_phone_force_relay_between_cones");
    let n1 = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let n2 = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let (a, b) = (
        lab.add_host_behind(&n1).unwrap(),
        lab.add_host_behind(&n2).unwrap(),
    );
    let o = call(&lab, &server, &a, &b, &["--force-relay"]);
    check(&o, "relay");
    assert_eq!(o.caller["local_candidate"], "relay");
}

#[test]
fn correlation_measure_rejects_unrelated_audio() {
    let dir = std::env::temp_dir().join(format!("natter-phone-corr-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    make_speech(&dir.join("talk.wav"), 2);
    let sent = read_wav_at(dir.join("talk.wav"), 4_000).unwrap().samples;
    let _ = std::fs::remove_dir_all(&dir);
    // The speech itself, delayed by 0.3 s and with a 0.1 s gap: still recognised.
    let mut heard = vec![0i16; 1_200];
    heard.extend_from_slice(&sent[..2_400]);
    heard.extend(std::iter::repeat_n(0, 400));
    heard.extend_from_slice(&sent[2_400..]);
    let c = windowed_correlation(&sent, &heard);
    assert!(c > 0.8, "shifted speech scored {c}");
    // Noise of the same loudness is not.
    let mut x = 12345u32;
    let noise: Vec<i16> = (0..sent.len() + 4_000)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            ((x >> 16) as i16) / 8
        })
        .collect();
    let c = windowed_correlation(&sent, &noise);
    assert!(c < 0.3, "noise scored {c}");
}
