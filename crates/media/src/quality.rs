//! Call quality: an E-model MOS estimate (ITU-T G.107, simplified) from delay,
//! loss and codec, and an objective comparison of received speech with the
//! original (time alignment, normalised cross-correlation, segmental SNR).

use std::time::Duration;

use crate::codec::Codec;

/// A codec's equipment impairment (G.113 Appendix I style figures).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Impairment {
    /// Equipment impairment factor Ie.
    pub ie: f64,
    /// Packet-loss robustness factor Bpl.
    pub bpl: f64,
}

impl Impairment {
    /// Figures used for `codec` at `bitrate_bps`.
    ///
    /// G.711 with concealment is G.113's Ie 0, Bpl 25.1. Opus is not in G.113;
    /// on the narrowband E-model scale we take Ie 0 from 20 kb/s, 5 at 16 kb/s,
    /// 11 below, and Bpl 25 (its concealment is at least as good as G.711
    /// Appendix I). These are assumptions, documented in docs/media.md.
    pub fn of(codec: Codec, bitrate_bps: u32) -> Self {
        match codec {
            Codec::Pcmu | Codec::Pcma => Impairment { ie: 0.0, bpl: 25.1 },
            Codec::Opus => {
                let ie = match bitrate_bps {
                    20_000.. => 0.0,
                    16_000..=19_999 => 5.0,
                    _ => 11.0,
                };
                Impairment { ie, bpl: 25.0 }
            }
        }
    }
}

/// Inputs to the E-model.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EModelInput {
    /// Mouth-to-ear delay (network one-way + jitter buffer + codec + device).
    pub one_way_delay: Duration,
    /// Packet loss left after FEC, 0.0–1.0.
    pub loss_fraction: f64,
    /// Burst ratio (1.0 for random loss, larger for bursty).
    pub burst_ratio: f64,
    /// The codec's impairment.
    pub impairment: Impairment,
}

/// Transmission rating factor R (G.107 with default values for everything not
/// given: R0 − Is = 93.2, echo assumed controlled, advantage factor 0).
pub fn r_factor(input: &EModelInput) -> f64 {
    let ms = input.one_way_delay.as_secs_f64() * 1000.0;
    let ppl = (input.loss_fraction.clamp(0.0, 1.0)) * 100.0;
    let burst = input.burst_ratio.max(1.0);
    let Impairment { ie, bpl } = input.impairment;
    let ie_eff = ie + (95.0 - ie) * ppl / (ppl / burst + bpl);
    93.2 - delay_impairment(ms) - ie_eff
}

/// G.107 Idd: impairment from absolute delay `ms` (zero up to 100 ms).
fn delay_impairment(ms: f64) -> f64 {
    if ms <= 100.0 {
        return 0.0;
    }
    let x = (ms / 100.0).log2();
    25.0 * ((1.0 + x.powi(6)).powf(1.0 / 6.0) - 3.0 * (1.0 + (x / 3.0).powi(6)).powf(1.0 / 6.0)
        + 2.0)
}

/// G.107 Annex B: MOS (conversational quality estimate) from R.
pub fn mos_from_r(r: f64) -> f64 {
    if r <= 0.0 {
        1.0
    } else if r >= 100.0 {
        4.5
    } else {
        1.0 + 0.035 * r + r * (r - 60.0) * (100.0 - r) * 7e-6
    }
}

/// MOS estimate in one call.
pub fn estimate_mos(input: &EModelInput) -> f64 {
    mos_from_r(r_factor(input))
}

/// How a received signal compares with the original.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Comparison {
    /// Samples by which the received signal lags the original.
    pub lag: isize,
    /// Normalised cross-correlation at that lag (1.0 = identical shape).
    pub correlation: f64,
    /// Segmental SNR over active 20 ms segments, dB (each clamped to −10…35).
    pub seg_snr_db: f64,
}

/// Aligns `received` to `reference` (both at `rate` Hz) within ±`max_lag`
/// and measures correlation and segmental SNR.
pub fn compare(reference: &[i16], received: &[i16], rate: u32, max_lag: Duration) -> Comparison {
    let max = (max_lag.as_secs_f64() * f64::from(rate)) as isize;
    let lag = align(reference, received, max);
    Comparison {
        lag,
        correlation: correlation_at(reference, received, lag, 1),
        seg_snr_db: seg_snr(reference, received, lag, rate as usize / 50),
    }
}

/// The lag maximising correlation: a coarse search on 8× decimated signals
/// keeps its five best lags, and a fine search around each picks the winner
/// (voiced speech is periodic, so the coarse peak alone can be a pitch period off).
fn align(reference: &[i16], received: &[i16], max: isize) -> isize {
    const STEP: usize = 8;
    let decimate = |x: &[i16]| -> Vec<i16> {
        x.chunks(STEP)
            .map(|c| (c.iter().map(|&s| i32::from(s)).sum::<i32>() / c.len() as i32) as i16)
            .collect()
    };
    let (r8, d8) = (decimate(reference), decimate(received));
    let coarse_max = max / STEP as isize + 1;
    let mut coarse: Vec<(f64, isize)> = (-coarse_max..=coarse_max)
        .map(|lag| (correlation_at(&r8, &d8, lag, 2), lag))
        .collect();
    coarse.sort_by(|a, b| b.0.total_cmp(&a.0));
    let span = 2 * STEP as isize;
    coarse
        .iter()
        .take(5)
        .flat_map(|&(_, lag)| {
            let centre = lag * STEP as isize;
            ((centre - span)..=(centre + span))
                .map(|l| (correlation_at(reference, received, l, 1), l))
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or(0, |(_, lag)| lag)
}

/// Normalised correlation of `a[n]` with `b[n + lag]` over their overlap.
fn correlation_at(a: &[i16], b: &[i16], lag: isize, stride: usize) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0f64, 0.0f64, 0.0f64);
    let mut n = (-lag).max(0) as usize;
    while n < a.len() {
        let m = n as isize + lag;
        if m >= b.len() as isize {
            break;
        }
        let (x, y) = (f64::from(a[n]), f64::from(b[m as usize]));
        ab += x * y;
        aa += x * x;
        bb += y * y;
        n += stride;
    }
    if aa == 0.0 || bb == 0.0 {
        0.0
    } else {
        ab / (aa * bb).sqrt()
    }
}

fn seg_snr(reference: &[i16], received: &[i16], lag: isize, segment: usize) -> f64 {
    let mut total = 0.0;
    let mut count = 0usize;
    let segment = segment.max(1);
    for (i, seg) in reference.chunks_exact(segment).enumerate() {
        let start = (i * segment) as isize + lag;
        if start < 0 || start as usize + segment > received.len() {
            continue;
        }
        let got = &received[start as usize..start as usize + segment];
        let signal: f64 = seg.iter().map(|&s| f64::from(s).powi(2)).sum();
        // Skip silence: segments quieter than −45 dBFS RMS.
        if signal / (segment as f64) < (32768.0f64 * 0.0056).powi(2) {
            continue;
        }
        let noise: f64 = seg
            .iter()
            .zip(got)
            .map(|(&x, &y)| (f64::from(x) - f64::from(y)).powi(2))
            .sum();
        let snr = 10.0 * (signal / noise.max(1e-9)).log10();
        total += snr.clamp(-10.0, 35.0);
        count += 1;
    }
    if count == 0 {
        0.0
    } else {
        total / count as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(delay_ms: u64, loss: f64, codec: Codec, bitrate: u32) -> EModelInput {
        EModelInput {
            one_way_delay: Duration::from_millis(delay_ms),
            loss_fraction: loss,
            burst_ratio: 1.0,
            impairment: Impairment::of(codec, bitrate),
        }
    }

    #[test]
    fn e_model_matches_g107_reference_points() {
        // Default G.107 connection: R = 93.2, MOS 4.41.
        let r = r_factor(&input(0, 0.0, Codec::Pcmu, 64_000));
        assert!((r - 93.2).abs() < 1e-9);
        assert!((mos_from_r(r) - 4.41).abs() < 0.01);
        // Idd at 200 ms: X = 1 → 25·((2)^(1/6) − 3·(1 + 1/729)^(1/6) + 2) ≈ 3.044.
        assert!((delay_impairment(200.0) - 3.044).abs() < 0.01);
        assert_eq!(delay_impairment(80.0), 0.0);
        // G.711 with PLC at 2 % random loss: Ie,eff = 95·2/(2 + 25.1) ≈ 7.0.
        let r = r_factor(&input(0, 0.02, Codec::Pcma, 64_000));
        assert!((93.2 - r - 7.01).abs() < 0.02, "R {r}");
        assert_eq!(mos_from_r(-5.0), 1.0);
        assert_eq!(mos_from_r(120.0), 4.5);
    }

    #[test]
    fn mos_falls_with_delay_loss_and_bitrate() {
        let good = estimate_mos(&input(50, 0.0, Codec::Opus, 24_000));
        let late = estimate_mos(&input(400, 0.0, Codec::Opus, 24_000));
        let lossy = estimate_mos(&input(50, 0.05, Codec::Opus, 24_000));
        let thin = estimate_mos(&input(50, 0.0, Codec::Opus, 12_000));
        assert!(good > 4.3, "{good}");
        assert!(
            late < good - 0.3 && lossy < good - 0.4 && thin < good,
            "{late} {lossy} {thin}"
        );
        let bursty = EModelInput {
            burst_ratio: 3.0,
            ..input(50, 0.05, Codec::Opus, 24_000)
        };
        assert!(estimate_mos(&bursty) < lossy);
    }

    fn voice(n: usize, rate: f64) -> Vec<i16> {
        (0..n)
            .map(|i| {
                let t = i as f64 / rate;
                let env = (t * 3.0 * std::f64::consts::PI).sin().abs();
                let s = (t * 2.0 * std::f64::consts::PI * 180.0).sin()
                    + 0.5 * (t * 2.0 * std::f64::consts::PI * 720.0).sin();
                (8000.0 * env * s) as i16
            })
            .collect()
    }

    #[test]
    fn compare_finds_the_delay_and_scores_copies_high() {
        let reference = voice(16_000, 16_000.0);
        let mut delayed = vec![0i16; 337];
        delayed.extend_from_slice(&reference);
        let c = compare(&reference, &delayed, 16_000, Duration::from_millis(100));
        assert_eq!(c.lag, 337);
        assert!(c.correlation > 0.999);
        assert!(c.seg_snr_db >= 34.9, "{}", c.seg_snr_db);
        // Uncorrelated noise scores near zero.
        let mut x = 12345u32;
        let noise: Vec<i16> = (0..16_000)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                ((x >> 16) as i16) / 4
            })
            .collect();
        let n = compare(&reference, &noise, 16_000, Duration::from_millis(100));
        assert!(n.correlation.abs() < 0.1, "{}", n.correlation);
        assert!(n.seg_snr_db < 1.0);
    }
}
