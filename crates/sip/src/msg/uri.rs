//! SIP and SIPS URIs (RFC 3261 §19.1), borrowed from the message text.

use super::header::{split_host_port, Params};

/// URI scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Sip,
    Sips,
    Tel,
}

/// `sip:user:password@host:port;params?headers`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uri<'a> {
    pub scheme: Scheme,
    /// The user part, still %-escaped as written.
    pub user: Option<&'a str>,
    /// Host name, IPv4 address or `[IPv6]`; for `tel:` the number.
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
    pub headers: Option<&'a str>,
}

impl<'a> Uri<'a> {
    /// Parse a URI; `None` when malformed or of an unknown scheme.
    pub fn parse(s: &'a str) -> Option<Uri<'a>> {
        let s = s.trim();
        let (scheme, rest) = s.split_once(':')?;
        let scheme = if scheme.eq_ignore_ascii_case("sip") {
            Scheme::Sip
        } else if scheme.eq_ignore_ascii_case("sips") {
            Scheme::Sips
        } else if scheme.eq_ignore_ascii_case("tel") {
            Scheme::Tel
        } else {
            return None;
        };
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, Some(h)),
            None => (rest, None),
        };
        if scheme == Scheme::Tel {
            let (number, params) = split_params(rest);
            let ok = !number.is_empty()
                && number
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b"+-.()*#".contains(&b));
            return ok.then_some(Uri {
                scheme,
                user: None,
                host: number,
                port: None,
                params,
                headers,
            });
        }
        let (user, hostport) = match rest.rfind('@') {
            Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
            None => (None, rest),
        };
        let (hostport, params) = split_params(hostport);
        let (host, port) = split_host_port(hostport)?;
        let user = match user {
            Some(u) => {
                let name = u.split(':').next().unwrap_or(u);
                if name.is_empty()
                    || name
                        .bytes()
                        .any(|b| b <= b' ' || b == b'<' || b == b'>' || b == b'"')
                {
                    return None;
                }
                Some(name)
            }
            None => None,
        };
        Some(Uri {
            scheme,
            user,
            host,
            port,
            params,
            headers,
        })
    }

    /// The `transport` URI parameter, lowercased comparisons left to callers.
    pub fn transport(&self) -> Option<&'a str> {
        self.params.get("transport").flatten()
    }

    /// True for loose-routing URIs (`;lr`).
    pub fn is_loose_route(&self) -> bool {
        self.params.get("lr").is_some()
    }

    /// The user part with %-escapes decoded (`%2B1415…` → `+1415…`).
    pub fn user_unescaped(&self) -> Option<String> {
        self.user.map(percent_decode)
    }
}

fn split_params(s: &str) -> (&str, Params<'_>) {
    match s.find(';') {
        Some(at) => (&s[..at], Params(&s[at + 1..])),
        None => (s, Params("")),
    }
}

/// Decode `%XX` escapes; invalid escapes stay as written.
pub(crate) fn percent_decode(s: &str) -> String {
    if !s.contains('%') {
        return s.to_owned();
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_sip_uri() {
        let u =
            Uri::parse("sips:%2B14155550100:secret@Example.ORG:5061;transport=tcp;lr?Subject=x")
                .unwrap();
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user, Some("%2B14155550100"));
        assert_eq!(u.user_unescaped().as_deref(), Some("+14155550100"));
        assert_eq!(u.host, "Example.ORG");
        assert_eq!(u.port, Some(5061));
        assert_eq!(u.transport(), Some("tcp"));
        assert!(u.is_loose_route());
        assert_eq!(u.headers, Some("Subject=x"));
    }

    #[test]
    fn host_only_and_ipv6() {
        let u = Uri::parse("sip:[2001:db8::9]:5070;lr").unwrap();
        assert_eq!(
            (u.user, u.host, u.port),
            (None, "[2001:db8::9]", Some(5070))
        );
        let u = Uri::parse("SIP:10.0.0.1").unwrap();
        assert_eq!((u.scheme, u.host, u.port), (Scheme::Sip, "10.0.0.1", None));
    }

    #[test]
    fn tel_uri() {
        let u = Uri::parse("tel:+1-415-555-0100;phone-context=example.org").unwrap();
        assert_eq!((u.scheme, u.host), (Scheme::Tel, "+1-415-555-0100"));
    }

    #[test]
    fn malformed_uris() {
        for bad in [
            "http://x",
            "sip:",
            "sip:@host",
            "sip:a b@host",
            "sip:host:port",
            "nocolon",
            "sip:a@",
        ] {
            assert_eq!(Uri::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn percent_decoding_tolerates_bad_escapes() {
        assert_eq!(percent_decode("a%41%4"), "aA%4");
        assert_eq!(percent_decode("%zz"), "%zz");
        assert_eq!(percent_decode("%"), "%");
    }
}
