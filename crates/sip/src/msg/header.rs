//! Header names (with compact forms) and borrowed typed views of the
//! header values the registrar and proxy read.

use super::{Method, Uri};

/// A canonical header name. Unknown names keep their spelling.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HeaderName {
    Via,
    From,
    To,
    CallId,
    CSeq,
    Contact,
    MaxForwards,
    Route,
    RecordRoute,
    Path,
    ContentLength,
    ContentType,
    ContentEncoding,
    Expires,
    MinExpires,
    Authorization,
    ProxyAuthorization,
    WwwAuthenticate,
    ProxyAuthenticate,
    AuthenticationInfo,
    Supported,
    Require,
    ProxyRequire,
    Unsupported,
    Allow,
    UserAgent,
    Server,
    Date,
    Subject,
    Event,
    RetryAfter,
    /// RFC 5626 §11: the keepalive interval the server asks for.
    FlowTimer,
    Other(Box<str>),
}

impl HeaderName {
    /// Recognise a header name, long or compact form, case-insensitively.
    pub fn parse(name: &str) -> HeaderName {
        // Lowercase into a stack buffer, then one match (no allocation).
        let mut buf = [0u8; 24];
        let Some(lower) = buf.get_mut(..name.len()) else {
            return HeaderName::Other(name.into());
        };
        for (d, b) in lower.iter_mut().zip(name.bytes()) {
            *d = b.to_ascii_lowercase();
        }
        match &*lower {
            b"via" => HeaderName::Via,
            b"v" => HeaderName::Via,
            b"from" => HeaderName::From,
            b"f" => HeaderName::From,
            b"to" => HeaderName::To,
            b"t" => HeaderName::To,
            b"call-id" => HeaderName::CallId,
            b"i" => HeaderName::CallId,
            b"cseq" => HeaderName::CSeq,
            b"contact" => HeaderName::Contact,
            b"m" => HeaderName::Contact,
            b"max-forwards" => HeaderName::MaxForwards,
            b"route" => HeaderName::Route,
            b"record-route" => HeaderName::RecordRoute,
            b"path" => HeaderName::Path,
            b"content-length" => HeaderName::ContentLength,
            b"l" => HeaderName::ContentLength,
            b"content-type" => HeaderName::ContentType,
            b"c" => HeaderName::ContentType,
            b"content-encoding" => HeaderName::ContentEncoding,
            b"e" => HeaderName::ContentEncoding,
            b"expires" => HeaderName::Expires,
            b"min-expires" => HeaderName::MinExpires,
            b"authorization" => HeaderName::Authorization,
            b"proxy-authorization" => HeaderName::ProxyAuthorization,
            b"www-authenticate" => HeaderName::WwwAuthenticate,
            b"proxy-authenticate" => HeaderName::ProxyAuthenticate,
            b"authentication-info" => HeaderName::AuthenticationInfo,
            b"supported" => HeaderName::Supported,
            b"k" => HeaderName::Supported,
            b"require" => HeaderName::Require,
            b"proxy-require" => HeaderName::ProxyRequire,
            b"unsupported" => HeaderName::Unsupported,
            b"allow" => HeaderName::Allow,
            b"user-agent" => HeaderName::UserAgent,
            b"server" => HeaderName::Server,
            b"date" => HeaderName::Date,
            b"subject" => HeaderName::Subject,
            b"s" => HeaderName::Subject,
            b"event" => HeaderName::Event,
            b"o" => HeaderName::Event,
            b"retry-after" => HeaderName::RetryAfter,
            b"flow-timer" => HeaderName::FlowTimer,
            _ => HeaderName::Other(name.into()),
        }
    }

    /// The long form as we write it.
    pub fn as_str(&self) -> &str {
        match self {
            HeaderName::Via => "Via",
            HeaderName::From => "From",
            HeaderName::To => "To",
            HeaderName::CallId => "Call-ID",
            HeaderName::CSeq => "CSeq",
            HeaderName::Contact => "Contact",
            HeaderName::MaxForwards => "Max-Forwards",
            HeaderName::Route => "Route",
            HeaderName::RecordRoute => "Record-Route",
            HeaderName::Path => "Path",
            HeaderName::ContentLength => "Content-Length",
            HeaderName::ContentType => "Content-Type",
            HeaderName::ContentEncoding => "Content-Encoding",
            HeaderName::Expires => "Expires",
            HeaderName::MinExpires => "Min-Expires",
            HeaderName::Authorization => "Authorization",
            HeaderName::ProxyAuthorization => "Proxy-Authorization",
            HeaderName::WwwAuthenticate => "WWW-Authenticate",
            HeaderName::ProxyAuthenticate => "Proxy-Authenticate",
            HeaderName::AuthenticationInfo => "Authentication-Info",
            HeaderName::Supported => "Supported",
            HeaderName::Require => "Require",
            HeaderName::ProxyRequire => "Proxy-Require",
            HeaderName::Unsupported => "Unsupported",
            HeaderName::Allow => "Allow",
            HeaderName::UserAgent => "User-Agent",
            HeaderName::Server => "Server",
            HeaderName::Date => "Date",
            HeaderName::Subject => "Subject",
            HeaderName::Event => "Event",
            HeaderName::RetryAfter => "Retry-After",
            HeaderName::FlowTimer => "Flow-Timer",
            HeaderName::Other(s) => s,
        }
    }

    /// Headers whose comma-separated values are separate entries (§7.3.1).
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            HeaderName::Via
                | HeaderName::Contact
                | HeaderName::Route
                | HeaderName::RecordRoute
                | HeaderName::Path
        )
    }
}

/// `;name=value` parameters, kept as the raw text after the first `;`.
/// Lookups are case-insensitive on the name and allocate nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params<'a>(pub &'a str);

impl<'a> Params<'a> {
    /// `Some(Some(v))` for `name=v`, `Some(None)` for a bare `name`.
    pub fn get(&self, name: &str) -> Option<Option<&'a str>> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every parameter in order.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, Option<&'a str>)> + 'a {
        split_unquoted(self.0, b';').filter_map(|p| {
            let p = p.trim();
            if p.is_empty() {
                return None;
            }
            Some(match p.split_once('=') {
                Some((n, v)) => (n.trim(), Some(v.trim())),
                None => (p, None),
            })
        })
    }
}

/// A parsed Via value (§20.42): `SIP/2.0/UDP host:port;params`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via<'a> {
    /// Transport token as written (`UDP`, `TCP`, `TLS`, `WS`, `WSS`…).
    pub transport: &'a str,
    pub host: &'a str,
    pub port: Option<u16>,
    pub params: Params<'a>,
}

impl<'a> Via<'a> {
    /// Parse one Via value; `None` when malformed.
    pub fn parse(value: &'a str) -> Option<Via<'a>> {
        let (name, rest) = take_token(value)?;
        let (version, rest) = take_token(rest.trim_start().strip_prefix('/')?)?;
        let (transport, rest) = take_token(rest.trim_start().strip_prefix('/')?)?;
        let sip_2 = name.eq_ignore_ascii_case("SIP") && version == "2.0";
        if !sip_2 || !rest.starts_with([' ', '\t']) {
            return None;
        }
        let rest = rest.trim_start();
        let (sent_by, params) = match rest.find(';') {
            Some(at) => (&rest[..at], Params(&rest[at + 1..])),
            None => (rest, Params("")),
        };
        let (host, port) = split_host_port(sent_by.trim())?;
        Some(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// The branch parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.params.get("branch").flatten()
    }

    /// True when the client asked for `rport` (RFC 3581).
    pub fn has_rport(&self) -> bool {
        self.params.get("rport").is_some()
    }
}

/// `name-addr` or `addr-spec` with header parameters (From, To, Contact,
/// Route, Record-Route): `"Alice" <sip:a@b>;tag=x`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr<'a> {
    pub display: Option<&'a str>,
    /// The URI text (without angle brackets).
    pub uri: &'a str,
    pub params: Params<'a>,
}

impl<'a> NameAddr<'a> {
    /// Parse one value; `None` when malformed.
    pub fn parse(value: &'a str) -> Option<NameAddr<'a>> {
        let v = value.trim();
        if let Some(open) = find_unquoted(v, b'<') {
            let display = v[..open].trim();
            let close = open + v[open..].find('>')?;
            let uri = v[open + 1..close].trim();
            let rest = v[close + 1..].trim_start();
            let params = match rest.strip_prefix(';') {
                Some(p) => Params(p),
                None if rest.is_empty() => Params(""),
                None => return None,
            };
            let display = (!display.is_empty()).then(|| display.trim_matches('"'));
            return (!uri.is_empty()).then_some(NameAddr {
                display,
                uri,
                params,
            });
        }
        // addr-spec form: parameters after the URI belong to the header (§20.10).
        let (uri, params) = match v.find(';') {
            Some(at) => (&v[..at], Params(&v[at + 1..])),
            None => (v, Params("")),
        };
        let uri = uri.trim();
        (!uri.is_empty() && !uri.contains(' ')).then_some(NameAddr {
            display: None,
            uri,
            params,
        })
    }

    /// The tag parameter.
    pub fn tag(&self) -> Option<&'a str> {
        self.params.get("tag").flatten()
    }

    /// The URI, parsed.
    pub fn parsed_uri(&self) -> Option<Uri<'a>> {
        Uri::parse(self.uri)
    }
}

/// CSeq (§20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    pub seq: u32,
    pub method: Method,
}

impl CSeq {
    /// Parse `NUMBER METHOD`.
    pub fn parse(value: &str) -> Option<CSeq> {
        let mut it = value.split_ascii_whitespace();
        let seq = it.next()?.parse().ok()?;
        let method = Method::parse(it.next()?)?;
        it.next().is_none().then_some(CSeq { seq, method })
    }
}

/// A token after optional whitespace, and the rest.
fn take_token(s: &str) -> Option<(&str, &str)> {
    let s = s.trim_start();
    let end = s
        .bytes()
        .position(|b| !super::is_token_byte(b))
        .unwrap_or(s.len());
    (end > 0).then(|| s.split_at(end))
}

/// Split `host[:port]`, handling `[v6]:port`.
pub(crate) fn split_host_port(s: &str) -> Option<(&str, Option<u16>)> {
    if s.starts_with('[') {
        let close = s.find(']')?;
        let host = &s[..=close];
        let rest = &s[close + 1..];
        let port = match rest.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if rest.is_empty() => None,
            None => return None,
        };
        return Some((host, port));
    }
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) => (h, Some(p.parse().ok()?)),
        None => (s, None),
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b'_');
    valid.then_some((host, port))
}

/// Split at `sep` outside double quotes and angle brackets.
pub(crate) fn split_unquoted(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut state = Scan::default();
    let bytes = s.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        if start > s.len() {
            return None;
        }
        while i < bytes.len() {
            let b = bytes[i];
            i += 1;
            if state.step(b) && b == sep {
                let piece = &s[start..i - 1];
                start = i;
                return Some(piece);
            }
        }
        let piece = &s[start..];
        start = s.len() + 1;
        Some(piece)
    })
}

fn find_unquoted(s: &str, needle: u8) -> Option<usize> {
    let mut state = Scan::default();
    s.bytes().position(|b| state.step(b) && b == needle)
}

/// Quote/bracket tracking; `step` returns true when `b` is outside both.
#[derive(Default)]
struct Scan {
    quoted: bool,
    escaped: bool,
    angle: bool,
}

impl Scan {
    fn step(&mut self, b: u8) -> bool {
        if self.quoted {
            match (self.escaped, b) {
                (true, _) => self.escaped = false,
                (false, b'\\') => self.escaped = true,
                (false, b'"') => self.quoted = false,
                _ => {}
            }
            return false;
        }
        match b {
            b'"' => {
                self.quoted = true;
                false
            }
            b'<' if !self.angle => {
                self.angle = true;
                true
            }
            b'>' if self.angle => {
                self.angle = false;
                false
            }
            _ => !self.angle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_long_names_are_the_same_header() {
        assert_eq!(HeaderName::parse("v"), HeaderName::Via);
        assert_eq!(HeaderName::parse("i"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("m"), HeaderName::Contact);
        assert_eq!(HeaderName::parse("l"), HeaderName::ContentLength);
        assert_eq!(HeaderName::parse("CALL-id"), HeaderName::CallId);
        assert_eq!(HeaderName::parse("X-Thing").as_str(), "X-Thing");
    }

    #[test]
    fn via_with_rport_received_and_ipv6() {
        let v = Via::parse("SIP/2.0/UDP [2001:db8::1]:5062;rport;branch=z9hG4bKx;received=1.2.3.4")
            .unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "[2001:db8::1]");
        assert_eq!(v.port, Some(5062));
        assert!(v.has_rport());
        assert_eq!(v.branch(), Some("z9hG4bKx"));
        assert_eq!(v.params.get("received"), Some(Some("1.2.3.4")));
        let v = Via::parse("SIP / 2.0 / TCP   host.example  ;  branch = z9hG4bKy").unwrap();
        assert_eq!((v.transport, v.host, v.port), ("TCP", "host.example", None));
        assert_eq!(v.branch(), Some("z9hG4bKy"));
    }

    #[test]
    fn bad_vias_are_refused() {
        for bad in [
            "SIP/2.0 host",
            "SIP/3.0/UDP h",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP h:99999",
            "SIP/2.0/UDP bad host",
        ] {
            assert_eq!(Via::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn name_addr_forms() {
        let n = NameAddr::parse("\"Bob, Jr <x>\" <sip:bob@b.org;transport=tcp>;tag=99").unwrap();
        assert_eq!(n.display, Some("Bob, Jr <x>"));
        assert_eq!(n.uri, "sip:bob@b.org;transport=tcp");
        assert_eq!(n.tag(), Some("99"));
        let n = NameAddr::parse("sip:bob@b.org;tag=7").unwrap();
        assert_eq!((n.uri, n.tag()), ("sip:bob@b.org", Some("7")));
        assert_eq!(NameAddr::parse("<sip:a@b> junk"), None);
        assert_eq!(NameAddr::parse("<>"), None);
    }

    #[test]
    fn contact_params_for_outbound() {
        let n = NameAddr::parse(
            "<sip:a@10.0.0.2:5060;ob>;+sip.instance=\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\";reg-id=1;expires=600",
        )
        .unwrap();
        assert_eq!(n.params.get("reg-id"), Some(Some("1")));
        assert_eq!(n.params.get("expires"), Some(Some("600")));
        assert_eq!(
            n.params.get("+sip.instance"),
            Some(Some("\"<urn:uuid:00000000-0000-1000-8000-AABBCCDDEEFF>\""))
        );
    }

    #[test]
    fn cseq() {
        assert_eq!(
            CSeq::parse("  42   INVITE "),
            Some(CSeq {
                seq: 42,
                method: Method::Invite
            })
        );
        assert_eq!(CSeq::parse("42"), None);
        assert_eq!(CSeq::parse("-1 INVITE"), None);
        assert_eq!(CSeq::parse("99999999999 INVITE"), None);
        assert_eq!(CSeq::parse("1 INVITE extra"), None);
    }

    #[test]
    fn split_respects_quotes_and_brackets() {
        let parts: Vec<_> =
            split_unquoted("<sip:a@b;x=1,2>, \"x,y\" <sip:c@d>,sip:e@f", b',').collect();
        assert_eq!(
            parts,
            vec!["<sip:a@b;x=1,2>", " \"x,y\" <sip:c@d>", "sip:e@f"]
        );
    }
}
