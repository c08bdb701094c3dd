//! natter's SIP core: message parser, digest authentication, registrar,
//! location service and a forking proxy (RFC 3261, 3581, 5626, 8760).
//!
//! Everything here is sans-IO: the driver feeds datagrams and stream frames
//! in with the time, and drains what to send and when to wake up
//! ([`Server`] shows the drive loop).
//!
//! | module | what |
//! | --- | --- |
//! | [`msg`] | parser and serializer (compact forms, folding, list headers, limits) |
//! | [`frame`] | stream framing by Content-Length, CRLF keepalive ping/pong |
//! | [`large`] | requests over 1,300 bytes go over TCP, back to UDP when that fails |
//! | `keepalive` | STUN Binding keepalives on the UDP SIP port (RFC 5626 §8) |
//! | [`auth`] | digest (SHA-256, MD5, qop=auth), signed expiring nonces, nc replay ring |
//! | [`guard`] | failed-auth lockout per account and source, per-source rate limit |
//! | [`location`] | account → bindings with the flow each arrived on |
//! | `registrar` | RFC 3261 §10.3 and RFC 5626 instance/reg-id |
//! | `proxy`, `routing` | stateful forking proxy, CANCEL, best response, dialog routing |
//! | `tx`, `timers` | transaction state and the timer table (A, B, C, D, G, H, J, M) |
//! | [`sdp`] | a minimal typed SDP reader/writer |

#![forbid(unsafe_code)]

pub mod auth;
mod dialog;
pub mod flow;
pub mod frame;
pub mod guard;
mod keepalive;
pub mod large;
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
pub use server::{Counters, Event, OpenState, Server, ServerConfig};

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
