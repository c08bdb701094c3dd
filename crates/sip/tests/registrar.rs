//! Registrar scenarios with injected time: digest, expiry, outbound,
//! lockout, stale nonces and bad input.

mod common;

use std::time::Duration;

use common::{register, Harness, Ua, DOMAIN};
use natter_sip::{Event, HeaderName, Message, Method};

#[test]
fn register_with_digest_stores_the_flow_and_reports_it() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2:5060");
    let req = ua.register(&[("Contact", &ua.contact())]);
    h.send(flow, &req);
    let (to, challenge) = h.one();
    assert_eq!(to, flow, "answers go back over the flow");
    assert_eq!(challenge.code(), Some(401));
    let offered: Vec<_> = challenge
        .headers_named(&HeaderName::WwwAuthenticate)
        .collect();
    assert_eq!(offered.len(), 2);
    assert!(offered[0].contains("algorithm=MD5") && offered[1].contains("algorithm=SHA-256"));
    assert!(h.events().is_empty());

    let req = ua.authorize(&req, &challenge);
    h.send(flow, &req);
    let (_, ok) = h.one();
    assert_eq!(ok.code(), Some(200));
    assert_eq!(
        ok.header(&HeaderName::Contact),
        Some("<sip:alice@10.0.0.2:5060>;expires=3600")
    );
    let via = ok.top_via().unwrap();
    assert_eq!(via.params.get("received"), Some(Some("198.51.100.7")));
    assert_eq!(via.params.get("rport"), Some(Some("40000")));
    let binding = h
        .server
        .location()
        .lookup("alice", h.now)
        .next()
        .unwrap()
        .clone();
    assert_eq!(binding.flow, flow);
    assert_eq!(binding.contact, "sip:alice@10.0.0.2:5060");
    match h.events().as_slice() {
        [Event::BindingsChanged { account, bindings }] => {
            assert_eq!(account, "alice");
            assert_eq!(bindings, &vec![binding]);
        }
        other => panic!("unexpected events {other:?}"),
    }
}

#[test]
fn digest_uri_other_than_the_request_uri_gets_400() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2:5060");
    let req = ua.register(&[("Contact", &ua.contact())]);
    h.send(flow, &req);
    let (_, challenge) = h.one();
    // Correct credentials, computed for another Request-URI, then sent
    // with this one: the response hash itself is right for its uri.
    let mut other = req.clone();
    other.set_request_uri("sip:elsewhere.example.net");
    let mut moved = ua.authorize(&other, &challenge);
    moved.set_request_uri(format!("sip:{DOMAIN}"));
    h.send(flow, &moved);
    let (_, bad) = h.one();
    assert_eq!(bad.code(), Some(400), "{bad:?}");
    assert!(h.server.location().is_empty());
    // A uri naming this server itself passes (sipp does that), unless the
    // server is configured to the letter of RFC 7616.
    for (may, code) in [(true, 200), (false, 400)] {
        let mut cfg = common::config();
        cfg.digest_uri_may_name_server = may;
        let mut h2 = Harness::with_config(cfg);
        let mut ua2 = Ua::new("alice", "alice-pw", "10.0.0.2:5060");
        let req = ua2.register(&[("Contact", &ua2.contact())]);
        h2.send(flow, &req);
        let (_, challenge) = h2.one();
        let mut to_server = req.clone();
        to_server.set_request_uri("sip:192.0.2.1:5060");
        let mut answer = ua2.authorize(&to_server, &challenge);
        answer.set_request_uri(format!("sip:{DOMAIN}"));
        h2.send(flow, &answer);
        assert_eq!(h2.one().1.code(), Some(code), "may name server: {may}");
    }
    // The honest answer for the same challenge still works.
    let good = ua.authorize(&req, &challenge);
    h.send(flow, &good);
    assert_eq!(h.one().1.code(), Some(200));
}

#[test]
fn phone_number_accounts_with_escaped_plus() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.8:5060");
    let mut ua = Ua::new("%2B14155550100", "num-pw", "10.0.0.3");
    ua.user = "+14155550100".into();
    let ok = register(&mut h, &mut ua, flow, &[("Contact", "<sip:x@10.0.0.3>")]);
    assert_eq!(ok.code(), Some(200));
    assert_eq!(h.server.location().lookup("+14155550100", h.now).count(), 1);
}

#[test]
fn expiry_rules_min_max_default_and_removal() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2");
    let ok = register(
        &mut h,
        &mut ua,
        flow,
        &[("Contact", "<sip:a@1.1.1.1>;expires=30")],
    );
    assert_eq!(ok.code(), Some(423));
    assert_eq!(ok.header(&HeaderName::MinExpires), Some("60"));
    let ok = register(
        &mut h,
        &mut ua,
        flow,
        &[("Contact", "<sip:a@1.1.1.1>"), ("Expires", "999999")],
    );
    assert_eq!(
        ok.header(&HeaderName::Contact),
        Some("<sip:a@1.1.1.1>;expires=7200")
    );
    let ok = register(
        &mut h,
        &mut ua,
        flow,
        &[("Contact", "<sip:a@2.2.2.2>;expires=120")],
    );
    assert_eq!(ok.headers_named(&HeaderName::Contact).count(), 2);
    h.events();

    h.advance(Duration::from_secs(130));
    assert_eq!(h.server.location().lookup("alice", h.now).count(), 1);
    assert!(
        matches!(h.events().as_slice(), [Event::BindingsChanged { bindings, .. }] if bindings.len() == 1)
    );

    let ok = register(
        &mut h,
        &mut ua,
        flow,
        &[("Contact", "<sip:a@1.1.1.1>;expires=0")],
    );
    assert_eq!(ok.code(), Some(200));
    assert_eq!(ok.header(&HeaderName::Contact), None);
    assert!(h.server.location().is_empty());
}

#[test]
fn star_removes_everything_but_needs_expires_zero() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2");
    register(
        &mut h,
        &mut ua,
        flow,
        &[("Contact", "<sip:a@1.1.1.1>, <sip:a@2.2.2.2>")],
    );
    assert_eq!(h.server.location().len(), 2);
    let bad = register(&mut h, &mut ua, flow, &[("Contact", "*")]);
    assert_eq!(bad.code(), Some(400));
    let ok = register(&mut h, &mut ua, flow, &[("Contact", "*"), ("Expires", "0")]);
    assert_eq!(ok.code(), Some(200));
    assert!(h.server.location().is_empty());
}

#[test]
fn outbound_instance_replaces_the_old_flow() {
    let mut h = Harness::new();
    let contact = "<sip:a@10.0.0.2;ob>;+sip.instance=\"<urn:uuid:1234>\";reg-id=1";
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2");
    let first = h.udp("198.51.100.7:40000");
    let ok = register(
        &mut h,
        &mut ua,
        first,
        &[("Contact", contact), ("Supported", "path, outbound")],
    );
    assert_eq!(ok.header(&HeaderName::Require), Some("outbound"));
    assert_eq!(ok.header(&HeaderName::Supported), Some("outbound"));
    assert_eq!(
        ok.header(&HeaderName::FlowTimer),
        Some("29"),
        "UDP keepalive interval"
    );
    // The phone moved to another network: new public address, new contact.
    let moved = h.tcp("203.0.113.9:51000", 7);
    let contact2 = contact.replace("10.0.0.2", "10.9.9.9");
    ua.call_id = "new-call-id".into();
    let ok = register(
        &mut h,
        &mut ua,
        moved,
        &[("Contact", &contact2), ("Supported", "outbound")],
    );
    assert_eq!(
        ok.header(&HeaderName::FlowTimer),
        Some("120"),
        "stream keepalive interval"
    );
    let all: Vec<_> = h
        .server
        .location()
        .lookup("alice", h.now)
        .cloned()
        .collect();
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].flow, moved);
    assert_eq!(all[0].instance.as_deref(), Some("urn:uuid:1234"));
    // The TCP connection drops: the binding is unreachable and goes.
    h.events();
    h.server
        .handle_connection_closed(natter_sip::flow::ConnId(7));
    assert!(h.server.location().is_empty());
    assert_eq!(h.events().len(), 1);
}

#[test]
fn outbound_is_required_only_when_the_ua_uses_and_supports_it() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    let instance = "<sip:a@10.0.0.2;ob>;+sip.instance=\"<urn:uuid:1234>\"";
    let cases = [
        // (contact, Supported header, Require expected, Flow-Timer expected)
        (format!("{instance};reg-id=1"), None, false, true),
        (format!("{instance};reg-id=1"), Some("outbound"), true, true),
        (instance.to_owned(), Some("outbound"), false, false),
        (
            "<sip:a@10.0.0.2>;reg-id=1".to_owned(),
            Some("outbound"),
            false,
            false,
        ),
    ];
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2");
    for (i, (contact, supported, require, timer)) in cases.into_iter().enumerate() {
        ua.call_id = format!("outbound-{i}");
        let mut extra = vec![("Contact", contact.as_str())];
        extra.extend(supported.map(|s| ("Supported", s)));
        let ok = register(&mut h, &mut ua, flow, &extra);
        assert_eq!(ok.code(), Some(200), "case {i}");
        assert_eq!(
            ok.header(&HeaderName::Supported),
            Some("outbound"),
            "case {i}"
        );
        assert_eq!(
            ok.header(&HeaderName::Require).is_some(),
            require,
            "case {i}"
        );
        assert_eq!(
            ok.header(&HeaderName::FlowTimer).is_some(),
            timer,
            "case {i}"
        );
    }
    // reg-id without an instance id is ignored (RFC 5626 §6).
    let plain = h
        .server
        .location()
        .lookup("alice", h.now)
        .find(|b| b.instance.is_none())
        .expect("the plain binding");
    assert_eq!(plain.reg_id, None);
}

#[test]
fn out_of_order_cseq_is_refused() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2");
    register(&mut h, &mut ua, flow, &[("Contact", "<sip:a@1.1.1.1>")]);
    ua.cseq = 0;
    let resp = register(&mut h, &mut ua, flow, &[("Contact", "<sip:a@1.1.1.1>")]);
    assert_eq!(resp.code(), Some(500));
}

#[test]
fn retransmitted_register_gets_the_same_answer() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2");
    let req = ua.register(&[("Contact", "<sip:a@1.1.1.1>")]);
    h.send(flow, &req);
    let (_, challenge) = h.one();
    let req = ua.authorize(&req, &challenge);
    h.send(flow, &req);
    let first = h.one().1;
    h.send(flow, &req);
    let again = h.one().1;
    assert_eq!(first, again);
    assert_eq!(again.code(), Some(200));
    // After Timer J the cache forgets; the replayed nonce count is then refused.
    h.advance(Duration::from_secs(40));
    h.send(flow, &req);
    assert_eq!(h.one().1.code(), Some(401));
}

#[test]
fn stale_nonce_gets_stale_true() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2");
    let req = ua.register(&[("Contact", "<sip:a@1.1.1.1>")]);
    h.send(flow, &req);
    let (_, challenge) = h.one();
    h.advance(Duration::from_secs(301));
    let req = ua.authorize(&req, &challenge);
    h.send(flow, &req);
    let (_, again) = h.one();
    assert_eq!(again.code(), Some(401));
    assert!(again
        .headers_named(&HeaderName::WwwAuthenticate)
        .all(|c| c.contains("stale=true")));
}

#[test]
fn lockout_looks_the_same_for_unknown_accounts() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.66:5060");
    let mut codes = Vec::new();
    for user in ["alice", "nobody"] {
        let mut ua = Ua::new(user, "wrong", "10.0.0.2");
        let mut seen = Vec::new();
        for _ in 0..6 {
            let req = ua.register(&[("Contact", "<sip:a@1.1.1.1>")]);
            h.send(flow, &req);
            let (_, first) = h.one();
            if first.code() != Some(401) {
                seen.push(first.code().unwrap());
                continue;
            }
            let req = ua.authorize(&req, &first);
            h.send(flow, &req);
            seen.push(h.one().1.code().unwrap());
        }
        codes.push(seen);
    }
    assert_eq!(codes[0], codes[1], "no account enumeration");
    assert_eq!(codes[0], vec![401, 401, 401, 401, 401, 403]);
    // Locked even with the right password, from that source only.
    let mut right = Ua::new("alice", "alice-pw", "10.0.0.2");
    right.call_id = "fresh".into();
    let req = right.register(&[("Contact", "<sip:a@1.1.1.1>")]);
    h.send(flow, &req);
    let (_, locked) = h.one();
    assert_eq!(locked.code(), Some(403));
    assert!(locked.header(&HeaderName::RetryAfter).is_some());
    let elsewhere = h.udp("198.51.100.67:5060");
    assert_eq!(
        register(
            &mut h,
            &mut right,
            elsewhere,
            &[("Contact", "<sip:a@1.1.1.1>")]
        )
        .code(),
        Some(200)
    );
    h.advance(Duration::from_secs(901));
    assert_eq!(
        register(&mut h, &mut right, flow, &[("Contact", "<sip:a@1.1.1.1>")]).code(),
        Some(200)
    );
}

#[test]
fn registering_someone_else_or_elsewhere_is_forbidden() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2");
    let mut req = ua.register(&[("Contact", "<sip:a@1.1.1.1>")]);
    req.set(HeaderName::To, "<sip:alice@evil.example>");
    h.send(flow, &req);
    assert_eq!(h.one().1.code(), Some(403));
    // Alice's credentials used for bob's AOR.
    let req = ua.register(&[("Contact", "<sip:a@1.1.1.1>")]);
    h.send(flow, &req);
    let (_, challenge) = h.one();
    let mut req = ua.authorize(&req, &challenge);
    req.set(HeaderName::To, format!("<sip:bob@{DOMAIN}>"));
    h.send(flow, &req);
    assert_eq!(h.one().1.code(), Some(403));
    assert!(h.server.location().is_empty());
}

#[test]
fn unsupported_require_gets_420() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2");
    let req = ua.register(&[("Require", "foo, outbound")]);
    h.send(flow, &req);
    let (_, resp) = h.one();
    assert_eq!(resp.code(), Some(420));
    assert_eq!(resp.header(&HeaderName::Unsupported), Some("foo"));
}

#[test]
fn malformed_input_gets_400_or_is_dropped_and_the_server_keeps_working() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    h.input(flow, b"\x00\x01garbage\xff");
    h.input(flow, b"\r\n\r\n");
    assert!(h.drain().is_empty());
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2");
    let mut bad = ua.register(&[]);
    bad.set(HeaderName::CSeq, "1 INVITE");
    h.send(flow, &bad);
    let (_, resp) = h.one();
    assert_eq!(resp.code(), Some(400));
    assert!(
        matches!(&resp.start, natter_sip::msg::StartLine::Response { reason, .. } if reason.contains("CSeq"))
    );
    // Missing Call-ID: still answered (the answer cannot carry one either).
    let mut bad = ua.register(&[]);
    bad.remove_all(&HeaderName::CallId);
    h.send(flow, &bad);
    let t = h.server.poll_transmit().expect("a 400");
    assert!(t
        .bytes
        .starts_with(b"SIP/2.0 400 Bad Request (a mandatory header"));
    let ok = register(&mut h, &mut ua, flow, &[("Contact", "<sip:a@1.1.1.1>")]);
    assert_eq!(ok.code(), Some(200));
}

#[test]
fn options_to_the_server_is_answered() {
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    let mut m = Message::request(Method::Options, format!("sip:{DOMAIN}"));
    m.push(HeaderName::Via, "SIP/2.0/UDP 10.0.0.2;branch=z9hG4bKo");
    m.push(HeaderName::From, "<sip:x@y>;tag=1");
    m.push(HeaderName::To, format!("<sip:{DOMAIN}>"));
    m.push(HeaderName::CallId, "o1");
    m.push(HeaderName::CSeq, "1 OPTIONS");
    h.send(flow, &m);
    assert_eq!(h.one().1.code(), Some(200));
}

#[test]
fn rate_limit_drops_floods_per_source() {
    let mut cfg = common::config();
    cfg.guard.rate = 10;
    cfg.guard.burst = 10;
    let mut h = Harness::with_config(cfg);
    let flow = h.udp("198.51.100.7:40000");
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2");
    for _ in 0..30 {
        let req = ua.register(&[]);
        h.send(flow, &req);
    }
    assert_eq!(h.drain().len(), 10);
    let other = h.udp("198.51.100.8:40000");
    let req = ua.register(&[]);
    h.send(other, &req);
    assert_eq!(h.drain().len(), 1);
}

#[test]
fn stun_keepalive_on_udp_is_answered_with_the_public_address() {
    use natter_turn::stun::{self, Attribute, BindingRequest, Class, TransactionId};
    let mut h = Harness::new();
    let flow = h.udp("198.51.100.7:40000");
    let tid = TransactionId::new([7; 12]);
    h.input(flow, &BindingRequest::new(tid).build());
    let t = h.server.poll_transmit().expect("a Binding response");
    assert_eq!(t.flow, flow);
    let resp = stun::decode(&t.bytes).unwrap();
    assert_eq!((resp.class(), resp.transaction_id()), (Class::Success, tid));
    let mapped = resp.attributes().find_map(|a| match a {
        Ok(Attribute::XorMappedAddress(addr)) => Some(addr),
        _ => None,
    });
    assert_eq!(mapped, Some(flow.remote));
    // Garbage that starts like STUN is dropped; SIP keeps working after it.
    h.input(
        flow,
        &[0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1, 2, 3],
    );
    h.input(flow, &[0x01; 300]);
    assert!(h.server.poll_transmit().is_none());
    let c = h.server.counters();
    assert_eq!((c.stun_keepalives, c.stun_dropped), (1, 2));
    let mut ua = Ua::new("alice", "alice-pw", "10.0.0.2");
    let contact = ua.contact();
    assert_eq!(
        register(&mut h, &mut ua, flow, &[("Contact", &contact)]).code(),
        Some(200)
    );
    // On a stream STUN is not demultiplexed (RFC 5626 uses CRLF there).
    h.input(
        h.tcp("198.51.100.7:40001", 3),
        &BindingRequest::new(tid).build(),
    );
    assert!(h.server.poll_transmit().is_none());
}
