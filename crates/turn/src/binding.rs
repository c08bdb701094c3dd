//! The STUN Binding server (RFC 8489 §6.3, classic RFC 3489, RFC 5780).
//!
//! Stateless: one request in, at most one [`Reply`] out. With an alternate
//! address configured the driver runs four UDP sockets (primary IP/port, primary
//! IP/alternate port, alternate IP/primary port, alternate IP/port), tells
//! [`BindingServer::handle`] which one received the request ([`Source`]), and
//! sends the reply from the socket named in [`Reply::from`].
//!
//! # Amplification
//! Replies to unauthenticated requests are small and bounded. The smallest
//! valid request is a 20-byte header. Its answer carries XOR-MAPPED-ADDRESS
//! (12 bytes for IPv4), SOFTWARE `natter` (12) and FINGERPRINT (8): 52 bytes,
//! a ratio of 2.6 (3.2 for IPv6). With RFC 5780 on, OTHER-ADDRESS and
//! RESPONSE-ORIGIN add 24 bytes: 76 bytes, ratio 3.8 (5.0 for IPv6). A 420
//! answer lists at most [`MAX_UNKNOWN_LISTED`] attribute types, and the request
//! that triggers it is at least 24 bytes, so it stays below 3x. Nothing else
//! in a request makes the answer grow.

use std::net::SocketAddr;

use crate::stun::{self, attr_type, Attribute, Class, ErrorCode, Message, MessageBuilder, Method};

/// The SOFTWARE value sent in every answer.
pub const SOFTWARE: &str = "natter";
/// At most this many types are listed in UNKNOWN-ATTRIBUTES.
pub const MAX_UNKNOWN_LISTED: usize = 4;

/// Binding server settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingConfig {
    /// The primary address (what clients send to).
    pub primary: SocketAddr,
    /// RFC 5780 alternate address: a different IP *and* port. Default none.
    pub alternate: Option<SocketAddr>,
    /// Add SOFTWARE to answers. Default true.
    pub software: bool,
}

impl BindingConfig {
    pub fn new(primary: SocketAddr) -> Self {
        BindingConfig {
            primary,
            alternate: None,
            software: true,
        }
    }
    /// Enable RFC 5780 with `alternate` (different IP and port than primary).
    pub fn with_alternate(mut self, alternate: SocketAddr) -> Result<Self, crate::StunError> {
        if alternate.ip() == self.primary.ip() || alternate.port() == self.primary.port() {
            return Err(crate::StunError::Config(format!(
                "the RFC 5780 alternate address {alternate} must differ from {} in both IP and port",
                self.primary
            )));
        }
        self.alternate = Some(alternate);
        Ok(self)
    }
}

/// Which of the (up to) four RFC 5780 sockets a datagram used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// Primary IP, primary port (the only one without RFC 5780; TCP/TLS too).
    Primary,
    /// Primary IP, alternate port.
    AltPort,
    /// Alternate IP, primary port.
    AltIp,
    /// Alternate IP, alternate port.
    AltBoth,
}

impl Source {
    fn flags(self) -> (bool, bool) {
        match self {
            Source::Primary => (false, false),
            Source::AltPort => (false, true),
            Source::AltIp => (true, false),
            Source::AltBoth => (true, true),
        }
    }
    fn from_flags(ip: bool, port: bool) -> Source {
        match (ip, port) {
            (false, false) => Source::Primary,
            (false, true) => Source::AltPort,
            (true, false) => Source::AltIp,
            (true, true) => Source::AltBoth,
        }
    }
}

/// One answer to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The socket to send from.
    pub from: Source,
    /// The client.
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

/// The stateless Binding responder.
#[derive(Debug, Clone)]
pub struct BindingServer {
    config: BindingConfig,
}

impl BindingServer {
    pub fn new(config: BindingConfig) -> Self {
        BindingServer { config }
    }

    pub fn config(&self) -> &BindingConfig {
        &self.config
    }

    /// The address of socket `s` (the primary one when RFC 5780 is off).
    pub fn local_addr(&self, s: Source) -> SocketAddr {
        let p = self.config.primary;
        let Some(a) = self.config.alternate else {
            return p;
        };
        let (ip, port) = s.flags();
        SocketAddr::new(
            if ip { a.ip() } else { p.ip() },
            if port { a.port() } else { p.port() },
        )
    }

    /// Answer the datagram `bytes` received on `source` from `from`.
    /// Returns `None` for anything that is not a well-formed Binding request
    /// (and for Binding indications, which are keepalives).
    pub fn handle(&self, source: Source, from: SocketAddr, bytes: &[u8]) -> Option<Reply> {
        let msg = stun::decode(bytes).ok()?;
        self.handle_message(source, from, &msg)
    }

    /// Like [`BindingServer::handle`] for an already decoded message.
    pub fn handle_message(
        &self,
        source: Source,
        from: SocketAddr,
        msg: &Message<'_>,
    ) -> Option<Reply> {
        if msg.method() != Method::BINDING || msg.class() != Class::Request {
            return None;
        }
        if msg.check_fingerprint().is_err() {
            return None;
        }
        let payload = match self.check(msg) {
            Ok(change) => return Some(self.success(source, from, msg, change)),
            Err(Refusal::Unknown(types)) => self.error(msg, 420, "Unknown Attribute", &types),
            Err(Refusal::Bad) => self.error(msg, 400, "Bad Request", &[]),
        };
        Some(Reply {
            from: source,
            to: from,
            payload,
        })
    }

    /// The CHANGE-REQUEST flags, or why the request is refused.
    fn check(&self, msg: &Message<'_>) -> Result<(bool, bool), Refusal> {
        let mut unknown: Vec<u16> = msg
            .unknown_comprehension_required()
            .take(MAX_UNKNOWN_LISTED)
            .collect();
        let mut change = (false, false);
        for a in msg.attributes() {
            match a {
                Ok(Attribute::ChangeRequest { ip, port }) => change = (ip, port),
                Ok(_) => {}
                Err(_) => return Err(Refusal::Bad),
            }
        }
        // Without an alternate address CHANGE-REQUEST cannot be honoured (RFC 5780 §6.1).
        if self.config.alternate.is_none() && msg.raw_value(attr_type::CHANGE_REQUEST).is_some() {
            unknown.push(attr_type::CHANGE_REQUEST);
        }
        if unknown.is_empty() {
            Ok(change)
        } else {
            unknown.truncate(MAX_UNKNOWN_LISTED);
            Err(Refusal::Unknown(unknown))
        }
    }

    fn success(
        &self,
        source: Source,
        from: SocketAddr,
        msg: &Message<'_>,
        change: (bool, bool),
    ) -> Reply {
        let (ip, port) = source.flags();
        let out = Source::from_flags(ip ^ change.0, port ^ change.1);
        let mut b = self.builder(Class::Success, msg);
        if msg.is_classic() {
            b.add(&Attribute::MappedAddress(from));
        } else {
            b.add(&Attribute::XorMappedAddress(from));
        }
        if let Some(alt) = self.config.alternate {
            if msg.is_classic() {
                // RFC 3489 SOURCE-ADDRESS (0x0004) and CHANGED-ADDRESS (0x0005).
                b.add_plain_address(0x0004, self.local_addr(out));
                b.add_plain_address(0x0005, alt);
            } else {
                b.add(&Attribute::OtherAddress(alt));
                b.add(&Attribute::ResponseOrigin(self.local_addr(out)));
            }
        }
        Reply {
            from: out,
            to: from,
            payload: self.finish(b, msg),
        }
    }

    fn error(&self, msg: &Message<'_>, code: u16, reason: &str, unknown: &[u16]) -> Vec<u8> {
        let mut b = self.builder(Class::Error, msg);
        b.add(&Attribute::ErrorCode(ErrorCode { code, reason }));
        if !unknown.is_empty() {
            let list: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
            b.add(&Attribute::UnknownAttributes(&list));
        }
        self.finish(b, msg)
    }

    fn builder(&self, class: Class, msg: &Message<'_>) -> MessageBuilder {
        let mut b =
            MessageBuilder::with_cookie(class, Method::BINDING, msg.transaction_id(), msg.cookie());
        if self.config.software && !msg.is_classic() {
            b.add(&Attribute::Software(SOFTWARE));
        }
        b
    }

    fn finish(&self, mut b: MessageBuilder, msg: &Message<'_>) -> Vec<u8> {
        if !msg.is_classic() {
            b.add_fingerprint();
        }
        b.finish()
    }
}

enum Refusal {
    Unknown(Vec<u16>),
    Bad,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{BindingRequest, TransactionId};

    fn server(alt: bool) -> BindingServer {
        let mut c = BindingConfig::new("192.0.2.1:3478".parse().unwrap());
        if alt {
            c = c.with_alternate("192.0.2.2:3479".parse().unwrap()).unwrap();
        }
        BindingServer::new(c)
    }
    const CLIENT: &str = "203.0.113.9:5555";

    #[test]
    fn binding_answers_xor_mapped_software_fingerprint() {
        let req = BindingRequest::new(TransactionId::new([3; 12]))
            .fingerprint(false)
            .build();
        let r = server(false)
            .handle(Source::Primary, CLIENT.parse().unwrap(), &req)
            .unwrap();
        let m = stun::decode(&r.payload).unwrap();
        assert_eq!(m.class(), Class::Success);
        assert_eq!(m.transaction_id(), TransactionId::new([3; 12]));
        assert_eq!(m.xor_mapped_address(), Some(CLIENT.parse().unwrap()));
        assert_eq!(m.mapped_address(), None);
        assert_eq!(m.check_fingerprint(), Ok(true));
        assert!(matches!(
            m.get(attr_type::SOFTWARE),
            Some(Ok(Attribute::Software("natter")))
        ));
        assert_eq!(
            r.payload.len(),
            52,
            "amplification figure in the module docs"
        );
        assert_eq!(req.len(), 20);
    }

    #[test]
    fn classic_request_gets_mapped_address_and_echoed_id() {
        let mut req = BindingRequest::new(TransactionId::new([4; 12]))
            .fingerprint(false)
            .build();
        req[4..8].copy_from_slice(&[9, 9, 9, 9]);
        let r = server(false)
            .handle(Source::Primary, CLIENT.parse().unwrap(), &req)
            .unwrap();
        assert_eq!(&r.payload[4..20], &req[4..20]);
        let m = stun::decode(&r.payload).unwrap();
        assert!(m.is_classic());
        assert_eq!(m.mapped_address(), Some(CLIENT.parse().unwrap()));
        assert_eq!(m.xor_mapped_address(), None);
    }

    #[test]
    fn unknown_comprehension_required_gets_420_listing_it() {
        let mut b =
            MessageBuilder::new(Class::Request, Method::BINDING, TransactionId::new([5; 12]));
        b.add(&Attribute::Other(stun::RawAttribute {
            typ: 0x7777,
            value: b"x",
        }));
        b.add(&Attribute::Other(stun::RawAttribute {
            typ: 0xC001,
            value: b"optional",
        }));
        let r = server(false)
            .handle(Source::Primary, CLIENT.parse().unwrap(), &b.finish())
            .unwrap();
        let m = stun::decode(&r.payload).unwrap();
        assert_eq!(m.class(), Class::Error);
        assert_eq!(m.error_code().unwrap().code, 420);
        assert_eq!(
            m.raw_value(attr_type::UNKNOWN_ATTRIBUTES),
            Some(&[0x77, 0x77][..])
        );
    }

    #[test]
    fn change_request_without_alternate_is_420() {
        let req = BindingRequest::new(TransactionId::new([6; 12]))
            .change_ip(true)
            .build();
        let r = server(false)
            .handle(Source::Primary, CLIENT.parse().unwrap(), &req)
            .unwrap();
        assert_eq!(
            stun::decode(&r.payload).unwrap().error_code().unwrap().code,
            420
        );
    }

    #[test]
    fn rfc5780_change_request_picks_the_socket_and_reports_origin() {
        let s = server(true);
        let cases = [
            (
                Source::Primary,
                false,
                false,
                Source::Primary,
                "192.0.2.1:3478",
            ),
            (
                Source::Primary,
                true,
                false,
                Source::AltIp,
                "192.0.2.2:3478",
            ),
            (
                Source::Primary,
                false,
                true,
                Source::AltPort,
                "192.0.2.1:3479",
            ),
            (
                Source::Primary,
                true,
                true,
                Source::AltBoth,
                "192.0.2.2:3479",
            ),
            (
                Source::AltBoth,
                true,
                false,
                Source::AltPort,
                "192.0.2.1:3479",
            ),
        ];
        for (src, ip, port, out, origin) in cases {
            let req = BindingRequest::new(TransactionId::new([7; 12]))
                .change_ip(ip)
                .change_port(port)
                .build();
            let r = s.handle(src, CLIENT.parse().unwrap(), &req).unwrap();
            assert_eq!(r.from, out);
            let m = stun::decode(&r.payload).unwrap();
            assert_eq!(m.response_origin(), Some(origin.parse().unwrap()));
            assert_eq!(m.other_address(), Some("192.0.2.2:3479".parse().unwrap()));
            assert!(r.payload.len() <= 76);
        }
    }

    #[test]
    fn garbage_responses_indications_and_bad_fingerprints_get_nothing() {
        let s = server(false);
        let c = CLIENT.parse().unwrap();
        assert!(s
            .handle(Source::Primary, c, b"hello world, not stun at all")
            .is_none());
        let mut req = BindingRequest::new(TransactionId::new([8; 12])).build();
        let n = req.len();
        req[n - 1] ^= 1;
        assert!(s.handle(Source::Primary, c, &req).is_none());
        let ind = MessageBuilder::new(
            Class::Indication,
            Method::BINDING,
            TransactionId::new([8; 12]),
        )
        .finish();
        assert!(s.handle(Source::Primary, c, &ind).is_none());
    }
}
