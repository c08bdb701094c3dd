//! `natter serve` on a lab's server host, for the phone lab tests.

use std::path::Path;
use std::time::Duration;

use natter_lab::{Lab, LabProcess};

/// The lab's address ranges the relay must be allowed to reach.
pub const LAB_RANGES: [&str; 5] = [
    "10.0.0.0/8",
    "100.64.0.0/10",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
];

/// Add `users` (ID, password) to `data`, then start `natter serve` on the lab
/// server's primary address — SIP on 5060, TURN on 3478, HTTPS (WebSocket SIP
/// at `/sip`) on 8443 when `https` — relaying to every lab range, and wait
/// until it serves.
pub fn serve_in_lab(lab: &Lab, data: &Path, users: &[(&str, &str)], https: bool) -> LabProcess {
    let data_s = data.to_str().expect("temp paths are UTF-8 here");
    for (user, pw) in users {
        let st = super::natter()
            .args(["user", "add", user, "--password", pw, "--data", data_s])
            .output()
            .expect("natter user add");
        assert!(
            st.status.success(),
            "{}",
            String::from_utf8_lossy(&st.stderr)
        );
    }
    let (primary, _) = lab.server_ips();
    let (sip, turn) = (format!("{primary}:5060"), format!("{primary}:3478"));
    let http = if https {
        format!("{primary}:8443")
    } else {
        "off".to_owned()
    };
    let mut args = vec![
        "serve", "--sip", &sip, "--sips", "off", "--turn", &turn, "--turns", "off", "--http",
        &http, "--data", data_s,
    ];
    for r in LAB_RANGES {
        args.extend(["--allow-peer", r]);
    }
    let mut process = lab
        .server_host()
        .spawn(env!("CARGO_BIN_EXE_natter"), &args)
        .expect("start natter serve");
    if let Err(err) = process.wait_for_output("Stop with Ctrl-C", Duration::from_secs(20)) {
        panic!("natter serve did not start in the lab: {err}");
    }
    process
}
