//! Voice codecs behind one pair of traits: Opus (pure Rust, via `opus-rs`) and
//! G.711 PCMU/PCMA (our own tables).
//!
//! PCM is always mono `i16` at the codec's [`Encoder::sample_rate`]; an encoder
//! takes exactly one frame per call (20 ms by default) and a decoder appends the
//! decoded samples to a `Vec`.

mod g711;
mod opus;

pub use g711::{alaw_decode, alaw_encode, ulaw_decode, ulaw_encode, G711Decoder, G711Encoder};
pub use opus::{opus_packet_duration, OpusConfig, OpusDecoder, OpusEncoder};

use crate::jitter::Playout;
use crate::MediaError;

/// The codecs natter speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// Opus (RFC 6716, RTP payload format RFC 7587: 48 kHz RTP clock).
    Opus,
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
}

impl Codec {
    /// The RTP clock rate of the payload format.
    pub fn rtp_clock_rate(self) -> u32 {
        match self {
            Codec::Opus => 48_000,
            Codec::Pcmu | Codec::Pcma => 8_000,
        }
    }

    /// The static RTP payload type, if the codec has one (RFC 3551).
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Opus => None,
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
        }
    }

    /// The encoding name used in SDP `a=rtpmap`.
    pub fn sdp_name(self) -> &'static str {
        match self {
            Codec::Opus => "opus",
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }
}

/// Encoder settings the rate policy can change during a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderSettings {
    /// Target bitrate in bit/s (Opus: 6 000–510 000; G.711 ignores it). Default 24 000.
    pub bitrate_bps: u32,
    /// In-band FEC (Opus LBRR). Default off.
    pub fec: bool,
    /// Expected packet loss in percent (0–100), sizes the FEC. Default 0.
    pub expected_loss_pct: u8,
    /// Packet time in ms: 10, 20, 40 or 60 (G.711 also takes any multiple of 10). Default 20.
    pub frame_ms: u32,
    /// Discontinuous transmission: suppress packets during silence. Default off.
    pub dtx: bool,
    /// Opus encoder complexity 0–10: higher codes better and costs more CPU
    /// (G.711 ignores it). Default 6: in opus-rs' SILK the steps are 0–1, 2–3,
    /// 4–5, 6–7 and 8–10; at 16 kHz and 24 kb/s 6 encodes in ~70 % of 8–10's
    /// time for −0.11 WB-PESQ, 4–5 in ~50 % for −0.35 (docs/media.md).
    pub complexity: u8,
}

impl Default for EncoderSettings {
    fn default() -> Self {
        Self {
            bitrate_bps: 24_000,
            fec: false,
            expected_loss_pct: 0,
            frame_ms: 20,
            dtx: false,
            complexity: 6,
        }
    }
}

/// What one [`Encoder::encode`] call produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoded {
    /// A packet of this many bytes was appended to the output.
    Packet(usize),
    /// DTX: the frame was silence and needs no packet.
    Suppressed,
}

/// A voice encoder: one frame of mono PCM in, one RTP payload out.
pub trait Encoder: Send {
    /// Which codec this is.
    fn codec(&self) -> Codec;
    /// PCM sample rate in Hz.
    fn sample_rate(&self) -> u32;
    /// Samples per frame (sample rate × packet time).
    fn frame_samples(&self) -> usize;
    /// Encodes exactly one frame, appending the payload to `out`.
    fn encode(&mut self, pcm: &[i16], out: &mut Vec<u8>) -> Result<Encoded, MediaError>;
    /// Applies new settings (the parts the codec supports).
    fn apply(&mut self, settings: &EncoderSettings) -> Result<(), MediaError>;
    /// The settings in force.
    fn settings(&self) -> EncoderSettings;
    /// DTX: treat the next frames as following speech (the hangover sends
    /// them even if silent). For a new path: packets on it at once show the
    /// far end that it works. Codecs without DTX ignore it.
    fn restart_dtx(&mut self) {}
}

/// A voice decoder: RTP payloads in, mono PCM out, with concealment.
pub trait Decoder: Send {
    /// Which codec this is.
    fn codec(&self) -> Codec;
    /// PCM sample rate in Hz.
    fn sample_rate(&self) -> u32;
    /// Decodes one payload, appending the samples to `out`; returns how many.
    fn decode(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<usize, MediaError>;
    /// Conceals `samples` of lost audio (packet loss concealment).
    fn conceal(&mut self, samples: usize, out: &mut Vec<i16>) -> Result<usize, MediaError>;
    /// Rebuilds the `samples` just before `next_payload` from its in-band FEC;
    /// codecs without FEC conceal. `next_payload` is not consumed.
    fn decode_fec(
        &mut self,
        next_payload: &[u8],
        samples: usize,
        out: &mut Vec<i16>,
    ) -> Result<usize, MediaError> {
        let _ = next_payload;
        self.conceal(samples, out)
    }
}

/// Turns one jitter-buffer decision into audio: decodes, recovers from FEC,
/// conceals or writes comfort silence. Returns the samples appended.
///
/// A payload the decoder rejects (malformed input from the network) is
/// concealed instead, so a bad packet never stops playout.
pub fn render(
    decoder: &mut dyn Decoder,
    playout: &Playout,
    out: &mut Vec<i16>,
) -> Result<usize, MediaError> {
    let clock = playout_clock(decoder);
    let samples =
        |ticks: u32| (u64::from(ticks) * u64::from(decoder.sample_rate()) / clock) as usize;
    match playout {
        Playout::Frame { payload, ticks, .. } => {
            let want = samples(*ticks);
            match decoder.decode(payload, out) {
                Ok(n) => Ok(n),
                Err(err) => {
                    tracing::debug!(%err, "undecodable payload concealed");
                    decoder.conceal(want, out)
                }
            }
        }
        Playout::FecRecover {
            next_payload,
            ticks,
        } => {
            let want = samples(*ticks);
            match decoder.decode_fec(next_payload, want, out) {
                Ok(n) => Ok(n),
                Err(_) => decoder.conceal(want, out),
            }
        }
        Playout::Conceal { ticks } => decoder.conceal(samples(*ticks), out),
        Playout::ComfortSilence { ticks } => {
            let n = samples(*ticks);
            out.resize(out.len() + n, 0);
            Ok(n)
        }
    }
}

fn playout_clock(decoder: &dyn Decoder) -> u64 {
    u64::from(decoder.codec().rtp_clock_rate())
}

/// Builds the encoder for `codec` with `settings`; Opus runs at `opus_rate` Hz.
pub fn new_encoder(
    codec: Codec,
    opus_rate: u32,
    settings: &EncoderSettings,
) -> Result<Box<dyn Encoder>, MediaError> {
    Ok(match codec {
        Codec::Opus => Box::new(OpusEncoder::new(OpusConfig {
            sample_rate: opus_rate,
            settings: *settings,
            ..OpusConfig::default()
        })?),
        Codec::Pcmu | Codec::Pcma => Box::new(G711Encoder::new(codec, settings)?),
    })
}

/// Builds the decoder for `codec`; Opus decodes at `opus_rate` Hz.
pub fn new_decoder(codec: Codec, opus_rate: u32) -> Result<Box<dyn Decoder>, MediaError> {
    Ok(match codec {
        Codec::Opus => Box::new(OpusDecoder::new(opus_rate)?),
        Codec::Pcmu | Codec::Pcma => Box::new(G711Decoder::new(codec)?),
    })
}
