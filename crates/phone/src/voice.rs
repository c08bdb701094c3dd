//! The voice pipeline of one call, sans-IO: microphone samples → encoder →
//! RTP payloads every packet time; payloads → jitter buffer → decoder (with
//! concealment) → what the listener hears.

use std::time::{Duration, Instant};

use natter_media::codec::{self, Codec, Encoded, Encoder, EncoderSettings};
use natter_media::jitter::{JitterBuffer, JitterConfig, JitterStats};
use natter_media::{Decoder, MediaError};

use crate::audio::MicInput;

/// The PCM rate Opus is encoded and decoded at: 16 kHz (SILK wideband).
///
/// On the wire Opus is always `opus/48000/2` with a 48 kHz RTP clock (RFC 7587);
/// the internal rate is ours. 16 kHz scores better on speech than 48 kHz with
/// opus-rs (WB-PESQ 4.19 vs 3.84 at 24 kb/s) and costs a fraction of the CPU
/// (no CELT layer, no internal resampler); see docs/decisions.md. The
/// microphone ([`crate::Phone::set_microphone`]) and what the listener hears
/// ([`crate::Phone::poll_audio`]) are at this rate for Opus calls.
pub const OPUS_RATE: u32 = 16_000;

/// The PCM rate a codec is encoded and decoded at.
pub fn pcm_rate(codec: Codec) -> u32 {
    match codec {
        Codec::Opus => OPUS_RATE,
        Codec::Pcmu | Codec::Pcma => 8_000,
    }
}

/// Room for a voice payload: Opus at up to 40 kb/s in 20 ms, or G.711's 160 bytes.
const PAYLOAD_CAPACITY: usize = 200;

/// Encodes the microphone one frame per packet time.
pub struct VoiceTx {
    encoder: Box<dyn Encoder>,
    mic: MicInput,
    rtp_ts: u32,
    ticks_per_frame: u32,
    frame: Duration,
    next_at: Instant,
    /// One frame of microphone samples (reused).
    pcm: Vec<i16>,
    pub frames_sent: u64,
}

impl VoiceTx {
    /// `mic` is mono PCM at [`pcm_rate`]`(codec)`: a clip (after it ends,
    /// silence is sent) or a live microphone.
    pub fn new(
        now: Instant,
        codec: Codec,
        settings: &EncoderSettings,
        mic: impl Into<MicInput>,
        first_ts: u32,
    ) -> Result<Self, MediaError> {
        let encoder = codec::new_encoder(codec, OPUS_RATE, settings)?;
        let (frame, ticks_per_frame) = frame_clock(codec, settings);
        Ok(VoiceTx {
            encoder,
            mic: mic.into(),
            rtp_ts: first_ts,
            ticks_per_frame,
            frame,
            next_at: now,
            pcm: Vec::new(),
            frames_sent: 0,
        })
    }

    pub fn poll_timeout(&self) -> Instant {
        self.next_at
    }

    /// The next frame if it is due: `(rtp_ts, payload)`. `None` when not due
    /// or suppressed (DTX); the timestamp advances either way.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<(u32, Vec<u8>)> {
        if now < self.next_at {
            return None;
        }
        self.next_at += self.frame;
        self.pcm.resize(self.encoder.frame_samples(), 0);
        self.mic.fill(&mut self.pcm);
        let ts = self.rtp_ts;
        self.rtp_ts = self.rtp_ts.wrapping_add(self.ticks_per_frame);
        // The payload goes to str0m by value: one allocation per packet.
        let mut payload = Vec::with_capacity(PAYLOAD_CAPACITY);
        match self.encoder.encode(&self.pcm, &mut payload) {
            Ok(Encoded::Packet(_)) => {
                self.frames_sent += 1;
                Some((ts, payload))
            }
            Ok(Encoded::Suppressed) => None,
            Err(e) => {
                tracing::warn!(error = %e, "encoder failed: frame skipped");
                None
            }
        }
    }

    /// True once the whole microphone clip has been sent (never for a live one).
    pub fn mic_done(&self) -> bool {
        self.mic.done()
    }

    pub fn settings(&self) -> EncoderSettings {
        self.encoder.settings()
    }

    /// The path changed: send the next frames even in silence (DTX), so the
    /// far end hears from the new path at once instead of at the next
    /// 400 ms keepalive.
    pub fn restart_dtx(&mut self) {
        self.encoder.restart_dtx();
    }

    /// New settings mid-call (bitrate, FEC, packet time); the frame clock
    /// follows a new packet time from the next frame on.
    pub fn apply(&mut self, settings: &EncoderSettings) -> Result<(), MediaError> {
        self.encoder.apply(settings)?;
        (self.frame, self.ticks_per_frame) = frame_clock(self.encoder.codec(), settings);
        Ok(())
    }
}

/// One packet time, as a duration and in RTP clock ticks.
fn frame_clock(codec: Codec, settings: &EncoderSettings) -> (Duration, u32) {
    let frame = Duration::from_millis(u64::from(settings.frame_ms));
    (frame, codec.rtp_clock_rate() * settings.frame_ms / 1000)
}

/// Plays out what arrives, concealing what does not.
pub struct VoiceRx {
    jitter: JitterBuffer,
    decoder: Box<dyn Decoder>,
    heard: Vec<i16>,
    started: bool,
}

impl VoiceRx {
    pub fn new(codec: Codec) -> Result<Self, MediaError> {
        Ok(VoiceRx {
            jitter: JitterBuffer::new(JitterConfig::new(codec.rtp_clock_rate())),
            decoder: codec::new_decoder(codec, OPUS_RATE)?,
            heard: Vec::new(),
            started: false,
        })
    }

    pub fn push(&mut self, now: Instant, seq: u16, rtp_ts: u32, payload: Vec<u8>) {
        self.started = true;
        self.jitter.push(now, seq, rtp_ts, payload);
    }

    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.started {
            self.jitter.poll_timeout()
        } else {
            None
        }
    }

    /// Play out every frame due by `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while self.started && self.jitter.poll_timeout().is_some_and(|t| t <= now) {
            let playout = self.jitter.pop(now);
            if let Err(e) = codec::render(self.decoder.as_mut(), &playout, &mut self.heard) {
                tracing::warn!(error = %e, "playout failed for one frame");
            }
        }
    }

    /// Audio rendered since the last call (mono, at the decoder's rate).
    pub fn take_audio(&mut self) -> Vec<i16> {
        std::mem::take(&mut self.heard)
    }

    pub fn sample_rate(&self) -> u32 {
        self.decoder.sample_rate()
    }

    pub fn stats(&self) -> JitterStats {
        self.jitter.stats()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tone_survives_encode_jitter_decode() {
        let now = Instant::now();
        let tone: Vec<i16> = (0..OPUS_RATE as usize)
            .map(|i| {
                ((i as f64 * 440.0 * std::f64::consts::TAU / f64::from(OPUS_RATE)).sin() * 8000.0)
                    as i16
            })
            .collect();
        let mut tx = VoiceTx::new(
            now,
            Codec::Opus,
            &EncoderSettings::default(),
            tone.clone(),
            1000,
        )
        .unwrap();
        let mut rx = VoiceRx::new(Codec::Opus).unwrap();
        let mut heard = Vec::new();
        let mut t = now;
        for seq in 0..60u16 {
            let (ts, payload) = tx.handle_timeout(t).expect("a frame every 20 ms");
            assert_eq!(ts, 1000 + u32::from(seq) * 960);
            rx.push(t + Duration::from_millis(5), seq, ts, payload);
            t += Duration::from_millis(20);
            rx.handle_timeout(t);
            heard.extend(rx.take_audio());
        }
        assert!(tx.mic_done() || tx.frames_sent == 60);
        let c = natter_media::quality::compare(
            &tone[..heard.len().min(tone.len())],
            &heard,
            OPUS_RATE,
            Duration::from_millis(200),
        );
        assert!(c.correlation > 0.9, "correlation {c:?}");
    }
}
