//! RFC 5769 test vectors (with the RFC errata for §2.4) and RFC 8489 Appendix B.1.

use natter_turn::stun::{
    self, attr_type, long_term_key_md5, long_term_key_sha256, Attribute, Class, IntegrityKey, Mac,
    MessageBuilder, Method, TransactionId,
};

fn hex(s: &str) -> Vec<u8> {
    let s: String = s.split_whitespace().collect();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

const SHORT_TERM_PASSWORD: &[u8] = b"VOkJxbRl1RmTxUk/WvJxBt";

fn sample_request() -> Vec<u8> {
    hex("0001 0058 2112a442 b7e7a701 bc34d686 fa87dfae
         8022 0010 5354554e 20746573 7420636c 69656e74
         0024 0004 6e0001ff
         8029 0008 932ff9b1 51263b36
         0006 0009 6576746a 3a683676 59202020
         0008 0014 9aeaa70c bfd8cb56 781ef2b5 b2d3f249 c1b571a2
         8028 0004 e57a3bcf")
}

fn sample_ipv4_response() -> Vec<u8> {
    hex("0101 003c 2112a442 b7e7a701 bc34d686 fa87dfae
         8022 000b 74657374 20766563 746f7220
         0020 0008 0001a147 e112a643
         0008 0014 2b91f599 fd9e90c3 8c7489f9 2af9ba53 f06be7d7
         8028 0004 c07d4c96")
}

fn sample_ipv6_response() -> Vec<u8> {
    hex("0101 0048 2112a442 b7e7a701 bc34d686 fa87dfae
         8022 000b 74657374 20766563 746f7220
         0020 0014 0002a147 0113a9fa a5d3f179 bc25f4b5 bed2b9d9
         0008 0014 a382954e 4be67bf1 1784c97c 8292c275 bfe3ed41
         8028 0004 c8fb0b4c")
}

fn sample_long_term_request() -> Vec<u8> {
    hex("0001 0060 2112a442 78ad3433 c6ad72c0 29da412e
         0006 0012 e3839ee3 8388e383 aae38383 e382afe3 82b90000
         0015 001c 662f2f34 39396b39 35346436 4f4c3334 6f4c3946 53547679 36347341
         0014 000b 6578616d 706c652e 6f726700
         0008 0014 f6702465 6dd64a3e 02b8e071 2e85c9a2 8ca89666")
}

#[test]
fn sample_request_short_term() {
    let raw = sample_request();
    let m = stun::decode(&raw).unwrap();
    assert_eq!((m.class(), m.method()), (Class::Request, Method::BINDING));
    assert_eq!(m.check_fingerprint(), Ok(true));
    assert!(m.verify_integrity(&IntegrityKey::ShortTerm(SHORT_TERM_PASSWORD.to_vec())));
    assert!(!m.verify_integrity(&IntegrityKey::ShortTerm(b"wrong".to_vec())));
    assert!(matches!(
        m.get(attr_type::SOFTWARE),
        Some(Ok(Attribute::Software("STUN test client")))
    ));
    assert!(matches!(
        m.get(attr_type::USERNAME),
        Some(Ok(Attribute::Username("evtj:h6vY")))
    ));
    assert_eq!(
        m.unknown_comprehension_required().count(),
        0,
        "PRIORITY is known (ICE)"
    );
}

#[test]
fn sample_responses_decode_and_verify() {
    for (raw, addr) in [
        (sample_ipv4_response(), "192.0.2.1:32853"),
        (
            sample_ipv6_response(),
            "[2001:db8:1234:5678:11:2233:4455:6677]:32853",
        ),
    ] {
        let m = stun::decode(&raw).unwrap();
        assert_eq!(m.class(), Class::Success);
        assert_eq!(m.xor_mapped_address(), Some(addr.parse().unwrap()));
        assert_eq!(m.check_fingerprint(), Ok(true));
        assert!(m.verify_integrity(&IntegrityKey::ShortTerm(SHORT_TERM_PASSWORD.to_vec())));
    }
}

#[test]
fn encoder_reproduces_sample_ipv4_response_bytes() {
    let raw = sample_ipv4_response();
    let tid = stun::decode(&raw).unwrap().transaction_id();
    let mut b = MessageBuilder::new(Class::Success, Method::BINDING, tid);
    b.add(&Attribute::Software("test vector"));
    b.add(&Attribute::XorMappedAddress(
        "192.0.2.1:32853".parse().unwrap(),
    ));
    b.add_integrity(&IntegrityKey::ShortTerm(SHORT_TERM_PASSWORD.to_vec()));
    b.add_fingerprint();
    let mine = b.finish();
    // The RFC pads SOFTWARE with a space, we pad with zero: compare all but those bytes.
    assert_eq!(mine.len(), raw.len());
    assert_eq!(mine[..35], raw[..35]);
    let m = stun::decode(&mine).unwrap();
    assert!(m.verify_integrity(&IntegrityKey::ShortTerm(SHORT_TERM_PASSWORD.to_vec())));
    assert_eq!(m.check_fingerprint(), Ok(true));
}

#[test]
fn encoder_reproduces_long_term_request_exactly() {
    let raw = sample_long_term_request();
    let username = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
    let key = long_term_key_md5(username, "example.org", "TheMatrIX");
    let m = stun::decode(&raw).unwrap();
    assert!(m.verify_integrity(&IntegrityKey::LongTermMd5(key)));
    assert!(
        !m.verify_integrity(&IntegrityKey::LongTermMd5(long_term_key_md5(
            username,
            "example.org",
            "x"
        )))
    );
    assert!(matches!(
        m.get(attr_type::NONCE),
        Some(Ok(Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA")))
    ));

    let mut b = MessageBuilder::new(Class::Request, Method::BINDING, m.transaction_id());
    b.add(&Attribute::Username(username));
    b.add(&Attribute::Nonce("f//499k954d6OL34oL9FSTvy64sA"));
    b.add(&Attribute::Realm("example.org"));
    b.add_integrity(&IntegrityKey::LongTermMd5(key));
    assert_eq!(b.finish(), raw);
}

#[test]
fn rfc8489_long_term_sha256_with_userhash() {
    let raw = hex("0001 0088 2112a442 78ad3433 c6ad72c0 29da412e
         001e 0020 4a3cf38f ef6992bd a952c678 0417da0f 24819415 569e60b2 05c46e41 407f1704
         0015 0029 6f624d61 744a6f73 32414141 43662f2f 3439396b 39353464 364f4c33 346f4c39
                   46535476 79363473 41000000
         0014 000b 6578616d 706c652e 6f726700
         001c 0020 fd8c2738 60d2e18e bca4c89b 6973befa 7ee8ecc6 9e9642db 326fab65 a0b955ba");
    let username = "\u{30DE}\u{30C8}\u{30EA}\u{30C3}\u{30AF}\u{30B9}";
    let m = stun::decode(&raw).unwrap();
    // The request has no PASSWORD-ALGORITHM, so the key is the MD5 one (RFC 8489 §9.2.2);
    // the MAC is HMAC-SHA256 because the attribute is MESSAGE-INTEGRITY-SHA256.
    let key = long_term_key_md5(username, "example.org", "TheMatrIX");
    assert_eq!(m.integrity_mac(), Some(Mac::Sha256));
    assert!(m.verify_integrity(&IntegrityKey::LongTermMd5(key)));
    let sha_key = long_term_key_sha256(username, "example.org", "TheMatrIX");
    assert!(!m.verify_integrity(&IntegrityKey::LongTermSha256(sha_key)));
    let userhash = {
        use sha2::Digest;
        let h: [u8; 32] = sha2::Sha256::digest(format!("{username}:example.org")).into();
        h
    };
    assert!(
        matches!(m.get(attr_type::USERHASH), Some(Ok(Attribute::UserHash(h))) if h == userhash)
    );
}

#[test]
fn corrupted_vectors_fail_checks() {
    let mut raw = sample_request();
    raw[30] ^= 0x01; // inside SOFTWARE
    let m = stun::decode(&raw).unwrap();
    assert!(m.check_fingerprint().is_err());
    assert!(!m.verify_integrity(&IntegrityKey::ShortTerm(SHORT_TERM_PASSWORD.to_vec())));
}

#[test]
fn transaction_id_is_exposed() {
    let raw = sample_long_term_request();
    let m = stun::decode(&raw).unwrap();
    assert_eq!(
        m.transaction_id(),
        TransactionId::new([
            0x78, 0xad, 0x34, 0x33, 0xc6, 0xad, 0x72, 0xc0, 0x29, 0xda, 0x41, 0x2e
        ])
    );
}
