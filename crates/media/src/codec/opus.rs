//! Opus through the pure-Rust `opus-rs` port of libopus (no C, no cmake).
//!
//! `opus-rs` has no DTX of its own, so [`OpusEncoder`] adds one: a frame-energy
//! voice detector with a hangover; during silence it sends one packet every
//! 400 ms (as libopus does) and suppresses the rest.

use super::{Codec, Decoder, Encoded, Encoder, EncoderSettings};
use crate::MediaError;

/// Largest Opus packet (RFC 6716 §3.2.1).
const MAX_PACKET: usize = 1276;
/// Longest Opus packet duration, in ms.
const MAX_PACKET_MS: usize = 120;
/// Complexity for frames below the silence threshold (see [`OpusEncoder`]'s
/// `encode`): two delayed-decision states, no warped noise shaping.
const QUIET_COMPLEXITY: i32 = 3;
/// Sample rates the Opus codec runs at.
const RATES: [u32; 5] = [8_000, 12_000, 16_000, 24_000, 48_000];

/// Opus encoder configuration.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpusConfig {
    /// PCM sample rate: 8, 12, 16, 24 or 48 kHz. Default 16 000 (wideband
    /// SILK, where in-band FEC covers the whole signal; see docs/media.md).
    pub sample_rate: u32,
    /// Bitrate, FEC, loss, packet time, DTX and complexity.
    pub settings: EncoderSettings,
    /// DTX: frames quieter than this (dBFS) count as silence. Default −50.
    pub dtx_threshold_dbfs: f32,
    /// DTX: voiced frames keep transmitting this many frames after speech ends. Default 10.
    pub dtx_hangover_frames: u32,
    /// DTX: during silence one packet is still sent every this many ms. Default 400.
    pub dtx_keepalive_ms: u32,
}

impl Default for OpusConfig {
    fn default() -> Self {
        Self {
            sample_rate: 16_000,
            settings: EncoderSettings::default(),
            dtx_threshold_dbfs: -50.0,
            dtx_hangover_frames: 10,
            dtx_keepalive_ms: 400,
        }
    }
}

/// Duration of an Opus packet in 48 kHz RTP ticks, from its TOC byte and frame
/// count (RFC 6716 §3.1); `None` when the packet is malformed.
pub fn opus_packet_duration(payload: &[u8]) -> Option<u32> {
    let toc = *payload.first()?;
    let config = toc >> 3;
    // Frame length in units of 2.5 ms.
    let quarter_units: u32 = match config {
        0..=11 => [4, 8, 16, 24][usize::from(config % 4)],
        12..=15 => [4, 8][usize::from(config % 2)],
        _ => [1, 2, 4, 8][usize::from(config % 4)],
    };
    let frames = match toc & 0x03 {
        0 => 1,
        1 | 2 => 2,
        _ => u32::from(*payload.get(1)? & 0x3f),
    };
    let ticks = frames * quarter_units * 120;
    (frames > 0 && ticks <= 120 * 48).then_some(ticks)
}

/// Opus encoder, VoIP application, mono.
pub struct OpusEncoder {
    inner: opus_rs::OpusEncoder,
    config: OpusConfig,
    frame_samples: usize,
    silent_frames: u32,
    scratch: Box<[u8; MAX_PACKET]>,
}

impl OpusEncoder {
    /// Builds an encoder; fails on an unsupported rate or setting.
    pub fn new(config: OpusConfig) -> Result<Self, MediaError> {
        if !RATES.contains(&config.sample_rate) {
            return Err(MediaError::InvalidSetting(format!(
                "Opus runs at 8000, 12000, 16000, 24000 or 48000 Hz, not {}",
                config.sample_rate
            )));
        }
        // The rate was checked against RATES above, all of which fit an i32.
        let rate = config.sample_rate as i32;
        let inner =
            opus_rs::OpusEncoder::new(rate, 1, opus_rs::Application::Voip).map_err(|reason| {
                MediaError::Codec {
                    codec: "Opus",
                    reason,
                }
            })?;
        let mut encoder = Self {
            inner,
            config,
            frame_samples: 0,
            silent_frames: 0,
            scratch: Box::new([0; MAX_PACKET]),
        };
        encoder.inner.use_cbr = false;
        encoder.apply(&config.settings)?;
        Ok(encoder)
    }

    /// Changes the encoder complexity (0–10; higher is better and slower).
    pub fn set_complexity(&mut self, complexity: u8) {
        self.config.settings.complexity = complexity.min(10);
    }

    fn is_silent(&self, pcm: &[i16]) -> bool {
        let energy: f64 = pcm.iter().map(|&s| f64::from(s) * f64::from(s)).sum();
        let rms = (energy / pcm.len().max(1) as f64).sqrt() / 32768.0;
        let dbfs = 20.0 * rms.max(1e-9).log10();
        dbfs < f64::from(self.config.dtx_threshold_dbfs)
    }

    /// True when DTX lets this frame go unsent.
    fn suppress(&mut self, silent: bool) -> bool {
        if !self.config.settings.dtx || !silent {
            self.silent_frames = 0;
            return false;
        }
        self.silent_frames = self.silent_frames.saturating_add(1);
        let hangover = self.config.dtx_hangover_frames;
        if self.silent_frames <= hangover {
            return false;
        }
        let keepalive = (self.config.dtx_keepalive_ms / self.config.settings.frame_ms).max(1);
        !(self.silent_frames - hangover).is_multiple_of(keepalive)
    }
}

impl Encoder for OpusEncoder {
    fn codec(&self) -> Codec {
        Codec::Opus
    }

    fn sample_rate(&self) -> u32 {
        self.config.sample_rate
    }

    fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<Encoded, MediaError> {
        if pcm.len() != self.frame_samples {
            return Err(MediaError::FrameSize {
                expected: self.frame_samples,
                got: pcm.len(),
            });
        }
        let silent = self.is_silent(pcm);
        if self.suppress(silent) {
            return Ok(Encoded::Suppressed);
        }
        // The complexity is set here, per frame (the only place): a frame
        // below the silence threshold that still goes out (DTX hangover,
        // keepalive, or DTX off) is coded at a low one: noise shaping and the
        // delayed-decision search buy nothing audible there.
        let complexity = i32::from(self.config.settings.complexity);
        self.inner.complexity = if silent {
            complexity.min(QUIET_COMPLEXITY)
        } else {
            complexity
        };
        let n = self
            .inner
            .encode_i16(pcm, self.frame_samples, &mut self.scratch[..])
            .map_err(|reason| MediaError::Codec {
                codec: "Opus",
                reason,
            })?;
        out.extend_from_slice(&self.scratch[..n]);
        Ok(Encoded::Packet(n))
    }

    fn apply(&mut self, settings: &EncoderSettings) -> Result<(), MediaError> {
        if ![10, 20, 40, 60].contains(&settings.frame_ms) {
            return Err(MediaError::InvalidSetting(format!(
                "Opus packet time must be 10, 20, 40 or 60 ms, not {}",
                settings.frame_ms
            )));
        }
        if !(6_000..=510_000).contains(&settings.bitrate_bps) {
            return Err(MediaError::InvalidSetting(format!(
                "Opus bitrate must be 6000–510000 bit/s, not {}",
                settings.bitrate_bps
            )));
        }
        if settings.complexity > 10 {
            return Err(MediaError::InvalidSetting(format!(
                "Opus complexity must be 0–10, not {}",
                settings.complexity
            )));
        }
        // Both bounded just above: bitrate ≤ 510 000 and loss clamped to 100 fit an i32.
        self.inner.bitrate_bps = settings.bitrate_bps as i32;
        self.inner.use_inband_fec = settings.fec;
        self.inner.packet_loss_perc = i32::from(settings.expected_loss_pct.min(100));
        self.frame_samples = (self.config.sample_rate * settings.frame_ms / 1000) as usize;
        self.config.settings = *settings;
        Ok(())
    }

    fn settings(&self) -> EncoderSettings {
        self.config.settings
    }

    fn restart_dtx(&mut self) {
        self.silent_frames = 0;
    }
}

/// Opus decoder, mono, with packet loss concealment and in-band FEC recovery.
pub struct OpusDecoder {
    inner: opus_rs::OpusDecoder,
    rate: u32,
    pcm: Vec<f32>,
}

impl OpusDecoder {
    /// Builds a decoder producing PCM at `sample_rate` (8, 12, 16, 24 or 48 kHz).
    pub fn new(sample_rate: u32) -> Result<Self, MediaError> {
        if !RATES.contains(&sample_rate) {
            return Err(MediaError::InvalidSetting(format!(
                "Opus decodes at 8000, 12000, 16000, 24000 or 48000 Hz, not {sample_rate}"
            )));
        }
        // Checked against RATES above.
        let inner = opus_rs::OpusDecoder::new(sample_rate as i32, 1).map_err(|reason| {
            MediaError::Codec {
                codec: "Opus",
                reason,
            }
        })?;
        let max = sample_rate as usize * MAX_PACKET_MS / 1000;
        Ok(Self {
            inner,
            rate: sample_rate,
            pcm: vec![0.0; max],
        })
    }

    fn max_samples(&self) -> usize {
        self.pcm.len()
    }

    /// Rounds a concealment length to the 2.5 ms grid opus-rs requires.
    fn grid(&self, samples: usize) -> usize {
        let step = self.rate as usize / 400;
        (samples.div_ceil(step) * step).clamp(step, self.max_samples())
    }
}

fn push_pcm(pcm: &[f32], out: &mut Vec<i16>) -> usize {
    out.extend(
        pcm.iter()
            .map(|&s| (s * 32768.0).round().clamp(-32768.0, 32767.0) as i16),
    );
    pcm.len()
}

impl Decoder for OpusDecoder {
    fn codec(&self) -> Codec {
        Codec::Opus
    }

    fn sample_rate(&self) -> u32 {
        self.rate
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, MediaError> {
        if payload.is_empty() || opus_packet_duration(payload).is_none() {
            return Err(MediaError::Codec {
                codec: "Opus",
                reason: "malformed packet (bad TOC or frame count)",
            });
        }
        let max = self.max_samples();
        let n = self
            .inner
            .decode(payload, max, &mut self.pcm)
            .map_err(|reason| MediaError::Codec {
                codec: "Opus",
                reason,
            })?;
        Ok(push_pcm(&self.pcm[..n], out))
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<usize, MediaError> {
        let n = self.grid(samples);
        let got = self
            .inner
            .decode(&[], n, &mut self.pcm[..n])
            .map_err(|reason| MediaError::Codec {
                codec: "Opus",
                reason,
            })?;
        Ok(push_pcm(&self.pcm[..got], out))
    }

    fn decode_fec(
        &mut self,
        next_payload: &[u8],
        samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<usize, MediaError> {
        if opus_packet_duration(next_payload).is_none() {
            return self.conceal(samples, out);
        }
        let n = self.grid(samples);
        let got = self
            .inner
            .decode_fec(next_payload, n, &mut self.pcm[..n])
            .map_err(|reason| MediaError::Codec {
                codec: "Opus",
                reason,
            })?;
        Ok(push_pcm(&self.pcm[..got], out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tone(rate: u32, samples: usize, offset: usize) -> Vec<i16> {
        (0..samples)
            .map(|i| {
                let t = (i + offset) as f32 / rate as f32;
                (8000.0 * (2.0 * std::f32::consts::PI * 220.0 * t).sin()) as i16
            })
            .collect()
    }

    #[test]
    fn packet_duration_follows_toc() {
        // config 1 (SILK NB 20 ms), code 0: one 20 ms frame = 960 ticks.
        assert_eq!(opus_packet_duration(&[1 << 3, 0]), Some(960));
        // config 3 (SILK 60 ms), code 1: two frames = 120 ms.
        assert_eq!(opus_packet_duration(&[(3 << 3) | 1, 0]), Some(5760));
        // config 31 (CELT FB 20 ms), code 3 with 7 frames = 140 ms: illegal.
        assert_eq!(opus_packet_duration(&[(31 << 3) | 3, 7]), None);
        // code 3 with zero frames and a missing count byte: malformed.
        assert_eq!(opus_packet_duration(&[(16 << 3) | 3, 0]), None);
        assert_eq!(opus_packet_duration(&[(16 << 3) | 3]), None);
        assert_eq!(opus_packet_duration(&[]), None);
    }

    #[test]
    fn encodes_and_decodes_a_tone() {
        let mut enc = OpusEncoder::new(OpusConfig::default()).unwrap();
        let mut dec = OpusDecoder::new(16_000).unwrap();
        let frame = enc.frame_samples();
        assert_eq!(frame, 320);
        let mut out = Vec::new();
        for i in 0..25 {
            let mut packet = Vec::new();
            let enc_result = enc
                .encode(&tone(16_000, frame, i * frame), &mut packet)
                .unwrap();
            assert_eq!(enc_result, Encoded::Packet(packet.len()));
            assert_eq!(opus_packet_duration(&packet), Some(960));
            assert_eq!(dec.decode(&packet, &mut out).unwrap(), frame);
        }
        let tail = &out[out.len() - 3200..];
        let rms = (tail.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 3200.0).sqrt();
        // The input tone has RMS 8000/√2 ≈ 5657; a working codec keeps it within a few dB.
        assert!(rms > 3000.0 && rms < 9000.0, "rms {rms}");
    }

    #[test]
    fn dtx_suppresses_silence_but_keeps_alive() {
        let config = OpusConfig {
            settings: EncoderSettings {
                dtx: true,
                ..EncoderSettings::default()
            },
            ..OpusConfig::default()
        };
        let mut enc = OpusEncoder::new(config).unwrap();
        let silence = vec![0i16; 320];
        // How many of `n` silent frames go out as packets.
        let sent_of = |enc: &mut OpusEncoder, n: usize| {
            (0..n)
                .filter(|_| {
                    matches!(
                        enc.encode(&silence, &mut Vec::new()).unwrap(),
                        Encoded::Packet(_)
                    )
                })
                .count()
        };
        let sent = sent_of(&mut enc, 100);
        // 10 hangover frames, then one keepalive per 400 ms over the remaining 1.8 s.
        assert_eq!(sent, 10 + 90 / 20);
        // After a restart (a new path) the hangover's frames go out again.
        enc.restart_dtx();
        let resent = sent_of(&mut enc, 10);
        assert_eq!(resent, 10);
        let speech = tone(16_000, 320, 0);
        assert!(matches!(
            enc.encode(&speech, &mut Vec::new()).unwrap(),
            Encoded::Packet(_)
        ));
    }

    #[test]
    fn quiet_frames_are_coded_at_low_complexity() {
        let mut enc = OpusEncoder::new(OpusConfig::default()).unwrap();
        let speech = tone(16_000, 320, 0);
        let silence = vec![0i16; 320];
        let mut out = Vec::new();
        enc.encode(&speech, &mut out).unwrap();
        assert_eq!(enc.inner.complexity, 6);
        // DTX off: the silent frame still goes out, at the quiet complexity.
        assert!(matches!(
            enc.encode(&silence, &mut out).unwrap(),
            Encoded::Packet(_)
        ));
        assert_eq!(enc.inner.complexity, QUIET_COMPLEXITY);
        enc.encode(&speech, &mut out).unwrap();
        assert_eq!(
            enc.inner.complexity, 6,
            "speech gets the configured complexity back"
        );
        // A configured complexity below the quiet one is never raised.
        let mut low = OpusEncoder::new(OpusConfig::default()).unwrap();
        low.set_complexity(1);
        low.encode(&silence, &mut out).unwrap();
        assert_eq!(low.inner.complexity, 1);
    }

    #[test]
    fn rejects_bad_settings_and_frames() {
        let mut enc = OpusEncoder::new(OpusConfig::default()).unwrap();
        let bad = EncoderSettings {
            frame_ms: 30,
            ..EncoderSettings::default()
        };
        assert!(matches!(
            enc.apply(&bad),
            Err(MediaError::InvalidSetting(_))
        ));
        let too_complex = EncoderSettings {
            complexity: 11,
            ..EncoderSettings::default()
        };
        assert!(matches!(
            enc.apply(&too_complex),
            Err(MediaError::InvalidSetting(_))
        ));
        let err = enc.encode(&[0; 100], &mut Vec::new()).unwrap_err();
        assert!(matches!(
            err,
            MediaError::FrameSize {
                expected: 320,
                got: 100
            }
        ));
        assert!(OpusDecoder::new(44_100).is_err());
        let mut dec = OpusDecoder::new(16_000).unwrap();
        assert!(dec.decode(&[0xff], &mut Vec::new()).is_err());
    }

    #[test]
    fn fec_rebuilds_what_concealment_cannot() {
        let settings = EncoderSettings {
            fec: true,
            expected_loss_pct: 10,
            ..EncoderSettings::default()
        };
        let mut enc = OpusEncoder::new(OpusConfig {
            settings,
            ..OpusConfig::default()
        })
        .unwrap();
        // Silence for 6 frames, then a tone: the tone's first frame is the one lost.
        let packets: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                let pcm = if i < 6 {
                    vec![0; 320]
                } else {
                    tone(16_000, 320, i * 320)
                };
                let mut p = Vec::new();
                enc.encode(&pcm, &mut p).unwrap();
                p
            })
            .collect();
        let rms = |s: &[i16]| {
            (s.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / s.len() as f64).sqrt()
        };
        let lose_packet_6 = |use_fec: bool| {
            let mut dec = OpusDecoder::new(16_000).unwrap();
            let mut out = Vec::new();
            for p in &packets[..6] {
                dec.decode(p, &mut out).unwrap();
            }
            let start = out.len();
            let n = if use_fec {
                dec.decode_fec(&packets[7], 320, &mut out).unwrap()
            } else {
                dec.conceal(320, &mut out).unwrap()
            };
            assert_eq!(n, 320);
            rms(&out[start..])
        };
        let (with_fec, concealed) = (lose_packet_6(true), lose_packet_6(false));
        assert!(
            with_fec > 1500.0,
            "FEC should rebuild the tone onset, rms {with_fec}"
        );
        assert!(
            concealed < with_fec / 4.0,
            "concealment alone cannot know the tone ({concealed})"
        );
    }

    #[test]
    fn random_payloads_never_panic() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut enc = OpusEncoder::new(OpusConfig::default()).unwrap();
        let mut valid = Vec::new();
        enc.encode(&tone(16_000, 320, 0), &mut valid).unwrap();
        for rate in [16_000, 48_000] {
            let mut dec = OpusDecoder::new(rate).unwrap();
            let mut out = Vec::new();
            for i in 0..1_000 {
                let len = rng.gen_range(0..200);
                let mut p: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
                if i % 3 == 0 && !p.is_empty() {
                    // Keep a valid TOC sometimes so the decoder goes deeper.
                    p[0] = valid[0] | (p[0] & 0x03);
                }
                out.clear();
                let _ = dec.decode(&p, &mut out);
                let _ = dec.decode_fec(&p, rate as usize / 50, &mut out);
                let _ = dec.conceal(rate as usize / 50, &mut out);
            }
            // Still decodes real audio afterwards.
            out.clear();
            assert!(dec.decode(&valid, &mut out).is_ok());
        }
    }
}
