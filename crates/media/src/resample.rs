//! Band-limited resampling of mono 16-bit audio by a windowed-sinc kernel
//! (Blackman window, 16 zero crossings each side): enough for voice, exact for
//! any ratio, no state between calls.

use std::f64::consts::PI;

/// Zero crossings of the sinc kernel on each side of the centre.
const ZEROS: f64 = 16.0;
/// Pass band as a fraction of the lower Nyquist frequency.
const ROLLOFF: f64 = 0.92;

/// Resamples `input` from `from` Hz to `to` Hz.
pub fn resample(input: &[i16], from: u32, to: u32) -> Vec<i16> {
    if from == to || input.is_empty() || from == 0 || to == 0 {
        return input.to_vec();
    }
    let ratio = f64::from(from) / f64::from(to);
    let cutoff = ROLLOFF * (f64::from(to) / f64::from(from)).min(1.0);
    let half_width = ZEROS / cutoff;
    let out_len = (input.len() as u64 * u64::from(to) / u64::from(from)) as usize;
    (0..out_len)
        .map(|n| sample_at(input, n as f64 * ratio, cutoff, half_width))
        .collect()
}

/// Interpolated value of `input` at fractional position `t`.
fn sample_at(input: &[i16], t: f64, cutoff: f64, half_width: f64) -> i16 {
    let first = (t - half_width).ceil().max(0.0) as usize;
    let last = ((t + half_width).floor() as usize).min(input.len() - 1);
    let (mut acc, mut norm) = (0.0f64, 0.0f64);
    for (k, &s) in input.iter().enumerate().take(last + 1).skip(first) {
        let x = t - k as f64;
        let w = kernel(x, cutoff, half_width);
        acc += f64::from(s) * w;
        norm += w;
    }
    let value = if norm.abs() > 1e-9 { acc / norm } else { 0.0 };
    value.round().clamp(-32768.0, 32767.0) as i16
}

fn kernel(x: f64, cutoff: f64, half_width: f64) -> f64 {
    let arg = PI * cutoff * x;
    let sinc = if x.abs() < 1e-12 {
        1.0
    } else {
        arg.sin() / arg
    };
    let p = (x / half_width + 1.0) / 2.0; // 0..1 across the window
    let window = 0.42 - 0.5 * (2.0 * PI * p).cos() + 0.08 * (4.0 * PI * p).cos();
    sinc * window
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sine(rate: u32, hz: f64, secs: f64) -> Vec<i16> {
        let n = (f64::from(rate) * secs) as usize;
        (0..n)
            .map(|i| (10_000.0 * (2.0 * PI * hz * i as f64 / f64::from(rate)).sin()) as i16)
            .collect()
    }

    /// Amplitude of `hz` in `x` (single-bin DFT), skipping the edges.
    fn amplitude(x: &[i16], rate: u32, hz: f64) -> f64 {
        let body = &x[x.len() / 10..x.len() * 9 / 10];
        let (mut re, mut im) = (0.0, 0.0);
        for (i, &s) in body.iter().enumerate() {
            let ph = 2.0 * PI * hz * i as f64 / f64::from(rate);
            re += f64::from(s) * ph.cos();
            im += f64::from(s) * ph.sin();
        }
        2.0 * (re * re + im * im).sqrt() / body.len() as f64
    }

    #[test]
    fn keeps_in_band_tones_and_length() {
        for (from, to) in [
            (44_100, 16_000),
            (8_000, 48_000),
            (48_000, 16_000),
            (32_000, 48_000),
        ] {
            let out = resample(&sine(from, 1000.0, 0.5), from, to);
            assert_eq!(out.len(), to as usize / 2, "{from}->{to}");
            let a = amplitude(&out, to, 1000.0);
            assert!(
                (a - 10_000.0).abs() < 300.0,
                "{from}->{to}: 1 kHz amplitude {a}"
            );
        }
    }

    #[test]
    fn removes_what_the_new_rate_cannot_carry() {
        // 6 kHz cannot exist at 8 kHz (Nyquist 4 kHz): it must not alias to 2 kHz.
        let out = resample(&sine(48_000, 6000.0, 0.5), 48_000, 8_000);
        let alias = amplitude(&out, 8_000, 2000.0);
        assert!(alias < 200.0, "aliased energy {alias}");
    }

    #[test]
    fn same_rate_is_identity() {
        let x = sine(16_000, 440.0, 0.1);
        assert_eq!(resample(&x, 16_000, 16_000), x);
        assert!(resample(&[], 8_000, 16_000).is_empty());
    }
}
