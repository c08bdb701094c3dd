//! natter's STUN and TURN server core: sans-IO, time passed in, no sockets.
//!
//! * [`stun`]: the zero-copy STUN codec (RFC 8489/5389/3489), message integrity,
//!   FINGERPRINT and TURN ChannelData framing.
//! * [`binding`]: the STUN Binding server (RFC 8489, RFC 5780).
//! * [`server`]: the TURN server core (RFC 8656).
//! * [`pii`]: usernames and addresses in logs, redacted unless the operator opts in.
//!
//! A driver owns the sockets: it feeds every datagram (or stream frame) into the
//! core with the current [`std::time::Instant`] and sends what the core returns.
//!
//! ```
//! use std::time::Instant;
//! use natter_turn::binding::{BindingServer, BindingConfig, Source};
//! use natter_turn::stun::{self, BindingRequest, TransactionId};
//!
//! let local = "192.0.2.10:3478".parse().unwrap();
//! let server = BindingServer::new(BindingConfig::new(local));
//! let client = "203.0.113.5:40000".parse().unwrap();
//! let request = BindingRequest::new(TransactionId::new([1; 12])).build();
//! // drive loop: for each datagram received on `local` ...
//! let reply = server.handle(Source::Primary, client, &request).expect("a Binding request gets an answer");
//! // ... send `reply.payload` to `reply.to` from the socket `reply.from` names.
//! let answer = stun::decode(&reply.payload).unwrap();
//! assert_eq!(answer.reflexive_address(), Some(client));
//! ```

#![forbid(unsafe_code)]

mod error;

pub mod binding;
pub mod pii;
pub mod server;
pub mod stun;

pub use error::StunError;
