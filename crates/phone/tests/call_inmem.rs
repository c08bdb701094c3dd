//! Whole calls in memory: SIP through natter's proxy core, ICE + DTLS-SRTP via
//! str0m, relay through natter's TURN core, Opus voice end to end.

mod common;

use std::time::Duration;

use common::{speechy, World};
use natter_phone::sip::EndReason;
use natter_phone::voice::OPUS_RATE;
use natter_phone::PhoneEvent;

fn path_of(events: &[PhoneEvent]) -> (String, String, String) {
    events
        .iter()
        .find_map(|e| match e {
            PhoneEvent::Connected { path } => Some((
                path.path_str().to_owned(),
                path.local.as_str().to_owned(),
                path.remote.as_str().to_owned(),
            )),
            _ => None,
        })
        .expect("connected")
}

/// Alice calls Bob, talks for two seconds, hangs up. Returns the world.
fn call(force_relay: bool, block_direct: bool) -> World {
    call_with_mic(force_relay, block_direct, |p| {
        p.set_microphone(speechy(2.0))
    })
}

/// [`call`], with alice's microphone set up by `mic`.
fn call_with_mic(
    force_relay: bool,
    block_direct: bool,
    mic: impl FnOnce(&mut natter_phone::Phone),
) -> World {
    let mut w = World::new();
    w.block_direct = block_direct;
    let a = w.add("alice", force_relay);
    let b = w.add("bob", false);
    w.connect_call(a, b, "bob", mic);
    w.run(Duration::from_millis(2600));
    let now = w.now;
    w.phone(a).hangup(now);
    w.run(Duration::from_millis(200));
    w
}

fn ended(events: &[PhoneEvent]) -> (EndReason, natter_phone::CallStats) {
    events
        .iter()
        .find_map(|e| match e {
            PhoneEvent::Ended { reason, stats } => Some((reason.clone(), (**stats).clone())),
            _ => None,
        })
        .expect("the call ended")
}

fn assert_speech_arrived(w: &World) {
    let sent = speechy(2.0);
    let heard = &w.nodes[1].heard;
    assert!(
        heard.len() > OPUS_RATE as usize * 2,
        "bob heard {} samples",
        heard.len()
    );
    let c = natter_media::quality::compare(&sent, heard, OPUS_RATE, Duration::from_millis(500));
    assert!(
        c.correlation > 0.8,
        "bob's audio does not match alice's speech: {c:?}"
    );
}

#[test]
fn direct_call_carries_speech_and_prefers_the_direct_pair() {
    let w = call(false, false);
    assert_eq!(
        path_of(&w.nodes[0].events),
        ("direct".into(), "host".into(), "host".into())
    );
    assert_eq!(path_of(&w.nodes[1].events).0, "direct");
    assert_speech_arrived(&w);
    let (reason, stats) = ended(&w.nodes[0].events);
    assert_eq!(reason, EndReason::LocalHangup);
    assert_eq!(stats.path, "direct");
    assert_eq!(stats.codec, "opus");
    assert!(stats.packets_sent >= 100, "{stats:?}");
    let (reason, bstats) = ended(&w.nodes[1].events);
    assert_eq!(reason, EndReason::RemoteHangup);
    assert!(bstats.packets_received >= 100, "{bstats:?}");
    assert!(bstats.setup_ms.is_some_and(|s| s < 300.0), "{bstats:?}");
    assert!(bstats.mos.is_some_and(|m| m > 4.0), "{bstats:?}");
    // The media time is measured where the work is done: the talker encodes,
    // the listener decodes, both run RTP/SRTP.
    assert!(
        stats.cpu_encode_ms > 0.0 && stats.cpu_rtp_ms > 0.0,
        "{stats:?}"
    );
    assert!(
        bstats.cpu_decode_ms > 0.0 && bstats.cpu_rtp_ms > 0.0,
        "{bstats:?}"
    );
    assert_no_plaintext_voice(&w);
}

#[test]
fn a_live_microphone_feeds_the_call() {
    // What a sound card's capture callback does: push samples into the queue
    // the encoder reads (here all at once, ahead of the call).
    let queue = natter_phone::audio::SampleQueue::new(OPUS_RATE, 3000);
    queue.push(&speechy(2.0));
    let w = call_with_mic(false, false, |p| p.set_live_microphone(queue.clone()));
    assert_speech_arrived(&w);
    assert!(queue.is_empty(), "{} samples never sent", queue.len());
    assert!(
        queue.underrun() > 0,
        "after the speech the microphone ran dry: silence"
    );
}

/// Alice's last periodic stats.
fn last_stats(events: &[PhoneEvent]) -> natter_phone::CallStats {
    events
        .iter()
        .rev()
        .find_map(|e| match e {
            PhoneEvent::Stats(s) => Some((**s).clone()),
            _ => None,
        })
        .expect("periodic stats")
}

#[test]
fn the_sender_adapts_to_the_loss_the_far_end_reports() {
    let mut w = World::new();
    let a = w.add("alice", false);
    let b = w.add("bob", false);
    w.connect_call(a, b, "bob", |p| p.set_microphone(speechy(12.0)));
    // A clean path: the configured bitrate, no FEC.
    w.run(Duration::from_secs(3));
    let clean = last_stats(&w.nodes[a].events);
    assert_eq!(
        (clean.send_bitrate_bps, clean.fec),
        (24_000, false),
        "{clean:?}"
    );
    // One datagram in five lost (20 %): bob's receiver reports say so.
    w.lose_one_in = 5;
    w.run(Duration::from_secs(6));
    let lossy = last_stats(&w.nodes[a].events);
    assert!(lossy.fec, "FEC on under 20 % loss: {lossy:?}");
    assert_eq!(
        lossy.send_bitrate_bps, 24_000,
        "random loss on a path without queueing keeps the bitrate: {lossy:?}"
    );
    // Bob counts what he lost, plays the rest in time, and rebuilds most of
    // the loss from FEC: about one packet in eight was lost over the six
    // lossy seconds (~750 ms of audio), far less is concealed.
    let bob = last_stats(&w.nodes[b].events);
    assert!((5.0..25.0).contains(&bob.loss_pct), "{bob:?}");
    assert!(bob.concealed_ms < 600.0, "{bob:?}");
}

#[test]
fn blocked_direct_path_falls_back_to_the_relay() {
    let w = call(false, true);
    let (path, _, _) = path_of(&w.nodes[0].events);
    assert_eq!(path, "relay");
    assert_speech_arrived(&w);
    assert_no_plaintext_voice(&w);
}

/// The Opus frames alice's microphone makes (the encoder is deterministic) never
/// appear in any datagram on the wire: voice crossed it only as SRTP.
fn assert_no_plaintext_voice(w: &World) {
    let start = std::time::Instant::now();
    let settings = natter_media::EncoderSettings::default();
    let mut tx = natter_phone::voice::VoiceTx::new(
        start,
        natter_media::Codec::Opus,
        &settings,
        speechy(2.0),
        0,
    )
    .unwrap();
    let frames: Vec<Vec<u8>> = (0..100)
        .filter_map(|i| {
            tx.handle_timeout(start + Duration::from_millis(20 * i))
                .map(|f| f.1)
        })
        .filter(|p| p.len() >= 16)
        .collect();
    assert!(
        frames.len() > 50,
        "the reference encoder made {} frames",
        frames.len()
    );
    // The search finds a frame carried as plain RTP (12-byte header, then the payload).
    let mut planted = vec![0x80u8, 111, 0, 1, 0, 0, 3, 192, 1, 2, 3, 4];
    planted.extend_from_slice(&frames[10]);
    assert!(planted
        .windows(frames[10].len())
        .any(|win| win == frames[10].as_slice()));
    let rtp = w
        .wire
        .iter()
        .filter(|(_, _, b)| b.first().is_some_and(|x| (128..192).contains(x)));
    let mut seen = 0;
    for (from, to, bytes) in rtp {
        seen += 1;
        for f in &frames {
            assert!(
                !bytes.windows(f.len()).any(|win| win == f.as_slice()),
                "a plaintext Opus frame crossed the wire {from} -> {to}"
            );
        }
    }
    assert!(seen > 100, "only {seen} RTP-like datagrams on the wire");
}

#[test]
fn force_relay_uses_only_the_relay() {
    let w = call(true, false);
    let (path, local, _) = path_of(&w.nodes[0].events);
    assert_eq!((path.as_str(), local.as_str()), ("relay", "relay"));
    assert_speech_arrived(&w);
    let (_, stats) = ended(&w.nodes[0].events);
    assert!(stats.setup_ms.is_some_and(|s| s < 300.0), "{stats:?}");
}
