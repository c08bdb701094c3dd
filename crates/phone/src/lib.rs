//! natter's client engine: SIP user agent, ICE (via str0m), a TURN client and
//! DTLS-SRTP voice.

#![forbid(unsafe_code)]

pub mod sip;
pub mod turn_client;
