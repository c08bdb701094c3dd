//! The whole receive chain a phone runs, without sockets: microphone WAV →
//! encoder → simulated network → jitter buffer → decoder/concealment →
//! recording WAV, checked against the original speech.

mod common;

use std::time::{Duration, Instant};

use common::speech;
use natter_media::codec::{self, Codec, Encoded, EncoderSettings};
use natter_media::jitter::{JitterBuffer, JitterConfig, JitterStats};
use natter_media::quality::compare;
use natter_media::wav::{read_wav, read_wav_at, WavWriter};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

struct Call {
    heard: Vec<i16>,
    stats: JitterStats,
    sent: usize,
    frames: usize,
}

/// Sends `pcm` (at the codec rate) over a path with `jitter_ms` of jitter and
/// `loss` random loss; records what the listener hears into `record`.
fn call(
    codec: Codec,
    rate: u32,
    settings: EncoderSettings,
    pcm: &[i16],
    jitter_ms: u64,
    loss: f64,
    record: &std::path::Path,
) -> Call {
    let mut enc = codec::new_encoder(codec, rate, &settings).unwrap();
    let mut dec = codec::new_decoder(codec, rate).unwrap();
    let ticks = codec.rtp_clock_rate() * settings.frame_ms / 1000;
    let mut rng = StdRng::seed_from_u64(17);
    let (mut arrivals, mut seq, mut sent) = (Vec::new(), 0u16, 0);
    let frames: Vec<&[i16]> = pcm.chunks_exact(enc.frame_samples()).collect();
    for (i, frame) in frames.iter().enumerate() {
        let mut payload = Vec::new();
        if enc.encode(frame, &mut payload).unwrap() == Encoded::Suppressed {
            continue; // DTX: nothing sent, the sequence number does not advance
        }
        sent += 1;
        seq = seq.wrapping_add(1);
        if rng.gen_bool(loss) {
            continue;
        }
        let at = Duration::from_millis(20 * i as u64 + 40 + rng.gen_range(0..=jitter_ms));
        arrivals.push((at, seq, i as u32 * ticks, payload));
    }
    arrivals.sort_by_key(|a| a.0);
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(JitterConfig::new(codec.rtp_clock_rate()));
    let mut rec = WavWriter::create(record, rate).unwrap();
    let mut heard = Vec::new();
    let mut next = 0;
    // Play until every packet that arrived has been played (the call ends there).
    for k in 0.. {
        if next == arrivals.len() && jb.is_empty() {
            break;
        }
        let now = t0 + Duration::from_millis(20 * k as u64 + 5);
        while next < arrivals.len() && t0 + arrivals[next].0 <= now {
            let (at, seq, ts, payload) = arrivals[next].clone();
            jb.push(t0 + at, seq, ts, payload);
            next += 1;
        }
        let start = heard.len();
        let playout = jb.pop(now);
        codec::render(dec.as_mut(), &playout, &mut heard).unwrap();
        rec.write(&heard[start..]).unwrap();
    }
    // The recording is a valid file before the writer is finished.
    let live = read_wav(record).unwrap();
    assert!(live.samples.len() + rate as usize / 5 >= heard.len());
    rec.finish().unwrap();
    Call {
        heard,
        stats: jb.stats(),
        sent,
        frames: frames.len(),
    }
}

#[test]
fn opus_call_over_a_jittery_path_keeps_the_speech() {
    let dir = speech::scratch("pipeline-opus");
    let (pcm, _) = speech::speech(16_000);
    let mic = dir.join("mic.wav");
    let mut w = WavWriter::create(&mic, 16_000).unwrap();
    w.write(&pcm).unwrap();
    w.finish().unwrap();
    // The phone reads its --play file through the same path.
    let played = read_wav_at(&mic, 16_000).unwrap().samples;
    let rec = dir.join("heard.wav");
    let c = call(
        Codec::Opus,
        16_000,
        EncoderSettings::default(),
        &played,
        30,
        0.0,
        &rec,
    );
    let recorded = read_wav(&rec).unwrap();
    assert_eq!(
        recorded.samples, c.heard,
        "the recording is exactly what was heard"
    );
    let q = compare(&pcm, &c.heard, 16_000, Duration::from_millis(300));
    println!("opus, 0–30 ms jitter: {q:?}, {:?}", c.stats);
    assert!(q.correlation > 0.9, "correlation {:.3}", q.correlation);
    assert_eq!(c.stats.late, 0);
    assert!(
        c.stats.concealed <= Duration::from_millis(100),
        "{:?}",
        c.stats.concealed
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn opus_dtx_pause_is_silence_and_speech_survives() {
    let dir = speech::scratch("pipeline-dtx");
    let (pcm, _) = speech::speech(16_000);
    let half = pcm.len() / 2 / 320 * 320;
    let mut with_pause = pcm[..half].to_vec();
    with_pause.extend(std::iter::repeat_n(0i16, 16_000 * 3 / 2));
    with_pause.extend_from_slice(&pcm[half..]);
    let settings = EncoderSettings {
        dtx: true,
        ..EncoderSettings::default()
    };
    let c = call(
        Codec::Opus,
        16_000,
        settings,
        &with_pause,
        0,
        0.0,
        &dir.join("dtx.wav"),
    );
    println!("dtx: sent {} of {} frames, {:?}", c.sent, c.frames, c.stats);
    // 1.5 s of silence = 75 frames: hangover (10) and keepalives (every 20) are sent.
    assert!(
        c.frames - c.sent >= 55,
        "DTX suppressed only {}",
        c.frames - c.sent
    );
    assert_eq!(
        c.stats.concealed,
        Duration::ZERO,
        "DTX must not be concealed"
    );
    assert!(
        c.stats.silence >= Duration::from_millis(1000),
        "{:?}",
        c.stats.silence
    );
    let q = compare(&with_pause, &c.heard, 16_000, Duration::from_millis(300));
    assert!(q.correlation > 0.9, "correlation {:.3}", q.correlation);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn opus_fec_recovers_losses_through_the_jitter_buffer() {
    let dir = speech::scratch("pipeline-fec");
    let (pcm, _) = speech::speech(16_000);
    let run = |fec: bool, loss: f64| {
        let settings = EncoderSettings {
            fec,
            expected_loss_pct: 10,
            ..EncoderSettings::default()
        };
        call(
            Codec::Opus,
            16_000,
            settings,
            &pcm,
            0,
            loss,
            &dir.join("loss.wav"),
        )
    };
    // Score against the same stream received without loss: what FEC can restore.
    let clean = run(true, 0.0).heard;
    let (with, without) = (run(true, 0.10), run(false, 0.10));
    assert!(
        with.stats.fec_recovered >= Duration::from_millis(200),
        "{:?}",
        with.stats
    );
    let score = |c: &Call| compare(&clean, &c.heard, 16_000, Duration::from_millis(100));
    let (f, p) = (score(&with), score(&without));
    println!("10 % loss vs loss-free: FEC {f:?}\n                        none {p:?}");
    assert!(
        f.seg_snr_db > p.seg_snr_db + 1.0,
        "FEC {:.1} dB vs none {:.1} dB",
        f.seg_snr_db,
        p.seg_snr_db
    );
    assert!(f.correlation > 0.7 && p.correlation > 0.7);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn pcma_call_is_near_transparent() {
    let dir = speech::scratch("pipeline-pcma");
    let (pcm, _) = speech::speech(8_000);
    let c = call(
        Codec::Pcma,
        8_000,
        EncoderSettings::default(),
        &pcm,
        20,
        0.0,
        &dir.join("a.wav"),
    );
    let q = compare(&pcm, &c.heard, 8_000, Duration::from_millis(300));
    assert!(q.correlation > 0.99, "correlation {:.4}", q.correlation);
    assert!(q.seg_snr_db > 25.0, "segmental SNR {:.1}", q.seg_snr_db);
    let _ = std::fs::remove_dir_all(dir);
}
