//! SIP messages (RFC 3261 §7, §20, §25): parse once at the edge, serialize
//! on the way out.
//!
//! A [`Message`] keeps its headers in arrival order with canonical names;
//! list headers (Via, Contact, Route, Record-Route, Path) are split into one
//! entry per value so the proxy can push and pop single values. Typed views
//! ([`Via`], [`NameAddr`], [`CSeq`], [`Uri`]) borrow from the message and do
//! not allocate.

mod header;
pub(crate) mod parse;
mod uri;

pub use header::{CSeq, HeaderName, NameAddr, Params, Via};
pub use parse::{parse, Limits};
pub use uri::{Scheme, Uri};

/// A SIP request method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Method {
    Invite,
    Ack,
    Bye,
    Cancel,
    Register,
    Options,
    Info,
    Update,
    Prack,
    Subscribe,
    Notify,
    Refer,
    Message,
    /// Any other token (extension methods are legal, RFC 3261 §27.4).
    Other(Box<str>),
}

impl Method {
    /// Parse a method token; `None` when it is not a valid token.
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "INVITE" => Method::Invite,
            "ACK" => Method::Ack,
            "BYE" => Method::Bye,
            "CANCEL" => Method::Cancel,
            "REGISTER" => Method::Register,
            "OPTIONS" => Method::Options,
            "INFO" => Method::Info,
            "UPDATE" => Method::Update,
            "PRACK" => Method::Prack,
            "SUBSCRIBE" => Method::Subscribe,
            "NOTIFY" => Method::Notify,
            "REFER" => Method::Refer,
            "MESSAGE" => Method::Message,
            t if !t.is_empty() && t.bytes().all(is_token_byte) => Method::Other(t.into()),
            _ => return None,
        })
    }

    /// The method as written on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Method::Invite => "INVITE",
            Method::Ack => "ACK",
            Method::Bye => "BYE",
            Method::Cancel => "CANCEL",
            Method::Register => "REGISTER",
            Method::Options => "OPTIONS",
            Method::Info => "INFO",
            Method::Update => "UPDATE",
            Method::Prack => "PRACK",
            Method::Subscribe => "SUBSCRIBE",
            Method::Notify => "NOTIFY",
            Method::Refer => "REFER",
            Method::Message => "MESSAGE",
            Method::Other(s) => s,
        }
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The first line of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD Request-URI SIP/2.0`. The URI is kept as text and parsed on use.
    Request { method: Method, uri: String },
    /// `SIP/2.0 CODE Reason`.
    Response { code: u16, reason: String },
}

/// One header field: canonical name and (unfolded, trimmed) value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub name: HeaderName,
    pub value: String,
}

/// A parsed SIP message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub start: StartLine,
    pub headers: Vec<Header>,
    pub body: Vec<u8>,
}

impl Message {
    /// A request with no headers yet.
    pub fn request(method: Method, uri: impl Into<String>) -> Message {
        Message {
            start: StartLine::Request {
                method,
                uri: uri.into(),
            },
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// True for requests.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// The request method, or `None` for a response.
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// The status code, or `None` for a request.
    pub fn code(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// The Request-URI text, or `None` for a response.
    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// Replace the Request-URI (no effect on a response).
    pub fn set_request_uri(&mut self, new: impl Into<String>) {
        if let StartLine::Request { uri, .. } = &mut self.start {
            *uri = new.into();
        }
    }

    /// The first value of a header.
    pub fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers
            .iter()
            .find(|h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Every value of a header, in order.
    pub fn headers_named<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.headers
            .iter()
            .filter(move |h| &h.name == name)
            .map(|h| h.value.as_str())
    }

    /// Append a header at the end.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.headers.push(Header {
            name,
            value: value.into(),
        });
    }

    /// Insert a header before every other header of that name (e.g. a Via).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<String>) {
        let at = self
            .headers
            .iter()
            .position(|h| h.name == name)
            .unwrap_or(0);
        self.headers.insert(
            at,
            Header {
                name,
                value: value.into(),
            },
        );
    }

    /// Remove and return the first value of a header.
    pub fn pop_front(&mut self, name: &HeaderName) -> Option<String> {
        let at = self.headers.iter().position(|h| &h.name == name)?;
        Some(self.headers.remove(at).value)
    }

    /// Remove every value of a header.
    pub fn remove_all(&mut self, name: &HeaderName) {
        self.headers.retain(|h| &h.name != name);
    }

    /// Replace every value of a header with one value.
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        match self.headers.iter().position(|h| h.name == name) {
            Some(at) => {
                self.headers[at].value = value.into();
                let mut seen = false;
                self.headers.retain(|h| {
                    if h.name != name {
                        return true;
                    }
                    let keep = !seen;
                    seen = true;
                    keep
                });
            }
            None => self.push(name, value),
        }
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Option<&str> {
        self.header(&HeaderName::CallId)
    }

    /// The topmost Via, parsed.
    pub fn top_via(&self) -> Option<Via<'_>> {
        self.header(&HeaderName::Via).and_then(Via::parse)
    }

    /// The CSeq, parsed.
    pub fn cseq(&self) -> Option<CSeq> {
        self.header(&HeaderName::CSeq).and_then(CSeq::parse)
    }

    /// The From header, parsed.
    pub fn from(&self) -> Option<NameAddr<'_>> {
        self.header(&HeaderName::From).and_then(NameAddr::parse)
    }

    /// The To header, parsed.
    pub fn to(&self) -> Option<NameAddr<'_>> {
        self.header(&HeaderName::To).and_then(NameAddr::parse)
    }

    /// Max-Forwards; `None` when absent or unreadable.
    pub fn max_forwards(&self) -> Option<u32> {
        self.header(&HeaderName::MaxForwards)
            .and_then(|v| v.parse().ok())
    }

    /// Serialize. Content-Length is always written, computed from the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let size: usize = self.headers.iter().map(|h| h.value.len() + 24).sum();
        let mut out = String::with_capacity(96 + size + self.body.len());
        match &self.start {
            StartLine::Request { method, uri } => {
                for part in [method.as_str(), " ", uri, " SIP/2.0\r\n"] {
                    out.push_str(part);
                }
            }
            StartLine::Response { code, reason } => {
                out.push_str("SIP/2.0 ");
                crate::tx::push_number(&mut out, u64::from(*code));
                out.push(' ');
                out.push_str(reason);
                out.push_str("\r\n");
            }
        }
        for h in self
            .headers
            .iter()
            .filter(|h| h.name != HeaderName::ContentLength)
        {
            out.push_str(h.name.as_str());
            out.push_str(": ");
            out.push_str(&h.value);
            out.push_str("\r\n");
        }
        out.push_str("Content-Length: ");
        crate::tx::push_number(&mut out, self.body.len() as u64);
        out.push_str("\r\n\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// A response to this request (RFC 3261 §8.2.6): copies Via, From, To,
    /// Call-ID and CSeq; adds `to_tag` to To when the request had none and
    /// the code is above 100.
    pub fn response(&self, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let mut headers = Vec::with_capacity(8);
        for h in &self.headers {
            let copy = matches!(
                h.name,
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq
            );
            if copy {
                headers.push(h.clone());
            } else if h.name == HeaderName::To {
                let mut value = h.value.clone();
                let tagless = NameAddr::parse(&value).is_some_and(|t| t.tag().is_none());
                if let (true, Some(tag), true) = (code > 100, to_tag, tagless) {
                    value.push_str(";tag=");
                    value.push_str(tag);
                }
                headers.push(Header {
                    name: HeaderName::To,
                    value,
                });
            }
        }
        Message {
            start: StartLine::Response {
                code,
                reason: reason.to_owned(),
            },
            headers,
            body: Vec::new(),
        }
    }
}

/// `token` characters (RFC 3261 §25.1).
pub(crate) fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// The standard reason phrase for a code we send.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        513 => "Message Too Large",
        600 => "Busy Everywhere",
        603 => "Decline",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const INVITE: &str = "INVITE sip:bob@example.org SIP/2.0\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\r\n\
        Max-Forwards: 70\r\n\
        From: Alice <sip:alice@example.org>;tag=a1\r\n\
        To: <sip:bob@example.org>\r\n\
        Call-ID: c1@10.0.0.1\r\n\
        CSeq: 1 INVITE\r\n\
        Contact: <sip:alice@10.0.0.1>\r\n\
        Content-Type: application/sdp\r\n\
        Content-Length: 4\r\n\r\nv=0\n";

    #[test]
    fn round_trip_keeps_headers_and_body() {
        let m = parse(INVITE.as_bytes(), &Limits::default()).unwrap();
        let again = parse(&m.to_bytes(), &Limits::default()).unwrap();
        assert_eq!(m, again);
        assert_eq!(again.body, b"v=0\n");
        assert_eq!(again.method(), Some(&Method::Invite));
    }

    #[test]
    fn response_copies_dialog_headers_and_adds_to_tag() {
        let m = parse(INVITE.as_bytes(), &Limits::default()).unwrap();
        let r = m.response(486, "Busy Here", Some("xyz"));
        assert_eq!(r.code(), Some(486));
        assert_eq!(r.to().unwrap().tag(), Some("xyz"));
        assert_eq!(r.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(r.header(&HeaderName::Contact), None);
        let trying = m.response(100, "Trying", Some("xyz"));
        assert_eq!(trying.to().unwrap().tag(), None);
    }

    #[test]
    fn push_front_and_pop_front_work_on_one_value() {
        let mut m = parse(INVITE.as_bytes(), &Limits::default()).unwrap();
        m.push_front(HeaderName::Via, "SIP/2.0/UDP proxy;branch=z9hG4bKp");
        assert_eq!(m.top_via().unwrap().host, "proxy");
        assert_eq!(
            m.pop_front(&HeaderName::Via).as_deref(),
            Some("SIP/2.0/UDP proxy;branch=z9hG4bKp")
        );
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK1"));
    }

    #[test]
    fn set_replaces_all_values() {
        let mut m = Message::request(Method::Options, "sip:x");
        m.push(HeaderName::Expires, "1");
        m.push(HeaderName::Expires, "2");
        m.set(HeaderName::Expires, "3");
        assert_eq!(
            m.headers_named(&HeaderName::Expires).collect::<Vec<_>>(),
            vec!["3"]
        );
    }

    #[test]
    fn extension_method_is_a_token() {
        assert_eq!(
            Method::parse("PUBLISH"),
            Some(Method::Other("PUBLISH".into()))
        );
        assert_eq!(Method::parse("BAD METHOD"), None);
        assert_eq!(Method::parse(""), None);
    }
}
