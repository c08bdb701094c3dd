//! The crate's one error type.

/// Why bytes could not be read as STUN/ChannelData, or a configuration value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StunError {
    /// Fewer bytes than the header or the declared length needs.
    #[error("truncated STUN message: need {need} bytes, have {have}")]
    Truncated { need: usize, have: usize },
    /// The first two bits are not zero: not STUN (maybe ChannelData, RTP or DTLS).
    #[error("not a STUN message (first byte {0:#04x})")]
    NotStun(u8),
    /// The header length is not a multiple of 4 or does not match the datagram.
    #[error("STUN length field {declared} does not match the {actual} bytes received")]
    BadLength { declared: usize, actual: usize },
    /// An attribute's value is malformed.
    #[error("malformed {name} attribute: {why}")]
    BadAttribute {
        name: &'static str,
        why: &'static str,
    },
    /// An attribute runs past the end of the message.
    #[error("attribute {typ:#06x} runs past the end of the message")]
    AttributeOverrun { typ: u16 },
    /// Only FINGERPRINT may follow MESSAGE-INTEGRITY(-SHA256), and nothing may follow FINGERPRINT.
    #[error("attribute {typ:#06x} follows FINGERPRINT or MESSAGE-INTEGRITY")]
    AttributeAfterIntegrity { typ: u16 },
    /// The FINGERPRINT attribute does not match the message.
    #[error("FINGERPRINT mismatch: the message was corrupted or is not STUN")]
    FingerprintMismatch,
    /// The ChannelData channel number is outside 0x4000..=0x7FFF.
    #[error("channel number {0:#06x} is outside 0x4000-0x7FFF")]
    BadChannel(u16),
    /// The message would exceed 65535 bytes of attributes.
    #[error("STUN message too large to encode")]
    TooLarge,
    /// A configuration value is unusable; the text says which and how to fix it.
    #[error("TURN configuration: {0}")]
    Config(String),
}
