//! Media benchmark driver (run by `scripts/bench-media`):
//!
//! * writes WAV files for WB-PESQ scoring: the reference speech, opus-rs
//!   encode→decode at 16/24/32 kb/s, and the same speech through a simulated
//!   network (5 % and 10 % random loss, 0–30 ms jitter) and the jitter buffer,
//!   with in-band FEC on and off;
//! * measures CPU per 20 ms frame (encode + jitter buffer + decode) and prints
//!   it as µs per frame and % of one core for one call.
//!
//! `cargo run --release -p natter-media --example bench_media -- OUT_DIR [SPEECH.wav]`

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use natter_media::codec::{
    self, Codec, Encoded, Encoder, EncoderSettings, OpusConfig, OpusEncoder,
};
use natter_media::jitter::{JitterBuffer, JitterConfig};
use natter_media::quality::compare;
use natter_media::resample::resample;
use natter_media::wav::WavWriter;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const RATE: u32 = 16_000;
const FRAME: usize = 320;
const TICKS: u32 = 960;
/// Opus complexity for the quality runs (third argument).
static COMPLEXITY: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(9);

fn main() {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "target/bench-media".into()));
    std::fs::create_dir_all(&dir).expect("create output dir");
    let out = dir.clone();
    let speech = match args.next().filter(|a| a != "-") {
        Some(path) => load(Path::new(&path)),
        None => synthetic(),
    };
    let complexity: u8 = args
        .next()
        .and_then(|c| c.parse().ok())
        .unwrap_or(EncoderSettings::default().complexity);
    COMPLEXITY.store(complexity, std::sync::atomic::Ordering::Relaxed);
    println!("opus complexity {complexity}");
    write(&out.join("ref.wav"), &speech);
    println!(
        "speech: {:.1} s at {RATE} Hz",
        speech.len() as f64 / f64::from(RATE)
    );

    for kbps in [16, 24, 32] {
        let received = through(&speech, kbps * 1000, None);
        write(&out.join(format!("codec_{kbps}k.wav")), &received);
        report(&format!("codec_{kbps}k"), &speech, &received);
    }
    for complexity in [3, 5, 7] {
        let mut enc = opus(24_000, false, 0, complexity);
        let received = plain(enc.as_mut(), &speech);
        write(&out.join(format!("codec_24k_c{complexity}.wav")), &received);
        report(&format!("codec_24k_c{complexity}"), &speech, &received);
    }
    {
        // The same at a 48 kHz PCM rate (opus-rs then codes Hybrid fullband),
        // scored after resampling back to 16 kHz.
        let up = resample(&speech, RATE, 48_000);
        let mut enc = opus_at(48_000, 24_000, false, 0, 9);
        let mut dec = codec::new_decoder(Codec::Opus, 48_000).expect("Opus decoder");
        let mut decoded = Vec::new();
        for frame in up.chunks_exact(960) {
            let mut p = Vec::new();
            if let Encoded::Packet(_) = enc.encode(frame, &mut p).expect("encode") {
                dec.decode(&p, &mut decoded).expect("decode");
            }
        }
        let received = resample(&decoded, 48_000, RATE);
        write(&dir.join("codec_24k_48kHz.wav"), &received);
        report("codec_24k_48kHz", &speech, &received);
    }
    for (loss, jitter_ms) in [(0u32, 30u64), (5, 0), (5, 30), (10, 0), (10, 30)] {
        for fec in [false, true] {
            if loss == 0 && fec {
                continue;
            }
            let net = Net {
                loss: f64::from(loss) / 100.0,
                jitter_ms,
                fec,
            };
            let received = through(&speech, 24_000, Some(&net));
            let name = format!(
                "jb_loss{loss}_jitter{jitter_ms}_{}",
                if fec { "fec" } else { "nofec" }
            );
            write(&out.join(format!("{name}.wav")), &received);
            report(&name, &speech, &received);
        }
    }
    // Random (not congestive) loss: does a lower bitrate with FEC sound better
    // or worse than the full bitrate with FEC? (The rate policy steps down
    // above 10 % loss.)
    for loss in [10u32, 15, 20] {
        for kbps in [12u32, 16, 24] {
            let net = Net {
                loss: f64::from(loss) / 100.0,
                jitter_ms: 0,
                fec: true,
            };
            let received = through(&speech, kbps * 1000, Some(&net));
            let name = format!("rate_loss{loss}_{kbps}k_fec");
            write(&out.join(format!("{name}.wav")), &received);
            report(&name, &speech, &received);
        }
    }
    cpu(&speech);
}

/// The speech file as mono at `RATE` Hz (the library's WAV reader).
fn load(path: &Path) -> Vec<i16> {
    natter_media::wav::read_wav_at(path, RATE)
        .expect("read speech WAV")
        .samples
}

/// A voiced, formant-shaped signal with pauses, for when no speech file is given.
fn synthetic() -> Vec<i16> {
    (0..RATE as usize * 4)
        .map(|i| {
            let t = i as f64 / f64::from(RATE);
            let env = if (t / 0.6).fract() < 0.75 {
                ((t / 0.15).fract() * std::f64::consts::PI).sin()
            } else {
                0.0
            };
            let f0 = 120.0 + 30.0 * (t * 1.7).sin();
            let s: f64 = (1..20)
                .map(|k| (2.0 * std::f64::consts::PI * f0 * f64::from(k) * t).sin() / f64::from(k))
                .sum();
            (5000.0 * env * s) as i16
        })
        .collect()
}

fn write(path: &Path, pcm: &[i16]) {
    let mut w = WavWriter::create(path, RATE).expect("create WAV");
    w.write(pcm).expect("write WAV");
    w.finish().expect("finish WAV");
}

fn report(name: &str, reference: &[i16], received: &[i16]) {
    let c = compare(reference, received, RATE, Duration::from_millis(300));
    println!(
        "{name:>18}: lag {:6.1} ms  correlation {:.3}  segSNR {:5.1} dB",
        c.lag as f64 / 16.0,
        c.correlation,
        c.seg_snr_db
    );
}

struct Net {
    loss: f64,
    jitter_ms: u64,
    fec: bool,
}

fn encoder(bitrate: u32, net: Option<&Net>) -> Box<dyn Encoder> {
    let fec = net.is_some_and(|n| n.fec);
    let loss = if fec {
        net.map_or(0, |n| (n.loss * 100.0) as u8)
    } else {
        0
    };
    opus(
        bitrate,
        fec,
        loss,
        COMPLEXITY.load(std::sync::atomic::Ordering::Relaxed),
    )
}

fn opus(bitrate: u32, fec: bool, expected_loss_pct: u8, complexity: u8) -> Box<dyn Encoder> {
    opus_at(RATE, bitrate, fec, expected_loss_pct, complexity)
}

fn opus_at(
    rate: u32,
    bitrate: u32,
    fec: bool,
    expected_loss_pct: u8,
    complexity: u8,
) -> Box<dyn Encoder> {
    let settings = EncoderSettings {
        bitrate_bps: bitrate,
        fec,
        expected_loss_pct,
        complexity,
        ..EncoderSettings::default()
    };
    let config = OpusConfig {
        sample_rate: rate,
        settings,
        ..OpusConfig::default()
    };
    Box::new(OpusEncoder::new(config).expect("Opus encoder"))
}

fn plain(enc: &mut dyn Encoder, speech: &[i16]) -> Vec<i16> {
    let mut dec = codec::new_decoder(Codec::Opus, RATE).expect("Opus decoder");
    let mut out = Vec::with_capacity(speech.len());
    for frame in speech.chunks_exact(FRAME) {
        let mut p = Vec::new();
        if let Encoded::Packet(_) = enc.encode(frame, &mut p).expect("encode") {
            dec.decode(&p, &mut out).expect("decode");
        }
    }
    out
}

/// Encodes, optionally sends through a lossy jittery network and the jitter
/// buffer, and decodes what a listener would hear.
fn through(speech: &[i16], bitrate: u32, net: Option<&Net>) -> Vec<i16> {
    let mut enc = encoder(bitrate, net);
    let Some(net) = net else {
        return plain(enc.as_mut(), speech);
    };
    let mut dec = codec::new_decoder(Codec::Opus, RATE).expect("Opus decoder");
    let mut out = Vec::with_capacity(speech.len() + RATE as usize);
    let mut rng = StdRng::seed_from_u64(42);
    let t0 = Instant::now();
    let mut arrivals: Vec<(Duration, u16, u32, Vec<u8>)> = Vec::new();
    for (i, frame) in speech.chunks_exact(FRAME).enumerate() {
        let mut p = Vec::new();
        enc.encode(frame, &mut p).expect("encode");
        if rng.gen_bool(net.loss) {
            continue;
        }
        let at = Duration::from_millis(20 * i as u64 + 30 + rng.gen_range(0..=net.jitter_ms));
        arrivals.push((at, i as u16, i as u32 * TICKS, p));
    }
    arrivals.sort_by_key(|a| a.0);
    let frames = speech.len() / FRAME + 20;
    let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
    let mut next = 0;
    for k in 0..frames {
        let now = Duration::from_millis(20 * k as u64 + 3);
        while next < arrivals.len() && arrivals[next].0 <= now {
            let (at, seq, ts, p) = arrivals[next].clone();
            jb.push(t0 + at, seq, ts, p);
            next += 1;
        }
        codec::render(dec.as_mut(), &jb.pop(t0 + now), &mut out).expect("render");
    }
    let s = jb.stats();
    println!(
        "{:>18}  loss {:.0}% fec {}: concealed {} ms, fec-recovered {} ms, late {}, mean playout delay {:.1} ms",
        "",
        net.loss * 100.0,
        net.fec,
        s.concealed.as_millis(),
        s.fec_recovered.as_millis(),
        s.late,
        s.mean_playout_delay.as_secs_f64() * 1000.0
    );
    out
}

/// CPU per 20 ms frame: encode + jitter buffer + decode, over ≥ 30 s of audio.
fn cpu(speech: &[i16]) {
    let frames: Vec<&[i16]> = speech.chunks_exact(FRAME).collect();
    let total = 1500.max(frames.len());
    let cases = [
        ("opus 24k c9", Codec::Opus, RATE, false, 9),
        ("opus 24k+FEC c9", Codec::Opus, RATE, true, 9),
        ("opus 24k c6 (default)", Codec::Opus, RATE, false, 6),
        ("opus 24k+FEC c6", Codec::Opus, RATE, true, 6),
        ("opus 24k c5", Codec::Opus, RATE, false, 5),
        ("opus 24k+FEC c5", Codec::Opus, RATE, true, 5),
        ("opus 24k c7", Codec::Opus, RATE, false, 7),
        ("opus 24k+FEC c7", Codec::Opus, RATE, true, 7),
        ("opus 24k c3", Codec::Opus, RATE, false, 3),
        ("opus 24k 48kHz c9", Codec::Opus, 48_000, false, 9),
        ("pcmu", Codec::Pcmu, 8_000, false, 0),
    ];
    for (label, codec, rate, fec, complexity) in cases {
        let loss = if fec { 10 } else { 0 };
        let settings = EncoderSettings {
            fec,
            expected_loss_pct: loss,
            ..EncoderSettings::default()
        };
        let mut enc = match codec {
            Codec::Opus => opus_at(rate, 24_000, fec, loss, complexity),
            _ => codec::new_encoder(codec, rate, &settings).expect("encoder"),
        };
        let mut dec = codec::new_decoder(codec, rate).expect("decoder");
        let mut jb = JitterBuffer::new(JitterConfig::new(codec.rtp_clock_rate()));
        let ticks = codec.rtp_clock_rate() / 50;
        let pcm8: Vec<Vec<i16>> = frames.iter().map(|f| resample(f, RATE, rate)).collect();
        // Three rounds of 10 s of audio each; the quickest round is reported,
        // the usual defence against other load on a shared machine.
        let t0 = Instant::now();
        let mut best: Option<[f64; 4]> = None;
        let mut measured_cpu = false;
        for round in 0..3 {
            let cpu_start = thread_cpu();
            let (mut out, mut packet) = (Vec::with_capacity(FRAME * 6), Vec::with_capacity(1500));
            let (mut t_enc, mut t_jb, mut t_dec) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
            let mut done = 0u32;
            for i in round * total / 3..(round + 1) * total / 3 {
                let frame = &pcm8[i % pcm8.len()];
                if frame.len() != enc.frame_samples() {
                    continue;
                }
                packet.clear();
                out.clear();
                let a = Instant::now();
                enc.encode(frame, &mut packet).expect("encode");
                let b = Instant::now();
                let now = t0 + Duration::from_millis(20 * i as u64);
                jb.push(
                    now,
                    i as u16,
                    (i as u32).wrapping_mul(ticks),
                    packet.clone(),
                );
                let playout = jb.pop(now + Duration::from_millis(1));
                let c = Instant::now();
                codec::render(dec.as_mut(), &playout, &mut out).expect("render");
                let d = Instant::now();
                t_enc += b - a;
                t_jb += c - b;
                t_dec += d - c;
                done += 1;
            }
            // CPU time actually spent on this thread (scheduler accounting), so
            // other load does not inflate it; the split between encode, jitter
            // buffer and decode is apportioned from wall-clock shares.
            let cpu = thread_cpu().zip(cpu_start).map(|(end, start)| end - start);
            let wall = t_enc + t_jb + t_dec;
            let busy = match cpu.filter(|c| *c > Duration::from_millis(50)) {
                Some(c) => {
                    measured_cpu = true;
                    c.min(wall)
                }
                None => wall,
            };
            let us = |t: Duration| {
                busy.as_secs_f64() * 1e6 / f64::from(done.max(1))
                    * (t.as_secs_f64() / wall.as_secs_f64().max(1e-12))
            };
            let round_figures = [us(wall), us(t_enc), us(t_jb), us(t_dec)];
            if best.is_none_or(|b| round_figures[0] < b[0]) {
                best = Some(round_figures);
            }
        }
        let [per_frame, enc_us, jb_us, dec_us] = best.unwrap_or_default();
        println!(
            "cpu {label:>17}: {per_frame:6.1} µs per 20 ms frame (encode {enc_us:.1}, jitter buffer {jb_us:.1}, decode {dec_us:.1}) = {:.2} % of one core per call [{}, best of 3]",
            per_frame / 20_000.0 * 100.0,
            if measured_cpu { "thread CPU time" } else { "wall clock" }
        );
    }
}

/// This thread's CPU time from /proc/thread-self/schedstat (Linux), if readable.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}
