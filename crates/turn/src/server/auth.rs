//! Long-term credentials: nonces, REST (coturn `use-auth-secret`) usernames and a
//! key cache the driver fills, so the core never waits on a database.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::Sha256;

use crate::stun::{long_term_key_md5, long_term_key_sha256};

/// The two long-term keys of one user (the store's `DigestKeys` without the realm).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct UserKeys {
    /// MD5(user:realm:password).
    pub md5: [u8; 16],
    /// SHA-256(user:realm:password).
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for UserKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UserKeys(..)")
    }
}

impl UserKeys {
    /// Keys from a clear-text password (REST credentials, tests).
    pub fn from_password(user: &str, realm: &str, password: &str) -> Self {
        UserKeys {
            md5: long_term_key_md5(user, realm, password),
            sha256: long_term_key_sha256(user, realm, password),
        }
    }
}

/// RFC 8489 §9.2: nonce cookie plus the 24-bit feature set, here only
/// "password algorithms" (bit 0), base64 of 0x800000.
pub(crate) const NONCE_PREFIX: &str = "obMatJos2gAAA";

/// Stateless nonces: `PREFIX || base64url(expiry_secs || HMAC(key, expiry || client IP)[..8])`.
#[derive(Debug, Clone)]
pub(crate) struct Nonces {
    key: [u8; 32],
    lifetime: Duration,
    start: Instant,
}

/// What a presented nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NonceCheck {
    Valid,
    /// Expired, forged, or from another client: answer 438 with a fresh one.
    Stale,
}

impl Nonces {
    pub(crate) fn new(key: [u8; 32], lifetime: Duration, start: Instant) -> Self {
        Nonces {
            key,
            lifetime,
            start,
        }
    }

    pub(crate) fn issue(&self, now: Instant, client: IpAddr) -> String {
        let expiry = (now.saturating_duration_since(self.start) + self.lifetime).as_secs() as u32;
        let mut raw = [0u8; 12];
        raw[..4].copy_from_slice(&expiry.to_be_bytes());
        raw[4..].copy_from_slice(&self.tag(expiry, client));
        let mut s = String::with_capacity(NONCE_PREFIX.len() + 16);
        s.push_str(NONCE_PREFIX);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode_string(raw, &mut s);
        s
    }

    pub(crate) fn check(&self, now: Instant, client: IpAddr, nonce: &str) -> NonceCheck {
        let Some(rest) = nonce.strip_prefix(NONCE_PREFIX) else {
            return NonceCheck::Stale;
        };
        let mut raw = [0u8; 12];
        match base64::engine::general_purpose::URL_SAFE_NO_PAD.decode_slice(rest, &mut raw) {
            Ok(12) => {}
            _ => return NonceCheck::Stale,
        }
        let expiry = u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]);
        let now_secs = now.saturating_duration_since(self.start).as_secs();
        if raw[4..] != self.tag(expiry, client) || u64::from(expiry) <= now_secs {
            return NonceCheck::Stale;
        }
        NonceCheck::Valid
    }

    fn tag(&self, expiry: u32, client: IpAddr) -> [u8; 8] {
        // HMAC accepts keys of any length.
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(&expiry.to_be_bytes());
        match client {
            IpAddr::V4(ip) => m.update(&ip.octets()),
            IpAddr::V6(ip) => m.update(&ip.octets()),
        }
        let full = m.finalize().into_bytes();
        let mut out = [0u8; 8];
        out.copy_from_slice(&full[..8]);
        out
    }
}

/// Why a REST username was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RestCheck {
    /// Not of the form `expiry[:user]`: look the name up as an account.
    NotRest,
    Expired,
    Keys(UserKeys),
}

/// coturn's `use-auth-secret`: username `expiry:user` (or just `expiry`),
/// password base64(HMAC-SHA1(secret, username)).
pub(crate) fn rest_keys(secret: &[u8], username: &str, realm: &str, unix_now: u64) -> RestCheck {
    let stamp = username.split_once(':').map_or(username, |(s, _)| s);
    if stamp.is_empty() || !stamp.bytes().all(|b| b.is_ascii_digit()) {
        return RestCheck::NotRest;
    }
    let Ok(expiry) = stamp.parse::<u64>() else {
        return RestCheck::NotRest;
    };
    if stamp.len() < 9 && !username.contains(':') {
        return RestCheck::NotRest;
    }
    if expiry < unix_now {
        return RestCheck::Expired;
    }
    RestCheck::Keys(UserKeys::from_password(
        username,
        realm,
        &rest_password(secret, username),
    ))
}

/// base64(HMAC-SHA1(secret, username)): the REST password for `username`.
pub fn rest_password(secret: &[u8], username: &str) -> String {
    // HMAC accepts keys of any length.
    let mut m = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(username.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(m.finalize().into_bytes())
}

/// Account keys the driver looked up, kept for a while (negative answers too).
#[derive(Debug, Default)]
pub(crate) struct KeyCache {
    map: HashMap<String, (Option<UserKeys>, Instant)>,
}

/// Cached keys live this long; unknown users a shorter time.
const KEY_TTL: Duration = Duration::from_secs(60);
const NEGATIVE_TTL: Duration = Duration::from_secs(5);
const KEY_CACHE_MAX: usize = 50_000;

/// A key-cache answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cached {
    Known(UserKeys),
    NoSuchUser,
    Missing,
}

impl KeyCache {
    pub(crate) fn get(&self, now: Instant, user: &str) -> Cached {
        match self.map.get(user) {
            Some((k, exp)) if *exp > now => k.map_or(Cached::NoSuchUser, Cached::Known),
            _ => Cached::Missing,
        }
    }

    pub(crate) fn insert(&mut self, now: Instant, user: &str, keys: Option<UserKeys>) {
        if self.map.len() >= KEY_CACHE_MAX {
            self.map.retain(|_, (_, exp)| *exp > now);
            if self.map.len() >= KEY_CACHE_MAX {
                self.map.clear();
            }
        }
        let ttl = if keys.is_some() {
            KEY_TTL
        } else {
            NEGATIVE_TTL
        };
        self.map.insert(user.to_owned(), (keys, now + ttl));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonces_are_bound_to_client_and_expire() {
        let t0 = Instant::now();
        let n = Nonces::new([7; 32], Duration::from_secs(600), t0);
        let ip: IpAddr = "203.0.113.1".parse().unwrap();
        let nonce = n.issue(t0, ip);
        assert!(nonce.starts_with("obMatJos2"));
        assert_eq!(
            n.check(t0 + Duration::from_secs(599), ip, &nonce),
            NonceCheck::Valid
        );
        assert_eq!(
            n.check(t0 + Duration::from_secs(601), ip, &nonce),
            NonceCheck::Stale
        );
        assert_eq!(
            n.check(t0, "203.0.113.2".parse().unwrap(), &nonce),
            NonceCheck::Stale
        );
        assert_eq!(n.check(t0, ip, "obMatJos2gAAAgarbage"), NonceCheck::Stale);
        let other = Nonces::new([8; 32], Duration::from_secs(600), t0);
        assert_eq!(other.check(t0, ip, &nonce), NonceCheck::Stale);
    }

    #[test]
    fn rest_usernames_follow_coturn() {
        let secret = b"0123456789abcdef";
        let pw = rest_password(secret, "1700000000:alice");
        assert_eq!(pw.len(), 28, "base64 of a 20-byte HMAC-SHA1");
        match rest_keys(secret, "1700000000:alice", "r", 1_600_000_000) {
            RestCheck::Keys(k) => {
                assert_eq!(k, UserKeys::from_password("1700000000:alice", "r", &pw))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            rest_keys(secret, "1700000000:alice", "r", 1_800_000_000),
            RestCheck::Expired
        );
        assert_eq!(rest_keys(secret, "alice", "r", 0), RestCheck::NotRest);
        assert_eq!(
            rest_keys(secret, "+14155550100", "r", 0),
            RestCheck::NotRest
        );
        assert_eq!(rest_keys(secret, "4155", "r", 0), RestCheck::NotRest);
    }

    #[test]
    fn key_cache_expires_entries() {
        let t0 = Instant::now();
        let mut c = KeyCache::default();
        let k = UserKeys::from_password("a", "r", "p");
        c.insert(t0, "a", Some(k));
        c.insert(t0, "ghost", None);
        assert_eq!(c.get(t0, "a"), Cached::Known(k));
        assert_eq!(c.get(t0, "ghost"), Cached::NoSuchUser);
        assert_eq!(c.get(t0 + Duration::from_secs(6), "ghost"), Cached::Missing);
        assert_eq!(c.get(t0 + Duration::from_secs(61), "a"), Cached::Missing);
    }
}
