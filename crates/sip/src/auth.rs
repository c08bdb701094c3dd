//! Digest authentication (RFC 3261 §22, RFC 8760): SHA-256 and MD5,
//! `qop=auth`, stateless HMAC-signed nonces that expire (→ `stale=true`),
//! and replay protection by nonce-count tracking in a fixed-size table.
//!
//! A nonce is `hex(issued_ms ‖ serial ‖ HMAC-SHA256(secret, issued_ms ‖ serial)[..16])`.
//! The serial indexes a ring of `(serial, highest nc)` slots, so replay state
//! costs a fixed 16 bytes per slot however many nonces are issued; a nonce
//! whose slot was reused is answered as stale.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest as _, Sha256};

/// HA1 keys of one account, `H(user:realm:password)`.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestKeys {
    pub md5: [u8; 16],
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for DigestKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DigestKeys(..)") // password equivalents: never printed
    }
}

impl DigestKeys {
    /// Derive the keys from a password (tests, tools).
    pub fn derive(user: &str, realm: &str, password: &str) -> DigestKeys {
        let input = format!("{user}:{realm}:{password}");
        DigestKeys {
            md5: Md5::digest(input.as_bytes()).into(),
            sha256: Sha256::digest(input.as_bytes()).into(),
        }
    }
}

/// Where account keys come from. The driver implements it over the store
/// (with a cache); lookups happen on the hot path, so keep them fast.
pub trait Accounts {
    /// The keys of `user` in our realm, `None` when there is no such account.
    fn digest_keys(&self, user: &str) -> Option<DigestKeys>;
}

/// Digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

/// Credentials from an Authorization / Proxy-Authorization header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub algorithm: Algorithm,
    /// `Some((cnonce, nc))` when `qop=auth` was used.
    pub qop_auth: Option<(String, u32)>,
}

impl Credentials {
    /// RFC 7616 §3.4.6 (RFC 2617 §3.2.2.5): the `uri` parameter must name
    /// the resource of the request line, i.e. equal the Request-URI; the
    /// server answers 400 otherwise. Compared as written: the client copies
    /// the Request-URI it sends, so any difference means the response was
    /// computed for another request (or replayed from one).
    pub fn uri_matches(&self, request_uri: &str) -> bool {
        self.uri == request_uri
    }
}

/// The outcome of checking credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Correct response, fresh nonce, new nonce count.
    Ok,
    /// Correct response but the nonce expired: challenge again with `stale=true`.
    Stale,
    /// The nonce was not ours, or the nonce count was replayed: challenge again.
    BadNonce,
    /// Wrong password, unknown account or unsupported parameters.
    Wrong,
}

/// Which digest algorithms a challenge offers, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DigestOffer {
    /// MD5, then SHA-256 (the default: many deployed clients, sipp 3.6 among
    /// them, answer only the first challenge and fail when it is not MD5).
    #[default]
    Md5AndSha256,
    /// SHA-256, then MD5 (RFC 8760 §2.4 order of preference).
    Sha256AndMd5,
    /// MD5 alone, for clients that give up on any challenge they cannot
    /// answer (libre before 2.x, so the baresip 1.0 Debian ships).
    Md5,
    /// SHA-256 alone; an MD5 answer is refused.
    Sha256,
}

impl DigestOffer {
    /// The algorithms offered, in order.
    pub fn algorithms(self) -> &'static [Algorithm] {
        match self {
            DigestOffer::Md5AndSha256 => &[Algorithm::Md5, Algorithm::Sha256],
            DigestOffer::Sha256AndMd5 => &[Algorithm::Sha256, Algorithm::Md5],
            DigestOffer::Md5 => &[Algorithm::Md5],
            DigestOffer::Sha256 => &[Algorithm::Sha256],
        }
    }
}

/// Issues and checks nonces for one realm.
pub struct Digest {
    realm: String,
    mac: Hmac<Sha256>,
    epoch: Instant,
    ttl: Duration,
    serial: u64,
    slots: Vec<(u64, u32)>,
    offer: DigestOffer,
}

impl Digest {
    /// `secret` keys the nonce MAC (random per process is fine: after a
    /// restart old nonces fail and clients are simply challenged again).
    /// `slots` bounds replay state (at least 1).
    pub fn new(
        realm: &str,
        secret: &[u8; 32],
        epoch: Instant,
        ttl: Duration,
        slots: usize,
    ) -> Digest {
        Digest {
            realm: realm.to_owned(),
            // HMAC accepts keys of any length, so this cannot fail.
            mac: Hmac::new_from_slice(secret).expect("HMAC takes any key length"),
            epoch,
            ttl,
            serial: 0,
            slots: vec![(u64::MAX, 0); slots.max(1)],
            offer: DigestOffer::default(),
        }
    }

    /// The realm challenged for.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// Challenge header values, one per algorithm offered ([`Digest::set_offer`]).
    pub fn challenge(&mut self, now: Instant, stale: bool) -> Vec<String> {
        let nonce = self.nonce(now);
        let stale = if stale { ", stale=true" } else { "" };
        let one = |alg: &str| {
            [
                "Digest realm=\"",
                &self.realm,
                "\", nonce=\"",
                &nonce,
                "\", algorithm=",
                alg,
                ", qop=\"auth\"",
                stale,
            ]
            .concat()
        };
        self.offer
            .algorithms()
            .iter()
            .map(|a| match a {
                Algorithm::Md5 => one("MD5"),
                Algorithm::Sha256 => one("SHA-256"),
            })
            .collect()
    }

    /// Which algorithms challenges offer (and answers may use).
    pub fn set_offer(&mut self, offer: DigestOffer) {
        self.offer = offer;
    }

    /// Check credentials for a request `method`. `keys` is `None` for an
    /// unknown account: the work done is the same and the verdict is `Wrong`.
    pub fn verify(
        &mut self,
        now: Instant,
        method: &str,
        creds: &Credentials,
        keys: Option<&DigestKeys>,
    ) -> Verdict {
        let expected = expected_response(creds, method, keys);
        let matches = constant_time_eq(
            expected.as_bytes(),
            creds.response.to_ascii_lowercase().as_bytes(),
        );
        let offered = self.offer.algorithms().contains(&creds.algorithm);
        if keys.is_none() || !matches || !offered || creds.realm != self.realm {
            return Verdict::Wrong;
        }
        let Some((issued, serial)) = self.open_nonce(&creds.nonce) else {
            return Verdict::BadNonce;
        };
        let index = (serial % self.slots.len() as u64) as usize;
        let slot = &mut self.slots[index];
        if slot.0 != serial {
            return Verdict::Stale; // the slot was reused by a newer nonce
        }
        if now.saturating_duration_since(issued) > self.ttl {
            return Verdict::Stale;
        }
        let nc = creds.qop_auth.as_ref().map_or(1, |(_, nc)| *nc);
        if slot.0 == serial && nc <= slot.1 {
            return Verdict::BadNonce; // replayed nonce count
        }
        *slot = (serial, nc);
        Verdict::Ok
    }

    fn nonce(&mut self, now: Instant) -> String {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64;
        self.serial += 1;
        let serial = self.serial;
        let slot = (serial % self.slots.len() as u64) as usize;
        self.slots[slot] = (serial, 0);
        let tag = self.tag(ms, serial);
        let mut out = String::with_capacity(64);
        hex_into(&mut out, &ms.to_be_bytes());
        hex_into(&mut out, &serial.to_be_bytes());
        hex_into(&mut out, &tag);
        out
    }

    fn open_nonce(&self, nonce: &str) -> Option<(Instant, u64)> {
        let bytes = hex_decode(nonce)?;
        let (ms, rest) = bytes.split_first_chunk::<8>()?;
        let (serial, tag) = rest.split_first_chunk::<8>()?;
        let (ms, serial) = (u64::from_be_bytes(*ms), u64::from_be_bytes(*serial));
        if tag.len() != 16 || !constant_time_eq(&self.tag(ms, serial), tag) {
            return None;
        }
        Some((self.epoch.checked_add(Duration::from_millis(ms))?, serial))
    }

    fn tag(&self, ms: u64, serial: u64) -> [u8; 16] {
        let mut mac = self.mac.clone();
        mac.update(&ms.to_be_bytes());
        mac.update(&serial.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; 16];
        out.copy_from_slice(&full[..16]);
        out
    }
}

/// Parse `Digest k=v, k="v", …`. `None` when not a usable digest header.
pub fn parse_credentials(value: &str) -> Option<Credentials> {
    let rest = value.trim();
    let (scheme, rest) = rest.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let (mut username, mut realm, mut nonce, mut uri, mut response) =
        (None, None, None, None, None);
    let (mut algorithm, mut qop, mut cnonce, mut nc) = (Algorithm::Md5, None, None, None);
    let mut rest = rest.trim_start();
    let mut seen = 0;
    while !rest.is_empty() {
        let (k, v, after) = next_auth_param(rest)?;
        rest = after;
        seen += 1;
        if seen > 32 {
            return None;
        }
        let is = |name: &str| k.eq_ignore_ascii_case(name);
        if is("username") {
            username = Some(v);
        } else if is("realm") {
            realm = Some(v);
        } else if is("nonce") {
            nonce = Some(v);
        } else if is("uri") {
            uri = Some(v);
        } else if is("response") {
            response = Some(v);
        } else if is("algorithm") {
            algorithm = match v {
                _ if v.eq_ignore_ascii_case("MD5") => Algorithm::Md5,
                _ if v.eq_ignore_ascii_case("SHA-256") => Algorithm::Sha256,
                _ => return None,
            };
        } else if is("qop") {
            qop = Some(v);
        } else if is("cnonce") {
            cnonce = Some(v);
        } else if is("nc") {
            nc = Some(u32::from_str_radix(v, 16).ok()?);
        }
    }
    let qop_auth = match qop {
        None => None,
        Some(q) if q.eq_ignore_ascii_case("auth") => Some((cnonce?.to_owned(), nc?)),
        Some(_) => return None,
    };
    Some(Credentials {
        username: username?.to_owned(),
        realm: realm?.to_owned(),
        nonce: nonce?.to_owned(),
        uri: uri?.to_owned(),
        response: response?.to_owned(),
        algorithm,
        qop_auth,
    })
}

/// One `name=value` or `name="value"` from the front of `s`: name, value,
/// and what follows the separating comma. Borrowed, no allocation.
fn next_auth_param(s: &str) -> Option<(&str, &str, &str)> {
    let (name, after) = s.split_once('=')?;
    let after = after.trim_start();
    let (value, after) = if let Some(q) = after.strip_prefix('"') {
        let end = q.find('"')?;
        (&q[..end], &q[end + 1..])
    } else {
        let end = after.find(',').unwrap_or(after.len());
        (after[..end].trim(), &after[end..])
    };
    let rest = after.trim_start();
    let rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    Some((name.trim(), value, rest))
}

fn expected_response(c: &Credentials, method: &str, keys: Option<&DigestKeys>) -> String {
    // Unknown accounts hash against zero keys so the work is the same.
    let (md5, sha) = keys.map_or(([0u8; 16], [0u8; 32]), |k| (k.md5, k.sha256));
    let ha1 = match c.algorithm {
        Algorithm::Md5 => hex(&md5),
        Algorithm::Sha256 => hex(&sha),
    };
    let ha2 = hash(c.algorithm, &[method, ":", &c.uri].concat());
    let mut input = String::with_capacity(256);
    for part in [&ha1, ":", &c.nonce, ":"] {
        input.push_str(part);
    }
    if let Some((cnonce, nc)) = &c.qop_auth {
        hex_into(&mut input, &nc.to_be_bytes()); // nc as 8 hex digits
        for part in [":", cnonce, ":auth:"] {
            input.push_str(part);
        }
    }
    input.push_str(&ha2);
    hash(c.algorithm, &input)
}

fn hash(alg: Algorithm, input: &str) -> String {
    match alg {
        Algorithm::Md5 => hex(&Md5::digest(input.as_bytes())),
        Algorithm::Sha256 => hex(&Sha256::digest(input.as_bytes())),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    hex_into(&mut s, bytes);
    s
}

/// Lowercase hex of `bytes`, appended (a table, not `fmt`: it is on the
/// path of every challenge and every verification).
fn hex_into(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests;
