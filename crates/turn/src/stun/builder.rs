//! Building STUN messages.

use super::integrity::{compute, fingerprint, Mac};
use super::{
    attr_type as t, message_type, Attribute, Class, IntegrityKey, Method, TransactionId,
    HEADER_LEN, MAGIC_COOKIE,
};

/// Writes a STUN message attribute by attribute; the header length is kept current.
///
/// Add attributes with [`MessageBuilder::add`], then optionally
/// [`MessageBuilder::add_integrity`] and [`MessageBuilder::add_fingerprint`], last.
#[derive(Debug, Clone)]
pub struct MessageBuilder {
    buf: Vec<u8>,
    tid: TransactionId,
}

impl MessageBuilder {
    /// A message with the RFC 5389 magic cookie.
    pub fn new(class: Class, method: Method, tid: TransactionId) -> Self {
        Self::with_cookie(class, method, tid, MAGIC_COOKIE)
    }

    /// A message whose cookie field is `cookie`: answering a classic RFC 3489
    /// request echoes its 16-byte transaction id this way.
    pub fn with_cookie(class: Class, method: Method, tid: TransactionId, cookie: u32) -> Self {
        Self::in_buffer(Vec::with_capacity(128), class, method, tid, cookie)
    }

    /// Like [`MessageBuilder::with_cookie`] but reusing `buf` (cleared first).
    pub fn in_buffer(
        mut buf: Vec<u8>,
        class: Class,
        method: Method,
        tid: TransactionId,
        cookie: u32,
    ) -> Self {
        buf.clear();
        buf.extend_from_slice(&message_type(class, method).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&cookie.to_be_bytes());
        buf.extend_from_slice(tid.as_bytes());
        MessageBuilder { buf, tid }
    }

    /// Append one attribute (padded to 4 bytes).
    pub fn add(&mut self, attr: &Attribute<'_>) -> &mut Self {
        let start = self.buf.len();
        self.buf.extend_from_slice(&attr.typ().to_be_bytes());
        self.buf.extend_from_slice(&[0, 0]);
        attr.encode_value(&self.tid, &mut self.buf);
        let vlen = self.buf.len() - start - 4;
        // Values come from typed attributes bounded well below 64 KiB except
        // DATA/raw values, which callers bound by the datagram size; clamp anyway.
        let vlen16 = vlen.min(usize::from(u16::MAX)) as u16;
        self.buf[start + 2..start + 4].copy_from_slice(&vlen16.to_be_bytes());
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self.set_len(self.buf.len() - HEADER_LEN);
        self
    }

    /// Append an address attribute of any type `typ` encoded like MAPPED-ADDRESS
    /// (e.g. RFC 3489's SOURCE-ADDRESS and CHANGED-ADDRESS).
    pub fn add_plain_address(&mut self, typ: u16, addr: std::net::SocketAddr) -> &mut Self {
        let mut value = Vec::with_capacity(20);
        Attribute::MappedAddress(addr).encode_value(&self.tid, &mut value);
        self.add(&Attribute::Other(super::RawAttribute {
            typ,
            value: &value,
        }))
    }

    /// Append MESSAGE-INTEGRITY (HMAC-SHA1).
    pub fn add_integrity(&mut self, key: &IntegrityKey) -> &mut Self {
        self.add_mac(key, Mac::Sha1)
    }

    /// Append MESSAGE-INTEGRITY-SHA256.
    pub fn add_integrity_sha256(&mut self, key: &IntegrityKey) -> &mut Self {
        self.add_mac(key, Mac::Sha256)
    }

    /// Append the MAC attribute of kind `mac`.
    pub fn add_mac(&mut self, key: &IntegrityKey, mac: Mac) -> &mut Self {
        let (typ, mac_len) = match mac {
            Mac::Sha256 => (t::MESSAGE_INTEGRITY_SHA256, 32),
            Mac::Sha1 => (t::MESSAGE_INTEGRITY, 20),
        };
        let upto = self.buf.len();
        let mac = compute(key, mac, &self.buf, upto, upto - HEADER_LEN + 4 + mac_len);
        self.add(&Attribute::Other(super::RawAttribute { typ, value: &mac }))
    }

    /// Append FINGERPRINT (must be last).
    pub fn add_fingerprint(&mut self) -> &mut Self {
        self.set_len(self.buf.len() - HEADER_LEN + 8);
        let crc = fingerprint(&self.buf);
        self.add(&Attribute::Fingerprint(crc))
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.buf.len()
    }

    /// Never true: the header is always there.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The finished message.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }

    fn set_len(&mut self, len: usize) {
        let len16 = len.min(usize::from(u16::MAX)) as u16;
        self.buf[2..4].copy_from_slice(&len16.to_be_bytes());
    }
}

/// A Binding request, optionally with CHANGE-REQUEST (RFC 5780) and FINGERPRINT.
#[derive(Debug, Clone)]
pub struct BindingRequest {
    tid: TransactionId,
    change_ip: bool,
    change_port: bool,
    fingerprint: bool,
    software: Option<String>,
}

impl BindingRequest {
    pub fn new(tid: TransactionId) -> Self {
        BindingRequest {
            tid,
            change_ip: false,
            change_port: false,
            fingerprint: true,
            software: None,
        }
    }
    /// Ask the server to answer from its alternate IP.
    pub fn change_ip(mut self, yes: bool) -> Self {
        self.change_ip = yes;
        self
    }
    /// Ask the server to answer from its alternate port.
    pub fn change_port(mut self, yes: bool) -> Self {
        self.change_port = yes;
        self
    }
    /// Add FINGERPRINT (default true).
    pub fn fingerprint(mut self, yes: bool) -> Self {
        self.fingerprint = yes;
        self
    }
    /// Add SOFTWARE.
    pub fn software(mut self, name: &str) -> Self {
        self.software = Some(name.to_owned());
        self
    }
    /// The encoded request.
    pub fn build(self) -> Vec<u8> {
        let mut b = MessageBuilder::new(Class::Request, Method::BINDING, self.tid);
        if let Some(s) = &self.software {
            b.add(&Attribute::Software(s));
        }
        if self.change_ip || self.change_port {
            b.add(&Attribute::ChangeRequest {
                ip: self.change_ip,
                port: self.change_port,
            });
        }
        if self.fingerprint {
            b.add_fingerprint();
        }
        b.finish()
    }
}
