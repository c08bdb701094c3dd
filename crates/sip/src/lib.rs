//! natter's SIP core: message parser, digest authentication, registrar,
//! location service and a forking proxy (RFC 3261, 3581, 5626, 8760).
//!
//! Everything here is sans-IO: the driver feeds datagrams and stream frames
//! in with the time, and drains what to send and when to wake up.

#![forbid(unsafe_code)]

pub mod auth;
mod dialog;
pub mod flow;
pub mod frame;
pub mod guard;
pub mod location;
pub mod msg;
mod proxy;
mod registrar;
mod routing;
pub mod sdp;
mod server;
mod timers;
mod tx;

pub use msg::{parse, HeaderName, Limits, Message, Method};
pub use server::{Event, OpenState, Server, ServerConfig};

/// Errors from the SIP core. Parse errors never panic; they say what is wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The bytes are not a SIP message at all.
    #[error("malformed SIP message: {0}")]
    Malformed(&'static str),
    /// The message parsed but breaks a rule; it is kept so a 400 can be sent.
    #[error("invalid SIP message: {why}")]
    Invalid {
        why: &'static str,
        message: Box<Message>,
    },
    /// The message exceeds the configured size limit.
    #[error("SIP message of {size} bytes exceeds the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    /// An SDP body could not be read.
    #[error("malformed SDP: {0}")]
    Sdp(String),
    /// A configuration value is out of range.
    #[error("SIP configuration: {0}")]
    Config(String),
}
