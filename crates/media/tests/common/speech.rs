//! Test speech: real synthetic speech from espeak-ng when it is installed,
//! else a speech-like signal (voiced harmonics under moving formants, with
//! pauses). Generated at test time; nothing binary is committed.

use std::path::PathBuf;
use std::process::Command;

use natter_media::resample::resample;

const TEXT: &str = "The quick brown fox jumps over the lazy dog. \
                    Please call me back at five, and bring the blue folder.";

/// A scratch directory unique to this test process and `name`.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("natter-media-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir is writable");
    dir
}

/// About 4–5 s of speech at `rate` Hz, and whether it came from espeak-ng.
pub fn speech(rate: u32) -> (Vec<i16>, bool) {
    match espeak(rate) {
        Some(s) => (s, true),
        None => {
            eprintln!("NOTE: espeak-ng not available: using a synthetic speech-like signal");
            (synthetic(rate), false)
        }
    }
}

fn espeak(rate: u32) -> Option<Vec<i16>> {
    static CALLS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let path = scratch(&format!("espeak-{n}")).join("speech.wav");
    let status = Command::new("espeak-ng")
        .arg("-w")
        .arg(&path)
        .arg(TEXT)
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    let mut reader = hound::WavReader::open(&path).ok()?;
    let spec = reader.spec();
    let samples: Vec<i16> = reader.samples::<i16>().collect::<Result<_, _>>().ok()?;
    let _ = std::fs::remove_dir_all(path.parent()?);
    Some(resample(&samples, spec.sample_rate, rate))
}

/// Voiced harmonics (pitch gliding 100–160 Hz) shaped by two moving formants,
/// syllables of 150–250 ms and pauses between words.
pub fn synthetic(rate: u32) -> Vec<i16> {
    let fs = f64::from(rate);
    let total = (4.0 * fs) as usize;
    let mut out = Vec::with_capacity(total);
    let mut phase = 0.0f64;
    for i in 0..total {
        let t = i as f64 / fs;
        let word = (t / 0.6).floor();
        let in_word = t - word * 0.6;
        let voiced = in_word < 0.45;
        let syllable = (in_word / 0.15).fract();
        let env = if voiced {
            (std::f64::consts::PI * syllable).sin().powf(0.7)
        } else {
            0.0
        };
        let f0 = 100.0 + 60.0 * (0.5 + 0.5 * (t * 1.7).sin());
        phase += 2.0 * std::f64::consts::PI * f0 / fs;
        let f1 = 500.0 + 300.0 * (t * 2.3 + word).sin();
        let f2 = 1500.0 + 700.0 * (t * 1.1 + 2.0 * word).cos();
        let mut s = 0.0;
        let mut k = 1.0;
        while k * f0 < fs / 2.2 {
            let hz = k * f0;
            let gain = formant(hz, f1, 120.0) + 0.6 * formant(hz, f2, 200.0);
            s += gain * (k * phase).sin() / k.sqrt();
            k += 1.0;
        }
        out.push((6000.0 * env * s).clamp(-32000.0, 32000.0) as i16);
    }
    out
}

fn formant(hz: f64, centre: f64, width: f64) -> f64 {
    let d = (hz - centre) / width;
    1.0 / (1.0 + d * d)
}
