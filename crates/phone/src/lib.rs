//! natter's client engine: SIP user agent, ICE (via str0m), a TURN client and
//! DTLS-SRTP Opus voice. A library first; `natter phone` is a CLI on top.
//!
//! * [`engine::Phone`]: the sans-IO phone (one call at a time). A driver feeds it
//!   SIP frames, media datagrams and time, and sends what it returns.
//! * [`sip`]: the SIP user agent core. [`turn_client`]: the TURN client core.
//! * [`media_session`]: str0m + TURN for one call. [`voice`]: encode/jitter/decode.
//! * [`driver`]: the tokio driver (sockets, TCP/TLS framing).

#![forbid(unsafe_code)]

mod error;

pub mod audio;
pub mod driver;
pub mod engine;
pub mod media_session;
pub mod sip;
pub mod stats;
pub mod tls;
pub mod turn_client;
pub mod voice;
pub mod ws;

pub use engine::{Phone, PhoneConfig, PhoneEvent, PhoneTransmit};
pub use error::PhoneError;
pub use stats::CallStats;

/// The media crate, for front ends (WAV I/O, codecs).
pub use natter_media as media;
/// SIP transports.
pub use natter_sip::flow::Transport as SipTransport;
