//! SDP reader on arbitrary bytes: must never panic and must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter_sip::sdp::Session;

fuzz_target!(|data: &[u8]| {
    if let Ok(session) = Session::parse(data) {
        let again = Session::parse(session.to_text().as_bytes());
        assert!(again.is_ok(), "serialized SDP does not parse: {again:?}");
    }
});
