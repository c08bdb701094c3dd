//! Feed arbitrary bytes to a TURN server core, as client messages (UDP and
//! TCP 5-tuples) and as peer datagrams: nothing may panic.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use natter_turn::binding::Source;
use natter_turn::server::{
    FiveTuple, Granted, Relay, RelayAllocator, RelayError, RelayId, RelayRequest, Server,
    ServerConfig, Transport, PEER_HEADROOM, PEER_TAILROOM,
};

struct Relays(u32);

impl RelayAllocator for Relays {
    fn allocate(&mut self, _req: RelayRequest) -> Result<Granted, RelayError> {
        self.0 += 1;
        let relay = Relay {
            id: RelayId(self.0),
            addr: "192.0.2.1:50000".parse().unwrap(),
        };
        Ok(Granted {
            relay,
            reserved: None,
        })
    }
    fn release(&mut self, _id: RelayId) {}
}

fuzz_target!(|data: &[u8]| {
    let t0 = Instant::now();
    let cfg = ServerConfig::new("example.org", "192.0.2.1:3478".parse().unwrap()).set_seed(1);
    let mut s = Server::new(cfg, Relays(0), t0, 1_700_000_000);
    // Chunks separated by 0xFF 0xFF; the first byte of each picks the path.
    for (i, chunk) in data.split(|b| *b == 0xFF).enumerate() {
        let now = t0 + Duration::from_secs(i as u64 * 37);
        let Some((&sel, body)) = chunk.split_first() else {
            continue;
        };
        let transport = if sel & 1 == 0 {
            Transport::Udp
        } else {
            Transport::Tcp
        };
        let tuple = FiveTuple {
            transport,
            client: "203.0.113.1:4000".parse().unwrap(),
            server: "192.0.2.1:3478".parse().unwrap(),
        };
        if sel & 2 == 0 {
            let _ = s.handle_client(now, tuple, Source::Primary, body);
        } else {
            let mut buf = vec![0u8; PEER_HEADROOM + body.len() + PEER_TAILROOM];
            buf[PEER_HEADROOM..PEER_HEADROOM + body.len()].copy_from_slice(body);
            let _ = s.handle_peer(
                now,
                RelayId(u32::from(sel >> 2)),
                "198.51.100.1:9".parse().unwrap(),
                &mut buf,
                PEER_HEADROOM..PEER_HEADROOM + body.len(),
            );
        }
        s.handle_timeout(now);
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
    }
});
