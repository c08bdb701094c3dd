//! `natter phone` with live sound card audio (`--audio-in`, `--audio-out`)
//! and `natter audio-devices`. With the `audio` feature the devices are
//! ALSA's `null` PCM (this machine has no sound card): a call runs with a live
//! microphone and speaker end to end. Without the feature the flags must say
//! how to get it.

mod common;

use common::natter;

#[cfg(not(feature = "audio"))]
#[test]
fn without_the_feature_the_flags_say_how_to_get_it() {
    let out = natter()
        .arg("audio-devices")
        .output()
        .expect("natter audio-devices");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("--features audio") && err.contains("libasound2-dev"),
        "{err}"
    );
    let out = natter()
        .args([
            "phone",
            "--server",
            "127.0.0.1:9",
            "--user",
            "alice",
            "--password",
            "x",
            "--audio",
        ])
        .output()
        .expect("natter phone --audio");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--features audio"), "{err}");
}

#[cfg(feature = "audio")]
#[test]
fn audio_devices_lists_the_null_pcm() {
    let out = natter()
        .arg("audio-devices")
        .output()
        .expect("natter audio-devices");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("microphones") && text.contains("speakers"),
        "{text}"
    );
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("null ")),
        "{text}"
    );
}

#[cfg(feature = "audio")]
#[test]
fn a_call_with_a_live_microphone_and_speaker() {
    use std::time::Duration;

    use common::{call_when_reachable, finish, free_port, loopback, serve_alice_and_bob, TempDir};
    use natter_phone::media::wav::read_wav_at;

    let dir = TempDir::new("phone-audio");
    let (sip, turn) = (free_port(), free_port());
    let listeners = [
        ("--sip", loopback(sip).to_string()),
        ("--turn", loopback(turn).to_string()),
    ];
    let (_data, _serve) = serve_alice_and_bob(dir.path(), &listeners);
    let (server, turn) = (loopback(sip).to_string(), loopback(turn).to_string());
    let phone = |user: &str, pw: &str| {
        let mut c = natter();
        c.args([
            "phone",
            "--server",
            &server,
            "--turn",
            &turn,
            "--user",
            user,
            "--password",
            pw,
        ]);
        c
    };
    let heard = dir.path().join("heard.wav");
    // Bob answers and plays what he hears on the (null) speaker and records it.
    let callee = phone("bob", "bob-pw-2")
        .args([
            "--answer",
            "--timeout",
            "20",
            "--audio-out",
            "null",
            "--record",
        ])
        .arg(&heard)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the callee");
    // Alice talks through the (null) microphone: silence, live.
    let (status, err) = call_when_reachable(|| {
        let mut c = phone("alice", "alice-pw-1");
        c.args(["--call", "bob", "--hangup-after", "2"]);
        c.args(["--audio-in", "null", "--audio-out", "null"]);
        c
    });
    let (callee_status, callee_err) = finish(callee, Duration::from_secs(10));
    assert!(status.success(), "caller:\n{err}\ncallee:\n{callee_err}");
    assert!(
        callee_status.is_some_and(|s| s.success()),
        "callee: {callee_status:?}\n{callee_err}"
    );
    assert!(
        err.contains("microphone null") && err.contains("speaker null"),
        "{err}"
    );
    assert!(callee_err.contains("speaker null"), "{callee_err}");
    // What bob heard is alice's live microphone: two seconds of silence.
    let heard = read_wav_at(&heard, 16_000).expect("heard.wav").samples;
    assert!(heard.len() > 16_000, "bob heard {} samples", heard.len());
    assert!(
        heard.iter().all(|s| s.unsigned_abs() < 200),
        "null captures silence"
    );
}
