//! The crate's error type.

/// Errors from the phone engine. Messages name the cause and, where there is
/// one, the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PhoneError {
    #[error("media setup failed: {0}")]
    Media(String),
    #[error("the far end's SDP is unusable: {0}")]
    BadSdp(String),
    #[error("no common codec with the far end (we offer Opus, PCMU, PCMA)")]
    NoCommonCodec,
    #[error("audio: {0}")]
    Audio(#[from] natter_media::MediaError),
    #[error("there is no call to {0}")]
    NoCall(&'static str),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("a call is already in progress")]
    Busy,
    #[error("sound card: {0}")]
    SoundCard(String),
}
