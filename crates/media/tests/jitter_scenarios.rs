//! Jitter buffer scenarios on a seeded simulated network: loss, bursts,
//! jitter, reordering, duplicates, wraps, timestamp jumps and DTX.

mod common;

use std::time::Duration;

use common::net::{drive, ms, opus_config, run, stream, Net, FRAME, FRAME_TICKS};
use natter_media::jitter::Playout;

const SECS: Duration = Duration::from_secs(10);

fn is_increasing(seqs: &[u16]) -> bool {
    seqs.windows(2).all(|w| w[1].wrapping_sub(w[0]) as i16 > 0)
}

#[test]
fn clean_path_plays_everything_with_little_delay() {
    let packets = stream(500, 100, 5000);
    let r = run(&packets, &Net::default(), opus_config(), SECS);
    let seqs = r.frame_seqs();
    assert!(is_increasing(&seqs));
    // All but the last couple of packets (still buffered at the end) are played.
    assert!(seqs.len() >= 497, "played {}", seqs.len());
    assert_eq!(r.stats.concealed, Duration::ZERO);
    assert_eq!(r.stats.late + r.stats.lost, 0);
    // No jitter: target sits at the 20 ms floor plus margin rounding, delay below 40 ms.
    assert!(
        ms(r.stats.target_delay) <= 20.0 + 0.1,
        "target {:?}",
        r.stats.target_delay
    );
    assert!(
        ms(r.stats.mean_playout_delay) < 40.0,
        "delay {:?}",
        r.stats.mean_playout_delay
    );
}

#[test]
fn jitter_raises_the_target_and_keeps_concealment_low() {
    let packets = stream(500, 0, 0);
    let net = Net {
        jitter: Duration::from_millis(60),
        seed: 11,
        ..Net::default()
    };
    let r = run(&packets, &net, opus_config(), SECS);
    assert!(is_increasing(&r.frame_seqs()));
    let target = ms(r.stats.target_delay);
    assert!(
        (50.0..=80.0).contains(&target),
        "target {target} ms for 0–60 ms jitter"
    );
    // Adapting costs a little concealment at the start, then packets arrive in time.
    let concealed = ms(r.stats.concealed);
    assert!(concealed <= 200.0, "concealed {concealed} ms of 10 s");
    assert!(r.stats.late <= 10, "late {}", r.stats.late);
    let delay = ms(r.stats.mean_playout_delay);
    assert!(
        (40.0..=90.0).contains(&delay),
        "mean added delay {delay} ms"
    );
}

#[test]
fn random_loss_is_concealed_or_recovered_frame_for_frame() {
    let packets = stream(500, 0, 0);
    let net = Net {
        loss: 0.10,
        seed: 3,
        ..Net::default()
    };
    let r = run(&packets, &net, opus_config(), SECS);
    assert!(
        r.lost_on_wire > 30,
        "the seed must lose packets ({})",
        r.lost_on_wire
    );
    let fec = r.count(|p| matches!(p, Playout::FecRecover { .. }));
    let conceal = r.count(|p| matches!(p, Playout::Conceal { .. }));
    // Every lost packet becomes exactly one FEC or concealed slot (none at the very end).
    let lost_played = (r.stats.lost) as usize;
    assert!(
        lost_played + 2 >= r.lost_on_wire && lost_played <= r.lost_on_wire,
        "{lost_played} vs {}",
        r.lost_on_wire
    );
    // After the first loss the buffer grows its delay by one frame (held:
    // concealed while waiting) so that the next packet, which carries the
    // lost one's FEC, is there in time.
    let held = (ms(r.stats.held) / 20.0).round() as usize;
    assert!(held <= 2, "held {held} frames to grow the delay");
    assert_eq!(fec + conceal, lost_played + held);
    // Isolated losses can all use the next packet's FEC; only runs of 2+ need concealment.
    assert!(fec * 10 >= lost_played * 8, "fec {fec} of {lost_played}");
    assert_eq!(
        ms(r.stats.concealed + r.stats.fec_recovered),
        20.0 * (lost_played + held) as f64
    );
    assert_eq!(r.stats.late, 0);
}

#[test]
fn burst_loss_conceals_the_burst_and_recovers_its_last_packet() {
    let packets = stream(500, 0, 0);
    let net = Net {
        burst_start: 0.02,
        burst_len: 5,
        seed: 5,
        ..Net::default()
    };
    let r = run(&packets, &net, opus_config(), SECS);
    let bursts = r.lost_on_wire / 5;
    assert!(
        bursts >= 3,
        "the seed must produce bursts ({})",
        r.lost_on_wire
    );
    // Per burst: four slots concealed, the fifth rebuilt from the next packet's FEC.
    let concealed = ms(r.stats.concealed);
    let fec = ms(r.stats.fec_recovered);
    let lost_ms = 20.0 * r.lost_on_wire as f64;
    assert!(
        (concealed + fec - lost_ms).abs() <= 100.0,
        "{concealed} + {fec} vs {lost_ms}"
    );
    assert!(
        fec >= 20.0 * bursts as f64 * 0.8,
        "fec {fec} ms for {bursts} bursts"
    );
    assert!(is_increasing(&r.frame_seqs()));
}

#[test]
fn reordered_and_duplicated_packets_play_once_in_order() {
    let packets = stream(300, 0, 0);
    // 30 ms of jitter reorders many neighbours (packets are 20 ms apart).
    let net = Net {
        jitter: Duration::from_millis(30),
        duplicate: true,
        seed: 9,
        ..Net::default()
    };
    let r = run(
        &packets,
        &net,
        opus_config(),
        Duration::from_secs(6) + Duration::from_millis(200),
    );
    let seqs = r.frame_seqs();
    assert!(is_increasing(&seqs), "out of order or repeated");
    assert!(
        r.stats.duplicate >= 290,
        "duplicates counted: {}",
        r.stats.duplicate
    );
    assert!(seqs.len() + r.stats.late as usize + 10 >= 300);
}

#[test]
fn sequence_and_timestamp_wrap_are_seamless() {
    let packets = stream(400, 65_400, u32::MAX - 100 * FRAME_TICKS);
    let r = run(
        &packets,
        &Net::default(),
        opus_config(),
        Duration::from_secs(8),
    );
    let seqs = r.frame_seqs();
    assert!(seqs.len() >= 397);
    assert!(is_increasing(&seqs));
    assert!(seqs.contains(&65_535) && seqs.contains(&0));
    assert_eq!(r.stats.concealed, Duration::ZERO);
    assert_eq!(r.stats.resyncs, 0);
}

#[test]
fn timestamp_jump_restarts_playout_once() {
    let mut packets = stream(400, 0, 0);
    for p in &mut packets[200..] {
        p.ts = p.ts.wrapping_add(48_000 * 30); // the sender's clock leaps 30 s
    }
    let r = run(
        &packets,
        &Net::default(),
        opus_config(),
        Duration::from_secs(8),
    );
    assert_eq!(r.stats.resyncs, 1);
    // 399 packets arrive within the 8 s run; the one that triggered the resync counts once.
    assert_eq!(r.stats.received, 399);
    let seqs = r.frame_seqs();
    assert!(seqs.len() >= 395, "played {}", seqs.len());
    assert!(is_increasing(&seqs));
    // Restarting costs at most the target delay of silence, never concealment.
    assert_eq!(r.stats.concealed, Duration::ZERO);
}

#[test]
fn dtx_gaps_are_silence_not_concealment() {
    // Talk 2 s, DTX silence 1 s (nothing sent, seq stays consecutive), talk 2 s.
    let mut packets = stream(100, 0, 0);
    for (i, p) in stream(100, 100, 150 * FRAME_TICKS).into_iter().enumerate() {
        packets.push(common::net::Sent {
            at: FRAME * (150 + i as u32),
            ..p
        });
    }
    let r = run(
        &packets,
        &Net::default(),
        opus_config(),
        Duration::from_secs(5),
    );
    assert_eq!(r.frame_seqs().len(), 198.max(r.frame_seqs().len()).min(200));
    assert_eq!(r.stats.lost, 0);
    assert_eq!(
        r.stats.concealed,
        Duration::ZERO,
        "DTX must not count as concealment"
    );
    assert!(
        ms(r.stats.silence) >= 950.0,
        "silence {:?}",
        r.stats.silence
    );
}

#[test]
fn a_very_late_packet_is_dropped_and_concealed() {
    let packets = stream(200, 0, 0);
    let mut arrivals: Vec<(Duration, u16, u32)> = packets
        .iter()
        .map(|p| (p.at + Duration::from_millis(30), p.seq, p.ts))
        .collect();
    arrivals[100].0 += Duration::from_millis(400);
    arrivals.sort_by_key(|a| a.0);
    let r = drive(&arrivals, opus_config(), Duration::from_secs(4), 0);
    assert_eq!(r.stats.late, 1);
    assert!(!r.frame_seqs().contains(&100));
    // One 20 ms slot: rebuilt from packet 101's FEC.
    assert_eq!(ms(r.stats.concealed + r.stats.fec_recovered), 20.0);
    // A single late packet must not drag the target to the maximum.
    assert!(
        ms(r.stats.target_delay) <= 40.0,
        "target {:?}",
        r.stats.target_delay
    );
}

#[test]
fn delay_shrinks_after_a_jittery_spell() {
    let packets = stream(750, 0, 0);
    let jittery = Net {
        jitter: Duration::from_millis(150),
        seed: 21,
        ..Net::default()
    };
    let rough = run(
        &packets[..250],
        &jittery,
        opus_config(),
        Duration::from_secs(5),
    );
    let high = rough.stats.target_delay;
    // Same stream: 5 s at 150 ms jitter, then 10 s clean.
    let mut arrivals: Vec<(Duration, u16, u32)> = Vec::new();
    let mut rng_delay = 0u64;
    for p in &packets {
        let extra = if p.at < Duration::from_secs(5) {
            rng_delay = rng_delay
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            Duration::from_micros((rng_delay >> 33) % 150_000)
        } else {
            Duration::ZERO
        };
        arrivals.push((p.at + Duration::from_millis(30) + extra, p.seq, p.ts));
    }
    arrivals.sort_by_key(|a| a.0);
    let r = drive(&arrivals, opus_config(), Duration::from_secs(15), 0);
    assert!(
        ms(high) >= 120.0,
        "jitter should raise the target ({high:?})"
    );
    assert!(
        ms(r.stats.target_delay) <= 30.0,
        "target after calm: {:?}",
        r.stats.target_delay
    );
    assert!(
        ms(r.stats.playout_delay) <= 45.0,
        "delay after calm: {:?}",
        r.stats.playout_delay
    );
    assert!(r.stats.shrunk > Duration::ZERO);
}

#[test]
fn a_loss_at_the_start_of_a_dtx_pause_counts_only_the_lost_packet() {
    // Talk 2 s, then 1 s of DTX; the last packet before the pause is lost.
    let mut packets = stream(99, 0, 0);
    for (i, p) in stream(100, 100, 150 * FRAME_TICKS).into_iter().enumerate() {
        packets.push(common::net::Sent {
            at: FRAME * (150 + i as u32),
            ..p
        });
    }
    let r = run(
        &packets,
        &Net::default(),
        opus_config(),
        Duration::from_secs(5),
    );
    assert_eq!(r.stats.lost, 1);
    assert_eq!(ms(r.stats.concealed), 20.0, "{:?}", r.stats);
    assert!(ms(r.stats.silence) >= 950.0, "{:?}", r.stats.silence);
}

/// Packets exactly one frame apart with no jitter, and playout pops due at
/// each arrival instant run both before and after that arrival (a driver's
/// timer and socket firing together): a lost packet is met with an empty
/// buffer. It
/// must still count as lost (the call's loss figure and MOS depend on it),
/// and the buffer must then keep one frame more of delay, so that the packet
/// after a loss, which carries its FEC, arrives before the gap is played.
#[test]
fn a_loss_met_with_an_empty_buffer_is_counted_and_makes_room_for_fec() {
    use natter_media::jitter::{JitterBuffer, JitterConfig};
    use std::time::Instant;

    let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
    let t0 = Instant::now();
    let mut lost = 0;
    for seq in 0u16..500 {
        let now = t0 + FRAME * u32::from(seq);
        while jb.poll_timeout().is_some_and(|t| t <= now) {
            jb.pop(now);
        }
        if seq % 5 == 4 {
            lost += 1;
            continue;
        }
        jb.push(now, seq, u32::from(seq) * FRAME_TICKS, vec![seq as u8]);
        while jb.poll_timeout().is_some_and(|t| t <= now) {
            jb.pop(now);
        }
    }
    let s = jb.stats();
    assert!(
        (lost - 1..=lost).contains(&s.lost),
        "{} of {lost} lost packets counted: {s:?}",
        s.lost
    );
    // All but the first few losses (before the delay grew) come back by FEC.
    let fec_frames = (ms(s.fec_recovered) / 20.0).round() as u64;
    assert!(
        fec_frames + 3 >= s.lost,
        "FEC rebuilt {fec_frames} of {}: {s:?}",
        s.lost
    );
    assert!(ms(s.target_delay) >= 30.0 - 0.1, "{s:?}");
}
