//! The codec's own ceiling for `scripts/bench-phone`: the same speech through
//! Opus encode → decode with no network, at the rate and bitrate the phone uses.
//!
//! `opus_ceiling IN.wav SECONDS OUT_DIR [OPUS_RATE] [BITRATE]` writes
//! * `OUT_DIR/talk.wav`: IN (any rate, first channel) resampled to 16 kHz and
//!   repeated to fill SECONDS: what the caller plays;
//! * `OUT_DIR/ceiling.wav`: talk.wav encoded and decoded by opus-rs at OPUS_RATE
//!   (default 16000) and BITRATE (default 24000) with the phone's default
//!   settings, back at 16 kHz: the best a call can sound.

use std::path::{Path, PathBuf};

use natter_media::codec::{self, Codec, Encoded, EncoderSettings};
use natter_media::resample::resample;
use natter_media::wav::WavWriter;

const RATE: u32 = 16_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        eprintln!("usage: opus_ceiling IN.wav SECONDS OUT_DIR [OPUS_RATE] [BITRATE]");
        std::process::exit(2);
    }
    let seconds: f64 = args[1].parse().expect("SECONDS is a number");
    let out = PathBuf::from(&args[2]);
    let opus_rate: u32 = args.get(3).map_or(RATE, |r| r.parse().expect("OPUS_RATE"));
    let bitrate: u32 = args.get(4).map_or(24_000, |b| b.parse().expect("BITRATE"));
    std::fs::create_dir_all(&out).expect("create OUT_DIR");

    let speech = load(Path::new(&args[0]));
    let want = (seconds * f64::from(RATE)) as usize;
    let talk: Vec<i16> = speech.iter().copied().cycle().take(want).collect();
    write(&out.join("talk.wav"), &talk);

    let settings = EncoderSettings {
        bitrate_bps: bitrate,
        ..EncoderSettings::default()
    };
    let mut enc = codec::new_encoder(Codec::Opus, opus_rate, &settings).expect("Opus encoder");
    let mut dec = codec::new_decoder(Codec::Opus, opus_rate).expect("Opus decoder");
    let input = resample(&talk, RATE, opus_rate);
    let mut decoded = Vec::with_capacity(input.len());
    let mut packet = Vec::new();
    for frame in input.chunks_exact(enc.frame_samples()) {
        packet.clear();
        if let Encoded::Packet(_) = enc.encode(frame, &mut packet).expect("encode") {
            dec.decode(&packet, &mut decoded).expect("decode");
        }
    }
    write(
        &out.join("ceiling.wav"),
        &resample(&decoded, opus_rate, RATE),
    );
    println!(
        "talk.wav {:.1} s, ceiling.wav: opus-rs at {opus_rate} Hz, {bitrate} bit/s",
        talk.len() as f64 / f64::from(RATE)
    );
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
