//! natter's media core: sans-IO and deterministic.
//!
//! * [`codec`]: Opus (pure Rust, `opus-rs`) and G.711 behind the [`Encoder`] /
//!   [`Decoder`] traits, with concealment, in-band FEC and DTX.
//! * [`jitter`]: the adaptive jitter buffer (`push(now, …)`, `pop(now)`).
//! * [`policy`]: bitrate, FEC and packet-time choice from RTCP-like reports.
//! * [`quality`]: E-model MOS (ITU-T G.107) and objective speech comparison.
//! * [`wav`]: 16-bit WAV in (any supported rate, resampled) and incremental out.
//!
//! No clock is read: every time-dependent call takes `now`. A receive loop:
//!
//! ```
//! use std::time::{Duration, Instant};
//! use natter_media::codec::{self, Codec, Encoder, EncoderSettings};
//! use natter_media::jitter::{JitterBuffer, JitterConfig};
//!
//! let settings = EncoderSettings::default();
//! let mut encoder = codec::new_encoder(Codec::Opus, 16_000, &settings).unwrap();
//! let mut decoder = codec::new_decoder(Codec::Opus, 16_000).unwrap();
//! let mut jitter = JitterBuffer::new(JitterConfig::new(Codec::Opus.rtp_clock_rate()));
//! let start = Instant::now();
//! let mut heard = Vec::new();
//! for i in 0..50u16 {
//!     let now = start + Duration::from_millis(20 * u64::from(i));
//!     // sender: one 20 ms frame of microphone audio
//!     let mut payload = Vec::new();
//!     encoder.encode(&vec![0i16; encoder.frame_samples()], &mut payload).unwrap();
//!     // network: the packet arrives (a driver would take it from a socket)
//!     jitter.push(now, i, u32::from(i) * 960, payload);
//!     // playout: whenever the audio device wants the next frame
//!     if jitter.poll_timeout().map_or(true, |t| t <= now) {
//!         let playout = jitter.pop(now);
//!         codec::render(decoder.as_mut(), &playout, &mut heard).unwrap();
//!     }
//! }
//! assert!(!heard.is_empty());
//! ```

#![forbid(unsafe_code)]

mod error;

pub mod codec;
pub mod jitter;
pub mod policy;
pub mod quality;
pub mod resample;
pub mod wav;

pub use codec::{Codec, Decoder, Encoded, Encoder, EncoderSettings};
pub use error::MediaError;
pub use jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
