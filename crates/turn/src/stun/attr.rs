//! Typed STUN/TURN attributes (borrowing the message) and their wire encoding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::attr_type as t;
use super::{TransactionId, MAGIC_COOKIE};
use crate::StunError;

/// One attribute as it sits in the message: type and unpadded value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawAttribute<'a> {
    pub typ: u16,
    pub value: &'a [u8],
}

/// ERROR-CODE: a class*100+number code and a reason phrase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ErrorCode<'a> {
    pub code: u16,
    pub reason: &'a str,
}

/// PASSWORD-ALGORITHM numbers (RFC 8489 §18.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PasswordAlgorithm;

impl PasswordAlgorithm {
    pub const MD5: u16 = 0x0001;
    pub const SHA256: u16 = 0x0002;
}

/// A STUN/TURN attribute. Values borrow the message; unknown types stay raw.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Attribute<'a> {
    MappedAddress(SocketAddr),
    XorMappedAddress(SocketAddr),
    XorPeerAddress(SocketAddr),
    XorRelayedAddress(SocketAddr),
    AlternateServer(SocketAddr),
    ResponseOrigin(SocketAddr),
    OtherAddress(SocketAddr),
    Username(&'a str),
    /// USERHASH: SHA-256 of `username:realm`.
    UserHash([u8; 32]),
    /// The 20-byte HMAC-SHA1 as found (use [`super::Message::verify_integrity`]).
    MessageIntegrity([u8; 20]),
    /// The HMAC-SHA256 as found (16..=32 bytes).
    MessageIntegritySha256(&'a [u8]),
    Fingerprint(u32),
    ErrorCode(ErrorCode<'a>),
    Realm(&'a str),
    Nonce(&'a str),
    /// PASSWORD-ALGORITHM: the algorithm number (parameters ignored; none are defined).
    PasswordAlgorithm(u16),
    /// PASSWORD-ALGORITHMS: raw list (4-byte aligned entries); see [`Attribute::password_algorithms`].
    PasswordAlgorithms(&'a [u8]),
    /// UNKNOWN-ATTRIBUTES: raw list of 16-bit types.
    UnknownAttributes(&'a [u8]),
    Software(&'a str),
    /// CHANGE-REQUEST: (change IP, change port).
    ChangeRequest {
        ip: bool,
        port: bool,
    },
    /// LIFETIME in seconds.
    Lifetime(u32),
    Data(&'a [u8]),
    /// REQUESTED-TRANSPORT protocol number (17 = UDP, 6 = TCP).
    RequestedTransport(u8),
    /// REQUESTED-ADDRESS-FAMILY: 0x01 IPv4, 0x02 IPv6.
    RequestedAddressFamily(u8),
    /// ADDITIONAL-ADDRESS-FAMILY (RFC 8656).
    AdditionalAddressFamily(u8),
    /// EVEN-PORT with its R (reserve next port) bit.
    EvenPort {
        reserve: bool,
    },
    ReservationToken([u8; 8]),
    DontFragment,
    ChannelNumber(u16),
    /// Any other attribute (ICE attributes, PADDING, unknown comprehension-optional ones...).
    Other(RawAttribute<'a>),
}

/// Types this codec understands (for the 420 check); ICE attributes are known too.
pub(crate) fn is_known(typ: u16) -> bool {
    matches!(
        typ,
        t::MAPPED_ADDRESS
            | t::CHANGE_REQUEST
            | t::USERNAME
            | t::MESSAGE_INTEGRITY
            | t::ERROR_CODE
            | t::UNKNOWN_ATTRIBUTES
            | t::CHANNEL_NUMBER
            | t::LIFETIME
            | t::XOR_PEER_ADDRESS
            | t::DATA
            | t::REALM
            | t::NONCE
            | t::XOR_RELAYED_ADDRESS
            | t::REQUESTED_ADDRESS_FAMILY
            | t::EVEN_PORT
            | t::REQUESTED_TRANSPORT
            | t::DONT_FRAGMENT
            | t::MESSAGE_INTEGRITY_SHA256
            | t::PASSWORD_ALGORITHM
            | t::USERHASH
            | t::XOR_MAPPED_ADDRESS
            | t::RESERVATION_TOKEN
            | t::PRIORITY
            | t::USE_CANDIDATE
            | t::PADDING
            | t::RESPONSE_PORT
    )
}

fn bad(name: &'static str, why: &'static str) -> StunError {
    StunError::BadAttribute { name, why }
}

fn text<'a>(name: &'static str, v: &'a [u8], max: usize) -> Result<&'a str, StunError> {
    if v.len() > max {
        return Err(bad(name, "too long"));
    }
    std::str::from_utf8(v).map_err(|_| bad(name, "not UTF-8"))
}

fn fixed<const N: usize>(name: &'static str, v: &[u8]) -> Result<[u8; N], StunError> {
    v.try_into().map_err(|_| bad(name, "wrong length"))
}

fn u32_of(name: &'static str, v: &[u8]) -> Result<u32, StunError> {
    Ok(u32::from_be_bytes(fixed::<4>(name, v)?))
}

impl<'a> Attribute<'a> {
    /// Decode one attribute; `tid` is needed for the XOR'ed addresses.
    pub fn decode(raw: RawAttribute<'a>, tid: &TransactionId) -> Result<Attribute<'a>, StunError> {
        let v = raw.value;
        let addr = |name| decode_addr(name, v, None);
        let xaddr = |name| decode_addr(name, v, Some(tid));
        Ok(match raw.typ {
            t::MAPPED_ADDRESS => Attribute::MappedAddress(addr("MAPPED-ADDRESS")?),
            t::ALTERNATE_SERVER => Attribute::AlternateServer(addr("ALTERNATE-SERVER")?),
            t::RESPONSE_ORIGIN => Attribute::ResponseOrigin(addr("RESPONSE-ORIGIN")?),
            t::OTHER_ADDRESS => Attribute::OtherAddress(addr("OTHER-ADDRESS")?),
            t::XOR_MAPPED_ADDRESS => Attribute::XorMappedAddress(xaddr("XOR-MAPPED-ADDRESS")?),
            t::XOR_PEER_ADDRESS => Attribute::XorPeerAddress(xaddr("XOR-PEER-ADDRESS")?),
            t::XOR_RELAYED_ADDRESS => Attribute::XorRelayedAddress(xaddr("XOR-RELAYED-ADDRESS")?),
            t::USERNAME => Attribute::Username(text("USERNAME", v, 513)?),
            t::USERHASH => Attribute::UserHash(fixed("USERHASH", v)?),
            t::MESSAGE_INTEGRITY => Attribute::MessageIntegrity(fixed("MESSAGE-INTEGRITY", v)?),
            t::MESSAGE_INTEGRITY_SHA256 => {
                if !(16..=32).contains(&v.len()) || !v.len().is_multiple_of(4) {
                    return Err(bad(
                        "MESSAGE-INTEGRITY-SHA256",
                        "length must be 16..32, a multiple of 4",
                    ));
                }
                Attribute::MessageIntegritySha256(v)
            }
            t::FINGERPRINT => Attribute::Fingerprint(u32_of("FINGERPRINT", v)?),
            t::ERROR_CODE => Attribute::ErrorCode(decode_error(v)?),
            t::REALM => Attribute::Realm(text("REALM", v, 763)?),
            t::NONCE => Attribute::Nonce(text("NONCE", v, 763)?),
            t::SOFTWARE => Attribute::Software(text("SOFTWARE", v, 763)?),
            t::PASSWORD_ALGORITHM => {
                if v.len() < 4 {
                    return Err(bad("PASSWORD-ALGORITHM", "too short"));
                }
                Attribute::PasswordAlgorithm(u16::from_be_bytes([v[0], v[1]]))
            }
            t::PASSWORD_ALGORITHMS => Attribute::PasswordAlgorithms(v),
            t::UNKNOWN_ATTRIBUTES => {
                if !v.len().is_multiple_of(2) {
                    return Err(bad("UNKNOWN-ATTRIBUTES", "odd length"));
                }
                Attribute::UnknownAttributes(v)
            }
            t::CHANGE_REQUEST => {
                let f = u32_of("CHANGE-REQUEST", v)?;
                Attribute::ChangeRequest {
                    ip: f & 4 != 0,
                    port: f & 2 != 0,
                }
            }
            t::LIFETIME => Attribute::Lifetime(u32_of("LIFETIME", v)?),
            t::DATA => Attribute::Data(v),
            t::REQUESTED_TRANSPORT => {
                Attribute::RequestedTransport(fixed::<4>("REQUESTED-TRANSPORT", v)?[0])
            }
            t::REQUESTED_ADDRESS_FAMILY => {
                Attribute::RequestedAddressFamily(fixed::<4>("REQUESTED-ADDRESS-FAMILY", v)?[0])
            }
            t::ADDITIONAL_ADDRESS_FAMILY => {
                Attribute::AdditionalAddressFamily(fixed::<4>("ADDITIONAL-ADDRESS-FAMILY", v)?[0])
            }
            t::EVEN_PORT => Attribute::EvenPort {
                reserve: fixed::<1>("EVEN-PORT", v)?[0] & 0x80 != 0,
            },
            t::RESERVATION_TOKEN => Attribute::ReservationToken(fixed("RESERVATION-TOKEN", v)?),
            t::DONT_FRAGMENT => {
                if !v.is_empty() {
                    return Err(bad("DONT-FRAGMENT", "must be empty"));
                }
                Attribute::DontFragment
            }
            t::CHANNEL_NUMBER => {
                let b = fixed::<4>("CHANNEL-NUMBER", v)?;
                Attribute::ChannelNumber(u16::from_be_bytes([b[0], b[1]]))
            }
            _ => Attribute::Other(raw),
        })
    }

    /// The attribute's type code.
    pub fn typ(&self) -> u16 {
        match self {
            Attribute::MappedAddress(_) => t::MAPPED_ADDRESS,
            Attribute::XorMappedAddress(_) => t::XOR_MAPPED_ADDRESS,
            Attribute::XorPeerAddress(_) => t::XOR_PEER_ADDRESS,
            Attribute::XorRelayedAddress(_) => t::XOR_RELAYED_ADDRESS,
            Attribute::AlternateServer(_) => t::ALTERNATE_SERVER,
            Attribute::ResponseOrigin(_) => t::RESPONSE_ORIGIN,
            Attribute::OtherAddress(_) => t::OTHER_ADDRESS,
            Attribute::Username(_) => t::USERNAME,
            Attribute::UserHash(_) => t::USERHASH,
            Attribute::MessageIntegrity(_) => t::MESSAGE_INTEGRITY,
            Attribute::MessageIntegritySha256(_) => t::MESSAGE_INTEGRITY_SHA256,
            Attribute::Fingerprint(_) => t::FINGERPRINT,
            Attribute::ErrorCode(_) => t::ERROR_CODE,
            Attribute::Realm(_) => t::REALM,
            Attribute::Nonce(_) => t::NONCE,
            Attribute::PasswordAlgorithm(_) => t::PASSWORD_ALGORITHM,
            Attribute::PasswordAlgorithms(_) => t::PASSWORD_ALGORITHMS,
            Attribute::UnknownAttributes(_) => t::UNKNOWN_ATTRIBUTES,
            Attribute::Software(_) => t::SOFTWARE,
            Attribute::ChangeRequest { .. } => t::CHANGE_REQUEST,
            Attribute::Lifetime(_) => t::LIFETIME,
            Attribute::Data(_) => t::DATA,
            Attribute::RequestedTransport(_) => t::REQUESTED_TRANSPORT,
            Attribute::RequestedAddressFamily(_) => t::REQUESTED_ADDRESS_FAMILY,
            Attribute::AdditionalAddressFamily(_) => t::ADDITIONAL_ADDRESS_FAMILY,
            Attribute::EvenPort { .. } => t::EVEN_PORT,
            Attribute::ReservationToken(_) => t::RESERVATION_TOKEN,
            Attribute::DontFragment => t::DONT_FRAGMENT,
            Attribute::ChannelNumber(_) => t::CHANNEL_NUMBER,
            Attribute::Other(r) => r.typ,
        }
    }

    /// The address of an address-valued attribute.
    pub fn socket_addr(&self) -> Option<SocketAddr> {
        match *self {
            Attribute::MappedAddress(a)
            | Attribute::XorMappedAddress(a)
            | Attribute::XorPeerAddress(a)
            | Attribute::XorRelayedAddress(a)
            | Attribute::AlternateServer(a)
            | Attribute::ResponseOrigin(a)
            | Attribute::OtherAddress(a) => Some(a),
            _ => None,
        }
    }

    /// The algorithm numbers listed in PASSWORD-ALGORITHMS.
    pub fn password_algorithms(list: &[u8]) -> Vec<u16> {
        let mut out = Vec::new();
        let mut i = 0;
        while i + 4 <= list.len() {
            out.push(u16::from_be_bytes([list[i], list[i + 1]]));
            let plen = usize::from(u16::from_be_bytes([list[i + 2], list[i + 3]]));
            i += 4 + ((plen + 3) & !3);
        }
        out
    }

    /// Append the value bytes (unpadded) to `out`.
    pub(crate) fn encode_value(&self, tid: &TransactionId, out: &mut Vec<u8>) {
        match self {
            Attribute::MappedAddress(a)
            | Attribute::AlternateServer(a)
            | Attribute::ResponseOrigin(a)
            | Attribute::OtherAddress(a) => encode_addr(*a, None, out),
            Attribute::XorMappedAddress(a)
            | Attribute::XorPeerAddress(a)
            | Attribute::XorRelayedAddress(a) => encode_addr(*a, Some(tid), out),
            Attribute::Username(s)
            | Attribute::Realm(s)
            | Attribute::Nonce(s)
            | Attribute::Software(s) => out.extend_from_slice(s.as_bytes()),
            Attribute::UserHash(h) => out.extend_from_slice(h),
            Attribute::MessageIntegrity(h) => out.extend_from_slice(h),
            Attribute::MessageIntegritySha256(h)
            | Attribute::PasswordAlgorithms(h)
            | Attribute::UnknownAttributes(h)
            | Attribute::Data(h) => out.extend_from_slice(h),
            Attribute::Fingerprint(v) | Attribute::Lifetime(v) => {
                out.extend_from_slice(&v.to_be_bytes())
            }
            Attribute::ErrorCode(e) => {
                out.extend_from_slice(&[0, 0, (e.code / 100) as u8 & 0x07, (e.code % 100) as u8]);
                out.extend_from_slice(e.reason.as_bytes());
            }
            Attribute::PasswordAlgorithm(a) => {
                out.extend_from_slice(&a.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Attribute::ChangeRequest { ip, port } => {
                out.extend_from_slice(&[0, 0, 0, u8::from(*ip) << 2 | u8::from(*port) << 1])
            }
            Attribute::RequestedTransport(p)
            | Attribute::RequestedAddressFamily(p)
            | Attribute::AdditionalAddressFamily(p) => out.extend_from_slice(&[*p, 0, 0, 0]),
            Attribute::EvenPort { reserve } => out.push(if *reserve { 0x80 } else { 0 }),
            Attribute::ReservationToken(tok) => out.extend_from_slice(tok),
            Attribute::DontFragment => {}
            Attribute::ChannelNumber(n) => {
                out.extend_from_slice(&n.to_be_bytes());
                out.extend_from_slice(&[0, 0]);
            }
            Attribute::Other(r) => out.extend_from_slice(r.value),
        }
    }
}

fn decode_error(v: &[u8]) -> Result<ErrorCode<'_>, StunError> {
    if v.len() < 4 {
        return Err(bad("ERROR-CODE", "too short"));
    }
    let class = u16::from(v[2] & 0x07);
    let number = u16::from(v[3]);
    if !(3..=6).contains(&class) || number > 99 {
        return Err(bad("ERROR-CODE", "code outside 300..699"));
    }
    Ok(ErrorCode {
        code: class * 100 + number,
        reason: text("ERROR-CODE", &v[4..], 763)?,
    })
}

fn xor_mask(tid: &TransactionId) -> [u8; 16] {
    let mut m = [0u8; 16];
    m[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
    m[4..].copy_from_slice(tid.as_bytes());
    m
}

fn decode_addr(
    name: &'static str,
    v: &[u8],
    xor: Option<&TransactionId>,
) -> Result<SocketAddr, StunError> {
    if v.len() < 4 {
        return Err(bad(name, "too short"));
    }
    let mask = xor.map(xor_mask).unwrap_or([0; 16]);
    let port = u16::from_be_bytes([v[2] ^ mask[0], v[3] ^ mask[1]]);
    let ip = match (v[1], v.len()) {
        (0x01, 8) => {
            let mut o = [0u8; 4];
            for (i, b) in o.iter_mut().enumerate() {
                *b = v[4 + i] ^ mask[i];
            }
            IpAddr::V4(Ipv4Addr::from(o))
        }
        (0x02, 20) => {
            let mut o = [0u8; 16];
            for (i, b) in o.iter_mut().enumerate() {
                *b = v[4 + i] ^ mask[i];
            }
            IpAddr::V6(Ipv6Addr::from(o))
        }
        (0x01 | 0x02, _) => return Err(bad(name, "length does not match the family")),
        _ => return Err(bad(name, "unknown address family")),
    };
    Ok(SocketAddr::new(ip, port))
}

fn encode_addr(a: SocketAddr, xor: Option<&TransactionId>, out: &mut Vec<u8>) {
    let mask = xor.map(xor_mask).unwrap_or([0; 16]);
    let port = a.port().to_be_bytes();
    let family = if a.is_ipv4() { 1 } else { 2 };
    out.extend_from_slice(&[0, family, port[0] ^ mask[0], port[1] ^ mask[1]]);
    match a.ip() {
        IpAddr::V4(ip) => out.extend(ip.octets().iter().zip(mask).map(|(b, m)| b ^ m)),
        IpAddr::V6(ip) => out.extend(ip.octets().iter().zip(mask).map(|(b, m)| b ^ m)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_errors_not_panics() {
        let tid = TransactionId::new([0; 12]);
        let cases: &[(u16, &[u8])] = &[
            (t::XOR_MAPPED_ADDRESS, &[0, 1, 0]),
            (t::XOR_MAPPED_ADDRESS, &[0, 3, 0, 0, 1, 2, 3, 4]),
            (t::MAPPED_ADDRESS, &[0, 2, 0, 0, 1, 2, 3, 4]),
            (t::ERROR_CODE, &[0, 0, 9, 0]),
            (t::USERNAME, &[0xff, 0xfe]),
            (t::LIFETIME, &[1, 2, 3]),
            (t::CHANNEL_NUMBER, &[0x40]),
            (t::DONT_FRAGMENT, &[1]),
            (t::MESSAGE_INTEGRITY, &[0; 19]),
            (t::MESSAGE_INTEGRITY_SHA256, &[0; 15]),
        ];
        for (typ, value) in cases {
            assert!(
                Attribute::decode(RawAttribute { typ: *typ, value }, &tid).is_err(),
                "{typ:#x}"
            );
        }
    }

    #[test]
    fn password_algorithms_list_is_parsed() {
        let list = [0, 2, 0, 0, 0, 1, 0, 0];
        assert_eq!(Attribute::password_algorithms(&list), vec![2, 1]);
    }
}
