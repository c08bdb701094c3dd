//! G.711 µ-law (PCMU) and A-law (PCMA), 8 kHz, computed from the segment
//! rules of ITU-T G.711 rather than looked up, plus a simple concealment:
//! the last 10 ms repeated with a fade to silence over 60 ms.

use super::{Codec, Decoder, Encoded, Encoder, EncoderSettings};
use crate::MediaError;

const RATE: u32 = 8_000;
const ULAW_BIAS: i32 = 0x84;
const ULAW_CLIP: i32 = 32_635;
/// Concealment repeats this many samples of history (10 ms).
const PLC_PERIOD: usize = 80;
/// Concealment fades to silence over this many samples (60 ms).
const PLC_FADE: usize = 480;

/// Encodes one linear sample as µ-law.
pub fn ulaw_encode(sample: i16) -> u8 {
    let mut s = i32::from(sample);
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    s = s.min(ULAW_CLIP) + ULAW_BIAS;
    // s is in 0x84..=0x7fff, so its top set bit is 7..=14.
    let exponent = (31 - s.leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0f;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Decodes one µ-law byte to a linear sample.
pub fn ulaw_decode(byte: u8) -> i16 {
    let u = !byte;
    let exponent = (u >> 4) & 0x07;
    let mantissa = i32::from(u & 0x0f);
    let magnitude = (((mantissa << 3) + ULAW_BIAS) << exponent) - ULAW_BIAS;
    // magnitude ≤ ((15 << 3) + 132) << 7 − 132 = 32 124, which fits an i16.
    (if u & 0x80 != 0 { -magnitude } else { magnitude }) as i16
}

/// Encodes one linear sample as A-law.
pub fn alaw_encode(sample: i16) -> u8 {
    let mut v = i32::from(sample) >> 3;
    let mask = if v >= 0 {
        0xd5
    } else {
        v = -v - 1;
        0x55
    };
    // v is a 12-bit magnitude (0..=4095); its segment is the position of the top bit above bit 4.
    let segment = (32 - v.leading_zeros() as i32 - 5).max(0);
    let code = if segment >= 8 {
        0x7f
    } else if segment < 2 {
        (segment << 4) | ((v >> 1) & 0x0f)
    } else {
        (segment << 4) | ((v >> segment) & 0x0f)
    };
    (code as u8) ^ mask
}

/// Decodes one A-law byte to a linear sample.
pub fn alaw_decode(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mut t = i32::from(a & 0x0f) << 4;
    let segment = (a & 0x70) >> 4;
    match segment {
        0 => t += 8,
        1 => t += 0x108,
        _ => t = (t + 0x108) << (segment - 1),
    }
    // t ≤ (0xf0 + 0x108) << 6 = 32 256, which fits an i16.
    (if a & 0x80 != 0 { t } else { -t }) as i16
}

/// A companding law: (encode, decode).
type Law = (fn(i16) -> u8, fn(u8) -> i16);

fn law(codec: Codec) -> Result<Law, MediaError> {
    match codec {
        Codec::Pcmu => Ok((ulaw_encode, ulaw_decode)),
        Codec::Pcma => Ok((alaw_encode, alaw_decode)),
        Codec::Opus => Err(MediaError::InvalidSetting(
            "G.711 coder built for Opus: use OpusEncoder/OpusDecoder".into(),
        )),
    }
}

/// G.711 encoder (PCMU or PCMA). DTX suppresses all-quiet frames (|s| < 64).
pub struct G711Encoder {
    codec: Codec,
    encode: fn(i16) -> u8,
    settings: EncoderSettings,
}

impl G711Encoder {
    /// Builds a PCMU or PCMA encoder.
    pub fn new(codec: Codec, settings: &EncoderSettings) -> Result<Self, MediaError> {
        let (encode, _) = law(codec)?;
        let mut encoder = Self {
            codec,
            encode,
            settings: *settings,
        };
        encoder.apply(settings)?;
        Ok(encoder)
    }
}

impl Encoder for G711Encoder {
    fn codec(&self) -> Codec {
        self.codec
    }

    fn sample_rate(&self) -> u32 {
        RATE
    }

    fn frame_samples(&self) -> usize {
        (RATE * self.settings.frame_ms / 1000) as usize
    }

    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<Encoded, MediaError> {
        let expected = self.frame_samples();
        if pcm.len() != expected {
            return Err(MediaError::FrameSize {
                expected,
                got: pcm.len(),
            });
        }
        if self.settings.dtx && pcm.iter().all(|s| s.unsigned_abs() < 64) {
            return Ok(Encoded::Suppressed);
        }
        out.extend(pcm.iter().map(|&s| (self.encode)(s)));
        Ok(Encoded::Packet(pcm.len()))
    }

    fn apply(&mut self, settings: &EncoderSettings) -> Result<(), MediaError> {
        if settings.frame_ms == 0
            || !settings.frame_ms.is_multiple_of(10)
            || settings.frame_ms > 120
        {
            return Err(MediaError::InvalidSetting(format!(
                "G.711 packet time must be a multiple of 10 ms up to 120, not {}",
                settings.frame_ms
            )));
        }
        self.settings = *settings;
        Ok(())
    }

    fn settings(&self) -> EncoderSettings {
        self.settings
    }
}

/// G.711 decoder with fade-out concealment.
pub struct G711Decoder {
    codec: Codec,
    decode: fn(u8) -> i16,
    history: [i16; PLC_PERIOD],
    concealed: usize,
}

impl G711Decoder {
    /// Builds a PCMU or PCMA decoder.
    pub fn new(codec: Codec) -> Result<Self, MediaError> {
        let (_, decode) = law(codec)?;
        Ok(Self {
            codec,
            decode,
            history: [0; PLC_PERIOD],
            concealed: 0,
        })
    }

    fn remember(&mut self, pcm: &[i16]) {
        if pcm.len() >= PLC_PERIOD {
            self.history.copy_from_slice(&pcm[pcm.len() - PLC_PERIOD..]);
        } else {
            self.history.rotate_left(pcm.len());
            self.history[PLC_PERIOD - pcm.len()..].copy_from_slice(pcm);
        }
    }
}

impl Decoder for G711Decoder {
    fn codec(&self) -> Codec {
        self.codec
    }

    fn sample_rate(&self) -> u32 {
        RATE
    }

    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, MediaError> {
        let start = out.len();
        out.extend(payload.iter().map(|&b| (self.decode)(b)));
        self.concealed = 0;
        let decoded = out[start..].to_vec();
        self.remember(&decoded);
        Ok(payload.len())
    }

    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<usize, MediaError> {
        for i in 0..samples {
            let step = self.concealed + i;
            let gain = PLC_FADE.saturating_sub(step) as f32 / PLC_FADE as f32;
            let s = f32::from(self.history[step % PLC_PERIOD]) * gain;
            out.push(s as i16);
        }
        self.concealed += samples;
        Ok(samples)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values() {
        assert_eq!(ulaw_encode(0), 0xff);
        assert_eq!(ulaw_encode(i16::MAX), 0x80);
        assert_eq!(ulaw_encode(i16::MIN), 0x00);
        assert_eq!(ulaw_decode(0xff), 0);
        assert_eq!(ulaw_decode(0x7f), 0);
        assert_eq!(ulaw_decode(0x80), 32_124);
        assert_eq!(ulaw_decode(0x00), -32_124);
        assert_eq!(ulaw_decode(0xf0), 120);
        assert_eq!(ulaw_decode(0xef), 132);
    }

    #[test]
    fn alaw_known_values() {
        assert_eq!(alaw_encode(0), 0xd5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xaa);
        assert_eq!(alaw_encode(i16::MIN), 0x2a);
        assert_eq!(alaw_decode(0xd5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_decode(0xaa), 32_256);
        assert_eq!(alaw_decode(0x2a), -32_256);
        assert_eq!(alaw_decode(0xc5), 264);
    }

    #[test]
    fn every_code_round_trips_and_is_monotonic() {
        for law in [Codec::Pcmu, Codec::Pcma] {
            let (enc, dec) = law_pair(law);
            for code in 0..=255u8 {
                let value = dec(code);
                assert_eq!(dec(enc(value)), value, "{law:?} code {code:#04x}");
            }
            let mut last = dec(enc(i16::MIN));
            for s in (i16::MIN..=i16::MAX).step_by(7) {
                let v = dec(enc(s));
                assert!(v >= last, "{law:?} not monotonic at {s}");
                // Quantisation error stays within half the largest step (1024 for µ-law, 512 for A-law) + clip.
                assert!(
                    (i32::from(v) - i32::from(s)).abs() <= 1024,
                    "{law:?} {s} -> {v}"
                );
                last = v;
            }
        }
    }

    fn law_pair(codec: Codec) -> Law {
        law(codec).unwrap()
    }

    #[test]
    fn coder_frames_and_conceals() {
        let mut enc = G711Encoder::new(Codec::Pcma, &EncoderSettings::default()).unwrap();
        let mut dec = G711Decoder::new(Codec::Pcma).unwrap();
        let pcm: Vec<i16> = (0..160).map(|i| ((i % 40) as i16 - 20) * 500).collect();
        let mut payload = Vec::new();
        assert_eq!(
            enc.encode(&pcm, &mut payload).unwrap(),
            Encoded::Packet(160)
        );
        let mut out = Vec::new();
        dec.decode(&payload, &mut out).unwrap();
        let err: i32 = pcm
            .iter()
            .zip(&out)
            .map(|(a, b)| (i32::from(*a) - i32::from(*b)).abs())
            .max()
            .unwrap();
        assert!(err <= 256, "max error {err}");
        let mut plc = Vec::new();
        dec.conceal(640, &mut plc).unwrap();
        assert!(
            plc[..80].iter().any(|&s| s.abs() > 2000),
            "starts from history"
        );
        assert!(plc[480..].iter().all(|&s| s == 0), "faded out after 60 ms");
        assert!(enc.encode(&pcm[..100], &mut payload).is_err());
        assert!(G711Decoder::new(Codec::Opus).is_err());
    }
}
