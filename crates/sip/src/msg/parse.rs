//! Bytes → [`Message`]: syntax first, then the checks every SIP element
//! needs (mandatory headers, CSeq method, Content-Length), with size limits.

use super::header::split_unquoted;
use super::{is_token_byte, Header, HeaderName, Message, Method, NameAddr, StartLine, Uri, Via};
use crate::Error;

/// Size limits applied while parsing. Defaults suit phones and proxies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest whole message in bytes. Default 65,535 (one UDP datagram).
    pub max_message: usize,
    /// Most header fields (after splitting list headers). Default 128.
    pub max_headers: usize,
    /// Longest single header line (after unfolding). Default 8,192.
    pub max_header_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 65_535,
            max_headers: 128,
            max_header_len: 8_192,
        }
    }
}

/// Parse one whole message (a datagram, or a frame cut by the stream framer).
///
/// Leading CRLFs are skipped (§7.5). Content-Length, when present, must not
/// exceed the bytes that follow the headers; extra bytes are discarded
/// (§18.3). A syntactically readable message that breaks a rule comes back
/// as [`Error::Invalid`] carrying the message, so a 400 can still be sent.
pub fn parse(bytes: &[u8], limits: &Limits) -> Result<Message, Error> {
    if bytes.len() > limits.max_message {
        return Err(Error::TooLarge {
            size: bytes.len(),
            limit: limits.max_message,
        });
    }
    let start = bytes
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(bytes.len());
    let bytes = &bytes[start..];
    let (head_len, body_at) =
        find_head_end(bytes).ok_or(Error::Malformed("no blank line after the headers"))?;
    let head = std::str::from_utf8(&bytes[..head_len])
        .map_err(|_| Error::Malformed("header section is not UTF-8"))?;
    let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let first = lines.next().ok_or(Error::Malformed("empty message"))?;
    let start = parse_start_line(first)?;
    let headers = parse_headers(lines, limits)?;
    let mut msg = Message {
        start,
        headers,
        body: Vec::new(),
    };
    let rest = &bytes[body_at..];
    match content_length(&msg) {
        Ok(Some(len)) if len <= rest.len() => msg.body = rest[..len].to_vec(),
        Ok(Some(_)) => return Err(invalid("Content-Length is larger than the body", msg)),
        Ok(None) => msg.body = rest.to_vec(),
        Err(why) => return Err(invalid(why, msg)),
    }
    match validate(&msg) {
        Ok(()) => Ok(msg),
        Err(why) => Err(invalid(why, msg)),
    }
}

fn invalid(why: &'static str, msg: Message) -> Error {
    Error::Invalid {
        why,
        message: Box::new(msg),
    }
}

/// Length of the header section and the offset of the body.
pub(crate) fn find_head_end(bytes: &[u8]) -> Option<(usize, usize)> {
    // Line ends found with memchr (a word or vector at a time), not byte by byte.
    for i in memchr::memchr_iter(b'\n', bytes) {
        match (bytes.get(i + 1), bytes.get(i + 2)) {
            (Some(b'\n'), _) => return Some((i, i + 2)),
            (Some(b'\r'), Some(b'\n')) => {
                let cr = usize::from(i > 0 && bytes[i - 1] == b'\r');
                return Some((i - cr, i + 3));
            }
            _ => {}
        }
    }
    None
}

fn parse_start_line(line: &str) -> Result<StartLine, Error> {
    if let Some(rest) = line.strip_prefix("SIP/2.0 ") {
        let (code, reason) = rest.split_once(' ').unwrap_or((rest, ""));
        let code: u16 = code
            .parse()
            .map_err(|_| Error::Malformed("status code is not a number"))?;
        if !(100..=699).contains(&code) || reason.bytes().any(|b| b < b' ' && b != b'\t') {
            return Err(Error::Malformed("status code outside 100-699"));
        }
        return Ok(StartLine::Response {
            code,
            reason: reason.to_owned(),
        });
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed("request line is not `METHOD URI SIP/2.0`"));
    };
    if version != "SIP/2.0" {
        return Err(Error::Malformed("unsupported SIP version (only SIP/2.0)"));
    }
    let method = Method::parse(method).ok_or(Error::Malformed("method is not a token"))?;
    if uri.is_empty() || uri.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(Error::Malformed("Request-URI contains control characters"));
    }
    Ok(StartLine::Request {
        method,
        uri: uri.to_owned(),
    })
}

fn parse_headers<'a>(
    lines: impl Iterator<Item = &'a str>,
    limits: &Limits,
) -> Result<Vec<Header>, Error> {
    let mut headers: Vec<Header> = Vec::with_capacity(16);
    let mut current: Option<(HeaderName, String)> = None;
    for line in lines {
        if line.starts_with(' ') || line.starts_with('\t') {
            let (_, value) = current
                .as_mut()
                .ok_or(Error::Malformed("continuation line before any header"))?;
            value.push(' ');
            value.push_str(line.trim());
            if value.len() > limits.max_header_len {
                return Err(Error::Malformed("header line too long"));
            }
            continue;
        }
        if let Some((name, value)) = current.take() {
            push_header(&mut headers, name, value, limits)?;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or(Error::Malformed("header line without a colon"))?;
        let name = name.trim_end();
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(Error::Malformed("header name is not a token"));
        }
        if line.len() > limits.max_header_len {
            return Err(Error::Malformed("header line too long"));
        }
        current = Some((HeaderName::parse(name), value.trim().to_owned()));
    }
    if let Some((name, value)) = current {
        push_header(&mut headers, name, value, limits)?;
    }
    Ok(headers)
}

fn push_header(
    headers: &mut Vec<Header>,
    name: HeaderName,
    value: String,
    limits: &Limits,
) -> Result<(), Error> {
    if value.bytes().any(|b| (b < b' ' && b != b'\t') || b == 0x7f) {
        return Err(Error::Malformed("control character in a header value"));
    }
    if name.is_list() && value != "*" && value.contains(',') {
        for piece in split_unquoted(&value, b',') {
            let piece = piece.trim();
            if !piece.is_empty() {
                headers.push(Header {
                    name: name.clone(),
                    value: piece.to_owned(),
                });
            }
        }
    } else if !name.is_list() || !value.trim().is_empty() {
        // One value (the common case): kept as it is, no copy. A folded
        // line may have left a blank at the end.
        let value = match value.trim() {
            t if t.len() == value.len() => value,
            t => t.to_owned(),
        };
        headers.push(Header { name, value });
    }
    if headers.len() > limits.max_headers {
        return Err(Error::Malformed("too many header fields"));
    }
    Ok(())
}

/// Content-Length (long or compact name) read from a raw header section,
/// for stream framing before the full parse.
pub(crate) fn content_length_in_head(head: &str) -> Result<Option<usize>, Error> {
    let mut found = None;
    for line in head.split('\n').skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            let n: usize = value
                .trim()
                .parse()
                .map_err(|_| Error::Malformed("Content-Length is not a number"))?;
            if found.is_some_and(|f| f != n) {
                return Err(Error::Malformed("conflicting Content-Length headers"));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// The declared Content-Length: `Ok(None)` when absent; conflicting values
/// are an error.
pub(crate) fn content_length(msg: &Message) -> Result<Option<usize>, &'static str> {
    let mut found = None;
    for v in msg.headers_named(&HeaderName::ContentLength) {
        let n: usize = v.parse().map_err(|_| "Content-Length is not a number")?;
        if found.is_some_and(|f| f != n) {
            return Err("conflicting Content-Length headers");
        }
        found = Some(n);
    }
    Ok(found)
}

fn validate(msg: &Message) -> Result<(), &'static str> {
    for name in [
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ] {
        match msg.headers_named(&name).count() {
            1 => {}
            0 => return Err("a mandatory header (From, To, Call-ID, CSeq or Via) is missing"),
            _ => return Err("From, To, Call-ID and CSeq must appear once"),
        }
    }
    if msg.header(&HeaderName::Via).is_none() {
        return Err("a mandatory header (From, To, Call-ID, CSeq or Via) is missing");
    }
    if msg
        .headers_named(&HeaderName::Via)
        .any(|v| Via::parse(v).is_none())
    {
        return Err("malformed Via");
    }
    let from = NameAddr::parse(msg.header(&HeaderName::From).unwrap_or_default())
        .ok_or("malformed From")?;
    let to =
        NameAddr::parse(msg.header(&HeaderName::To).unwrap_or_default()).ok_or("malformed To")?;
    if from.parsed_uri().is_none() || to.parsed_uri().is_none() {
        return Err("From or To carries an unreadable URI");
    }
    let call_id = msg.call_id().unwrap_or_default();
    if call_id.is_empty() || call_id.contains(char::is_whitespace) {
        return Err("malformed Call-ID");
    }
    let cseq = msg.cseq().ok_or("malformed CSeq")?;
    if let StartLine::Request { method, uri } = &msg.start {
        if &cseq.method != method {
            return Err("CSeq method differs from the request method");
        }
        Uri::parse(uri).ok_or("unreadable Request-URI")?;
        if let Some(mf) = msg.header(&HeaderName::MaxForwards) {
            mf.parse::<u32>()
                .map_err(|_| "Max-Forwards is not a number")?;
        }
    }
    if msg
        .headers_named(&HeaderName::Contact)
        .any(|c| c != "*" && NameAddr::parse(c).is_none())
    {
        return Err("malformed Contact");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
