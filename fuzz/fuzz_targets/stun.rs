//! Decode arbitrary bytes as STUN / ChannelData / a stream frame, read every
//! attribute, check integrity and fingerprint: nothing may panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use natter_turn::stun::{self, ChannelData, IntegrityKey};

fuzz_target!(|data: &[u8]| {
    let _ = stun::frame_len(data);
    let _ = ChannelData::decode(data);
    if let Ok(m) = stun::decode(data) {
        for a in m.attributes() {
            let _ = a;
        }
        let _ = m.unknown_comprehension_required().count();
        let _ = m.check_fingerprint();
        let _ = m.verify_integrity(&IntegrityKey::LongTermMd5([0; 16]));
        let _ = m.verify_integrity(&IntegrityKey::LongTermSha256([0; 32]));
        let _ = (
            m.reflexive_address(),
            m.other_address(),
            m.response_origin(),
            m.error_code(),
        );
    }
    let server = natter_turn::binding::BindingServer::new(
        natter_turn::binding::BindingConfig::new("192.0.2.1:3478".parse().unwrap()),
    );
    let _ = server.handle(
        natter_turn::binding::Source::Primary,
        "203.0.113.1:1".parse().unwrap(),
        data,
    );
});
