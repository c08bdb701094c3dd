//! The client side of SIP digest authentication (RFC 3261 §22.4, RFC 8760):
//! read a `WWW-Authenticate` / `Proxy-Authenticate` challenge, write the
//! `Authorization` / `Proxy-Authorization` answer. SHA-256 is preferred over MD5.

use std::fmt::Write as _;

use md5::Md5;
use sha2::{Digest as _, Sha256};

/// Digest algorithm of a challenge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

/// One parsed challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub algorithm: Algorithm,
    pub opaque: Option<String>,
    /// `qop="auth"` offered.
    pub qop_auth: bool,
    /// `stale=true`: the nonce expired but our credentials were right.
    pub stale: bool,
}

impl Challenge {
    /// Parse `Digest realm="…", nonce="…", …`; `None` for other schemes,
    /// unknown algorithms or missing realm/nonce.
    pub fn parse(value: &str) -> Option<Challenge> {
        let (scheme, rest) = value.trim().split_once([' ', '\t'])?;
        if !scheme.eq_ignore_ascii_case("Digest") {
            return None;
        }
        let (mut realm, mut nonce, mut opaque) = (None, None, None);
        let (mut algorithm, mut qop_auth, mut stale) = (Algorithm::Md5, false, false);
        for (k, v) in params(rest) {
            match k.to_ascii_lowercase().as_str() {
                "realm" => realm = Some(v),
                "nonce" => nonce = Some(v),
                "opaque" => opaque = Some(v),
                "algorithm" if v.eq_ignore_ascii_case("MD5") => algorithm = Algorithm::Md5,
                "algorithm" if v.eq_ignore_ascii_case("SHA-256") => algorithm = Algorithm::Sha256,
                "algorithm" => return None,
                "qop" => qop_auth = v.split(',').any(|q| q.trim().eq_ignore_ascii_case("auth")),
                "stale" => stale = v.eq_ignore_ascii_case("true"),
                _ => {}
            }
        }
        Some(Challenge {
            realm: realm?,
            nonce: nonce?,
            algorithm,
            opaque,
            qop_auth,
            stale,
        })
    }

    /// The best of several challenge header values (SHA-256 first).
    pub fn pick<'a>(values: impl Iterator<Item = &'a str>) -> Option<Challenge> {
        let all: Vec<Challenge> = values.filter_map(Challenge::parse).collect();
        let sha = all.iter().find(|c| c.algorithm == Algorithm::Sha256);
        sha.or(all.first()).cloned()
    }

    /// The credentials header value answering this challenge for `method uri`.
    /// `nc` counts uses of this nonce (starting at 1), `cnonce` is fresh randomness.
    pub fn answer(
        &self,
        user: &str,
        password: &str,
        method: &str,
        uri: &str,
        nc: u32,
        cnonce: &str,
    ) -> String {
        let h = |s: &str| hash(self.algorithm, s);
        let ha1 = h(&format!("{user}:{}:{password}", self.realm));
        let ha2 = h(&format!("{method}:{uri}"));
        let alg = match self.algorithm {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        };
        let mut out = format!(
            "Digest username=\"{user}\", realm=\"{}\", nonce=\"{}\", uri=\"{uri}\", algorithm={alg}",
            self.realm, self.nonce
        );
        let response = if self.qop_auth {
            let nc = format!("{nc:08x}");
            let _ = write!(out, ", qop=auth, nc={nc}, cnonce=\"{cnonce}\"");
            h(&format!("{ha1}:{}:{nc}:{cnonce}:auth:{ha2}", self.nonce))
        } else {
            h(&format!("{ha1}:{}:{ha2}", self.nonce))
        };
        let _ = write!(out, ", response=\"{response}\"");
        if let Some(o) = &self.opaque {
            let _ = write!(out, ", opaque=\"{o}\"");
        }
        out
    }
}

fn hash(alg: Algorithm, s: &str) -> String {
    let bytes: Vec<u8> = match alg {
        Algorithm::Md5 => Md5::digest(s.as_bytes()).to_vec(),
        Algorithm::Sha256 => Sha256::digest(s.as_bytes()).to_vec(),
    };
    bytes.iter().fold(String::with_capacity(64), |mut o, b| {
        let _ = write!(o, "{b:02x}");
        o
    })
}

/// `k=v, k="v, with comma"` pairs; quotes removed.
fn params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let after = after.trim_start();
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.push((k.trim().to_owned(), v.trim().to_owned()));
        rest = next.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc2617_example_response() {
        // RFC 2617 §3.5: the classic MD5 qop=auth example.
        let c = Challenge::parse(
            "Digest realm=\"testrealm@host.com\", qop=\"auth,auth-int\", \
             nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
        )
        .unwrap();
        let a = c.answer(
            "Mufasa",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            1,
            "0a4f113b",
        );
        assert!(
            a.contains("response=\"6629fae49393a05397450978507c4ef1\""),
            "{a}"
        );
        assert!(a.contains("opaque=\"5ccc069c403ebaf9f0171e9517f40e41\""));
    }

    #[test]
    fn sha256_is_preferred_and_stale_is_read() {
        let v = [
            "Digest realm=\"x\", nonce=\"n1\", algorithm=MD5, qop=\"auth\"",
            "Digest realm=\"x\", nonce=\"n1\", algorithm=SHA-256, qop=\"auth\", stale=true",
        ];
        let c = Challenge::pick(v.into_iter()).unwrap();
        assert_eq!(c.algorithm, Algorithm::Sha256);
        assert!(c.stale && c.qop_auth);
        assert_eq!(Challenge::parse("Basic realm=\"x\""), None);
        assert_eq!(Challenge::parse("Digest realm=\"x\""), None);
        assert_eq!(
            Challenge::parse("Digest nonce=\"n\", algorithm=SHA-512-256, realm=\"r\""),
            None
        );
    }

    #[test]
    fn answers_verify_against_the_natter_registrar_digest() {
        use natter_sip::auth::{parse_credentials, Digest, DigestKeys, Verdict};
        let now = std::time::Instant::now();
        let mut d = Digest::new(
            "example.org",
            &[7; 32],
            now,
            std::time::Duration::from_secs(60),
            16,
        );
        let keys = DigestKeys::derive("+14155550100", "example.org", "pw");
        // Both challenges share one nonce: the count must keep rising across them.
        for (i, value) in d.challenge(now, false).iter().enumerate() {
            let nc = 2 * i as u32 + 1;
            let c = Challenge::parse(value).unwrap();
            let a = c.answer(
                "+14155550100",
                "pw",
                "REGISTER",
                "sip:example.org",
                nc,
                "abc",
            );
            let creds = parse_credentials(&a).unwrap();
            assert_eq!(
                d.verify(now, "REGISTER", &creds, Some(&keys)),
                Verdict::Ok,
                "{a}"
            );
            let wrong = c.answer(
                "+14155550100",
                "nope",
                "REGISTER",
                "sip:example.org",
                nc + 1,
                "abc",
            );
            let creds = parse_credentials(&wrong).unwrap();
            assert_eq!(
                d.verify(now, "REGISTER", &creds, Some(&keys)),
                Verdict::Wrong
            );
        }
    }
}
