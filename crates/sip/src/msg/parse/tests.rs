//! Parser cases in the spirit of the RFC 4475 torture tests (written here,
//! not copied): odd but valid messages must parse, broken ones must fail
//! cleanly with a reason.

use super::*;

fn ok(text: &str) -> Message {
    match parse(text.as_bytes(), &Limits::default()) {
        Ok(m) => m,
        Err(e) => panic!("expected a valid message, got {e}: {text}"),
    }
}

fn bad(text: &[u8]) -> Error {
    match parse(text, &Limits::default()) {
        Ok(m) => panic!("expected an error, parsed {m:?}"),
        Err(e) => e,
    }
}

const BASE: &str = "OPTIONS sip:bob@example.org SIP/2.0\r\n\
    Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n\
    From: <sip:alice@example.org>;tag=1\r\n\
    To: <sip:bob@example.org>\r\n\
    Call-ID: x1\r\n\
    CSeq: 1 OPTIONS\r\n\
    Max-Forwards: 70\r\n";

#[test]
fn compact_forms_folding_and_whitespace() {
    let m = ok("INVITE sip:bob@example.org SIP/2.0\r\n\
        v: SIP/2.0/UDP 192.0.2.1:5060\r\n  ;branch=z9hG4bKfold\r\n\
        f:   \"A\"   <sip:alice@example.org>  ;tag=9\r\n\
        t: sip:bob@example.org\r\n\
        i: call-1@host\r\n\
        CSEQ  :  8   INVITE\r\n\
        m: <sip:alice@192.0.2.1>\r\n\
        l: 0\r\n\
        Max-Forwards: 70\r\n\r\n");
    assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKfold"));
    assert_eq!(m.from().unwrap().tag(), Some("9"));
    assert_eq!(m.call_id(), Some("call-1@host"));
    assert_eq!(m.cseq().unwrap().seq, 8);
    assert_eq!(
        m.header(&HeaderName::Contact),
        Some("<sip:alice@192.0.2.1>")
    );
}

#[test]
fn multi_value_headers_are_split_but_quoted_commas_kept() {
    let m = ok(&format!(
        "{BASE}Via: SIP/2.0/TCP p1;branch=z9hG4bK2, SIP/2.0/UDP p2;branch=z9hG4bK3\r\n\
         Contact: \"Me, Myself\" <sip:a@h1>;q=0.5, <sip:a@h2;x=1,2>\r\n\
         Route: <sip:p1;lr>,<sip:p2;lr>\r\n\
         Record-Route: <sip:p3;lr>\r\n\
         WWW-Authenticate: Digest realm=\"a\", nonce=\"b\"\r\n\r\n"
    ));
    assert_eq!(m.headers_named(&HeaderName::Via).count(), 3);
    let contacts: Vec<_> = m.headers_named(&HeaderName::Contact).collect();
    assert_eq!(
        contacts,
        vec!["\"Me, Myself\" <sip:a@h1>;q=0.5", "<sip:a@h2;x=1,2>"]
    );
    assert_eq!(m.headers_named(&HeaderName::Route).count(), 2);
    assert_eq!(m.headers_named(&HeaderName::WwwAuthenticate).count(), 1);
}

#[test]
fn single_values_are_kept_and_blank_folds_trimmed() {
    let m = ok(&format!(
        "{BASE}Contact: <sip:a@h1>;expires=60\r\n \t\r\n\
         Record-Route:\r\n\
         Path: <sip:p1;lr>\r\n\
         Subject: hi\r\n \r\n\r\n"
    ));
    assert_eq!(
        m.header(&HeaderName::Contact),
        Some("<sip:a@h1>;expires=60")
    );
    assert_eq!(m.headers_named(&HeaderName::RecordRoute).count(), 0);
    assert_eq!(m.header(&HeaderName::Path), Some("<sip:p1;lr>"));
    assert_eq!(m.header(&HeaderName::Subject), Some("hi"));
}

#[test]
fn leading_crlf_and_lf_only_lines_are_tolerated() {
    let text = format!("\r\n\r\n{BASE}\r\n").replace("\r\n", "\n");
    let m = ok(&text);
    assert_eq!(m.method(), Some(&Method::Options));
}

#[test]
fn body_follows_content_length_and_extra_bytes_are_dropped() {
    let m = ok(&format!("{BASE}Content-Length: 3\r\n\r\nabcdef"));
    assert_eq!(m.body, b"abc");
    let m = ok(&format!("{BASE}\r\nno length given"));
    assert_eq!(m.body, b"no length given");
}

#[test]
fn binary_body_is_fine() {
    let mut bytes = format!("{BASE}Content-Length: 4\r\n\r\n").into_bytes();
    bytes.extend_from_slice(&[0, 0xff, 0x80, 13]);
    let m = parse(&bytes, &Limits::default()).unwrap();
    assert_eq!(m.body, [0, 0xff, 0x80, 13]);
}

#[test]
fn unknown_headers_and_methods_pass_through() {
    let m = ok(&format!("{BASE}X-Custom: a: b\r\n\r\n").replace("OPTIONS", "NEWMETHOD"));
    assert_eq!(m.method(), Some(&Method::Other("NEWMETHOD".into())));
    assert_eq!(m.header(&HeaderName::Other("x-custom".into())), None);
    assert_eq!(
        m.header(&HeaderName::Other("X-Custom".into())),
        Some("a: b")
    );
}

#[test]
fn responses_parse() {
    let m = ok("SIP/2.0 180 Ringing Now\r\n\
        Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n\
        From: <sip:alice@example.org>;tag=1\r\n\
        To: <sip:bob@example.org>;tag=2\r\n\
        Call-ID: x1\r\nCSeq: 1 INVITE\r\n\r\n");
    assert_eq!(m.code(), Some(180));
    assert!(matches!(&m.start, StartLine::Response { reason, .. } if reason == "Ringing Now"));
}

#[test]
fn content_length_beyond_the_body_is_invalid_but_answerable() {
    let e = bad(format!("{BASE}Content-Length: 300\r\n\r\nshort").as_bytes());
    let Error::Invalid { why, message } = e else {
        panic!("want Invalid, got {e:?}")
    };
    assert!(why.contains("Content-Length"));
    assert!(
        message.top_via().is_some(),
        "a 400 can still be routed back"
    );
}

#[test]
fn missing_or_doubled_mandatory_headers() {
    let without_call_id = BASE.replace("Call-ID: x1\r\n", "");
    assert!(matches!(
        bad(format!("{without_call_id}\r\n").as_bytes()),
        Error::Invalid { .. }
    ));
    let doubled = format!("{BASE}CSeq: 2 OPTIONS\r\n\r\n");
    assert!(matches!(bad(doubled.as_bytes()), Error::Invalid { .. }));
    let no_via = BASE.replace("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n", "");
    assert!(matches!(
        bad(format!("{no_via}\r\n").as_bytes()),
        Error::Invalid { .. }
    ));
}

#[test]
fn semantic_errors() {
    let cases = [
        BASE.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
        BASE.replace("Max-Forwards: 70", "Max-Forwards: many"),
        BASE.replace("CSeq: 1 OPTIONS", "CSeq: OPTIONS"),
        BASE.replace("To: <sip:bob@example.org>", "To: <junk>"),
        BASE.replace("sip:bob@example.org SIP", "http://x SIP"),
        format!("{BASE}Content-Length: 1\r\nContent-Length: 2\r\n"),
        format!("{BASE}Contact: <sip:a@b> trailing\r\n"),
    ];
    for case in cases {
        let e = bad(format!("{case}\r\n").as_bytes());
        assert!(matches!(e, Error::Invalid { .. }), "{case}: {e:?}");
    }
}

#[test]
fn syntax_errors() {
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"\r\n\r\n".to_vec(),
        b"garbage".to_vec(),
        b"INVITE sip:a@b SIP/2.0\r\nVia SIP/2.0/UDP h\r\n\r\n".to_vec(),
        b"INVITE  sip:a@b SIP/2.0\r\n\r\n".to_vec(),
        b"INVITE sip:a@b SIP/7.0\r\n\r\n".to_vec(),
        b"SIP/2.0 99 Low\r\n\r\n".to_vec(),
        b"SIP/2.0 abc Bad\r\n\r\n".to_vec(),
        b" continuation first\r\n\r\n".to_vec(),
        format!("{BASE}Bad Name: x\r\n\r\n").into_bytes(),
        format!("{BASE}X-Inject: a\0b\r\n\r\n").into_bytes(),
        [BASE.as_bytes(), b"X: \xff\xfe\r\n\r\n"].concat(),
        b"INV\xc3\x28ITE sip:a@b SIP/2.0\r\n\r\n".to_vec(),
    ];
    for case in cases {
        let e = bad(&case);
        assert!(
            matches!(e, Error::Malformed(_)),
            "{:?}: {e:?}",
            String::from_utf8_lossy(&case)
        );
    }
}

#[test]
fn header_injection_cannot_add_a_header() {
    // A bare CR inside a value is a control character, not a line break.
    let e = bad(format!("{BASE}Subject: hi\rVia: SIP/2.0/UDP evil\r\n\r\n").as_bytes());
    assert!(matches!(e, Error::Malformed(_)));
}

#[test]
fn limits_are_enforced() {
    let limits = Limits {
        max_message: 600,
        max_headers: 10,
        max_header_len: 100,
    };
    let big = vec![b'a'; 601];
    assert!(matches!(
        parse(&big, &limits),
        Err(Error::TooLarge {
            size: 601,
            limit: 600
        })
    ));
    let many = format!("{BASE}{}\r\n", "X-A: 1\r\n".repeat(5));
    assert!(matches!(
        parse(many.as_bytes(), &limits),
        Err(Error::Malformed(_))
    ));
    let long = format!("{BASE}X-Long: {}\r\n\r\n", "b".repeat(200));
    assert!(matches!(
        parse(long.as_bytes(), &limits),
        Err(Error::Malformed(_))
    ));
    let folded = format!(
        "{BASE}X-Long: a\r\n {}\r\n {}\r\n\r\n",
        "b".repeat(60),
        "c".repeat(60)
    );
    assert!(matches!(
        parse(
            folded.as_bytes(),
            &Limits {
                max_headers: 100,
                ..limits
            }
        ),
        Err(Error::Malformed(_))
    ));
}

#[test]
fn many_vias_in_one_line_count_against_the_limit() {
    let vias = vec!["SIP/2.0/UDP h;branch=z9hG4bKq"; 200].join(",");
    let text = format!("{BASE}Via: {vias}\r\n\r\n");
    assert!(matches!(bad(text.as_bytes()), Error::Malformed(_)));
}

#[test]
fn star_contact_is_kept_whole() {
    let m = ok(&format!(
        "{}Contact: *\r\nExpires: 0\r\n\r\n",
        BASE.replace("OPTIONS", "REGISTER")
    ));
    assert_eq!(m.header(&HeaderName::Contact), Some("*"));
}

#[test]
fn every_prefix_of_a_valid_message_is_handled_without_panic() {
    let full = format!("{BASE}Content-Length: 5\r\n\r\nhello");
    for cut in 0..full.len() {
        let _ = parse(&full.as_bytes()[..cut], &Limits::default());
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes, &Limits::default());
        }

        #[test]
        fn mutated_valid_messages_never_panic(at in 0usize..200, byte in any::<u8>()) {
            let mut bytes = format!("{BASE}Content-Length: 2\r\n\r\nhi").into_bytes();
            let at = at % bytes.len();
            bytes[at] = byte;
            if let Ok(m) = parse(&bytes, &Limits::default()) {
                // Whatever parsed must serialize to something that parses the same.
                let mut again = parse(&m.to_bytes(), &Limits::default()).unwrap();
                let mut m = m;
                m.remove_all(&HeaderName::ContentLength);
                again.remove_all(&HeaderName::ContentLength);
                prop_assert_eq!(again, m);
            }
        }
    }
}
