//! STUN keepalives on the UDP SIP port (RFC 5626 §4.4.2, §8).
//!
//! A UA behind NAT keeps its UDP flow open by sending STUN Binding requests
//! to the very address it registered with; the answer's XOR-MAPPED-ADDRESS
//! also tells it when its public address changed (then it re-registers).
//! Datagrams are told apart by their first byte (RFC 5626 §8, RFC 7983): a
//! STUN message starts with two zero bits, a SIP message with a letter.
//! Only RFC 5389 STUN (with the magic cookie) is answered; anything else that
//! starts like STUN is dropped. The codec and the Binding responder are
//! natter-turn's, not a second implementation.

use natter_turn::binding::{BindingConfig, BindingServer, Source};
use natter_turn::stun::{HEADER_LEN, MAGIC_COOKIE};

use crate::flow::Flow;

/// What a UDP datagram on the SIP port is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Datagram {
    /// A SIP message (or a CRLF keepalive): for the SIP parser.
    Sip,
    /// Starts like STUN: answered here, never parsed as SIP.
    Stun,
}

/// Classify a datagram by its first byte.
pub(crate) fn classify(bytes: &[u8]) -> Datagram {
    match bytes.first() {
        Some(b) if *b < 4 => Datagram::Stun,
        _ => Datagram::Sip,
    }
}

/// The Binding success (or error) response to a STUN request received on
/// `flow`, or `None` when the bytes are not a well-formed RFC 5389 Binding
/// request (indications, responses, classic RFC 3489, garbage).
pub(crate) fn answer(flow: &Flow, bytes: &[u8]) -> Option<Vec<u8>> {
    let cookie = bytes.get(4..8)?;
    if bytes.len() < HEADER_LEN || cookie != MAGIC_COOKIE.to_be_bytes() {
        return None;
    }
    let responder = BindingServer::new(BindingConfig::new(flow.local));
    let reply = responder.handle(Source::Primary, flow.remote, bytes)?;
    Some(reply.payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Transport;
    use natter_turn::stun::{self, Attribute, BindingRequest, Class, TransactionId};

    fn flow() -> Flow {
        Flow {
            transport: Transport::Udp,
            local: "192.0.2.1:5060".parse().unwrap(),
            remote: "198.51.100.7:40123".parse().unwrap(),
            conn: None,
        }
    }

    #[test]
    fn first_byte_tells_stun_from_sip() {
        assert_eq!(classify(b"REGISTER sip:x SIP/2.0\r\n"), Datagram::Sip);
        assert_eq!(classify(b"\r\n\r\n"), Datagram::Sip);
        assert_eq!(classify(&[0x00, 0x01, 0, 0]), Datagram::Stun);
        assert_eq!(classify(&[0x03]), Datagram::Stun);
        assert_eq!(classify(&[0x04]), Datagram::Sip);
    }

    #[test]
    fn binding_request_gets_the_public_address() {
        let tid = [9u8; 12];
        let req = BindingRequest::new(TransactionId::new(tid))
            .fingerprint(true)
            .build();
        let out = answer(&flow(), &req).expect("a Binding success response");
        let msg = stun::decode(&out).unwrap();
        assert_eq!(msg.class(), Class::Success);
        assert_eq!(msg.transaction_id().as_bytes(), &tid);
        let mapped = msg
            .attributes()
            .find_map(|a| match a {
                Ok(Attribute::XorMappedAddress(addr)) => Some(addr),
                _ => None,
            })
            .expect("XOR-MAPPED-ADDRESS");
        assert_eq!(mapped, flow().remote);
    }

    #[test]
    fn stun_lookalikes_are_dropped() {
        let req = BindingRequest::new(TransactionId::new([1u8; 12])).build();
        // Classic RFC 3489 (no magic cookie), truncated, corrupted length,
        // a Binding indication and a response: no answer.
        let mut classic = req.clone();
        classic[4..8].copy_from_slice(&[0, 0, 0, 0]);
        let mut long = req.clone();
        long[3] = 200;
        let mut indication = req.clone();
        indication[1] = 0x11;
        let mut response = req.clone();
        response[1] = 0x01;
        response[0] = 0x01;
        for bad in [
            &classic[..],
            &req[..19],
            &long[..],
            &indication[..],
            &response[..],
            &[0u8][..],
            &[0x01, 0x01, 0xff, 0xff, 0x21, 0x12, 0xa4, 0x42][..],
        ] {
            assert_eq!(answer(&flow(), bad), None, "{bad:02x?}");
        }
    }
}
