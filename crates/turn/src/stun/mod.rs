//! STUN messages (RFC 8489, RFC 5389, classic RFC 3489) and TURN ChannelData framing.
//!
//! Decoding is zero-copy: [`decode`] checks the header and walks the attributes
//! once (no allocation), and [`Message`] borrows the datagram. Attributes are read
//! on demand with [`Message::attributes`] or the typed getters.
//!
//! ```
//! use natter_turn::stun::{self, Attribute, BindingRequest, Class, Method, TransactionId};
//! // A client builds a Binding request asking the server to answer from its other IP and port:
//! let tid = TransactionId::new([7; 12]);
//! let req = BindingRequest::new(tid).change_ip(true).change_port(true).build();
//! // A server answers with XOR-MAPPED-ADDRESS ...
//! let msg = stun::decode(&req).unwrap();
//! assert_eq!((msg.class(), msg.method()), (Class::Request, Method::BINDING));
//! let mut res = stun::MessageBuilder::new(Class::Success, Method::BINDING, msg.transaction_id());
//! res.add(&Attribute::XorMappedAddress("192.0.2.1:32853".parse().unwrap()));
//! res.add_fingerprint();
//! let res = res.finish();
//! // ... which the client reads back.
//! let res = stun::decode(&res).unwrap();
//! assert_eq!(res.reflexive_address(), Some("192.0.2.1:32853".parse().unwrap()));
//! ```

mod attr;
mod builder;
mod channel;
mod integrity;

use std::net::SocketAddr;

pub use attr::{Attribute, ErrorCode, PasswordAlgorithm, RawAttribute};
pub use builder::{BindingRequest, MessageBuilder};
pub use channel::{ChannelData, ChannelNumber};
pub use integrity::{fingerprint, long_term_key_md5, long_term_key_sha256, IntegrityKey, Mac};

pub use crate::StunError;

/// The magic cookie of RFC 5389 and later.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// STUN header size.
pub const HEADER_LEN: usize = 20;

/// Attribute type codes.
pub mod attr_type {
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    pub const CHANGE_REQUEST: u16 = 0x0003;
    pub const USERNAME: u16 = 0x0006;
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    pub const ERROR_CODE: u16 = 0x0009;
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    pub const LIFETIME: u16 = 0x000D;
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    pub const DATA: u16 = 0x0013;
    pub const REALM: u16 = 0x0014;
    pub const NONCE: u16 = 0x0015;
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    pub const EVEN_PORT: u16 = 0x0018;
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    pub const DONT_FRAGMENT: u16 = 0x001A;
    pub const MESSAGE_INTEGRITY_SHA256: u16 = 0x001C;
    pub const PASSWORD_ALGORITHM: u16 = 0x001D;
    pub const USERHASH: u16 = 0x001E;
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    pub const PRIORITY: u16 = 0x0024;
    pub const USE_CANDIDATE: u16 = 0x0025;
    pub const PADDING: u16 = 0x0026;
    pub const RESPONSE_PORT: u16 = 0x0027;
    pub const ADDITIONAL_ADDRESS_FAMILY: u16 = 0x8000;
    pub const PASSWORD_ALGORITHMS: u16 = 0x8002;
    pub const ALTERNATE_DOMAIN: u16 = 0x8003;
    pub const SOFTWARE: u16 = 0x8022;
    pub const ALTERNATE_SERVER: u16 = 0x8023;
    pub const FINGERPRINT: u16 = 0x8028;
    pub const ICE_CONTROLLED: u16 = 0x8029;
    pub const ICE_CONTROLLING: u16 = 0x802A;
    pub const RESPONSE_ORIGIN: u16 = 0x802B;
    pub const OTHER_ADDRESS: u16 = 0x802C;
}

/// STUN message class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    Request,
    Indication,
    Success,
    Error,
}

/// STUN method (12 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Method(pub u16);

impl Method {
    pub const BINDING: Method = Method(0x001);
    pub const ALLOCATE: Method = Method(0x003);
    pub const REFRESH: Method = Method(0x004);
    pub const SEND: Method = Method(0x006);
    pub const DATA: Method = Method(0x007);
    pub const CREATE_PERMISSION: Method = Method(0x008);
    pub const CHANNEL_BIND: Method = Method(0x009);
}

/// The 96-bit transaction id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TransactionId([u8; 12]);

impl TransactionId {
    pub const fn new(bytes: [u8; 12]) -> Self {
        TransactionId(bytes)
    }
    /// A random id from `rng` (seedable in tests).
    pub fn random<R: rand::Rng + ?Sized>(rng: &mut R) -> Self {
        TransactionId(rng.gen())
    }
    pub fn as_bytes(&self) -> &[u8; 12] {
        &self.0
    }
}

/// Encode class and method into the 14-bit message type.
pub fn message_type(class: Class, method: Method) -> u16 {
    let m = method.0 & 0x0FFF;
    let c: u16 = match class {
        Class::Request => 0b00,
        Class::Indication => 0b01,
        Class::Success => 0b10,
        Class::Error => 0b11,
    };
    (m & 0x000F) | ((m & 0x0070) << 1) | ((m & 0x0F80) << 2) | ((c & 1) << 4) | ((c & 2) << 7)
}

fn split_type(t: u16) -> (Class, Method) {
    let m = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = match ((t >> 7) & 2) | ((t >> 4) & 1) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    (class, Method(m))
}

/// A decoded STUN message borrowing its datagram.
#[derive(Debug, Clone, Copy)]
pub struct Message<'a> {
    raw: &'a [u8],
    class: Class,
    method: Method,
    classic: bool,
}

/// Check the header and every attribute's framing of one STUN message; no allocation.
///
/// `bytes` must hold exactly one message (a datagram, or a frame cut by
/// [`frame_len`] from a stream). Attribute values are checked when read.
pub fn decode(bytes: &[u8]) -> Result<Message<'_>, StunError> {
    if bytes.len() < HEADER_LEN {
        return Err(StunError::Truncated {
            need: HEADER_LEN,
            have: bytes.len(),
        });
    }
    if bytes[0] & 0xC0 != 0 {
        return Err(StunError::NotStun(bytes[0]));
    }
    let declared = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    if declared % 4 != 0 || HEADER_LEN + declared != bytes.len() {
        return Err(StunError::BadLength {
            declared,
            actual: bytes.len() - HEADER_LEN,
        });
    }
    let (class, method) = split_type(u16::from_be_bytes([bytes[0], bytes[1]]));
    let classic = u32::from_be_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]) != MAGIC_COOKIE;
    let msg = Message {
        raw: bytes,
        class,
        method,
        classic,
    };
    msg.check_attribute_framing()?;
    Ok(msg)
}

/// Length of the first STUN message or ChannelData frame in a stream buffer
/// (ChannelData padded to 4 bytes, RFC 8656 §12.5), or `None` when more bytes are needed.
/// Errors mean the stream carries garbage and should be closed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, StunError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    let total = match buf[0] >> 6 {
        0 => {
            if len % 4 != 0 {
                return Err(StunError::BadLength {
                    declared: len,
                    actual: buf.len(),
                });
            }
            HEADER_LEN + len
        }
        1 => 4 + ((len + 3) & !3),
        _ => return Err(StunError::NotStun(buf[0])),
    };
    Ok((buf.len() >= total).then_some(total))
}

/// True when the datagram looks like STUN (first two bits 0 and the magic cookie, or classic).
pub fn is_stun(bytes: &[u8]) -> bool {
    bytes.len() >= HEADER_LEN && bytes[0] & 0xC0 == 0
}

impl<'a> Message<'a> {
    pub fn class(&self) -> Class {
        self.class
    }
    pub fn method(&self) -> Method {
        self.method
    }
    /// The 12-byte transaction id (for classic RFC 3489 messages, the last 12 of its 16 bytes).
    pub fn transaction_id(&self) -> TransactionId {
        let mut id = [0; 12];
        id.copy_from_slice(&self.raw[8..20]);
        TransactionId(id)
    }
    /// The header's cookie field: [`MAGIC_COOKIE`] unless classic.
    pub fn cookie(&self) -> u32 {
        u32::from_be_bytes([self.raw[4], self.raw[5], self.raw[6], self.raw[7]])
    }
    /// A classic RFC 3489 message (no magic cookie).
    pub fn is_classic(&self) -> bool {
        self.classic
    }
    /// The whole message.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.raw
    }

    /// Every attribute in order, undecoded.
    pub fn raw_attributes(&self) -> RawAttributes<'a> {
        RawAttributes {
            body: &self.raw[HEADER_LEN..],
            pos: 0,
        }
    }

    /// Every attribute in order, decoded (malformed values yield `Err`).
    pub fn attributes(&self) -> impl Iterator<Item = Result<Attribute<'a>, StunError>> + 'a {
        let tid = self.transaction_id();
        self.raw_attributes()
            .map(move |a| Attribute::decode(a, &tid))
    }

    /// The first attribute of type `typ`, decoded.
    pub fn get(&self, typ: u16) -> Option<Result<Attribute<'a>, StunError>> {
        let tid = self.transaction_id();
        self.raw_attributes()
            .find(|a| a.typ == typ)
            .map(|a| Attribute::decode(a, &tid))
    }

    /// Comprehension-required attribute types (< 0x8000) this codec does not know.
    pub fn unknown_comprehension_required(&self) -> impl Iterator<Item = u16> + 'a {
        self.raw_attributes()
            .map(|a| a.typ)
            .filter(|&t| t < 0x8000 && !attr::is_known(t))
    }

    /// XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS: the address the server saw.
    pub fn reflexive_address(&self) -> Option<SocketAddr> {
        self.address(attr_type::XOR_MAPPED_ADDRESS)
            .or_else(|| self.address(attr_type::MAPPED_ADDRESS))
    }
    /// MAPPED-ADDRESS only.
    pub fn mapped_address(&self) -> Option<SocketAddr> {
        self.address(attr_type::MAPPED_ADDRESS)
    }
    /// XOR-MAPPED-ADDRESS only.
    pub fn xor_mapped_address(&self) -> Option<SocketAddr> {
        self.address(attr_type::XOR_MAPPED_ADDRESS)
    }
    /// OTHER-ADDRESS (RFC 5780).
    pub fn other_address(&self) -> Option<SocketAddr> {
        self.address(attr_type::OTHER_ADDRESS)
    }
    /// RESPONSE-ORIGIN (RFC 5780).
    pub fn response_origin(&self) -> Option<SocketAddr> {
        self.address(attr_type::RESPONSE_ORIGIN)
    }
    /// The first valid address-valued attribute of type `typ`.
    pub fn address(&self, typ: u16) -> Option<SocketAddr> {
        match self.get(typ)? {
            Ok(a) => a.socket_addr(),
            Err(_) => None,
        }
    }
    /// ERROR-CODE, when present and valid.
    pub fn error_code(&self) -> Option<ErrorCode<'a>> {
        match self.get(attr_type::ERROR_CODE)? {
            Ok(Attribute::ErrorCode(e)) => Some(e),
            _ => None,
        }
    }
    /// Value bytes of the first attribute of type `typ`, undecoded.
    pub fn raw_value(&self, typ: u16) -> Option<&'a [u8]> {
        self.raw_attributes()
            .find(|a| a.typ == typ)
            .map(|a| a.value)
    }

    /// Verify FINGERPRINT if present: `Ok(true)` valid, `Ok(false)` absent.
    pub fn check_fingerprint(&self) -> Result<bool, StunError> {
        integrity::check_fingerprint(self)
    }
    /// Verify MESSAGE-INTEGRITY-SHA256 (when present) or MESSAGE-INTEGRITY with `key`.
    /// Returns false when neither is present or the MAC is wrong.
    pub fn verify_integrity(&self, key: &IntegrityKey) -> bool {
        integrity::verify(self, key)
    }

    /// The MAC attribute this message carries (SHA-256 wins when both are present).
    pub fn integrity_mac(&self) -> Option<Mac> {
        integrity::mac_of(self)
    }

    fn check_attribute_framing(&self) -> Result<(), StunError> {
        let body = &self.raw[HEADER_LEN..];
        let mut pos = 0;
        let mut after_integrity = false;
        let mut after_fingerprint = false;
        while pos < body.len() {
            if body.len() - pos < 4 {
                return Err(StunError::Truncated {
                    need: pos + 4,
                    have: body.len(),
                });
            }
            let typ = u16::from_be_bytes([body[pos], body[pos + 1]]);
            let len = usize::from(u16::from_be_bytes([body[pos + 2], body[pos + 3]]));
            let end = pos + 4 + ((len + 3) & !3);
            if end > body.len() {
                return Err(StunError::AttributeOverrun { typ });
            }
            if after_fingerprint
                || (after_integrity
                    && !matches!(
                        typ,
                        attr_type::FINGERPRINT | attr_type::MESSAGE_INTEGRITY_SHA256
                    ))
            {
                return Err(StunError::AttributeAfterIntegrity { typ });
            }
            match typ {
                attr_type::MESSAGE_INTEGRITY | attr_type::MESSAGE_INTEGRITY_SHA256 => {
                    after_integrity = true
                }
                attr_type::FINGERPRINT => after_fingerprint = true,
                _ => {}
            }
            pos = end;
        }
        Ok(())
    }

    /// Byte offset (from the message start) of the first attribute of type `typ`.
    fn offset_of(&self, typ: u16) -> Option<usize> {
        let mut it = self.raw_attributes();
        loop {
            let at = HEADER_LEN + it.pos;
            let a = it.next()?;
            if a.typ == typ {
                return Some(at);
            }
        }
    }
}

/// Iterator over undecoded attributes; framing was checked by [`decode`].
#[derive(Debug, Clone)]
pub struct RawAttributes<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for RawAttributes<'a> {
    type Item = RawAttribute<'a>;
    fn next(&mut self) -> Option<RawAttribute<'a>> {
        let b = self.body.get(self.pos..)?;
        if b.len() < 4 {
            return None;
        }
        let typ = u16::from_be_bytes([b[0], b[1]]);
        let len = usize::from(u16::from_be_bytes([b[2], b[3]]));
        let value = b.get(4..4 + len)?;
        self.pos += 4 + ((len + 3) & !3);
        Some(RawAttribute { typ, value })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_type_round_trips_every_class_and_method() {
        for m in [0x001u16, 0x003, 0x009, 0x0FFF, 0x0ABC] {
            for c in [
                Class::Request,
                Class::Indication,
                Class::Success,
                Class::Error,
            ] {
                assert_eq!(split_type(message_type(c, Method(m))), (c, Method(m)));
            }
        }
        assert_eq!(message_type(Class::Success, Method::BINDING), 0x0101);
        assert_eq!(message_type(Class::Error, Method::ALLOCATE), 0x0113);
        assert_eq!(message_type(Class::Indication, Method::SEND), 0x0016);
    }

    #[test]
    fn frame_len_handles_partial_stun_and_padded_channel_data() {
        let req = BindingRequest::new(TransactionId::new([1; 12])).build();
        assert_eq!(frame_len(&req[..3]), Ok(None));
        assert_eq!(frame_len(&req[..19]), Ok(None));
        assert_eq!(frame_len(&req), Ok(Some(req.len())));
        let cd = [0x40, 0x00, 0x00, 0x05, 1, 2, 3, 4, 5, 0, 0, 0];
        assert_eq!(frame_len(&cd[..9]), Ok(None));
        assert_eq!(frame_len(&cd), Ok(Some(12)));
        assert!(frame_len(&[0x80, 0, 0, 0]).is_err());
    }

    #[test]
    fn header_errors_are_reported() {
        assert!(matches!(decode(&[0; 10]), Err(StunError::Truncated { .. })));
        let mut m = BindingRequest::new(TransactionId::new([1; 12])).build();
        m[0] = 0x80;
        assert!(matches!(decode(&m), Err(StunError::NotStun(_))));
        m[0] = 0;
        m[3] = 4;
        assert!(matches!(decode(&m), Err(StunError::BadLength { .. })));
    }
}
