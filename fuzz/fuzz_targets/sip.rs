//! SIP parser and stream framer on arbitrary bytes: must never panic, and
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
