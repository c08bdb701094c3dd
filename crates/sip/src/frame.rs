//! Cutting a byte stream (TCP, TLS) into SIP messages (RFC 3261 §18.3) and
//! RFC 5626 keepalives: a CRLF CRLF "ping" is answered with a CRLF "pong".

use crate::msg::parse::{content_length_in_head, find_head_end};
use crate::{Error, Limits};

/// What the framer found in the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// One whole message, ready for [`crate::parse`].
    Message(Vec<u8>),
    /// A CRLF CRLF keepalive ping; answer with [`PONG`].
    Ping,
}

/// The keepalive answer on streams.
pub const PONG: &[u8] = b"\r\n";

/// Buffers stream bytes and yields frames. Sans-IO: feed with [`Framer::push`],
/// drain with [`Framer::next_frame`].
#[derive(Debug, Default)]
pub struct Framer {
    buf: Vec<u8>,
    limits: Limits,
}

impl Framer {
    /// A framer enforcing `limits.max_message` per message.
    pub fn new(limits: Limits) -> Framer {
        Framer {
            buf: Vec::new(),
            limits,
        }
    }

    /// Add bytes read from the stream.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete frame, `Ok(None)` when more bytes are needed.
    /// An error means the stream cannot be resynchronised: close it.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, Error> {
        let blank = self
            .buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        if blank > 0 {
            if let Some(at) = self.buf[..blank].windows(4).position(|w| w == b"\r\n\r\n") {
                self.buf.drain(..at + 4);
                return Ok(Some(Frame::Ping));
            }
            if blank == self.buf.len() && blank < 4 {
                return Ok(None); // maybe the start of a ping
            }
            self.buf.drain(..blank);
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let Some((head_len, body_at)) = find_head_end(&self.buf) else {
            if self.buf.len() > self.limits.max_message {
                return Err(Error::TooLarge {
                    size: self.buf.len(),
                    limit: self.limits.max_message,
                });
            }
            return Ok(None);
        };
        let head = std::str::from_utf8(&self.buf[..head_len])
            .map_err(|_| Error::Malformed("header section is not UTF-8"))?;
        let length = content_length_in_head(head)?.ok_or(Error::Malformed(
            "Content-Length is mandatory on stream transports",
        ))?;
        let total = body_at.saturating_add(length);
        if total > self.limits.max_message {
            return Err(Error::TooLarge {
                size: total,
                limit: self.limits.max_message,
            });
        }
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        let frame = std::mem::replace(&mut self.buf, rest);
        Ok(Some(Frame::Message(frame)))
    }

    /// Bytes buffered but not yet framed.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 5\r\nCall-ID: x\r\n\r\nhello";

    #[test]
    fn splits_back_to_back_messages_fed_byte_by_byte() {
        let mut f = Framer::default();
        let stream = [MSG, b"\r\n\r\n", MSG].concat();
        let mut frames = Vec::new();
        for b in stream {
            f.push(&[b]);
            while let Some(frame) = f.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(
            frames,
            vec![
                Frame::Message(MSG.to_vec()),
                Frame::Ping,
                Frame::Message(MSG.to_vec())
            ]
        );
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn single_crlf_is_not_a_ping() {
        let mut f = Framer::default();
        f.push(b"\r\n");
        assert_eq!(f.next_frame().unwrap(), None);
    }

    #[test]
    fn missing_content_length_on_a_stream_is_an_error() {
        let mut f = Framer::default();
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nCall-ID: x\r\n\r\n");
        assert!(matches!(f.next_frame(), Err(Error::Malformed(_))));
    }

    #[test]
    fn endless_headers_or_huge_length_are_refused() {
        let limits = Limits {
            max_message: 100,
            ..Limits::default()
        };
        let mut f = Framer::new(limits.clone());
        f.push(&[b'a'; 101]);
        assert!(matches!(f.next_frame(), Err(Error::TooLarge { .. })));
        let mut f = Framer::new(limits);
        f.push(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 999999999999\r\n\r\n");
        assert!(matches!(
            f.next_frame(),
            Err(Error::TooLarge { .. }) | Err(Error::Malformed(_))
        ));
    }
}
