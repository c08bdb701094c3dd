//! SIP parser, digest credentials and stream framer on arbitrary bytes: must never panic, and
//! whatever parses must serialize to something that parses again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter_sip::frame::{Frame, Framer};
use natter_sip::{parse, Limits};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(msg) = parse(data, &limits) {
        let again = parse(&msg.to_bytes(), &limits);
        assert!(
            again.is_ok(),
            "serialized message does not parse: {again:?}"
        );
    }
    // Digest credentials are parsed from header values.
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = natter_sip::auth::parse_credentials(text);
    }
    let mut framer = Framer::new(limits.clone());
    for chunk in data.chunks(7) {
        framer.push(chunk);
        while let Ok(Some(frame)) = framer.next_frame() {
            if let Frame::Message(bytes) = frame {
                let _ = parse(&bytes, &limits);
            }
        }
    }
});
