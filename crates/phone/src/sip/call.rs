//! One call: its dialog state and the requests built inside it.

use natter_sip::msg::NameAddr;
use natter_sip::{HeaderName, Message, Method};

/// A call, named by its SIP Call-ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub String);

impl std::fmt::Display for CallId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a call ended, in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EndReason {
    #[error("the other side hung up")]
    RemoteHangup,
    #[error("hung up")]
    LocalHangup,
    #[error("the caller cancelled the call")]
    Cancelled,
    #[error("unknown number: {target} has no account on this server")]
    UnknownNumber { target: String },
    #[error("{target} is not reachable: no device is registered (offline)")]
    Offline { target: String },
    #[error("{target} is busy")]
    Busy { target: String },
    #[error("{target} declined the call")]
    Declined { target: String },
    #[error("no common codec with {target} (488 Not Acceptable Here)")]
    NoCommonCodec { target: String },
    #[error("the server refused our credentials for the call (wrong password?)")]
    Unauthorized,
    #[error("the call was refused: {code} {reason}")]
    Refused { code: u16, reason: String },
    #[error("the server did not answer the call request (timeout)")]
    Timeout,
    #[error("no media path: {0}")]
    NoMediaPath(String),
    #[error("media encryption (DTLS-SRTP) with the far end failed: {0}")]
    EncryptionFailed(String),
    #[error("the connection was lost and could not be restored: {0}")]
    ConnectionLost(String),
}

impl EndReason {
    /// The reason a final failure response names.
    pub(crate) fn from_response(code: u16, reason: &str, target: &str) -> EndReason {
        let target = target.to_owned();
        match code {
            404 | 484 | 604 => EndReason::UnknownNumber { target },
            480 | 408 => EndReason::Offline { target },
            486 | 600 => EndReason::Busy { target },
            603 => EndReason::Declined { target },
            487 => EndReason::Cancelled,
            488 | 606 | 415 => EndReason::NoCommonCodec { target },
            401 | 407 => EndReason::Unauthorized,
            _ => EndReason::Refused {
                code,
                reason: reason.to_owned(),
            },
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Caller,
    Callee,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CallState {
    /// Caller: INVITE sent, no final answer yet.
    Calling {
        branch: String,
        ringing: bool,
    },
    /// Callee: INVITE received, 180 sent, waiting for the user.
    Offered,
    /// Callee: 200 sent, waiting for the ACK.
    Answered,
    /// Both sides agree: media flows.
    Confirmed,
    /// Caller: CANCEL sent.
    Cancelling,
    Ended,
}

/// The dialog (RFC 3261 §12) and what we need to act inside it.
#[derive(Debug, Clone)]
pub(crate) struct Call {
    pub id: CallId,
    pub role: Role,
    pub state: CallState,
    /// The far party, as dialled or as it appeared in From.
    pub peer: String,
    pub local_uri: String,
    pub remote_uri: String,
    pub local_tag: String,
    pub remote_tag: Option<String>,
    /// Where in-dialog requests go (the far end's Contact).
    pub remote_target: String,
    pub route_set: Vec<String>,
    pub local_cseq: u32,
    /// The INVITE as we sent it (caller) or received it (callee).
    pub invite: Message,
    /// Our SDP (offer for the caller, answer for the callee).
    pub local_sdp: Vec<u8>,
    /// Our 200 OK, retransmitted over UDP until the ACK comes.
    pub ok: Option<Vec<u8>>,
    /// The far end's re-INVITE we have not answered yet.
    pub update: Option<Message>,
}

impl Call {
    /// Record what a 2xx (caller) tells about the dialog.
    pub fn learn_from_2xx(&mut self, resp: &Message) {
        self.remote_tag = resp.to().and_then(|t| t.tag()).map(str::to_owned);
        if let Some(c) = resp.header(&HeaderName::Contact).and_then(contact_uri) {
            self.remote_target = c;
        }
        let mut rr: Vec<String> = record_routes(resp);
        rr.reverse();
        self.route_set = rr;
    }

    /// A request inside the dialog (BYE, re-INVITE, ACK).
    pub fn request(&self, method: Method, cseq: u32, via: String, contact: &str) -> Message {
        let mut m = Message::request(method.clone(), self.remote_target.clone());
        m.push(HeaderName::Via, via);
        m.push(HeaderName::MaxForwards, "70");
        for r in &self.route_set {
            m.push(HeaderName::Route, r.clone());
        }
        m.push(
            HeaderName::From,
            format!("<{}>;tag={}", self.local_uri, self.local_tag),
        );
        let to = match &self.remote_tag {
            Some(t) => format!("<{}>;tag={t}", self.remote_uri),
            None => format!("<{}>", self.remote_uri),
        };
        m.push(HeaderName::To, to);
        m.push(HeaderName::CallId, self.id.0.clone());
        m.push(HeaderName::CSeq, format!("{cseq} {}", method.as_str()));
        if method == Method::Invite {
            m.push(HeaderName::Contact, format!("<{contact}>"));
        }
        m
    }
}

/// The URI inside a Contact / Record-Route value.
pub(crate) fn contact_uri(value: &str) -> Option<String> {
    let na = NameAddr::parse(value)?;
    na.parsed_uri()?;
    Some(na.uri.to_owned())
}

/// Every Record-Route value, split at commas, in order.
pub(crate) fn record_routes(msg: &Message) -> Vec<String> {
    msg.headers_named(&HeaderName::RecordRoute)
        .flat_map(split_list)
        .collect()
}

/// Split a header list value at top-level commas (not inside `<>` or quotes).
fn split_list(v: &str) -> Vec<String> {
    let (mut out, mut cur, mut depth, mut quoted) = (Vec::new(), String::new(), 0i32, false);
    for ch in v.chars() {
        match ch {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(cur.trim().to_owned());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(ch);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_owned());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_and_contacts_are_read() {
        assert_eq!(
            split_list("<sip:a;lr>, <sip:b;transport=tcp;lr>"),
            vec!["<sip:a;lr>", "<sip:b;transport=tcp;lr>"]
        );
        assert_eq!(
            contact_uri("\"Bob, Jr\" <sip:bob@10.0.0.2:5060;transport=tcp>;expires=60").as_deref(),
            Some("sip:bob@10.0.0.2:5060;transport=tcp")
        );
        assert_eq!(contact_uri("garbage"), None);
    }

    #[test]
    fn failure_codes_name_the_cause() {
        let r = EndReason::from_response(486, "Busy Here", "+1555");
        assert_eq!(r.to_string(), "+1555 is busy");
        assert!(matches!(
            EndReason::from_response(404, "", "x"),
            EndReason::UnknownNumber { .. }
        ));
        assert!(matches!(
            EndReason::from_response(480, "", "x"),
            EndReason::Offline { .. }
        ));
        assert!(matches!(
            EndReason::from_response(603, "", "x"),
            EndReason::Declined { .. }
        ));
        assert!(matches!(
            EndReason::from_response(488, "", "x"),
            EndReason::NoCommonCodec { .. }
        ));
        assert!(matches!(
            EndReason::from_response(500, "Oops", "x"),
            EndReason::Refused { code: 500, .. }
        ));
    }
}
