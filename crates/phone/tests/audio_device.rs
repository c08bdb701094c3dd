//! The live audio path through a real ALSA device: the `null` PCM that every
//! alsa-lib installation defines (captures silence, discards playback). This
//! machine has no sound card, and `null` is not paced by a clock (it runs as
//! fast as it is read and written), so these tests prove the plumbing —
//! opening by name, the card's sample format, capture into the microphone
//! queue at the call's rate, playback draining the speaker queue, clear
//! errors — not real-time behaviour. Needs the `audio` feature:
//! `cargo test -p natter-phone --features audio --test audio_device`.
#![cfg(feature = "audio")]

use std::time::{Duration, Instant};

use natter_phone::audio::device::{self, DeviceChoice, LiveAudio};

fn null() -> DeviceChoice {
    DeviceChoice::Named("null".into())
}

/// Waits up to 5 s for `done`.
fn until(mut done: impl FnMut() -> bool) -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if done() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

#[test]
fn lists_the_null_device_both_ways() {
    let (inputs, outputs) = device::list().expect("listing ALSA devices");
    assert!(
        inputs.iter().any(|(n, _)| n == "null"),
        "inputs: {inputs:?}"
    );
    assert!(
        outputs.iter().any(|(n, _)| n == "null"),
        "outputs: {outputs:?}"
    );
}

#[test]
fn capture_fills_the_microphone_queue_and_playback_drains_the_speaker() {
    let live = LiveAudio::open(&null(), &null(), 16_000).expect("opening null both ways");
    assert_eq!(live.described.len(), 2, "{:?}", live.described);
    let mic = live.mic.clone().expect("capture is on");
    let speaker = live.speaker.clone().expect("playback is on");
    assert_eq!(
        mic.rate(),
        16_000,
        "the microphone queue is at the call's rate"
    );

    // Capture: the card's frames arrive, mixed to mono and resampled; null
    // captures silence.
    let mut heard = Vec::new();
    assert!(
        until(|| {
            mic.pop_up_to(usize::MAX, &mut heard);
            heard.len() >= 16_000
        }),
        "only {} samples captured in 5 s",
        heard.len()
    );
    assert!(heard.iter().all(|&s| s == 0), "null captures silence");

    // Playback: what the call plays is taken by the card.
    speaker.push(&vec![1000; 4800]);
    assert!(
        until(|| speaker.is_empty()),
        "{} samples never played",
        speaker.len()
    );
}

#[test]
fn an_unknown_device_is_named_with_the_alternatives() {
    let wrong = DeviceChoice::Named("no-such-card".into());
    let Err(e) = LiveAudio::open(&wrong, &DeviceChoice::Off, 16_000) else {
        panic!("opening a device that does not exist succeeded");
    };
    let text = e.to_string();
    assert!(
        text.contains("no-such-card") && text.contains("null"),
        "{text}"
    );
}

#[test]
fn off_opens_nothing() {
    let live = LiveAudio::open(&DeviceChoice::Off, &DeviceChoice::Off, 16_000).expect("open");
    assert!(live.mic.is_none() && live.speaker.is_none() && live.described.is_empty());
}
