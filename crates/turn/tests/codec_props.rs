//! Property tests: encode∘decode is the identity; no input makes the decoder panic.

use natter_turn::stun::{
    self, Attribute, ChannelData, Class, ErrorCode, IntegrityKey, MessageBuilder, Method,
    TransactionId,
};
use proptest::prelude::*;
use std::net::SocketAddr;

#[derive(Debug, Clone)]
enum Owned {
    Xor(u16, SocketAddr),
    Plain(u16, SocketAddr),
    Text(u16, String),
    Bytes(u16, Vec<u8>),
    Lifetime(u32),
    Error(u16, String),
    Change(bool, bool),
    Channel(u16),
    Transport(u8),
    EvenPort(bool),
    Token([u8; 8]),
    DontFragment,
}

impl Owned {
    fn attr(&self) -> Attribute<'_> {
        match self {
            Owned::Xor(0, a) => Attribute::XorMappedAddress(*a),
            Owned::Xor(1, a) => Attribute::XorPeerAddress(*a),
            Owned::Xor(_, a) => Attribute::XorRelayedAddress(*a),
            Owned::Plain(0, a) => Attribute::MappedAddress(*a),
            Owned::Plain(1, a) => Attribute::OtherAddress(*a),
            Owned::Plain(_, a) => Attribute::ResponseOrigin(*a),
            Owned::Text(0, s) => Attribute::Username(s),
            Owned::Text(1, s) => Attribute::Realm(s),
            Owned::Text(2, s) => Attribute::Nonce(s),
            Owned::Text(_, s) => Attribute::Software(s),
            Owned::Bytes(0, b) => Attribute::Data(b),
            Owned::Bytes(_, b) => Attribute::Other(stun::RawAttribute {
                typ: 0xC0DE,
                value: b,
            }),
            Owned::Lifetime(l) => Attribute::Lifetime(*l),
            Owned::Error(c, r) => Attribute::ErrorCode(ErrorCode {
                code: *c,
                reason: r,
            }),
            Owned::Change(ip, port) => Attribute::ChangeRequest {
                ip: *ip,
                port: *port,
            },
            Owned::Channel(n) => Attribute::ChannelNumber(*n),
            Owned::Transport(p) => Attribute::RequestedTransport(*p),
            Owned::EvenPort(r) => Attribute::EvenPort { reserve: *r },
            Owned::Token(t) => Attribute::ReservationToken(*t),
            Owned::DontFragment => Attribute::DontFragment,
        }
    }
}

fn addr() -> impl Strategy<Value = SocketAddr> {
    prop_oneof![
        (any::<[u8; 4]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
        (any::<[u8; 16]>(), any::<u16>()).prop_map(|(ip, p)| SocketAddr::from((ip, p))),
    ]
}

fn owned() -> impl Strategy<Value = Owned> {
    prop_oneof![
        (0u16..3, addr()).prop_map(|(k, a)| Owned::Xor(k, a)),
        (0u16..3, addr()).prop_map(|(k, a)| Owned::Plain(k, a)),
        (0u16..4, "\\PC{0,40}").prop_map(|(k, s)| Owned::Text(k, s)),
        (0u16..2, proptest::collection::vec(any::<u8>(), 0..64))
            .prop_map(|(k, b)| Owned::Bytes(k, b)),
        any::<u32>().prop_map(Owned::Lifetime),
        (300u16..700, "[a-zA-Z ]{0,20}").prop_map(|(c, r)| Owned::Error(c, r)),
        (any::<bool>(), any::<bool>()).prop_map(|(a, b)| Owned::Change(a, b)),
        any::<u16>().prop_map(Owned::Channel),
        any::<u8>().prop_map(Owned::Transport),
        any::<bool>().prop_map(Owned::EvenPort),
        any::<[u8; 8]>().prop_map(Owned::Token),
        Just(Owned::DontFragment),
    ]
}

fn class() -> impl Strategy<Value = Class> {
    prop_oneof![
        Just(Class::Request),
        Just(Class::Indication),
        Just(Class::Success),
        Just(Class::Error)
    ]
}

proptest! {
    #[test]
    fn encode_then_decode_is_identity(
        class in class(), method in 0u16..0x1000, tid in any::<[u8; 12]>(),
        attrs in proptest::collection::vec(owned(), 0..8), mi in any::<bool>(), fp in any::<bool>(),
    ) {
        let tid = TransactionId::new(tid);
        let mut b = MessageBuilder::new(class, Method(method), tid);
        for a in &attrs {
            b.add(&a.attr());
        }
        let key = IntegrityKey::LongTermMd5([9; 16]);
        if mi { b.add_integrity(&key); }
        if fp { b.add_fingerprint(); }
        let wire = b.finish();
        let m = stun::decode(&wire).unwrap();
        prop_assert_eq!(m.class(), class);
        prop_assert_eq!(m.method(), Method(method));
        prop_assert_eq!(m.transaction_id(), tid);
        let decoded: Vec<Attribute<'_>> = m.attributes().take(attrs.len()).map(|a| a.unwrap()).collect();
        let expected: Vec<Attribute<'_>> = attrs.iter().map(|a| a.attr()).collect();
        prop_assert_eq!(decoded, expected);
        prop_assert_eq!(m.verify_integrity(&key), mi);
        prop_assert_eq!(m.check_fingerprint(), Ok(fp));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        if let Ok(m) = stun::decode(&bytes) {
            for a in m.attributes() { let _ = a; }
            let _ = m.check_fingerprint();
            let _ = m.verify_integrity(&IntegrityKey::LongTermSha256([1; 32]));
            let _ = m.reflexive_address();
        }
        let _ = ChannelData::decode(&bytes);
        let _ = stun::frame_len(&bytes);
    }

    #[test]
    fn truncating_a_valid_message_is_an_error(cut in 0usize..60) {
        let mut b = MessageBuilder::new(Class::Request, Method::ALLOCATE, TransactionId::new([1; 12]));
        b.add(&Attribute::RequestedTransport(17));
        b.add(&Attribute::Username("alice"));
        b.add_fingerprint();
        let wire = b.finish();
        let cut = cut.min(wire.len() - 1);
        prop_assert!(stun::decode(&wire[..cut]).is_err());
    }
}
