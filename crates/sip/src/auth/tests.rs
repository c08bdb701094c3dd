use super::*;

const REALM: &str = "example.org";

fn digest(now: Instant) -> Digest {
    Digest::new(REALM, &[7; 32], now, Duration::from_secs(300), 64)
}

fn nonce_of(challenge: &str) -> String {
    let start = challenge.find("nonce=\"").unwrap() + 7;
    challenge[start..].split('"').next().unwrap().to_owned()
}

/// A client computing its answer the RFC way, from the password.
fn answer(alg: Algorithm, user: &str, password: &str, nonce: &str, nc: u32) -> Credentials {
    let h = |s: String| match alg {
        Algorithm::Md5 => hex(&Md5::digest(s.as_bytes())),
        Algorithm::Sha256 => hex(&Sha256::digest(s.as_bytes())),
    };
    let uri = "sip:example.org";
    let ha1 = h(format!("{user}:{REALM}:{password}"));
    let ha2 = h(format!("REGISTER:{uri}"));
    let response = h(format!("{ha1}:{nonce}:{nc:08x}:c0ffee:auth:{ha2}"));
    Credentials {
        username: user.into(),
        realm: REALM.into(),
        nonce: nonce.into(),
        uri: uri.into(),
        response,
        algorithm: alg,
        qop_auth: Some(("c0ffee".into(), nc)),
    }
}

#[test]
fn rfc2617_example_response() {
    let c = parse_credentials(
        "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
         uri=\"/dir/index.html\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
         response=\"6629fae49393a05397450978507c4ef1\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    let keys = DigestKeys::derive("Mufasa", "testrealm@host.com", "Circle Of Life");
    assert_eq!(expected_response(&c, "GET", Some(&keys)), c.response);
}

#[test]
fn both_algorithms_accept_the_right_password_once_per_nc() {
    let t0 = Instant::now();
    let keys = DigestKeys::derive("alice", REALM, "pw");
    for alg in [Algorithm::Sha256, Algorithm::Md5] {
        let mut d = digest(t0);
        let offered = d.challenge(t0, false);
        let [md5, sha] = [&offered[0], &offered[1]];
        assert!(sha.contains("algorithm=SHA-256") && md5.contains("algorithm=MD5"));
        d.set_offer(DigestOffer::Sha256AndMd5);
        assert!(d.challenge(t0, false)[0].contains("algorithm=SHA-256"));
        let nonce = nonce_of(sha);
        let c1 = answer(alg, "alice", "pw", &nonce, 1);
        assert_eq!(d.verify(t0, "REGISTER", &c1, Some(&keys)), Verdict::Ok);
        assert_eq!(
            d.verify(t0, "REGISTER", &c1, Some(&keys)),
            Verdict::BadNonce,
            "replay"
        );
        let c2 = answer(alg, "alice", "pw", &nonce, 2);
        assert_eq!(d.verify(t0, "REGISTER", &c2, Some(&keys)), Verdict::Ok);
    }
}

#[test]
fn wrong_password_and_unknown_account_look_the_same() {
    let t0 = Instant::now();
    let mut d = digest(t0);
    let nonce = nonce_of(&d.challenge(t0, false)[0]);
    let keys = DigestKeys::derive("alice", REALM, "pw");
    let wrong = answer(Algorithm::Sha256, "alice", "guess", &nonce, 1);
    assert_eq!(
        d.verify(t0, "REGISTER", &wrong, Some(&keys)),
        Verdict::Wrong
    );
    let nobody = answer(Algorithm::Sha256, "nobody", "pw", &nonce, 1);
    assert_eq!(d.verify(t0, "REGISTER", &nobody, None), Verdict::Wrong);
}

#[test]
fn expired_nonce_is_stale_only_with_the_right_password() {
    let t0 = Instant::now();
    let mut d = digest(t0);
    let nonce = nonce_of(&d.challenge(t0, false)[0]);
    let keys = DigestKeys::derive("alice", REALM, "pw");
    let later = t0 + Duration::from_secs(301);
    let good = answer(Algorithm::Md5, "alice", "pw", &nonce, 1);
    assert_eq!(
        d.verify(later, "REGISTER", &good, Some(&keys)),
        Verdict::Stale
    );
    let bad = answer(Algorithm::Md5, "alice", "nope", &nonce, 1);
    assert_eq!(
        d.verify(later, "REGISTER", &bad, Some(&keys)),
        Verdict::Wrong
    );
    let within = t0 + Duration::from_secs(299);
    assert_eq!(
        d.verify(within, "REGISTER", &good, Some(&keys)),
        Verdict::Ok
    );
    assert!(d.challenge(later, true)[0].ends_with("stale=true"));
}

#[test]
fn forged_or_foreign_nonces_are_refused() {
    let t0 = Instant::now();
    let keys = DigestKeys::derive("alice", REALM, "pw");
    let mut other = Digest::new(REALM, &[8; 32], t0, Duration::from_secs(300), 64);
    let foreign = nonce_of(&other.challenge(t0, false)[0]);
    let mut d = digest(t0);
    for nonce in [foreign.as_str(), "abc", "", "zz", &"0".repeat(64)] {
        let c = answer(Algorithm::Md5, "alice", "pw", nonce, 1);
        assert_eq!(
            d.verify(t0, "REGISTER", &c, Some(&keys)),
            Verdict::BadNonce,
            "{nonce}"
        );
    }
}

#[test]
fn reused_slot_makes_an_old_nonce_stale() {
    let t0 = Instant::now();
    let keys = DigestKeys::derive("alice", REALM, "pw");
    let mut d = Digest::new(REALM, &[7; 32], t0, Duration::from_secs(300), 2);
    let first = nonce_of(&d.challenge(t0, false)[0]);
    d.challenge(t0, false);
    d.challenge(t0, false);
    let c = answer(Algorithm::Md5, "alice", "pw", &first, 1);
    assert_eq!(d.verify(t0, "REGISTER", &c, Some(&keys)), Verdict::Stale);
}

#[test]
fn credential_parsing() {
    let c = parse_credentials(
        "Digest username=\"+14155550100\",realm=\"example.org\",nonce=\"n\",uri=\"sip:example.org\",\
         response=\"AB\",algorithm=SHA-256,qop=auth,nc=0000000a,cnonce=\"x, y\"",
    )
    .unwrap();
    assert_eq!(c.username, "+14155550100");
    assert_eq!(c.algorithm, Algorithm::Sha256);
    assert_eq!(c.qop_auth, Some(("x, y".into(), 10)));
    assert!(parse_credentials("Basic abc").is_none());
    assert!(
        parse_credentials("Digest username=\"a\"").is_none(),
        "missing fields"
    );
    assert!(
        parse_credentials("Digest username=\"a, realm=x").is_none(),
        "unterminated quote"
    );
    assert!(parse_credentials(
        "Digest username=a,realm=b,nonce=c,uri=d,response=e,algorithm=SHA-512"
    )
    .is_none());
    assert!(
        parse_credentials("Digest username=a,realm=b,nonce=c,uri=d,response=e,qop=auth").is_none(),
        "qop without nc"
    );
}

#[test]
fn digest_uri_must_equal_the_request_uri() {
    let c = answer(Algorithm::Md5, "alice", "pw", "n", 1);
    assert!(c.uri_matches("sip:example.org"));
    // Another resource, or the same one spelled differently, is not the
    // Request-URI the response was computed for.
    assert!(!c.uri_matches("sip:example.org;transport=tcp"));
    assert!(!c.uri_matches("sip:bob@example.org"));
    assert!(!c.uri_matches("sip:EXAMPLE.org"));
    assert!(!c.uri_matches(""));
}

#[test]
fn a_single_algorithm_offer_challenges_with_it_alone_and_refuses_the_other() {
    let t0 = Instant::now();
    let keys = DigestKeys::derive("alice", REALM, "pw");
    for (offer, only, other) in [
        (DigestOffer::Md5, "MD5", Algorithm::Sha256),
        (DigestOffer::Sha256, "SHA-256", Algorithm::Md5),
    ] {
        let mut d = digest(t0);
        d.set_offer(offer);
        let challenges = d.challenge(t0, false);
        assert_eq!(challenges.len(), 1, "{challenges:?}");
        assert!(challenges[0].contains(&format!("algorithm={only},")));
        let nonce = nonce_of(&challenges[0]);
        // The right password, hashed with an algorithm that was not offered.
        let not_offered = answer(other, "alice", "pw", &nonce, 1);
        assert_eq!(
            d.verify(t0, "REGISTER", &not_offered, Some(&keys)),
            Verdict::Wrong
        );
        let offered = answer(offer.algorithms()[0], "alice", "pw", &nonce, 2);
        assert_eq!(d.verify(t0, "REGISTER", &offered, Some(&keys)), Verdict::Ok);
    }
}
