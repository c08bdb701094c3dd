//! The lanes' I/O paths under coturn's `turnutils_uclient`: io_uring for
//! sends only, and the `sendto`/`recvmmsg` fallback used where io_uring is
//! unavailable (`NATTER_TURN_IO_URING`, read when the lanes start). The
//! default path (io_uring for sends and relay reads) is what `turn_interop`
//! runs. One test in this binary, so the environment is not shared.

mod turn_common;

use turn_common::*;

#[test]
fn relays_without_io_uring_and_with_it_for_sends_only() {
    if !have("turnutils_uclient") || !have("turnutils_peer") {
        return;
    }
    for mode in ["off", "send"] {
        std::env::set_var("NATTER_TURN_IO_URING", mode);
        let t = start(true, |c| c);
        // (flags, clients, messages each it sends and gets back): client to
        // client (-y) pairs two clients, each relaying to the other.
        for (flags, m, expect) in [
            (vec![], "8", 400),
            (vec!["-s"], "8", 400),
            (vec!["-y"], "2", 120),
        ] {
            let p = peer();
            let mut args = vec!["-u", USER, "-w", PASSWORD];
            args.extend(flags.iter().copied());
            let n = if m == "2" { "30" } else { "50" };
            args.extend(["-m", m, "-n", n, "-l", "172", "-z", "5"]);
            let out = uclient(&args, t.udp.port(), p.port);
            assert_eq!(
                totals(&out),
                (expect, expect, Some(0)),
                "mode {mode}, flags {flags:?}:\n{}",
                text(&out)
            );
        }
        let c = t.handle.counters();
        assert!(
            c.packets_to_peers >= 900 && c.packets_to_clients >= 900,
            "mode {mode}: {c:?}"
        );
        drop(t);
    }
}
