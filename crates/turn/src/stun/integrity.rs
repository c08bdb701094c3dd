//! MESSAGE-INTEGRITY (HMAC-SHA1), MESSAGE-INTEGRITY-SHA256 and FINGERPRINT.

use hmac::{Hmac, Mac as _};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::Sha256;

use super::{attr_type as t, Message, HEADER_LEN};
use crate::StunError;

const FINGERPRINT_XOR: u32 = 0x5354_554E;

/// An HMAC key for MESSAGE-INTEGRITY (HMAC-SHA1) and MESSAGE-INTEGRITY-SHA256.
///
/// The key and the MAC are independent (RFC 8489 §9.2.2, §14.5-14.6): the
/// password algorithm picks the long-term key, the attribute picks the HMAC.
#[derive(Clone, PartialEq, Eq)]
pub enum IntegrityKey {
    /// Long-term key with password algorithm MD5: MD5(user:realm:password).
    LongTermMd5([u8; 16]),
    /// Long-term key with password algorithm SHA-256: SHA-256(user:realm:password).
    LongTermSha256([u8; 32]),
    /// A short-term password (ICE).
    ShortTerm(Vec<u8>),
}

impl IntegrityKey {
    fn bytes(&self) -> &[u8] {
        match self {
            IntegrityKey::LongTermMd5(k) => k,
            IntegrityKey::LongTermSha256(k) => k,
            IntegrityKey::ShortTerm(k) => k,
        }
    }
}

/// Which MAC attribute to write or check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mac {
    /// MESSAGE-INTEGRITY (HMAC-SHA1, 20 bytes).
    Sha1,
    /// MESSAGE-INTEGRITY-SHA256 (HMAC-SHA256, 32 bytes).
    Sha256,
}

impl std::fmt::Debug for IntegrityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IntegrityKey::LongTermMd5(_) => "IntegrityKey::LongTermMd5(..)",
            IntegrityKey::LongTermSha256(_) => "IntegrityKey::LongTermSha256(..)",
            IntegrityKey::ShortTerm(_) => "IntegrityKey::ShortTerm(..)",
        })
    }
}

/// MD5(username:realm:password), the classic long-term key (and SIP's HA1).
pub fn long_term_key_md5(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = Md5::new();
    for (i, part) in [username, realm, password].iter().enumerate() {
        if i > 0 {
            h.update(b":");
        }
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// SHA-256(username:realm:password) (RFC 8489 password algorithm 2).
pub fn long_term_key_sha256(username: &str, realm: &str, password: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(username.as_bytes());
    h.update(b":");
    h.update(realm.as_bytes());
    h.update(b":");
    h.update(password.as_bytes());
    h.finalize().into()
}

/// CRC-32 of `msg_prefix` XOR 0x5354554E; `msg_prefix` must already carry the
/// header length that includes the FINGERPRINT attribute.
pub fn fingerprint(msg_prefix: &[u8]) -> u32 {
    crc32fast::hash(msg_prefix) ^ FINGERPRINT_XOR
}

/// The header with its length field replaced by `len`.
fn header_with_len(raw: &[u8], len: usize) -> [u8; HEADER_LEN] {
    let mut h = [0u8; HEADER_LEN];
    h.copy_from_slice(&raw[..HEADER_LEN]);
    // Lengths here are at most the original 16-bit length plus one attribute.
    h[2..4].copy_from_slice(&(len.min(usize::from(u16::MAX)) as u16).to_be_bytes());
    h
}

/// HMAC over `raw[..upto]` with the header length set to `len_field`.
pub(crate) fn compute(
    key: &IntegrityKey,
    mac: Mac,
    raw: &[u8],
    upto: usize,
    len_field: usize,
) -> Vec<u8> {
    let header = header_with_len(raw, len_field);
    let body = &raw[HEADER_LEN..upto];
    match mac {
        Mac::Sha1 => hmac_sha1(key.bytes(), &header, body).to_vec(),
        Mac::Sha256 => {
            // HMAC accepts keys of any length.
            let mut m =
                Hmac::<Sha256>::new_from_slice(key.bytes()).expect("HMAC takes any key length");
            m.update(&header);
            m.update(body);
            m.finalize().into_bytes().to_vec()
        }
    }
}

fn hmac_sha1(key: &[u8], header: &[u8], body: &[u8]) -> [u8; 20] {
    // HMAC accepts keys of any length.
    let mut m = Hmac::<Sha1>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(header);
    m.update(body);
    m.finalize().into_bytes().into()
}

/// Which MAC a message carries: MESSAGE-INTEGRITY-SHA256 wins when both are there.
pub(crate) fn mac_of(msg: &Message<'_>) -> Option<Mac> {
    if msg.raw_value(t::MESSAGE_INTEGRITY_SHA256).is_some() {
        Some(Mac::Sha256)
    } else if msg.raw_value(t::MESSAGE_INTEGRITY).is_some() {
        Some(Mac::Sha1)
    } else {
        None
    }
}

pub(crate) fn verify(msg: &Message<'_>, key: &IntegrityKey) -> bool {
    let Some(mac_kind) = mac_of(msg) else {
        return false;
    };
    let typ = match mac_kind {
        Mac::Sha256 => t::MESSAGE_INTEGRITY_SHA256,
        Mac::Sha1 => t::MESSAGE_INTEGRITY,
    };
    let Some(off) = msg.offset_of(typ) else {
        return false;
    };
    let raw = msg.as_bytes();
    let vlen = usize::from(u16::from_be_bytes([raw[off + 2], raw[off + 3]]));
    let Some(found) = raw.get(off + 4..off + 4 + vlen) else {
        return false;
    };
    let mac = compute(key, mac_kind, raw, off, off - HEADER_LEN + 4 + vlen);
    // A truncated SHA-256 MAC (16..32 bytes) compares its prefix (RFC 8489 §14.6).
    found.len() <= mac.len() && !found.is_empty() && constant_time_eq(found, &mac[..found.len()])
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn check_fingerprint(msg: &Message<'_>) -> Result<bool, StunError> {
    let Some(off) = msg.offset_of(t::FINGERPRINT) else {
        return Ok(false);
    };
    let raw = msg.as_bytes();
    let value = raw
        .get(off + 4..off + 8)
        .ok_or(StunError::FingerprintMismatch)?;
    let header = header_with_len(raw, off - HEADER_LEN + 8);
    let mut h = crc32fast::Hasher::new();
    h.update(&header);
    h.update(&raw[HEADER_LEN..off]);
    let expect = h.finalize() ^ FINGERPRINT_XOR;
    if value == expect.to_be_bytes() {
        Ok(true)
    } else {
        Err(StunError::FingerprintMismatch)
    }
}
