//! The SIP user agent: a sans-IO core on `natter_sip`'s message types.
//!
//! Everything goes to one server (the registrar and outbound proxy) over one
//! flow, which is also where the proxy sends our incoming calls (RFC 5626).
//! The driver feeds each datagram or stream frame to [`UserAgent::handle_input`]
//! and sends what [`UserAgent::poll_transmit`] returns to the server.

mod call;
pub mod digest;
mod ua;

pub use call::{CallId, EndReason};
pub use ua::{RegFailure, UaConfig, UaEvent, UserAgent};
