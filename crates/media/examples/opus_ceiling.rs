//! The codec's own ceiling for `scripts/bench-phone`: the same speech through
//! Opus encode → decode with no network, at the rate and bitrate the phone uses.
//!
//! `opus_ceiling IN.wav SECONDS OUT_DIR [OPUS_RATE] [BITRATE] [COMPLEXITY]` writes
//! * `OUT_DIR/talk.wav`: IN (any rate, first channel) resampled to 16 kHz and
//!   repeated to fill SECONDS: what the caller plays;
//! * `OUT_DIR/ceiling.wav`: talk.wav encoded and decoded by opus-rs at OPUS_RATE
//!   (default 16000) and BITRATE (default 24000) with the phone's default
//!   settings (COMPLEXITY: the default's), back at 16 kHz: the best a call
//!   can sound;
//! * on stdout, the encoder's CPU time per 20 ms frame (thread CPU time).

use std::path::{Path, PathBuf};
use std::time::Duration;

use natter_media::codec::{self, Codec, Encoded, EncoderSettings};
use natter_media::resample::resample;
use natter_media::wav::WavWriter;

const RATE: u32 = 16_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: opus_ceiling IN.wav SECONDS OUT_DIR [OPUS_RATE] [BITRATE] [COMPLEXITY]");
        std::process::exit(2);
    }
    let seconds: f64 = args[1].parse().expect("SECONDS is a number");
    let out = PathBuf::from(&args[2]);
    let opus_rate: u32 = args.get(3).map_or(RATE, |r| r.parse().expect("OPUS_RATE"));
    let bitrate: u32 = args.get(4).map_or(24_000, |b| b.parse().expect("BITRATE"));
    let complexity: u8 = args
        .get(5)
        .map_or(EncoderSettings::default().complexity, |c| {
            c.parse().expect("COMPLEXITY")
        });
    std::fs::create_dir_all(&out).expect("create OUT_DIR");

    let speech = load(Path::new(&args[0]));
    let want = (seconds * f64::from(RATE)) as usize;
    let talk: Vec<i16> = speech.iter().copied().cycle().take(want).collect();
    write(&out.join("talk.wav"), &talk);

    let settings = EncoderSettings {
        bitrate_bps: bitrate,
        complexity,
        ..EncoderSettings::default()
    };
    let mut enc = codec::new_encoder(Codec::Opus, opus_rate, &settings).expect("Opus encoder");
    let mut dec = codec::new_decoder(Codec::Opus, opus_rate).expect("Opus decoder");
    let input = resample(&talk, RATE, opus_rate);
    let mut decoded = Vec::with_capacity(input.len());
    // Encode everything first, so the thread's CPU time over the loop is the
    // encoder's alone.
    let t = thread_cpu();
    let packets: Vec<Vec<u8>> = input
        .chunks_exact(enc.frame_samples())
        .filter_map(|frame| {
            let mut packet = Vec::new();
            match enc.encode(frame, &mut packet).expect("encode") {
                Encoded::Packet(_) => Some(packet),
                Encoded::Suppressed => None,
            }
        })
        .collect();
    let encode_cpu = thread_cpu().saturating_sub(t);
    let frames = packets.len() as u32;
    for packet in &packets {
        dec.decode(packet, &mut decoded).expect("decode");
    }
    write(
        &out.join("ceiling.wav"),
        &resample(&decoded, opus_rate, RATE),
    );
    println!(
        "talk.wav {:.1} s, ceiling.wav: opus-rs at {opus_rate} Hz, {bitrate} bit/s, complexity {complexity}",
        talk.len() as f64 / f64::from(RATE)
    );
    let per_frame = encode_cpu.as_secs_f64() * 1e6 / f64::from(frames.max(1));
    println!(
        "encode: {per_frame:.1} µs CPU per 20 ms frame = {:.2} % of one core",
        per_frame / 200.0
    );
}

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID` through /proc), or zero.
fn thread_cpu() -> Duration {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// The speech file as mono at `RATE` Hz (the library's WAV reader).
fn load(path: &Path) -> Vec<i16> {
    natter_media::wav::read_wav_at(path, RATE)
        .expect("read the speech WAV")
        .samples
}

fn write(path: &Path, samples: &[i16]) {
    let mut w = WavWriter::create(path, RATE).expect("create WAV");
    w.write(samples).expect("write WAV");
    w.finish().expect("finish WAV");
}
