//! Proof that opus-rs and libopus interoperate both ways, using Debian's
//! opus-tools (`opusenc`/`opusdec` link libopus): opus-rs packets in an Ogg
//! Opus file decode with `opusdec`, and `opusenc`'s packets decode with
//! opus-rs. Each direction is scored against the original speech.
//!
//! Without opus-tools (`apt-get install opus-tools`) the tests print
//! `SKIPPED:` and pass.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{oggopus, speech};
use natter_media::codec::{
    Decoder, Encoded, Encoder, EncoderSettings, OpusConfig, OpusDecoder, OpusEncoder,
};
use natter_media::quality::{compare, Comparison};
use natter_media::wav::{read_wav, WavWriter};

const RATE: u32 = 16_000;
const FRAME: usize = 320;

fn have_opus_tools() -> bool {
    let ok = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if ok("opusenc") && ok("opusdec") {
        return true;
    }
    natter_lab::skip(
        "opus_interop",
        "opus-tools (opusenc/opusdec) not installed; apt-get install -y opus-tools",
    );
    false
}

fn encode_with_opus_rs(pcm: &[i16], bitrate: u32) -> Vec<Vec<u8>> {
    let settings = EncoderSettings {
        bitrate_bps: bitrate,
        ..EncoderSettings::default()
    };
    let mut enc = OpusEncoder::new(OpusConfig {
        settings,
        ..OpusConfig::default()
    })
    .unwrap();
    pcm.chunks_exact(FRAME)
        .map(|frame| {
            let mut packet = Vec::new();
            let encoded = enc.encode(frame, &mut packet).unwrap();
            assert_eq!(encoded, Encoded::Packet(packet.len()));
            packet
        })
        .collect()
}

fn decode_with_opus_rs(packets: &[Vec<u8>]) -> Vec<i16> {
    decode_at(packets, RATE)
}

fn decode_at(packets: &[Vec<u8>], rate: u32) -> Vec<i16> {
    let mut dec = OpusDecoder::new(rate).unwrap();
    let mut out = Vec::new();
    for p in packets {
        dec.decode(p, &mut out).unwrap();
    }
    out
}

fn run(cmd: &mut Command) {
    let out = cmd.output().expect("spawn opus-tools");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn write_wav(path: &Path, pcm: &[i16]) {
    let mut w = WavWriter::create(path, RATE).unwrap();
    w.write(pcm).unwrap();
    w.finish().unwrap();
}

fn report(label: &str, c: &Comparison) {
    report_at(label, c, RATE);
}

fn report_at(label: &str, c: &Comparison, rate: u32) {
    println!(
        "{label}: lag {:.2} ms, correlation {:.4}, segmental SNR {:.1} dB",
        c.lag as f64 * 1000.0 / f64::from(rate),
        c.correlation,
        c.seg_snr_db
    );
}

fn score(reference: &[i16], received: &[i16]) -> Comparison {
    compare(reference, received, RATE, Duration::from_millis(100))
}

#[test]
fn opus_rs_packets_decode_with_libopus() {
    if !have_opus_tools() {
        return;
    }
    let dir = speech::scratch("rs-to-libopus");
    let (pcm, real) = speech::speech(RATE);
    let packets = encode_with_opus_rs(&pcm, 24_000);
    let ogg = dir.join("opus-rs.opus");
    oggopus::write(&ogg, &packets, 960, RATE);
    let wav = dir.join("libopus.wav");
    run(Command::new("opusdec")
        .args(["--quiet", "--no-dither"])
        .arg("--rate")
        .arg("16000")
        .arg(&ogg)
        .arg(&wav));
    let by_libopus = read_wav(&wav).unwrap();
    assert_eq!(by_libopus.rate, RATE);
    let by_opus_rs = decode_with_opus_rs(&packets);

    let ceiling = score(&pcm, &by_opus_rs);
    let libopus = score(&pcm, &by_libopus.samples);
    report("opus-rs → opus-rs", &ceiling);
    report("opus-rs → libopus", &libopus);
    println!("speech from espeak-ng: {real}");
    // libopus hears the speech as well as opus-rs's own decoder does.
    assert!(
        libopus.correlation > 0.8,
        "correlation {:.3}",
        libopus.correlation
    );
    assert!(libopus.correlation > ceiling.correlation - 0.02);
    assert!(libopus.seg_snr_db > ceiling.seg_snr_db - 1.0);
    // Same packets, two decoders, compared at 48 kHz (opusdec decodes at
    // 48 kHz and resamples other rates, which would blur the comparison).
    let wav48 = dir.join("libopus-48k.wav");
    run(Command::new("opusdec")
        .args(["--quiet", "--no-dither", "--rate", "48000"])
        .arg(&ogg)
        .arg(&wav48));
    let libopus48 = read_wav(&wav48).unwrap().samples;
    let rs48 = decode_at(&packets, 48_000);
    let decoders = compare(&rs48, &libopus48, 48_000, Duration::from_millis(20));
    report_at(
        "opus-rs decoder vs libopus decoder (48 kHz)",
        &decoders,
        48_000,
    );
    assert_eq!(
        decoders.lag,
        -i32::from(oggopus::PRE_SKIP) as isize,
        "libopus trims the pre-skip"
    );
    assert!(
        decoders.correlation > 0.999,
        "decoders disagree: {:.4}",
        decoders.correlation
    );
    assert!(
        decoders.seg_snr_db > 30.0,
        "decoders disagree: {:.1} dB",
        decoders.seg_snr_db
    );
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn libopus_packets_decode_with_opus_rs() {
    if !have_opus_tools() {
        return;
    }
    let dir = speech::scratch("libopus-to-rs");
    let (pcm, _) = speech::speech(RATE);
    let wav = dir.join("speech.wav");
    write_wav(&wav, &pcm);
    for (bitrate, label) in [
        ("24", "libopus 24 kb/s"),
        ("64", "libopus 64 kb/s (CELT/hybrid)"),
    ] {
        let ogg = dir.join(format!("libopus-{bitrate}.opus"));
        run(Command::new("opusenc")
            .args(["--quiet", "--bitrate", bitrate, "--framesize", "20"])
            .arg(&wav)
            .arg(&ogg));
        let (pre_skip, channels, packets) = oggopus::read(&ogg);
        assert_eq!(channels, 1);
        assert!(
            packets.len() >= pcm.len() / FRAME,
            "{} packets",
            packets.len()
        );
        let decoded = decode_with_opus_rs(&packets);
        let skip = usize::from(pre_skip) / 3; // 48 kHz pre-skip at 16 kHz
        let c = score(&pcm, &decoded[skip.min(decoded.len())..]);
        report(&format!("{label} → opus-rs"), &c);
        assert!(
            c.correlation > 0.8,
            "{label}: correlation {:.3}",
            c.correlation
        );
        assert!(c.lag.abs() < 80, "{label}: misaligned by {} samples", c.lag);
        // Same packets through libopus's own decoder, compared at 48 kHz.
        let back = dir.join(format!("libopus-{bitrate}.wav"));
        run(Command::new("opusdec")
            .args(["--quiet", "--no-dither", "--rate", "48000"])
            .arg(&ogg)
            .arg(&back));
        let reference = read_wav(&back).unwrap();
        let same = compare(
            &reference.samples,
            &decode_at(&packets, 48_000),
            48_000,
            Duration::from_millis(20),
        );
        report_at(
            &format!("{label}: opus-rs vs libopus decoder (48 kHz)"),
            &same,
            48_000,
        );
        assert!(
            same.correlation > 0.999,
            "{label}: decoders disagree {:.4}",
            same.correlation
        );
        assert!(
            same.seg_snr_db > 30.0,
            "{label}: decoders disagree {:.1} dB",
            same.seg_snr_db
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}
