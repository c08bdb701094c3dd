//! `natter probe` through real Linux NAT: every lab NAT kind is classified exactly.
//!
//! Each test builds its own lab (namespaces are unique per test, so they run in parallel),
//! starts `natter serve` on the lab server with RFC 5780 (`--stun-alt` on the server's
//! second address) and runs `natter probe --json` on client hosts. Needs root; otherwise
//! every test prints a loud `SKIPPED` line and passes.

use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use natter_lab::{Host, Impairment, Lab, LabProcess, NatKind};
use serde_json::Value;

const NATTER: &str = env!("CARGO_BIN_EXE_natter");
/// Per-test STUN timeout for the probe: short, the lab has no loss.
const PROBE_TIMEOUT_MS: &str = "1500";

macro_rules! lab_or_skip {
    ($test:expr) => {
        match natter_lab::lab_available() {
            Ok(()) => Lab::new($test).expect("build the lab"),
            Err(why) => return natter_lab::skip($test, &why),
        }
    };
}

/// `natter serve` on the lab server, with its data directory removed afterwards.
struct Server {
    process: LabProcess,
    data: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

fn start_server(lab: &Lab, rfc5780: bool) -> Server {
    let (primary, alternate) = lab.server_ips();
    let data = std::env::temp_dir().join(format!(
        "natter-lab-probe-{}",
        lab.server_host().namespace()
    ));
    let _ = std::fs::remove_dir_all(&data);
    let turn = format!("{primary}:3478");
    let alt = format!("{alternate}:3479");
    let mut args = vec![
        "serve", "--turn", &turn, "--sip", "off", "--sips", "off", "--turns", "off", "--http",
        "off",
    ];
    if rfc5780 {
        args.extend(["--stun-alt", &alt]);
    }
    let data_arg = data.to_str().expect("temp paths are UTF-8 here");
    args.extend(["--data", data_arg]);
    let mut process = lab
        .server_host()
        .spawn(NATTER, &args)
        .expect("start natter serve");
    if let Err(err) = process.wait_for_output("Stop with Ctrl-C", Duration::from_secs(20)) {
        panic!("natter serve did not start in the lab: {err}");
    }
    Server { process, data }
}

fn probe(client: &Host, lab: &Lab) -> Output {
    let server = format!("{}:3478", lab.server_ips().0);
    let args = ["probe", &server, "--json", "--timeout-ms", PROBE_TIMEOUT_MS];
    client
        .run(NATTER, &args, Duration::from_secs(20))
        .expect("natter probe ran")
}

fn probe_json(client: &Host, lab: &Lab, server: &Server) -> Value {
    let out = probe(client, lab);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "natter probe failed: {}\nstderr: {}\nserver: {}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        server.process.stdout(),
        server.process.stderr()
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|err| panic!("probe printed no JSON ({err}): {stdout}"))
}

fn classification(report: &Value) -> (&str, &str) {
    (
        report["mapping"].as_str().unwrap_or("missing"),
        report["filtering"].as_str().unwrap_or("missing"),
    )
}

fn public_ip(report: &Value) -> String {
    let address = report["public_address"].as_str().unwrap_or_default();
    address
        .rsplit_once(':')
        .map(|(ip, _)| ip.to_owned())
        .unwrap_or_default()
}

/// One client behind one NAT of `kind`, probed; `None` when the lab is unavailable.
/// The server is stopped before the lab is torn down.
fn probe_behind_nat(test: &str, kind: NatKind, rfc5780: bool) -> Option<(Value, String, Lab)> {
    if let Err(why) = natter_lab::lab_available() {
        natter_lab::skip(test, &why);
        return None;
    }
    let mut lab = Lab::new(test).expect("build the lab");
    let nat = lab.add_nat(kind).unwrap();
    let client = lab.add_host_behind(&nat).unwrap();
    let server = start_server(&lab, rfc5780);
    let report = probe_json(&client, &lab, &server);
    drop(server);
    Some((report, nat.wan_ip().to_string(), lab))
}

#[test]
fn lab_probe_port_restricted_cone() {
    let Some((report, wan_ip, lab)) = probe_behind_nat(
        "lab_probe_port_restricted_cone",
        NatKind::PortRestrictedCone,
        true,
    ) else {
        return;
    };
    assert_eq!(
        classification(&report),
        ("endpoint-independent", "address-and-port-dependent"),
        "{report:#}"
    );
    assert_eq!(public_ip(&report), wan_ip);
    assert_eq!(report["rfc5780"], true);
    assert_eq!(report["server"], format!("{}:3478", lab.server_ips().0));
}

#[test]
fn lab_probe_symmetric() {
    let Some((report, wan_ip, _lab)) =
        probe_behind_nat("lab_probe_symmetric", NatKind::Symmetric, true)
    else {
        return;
    };
    assert_eq!(
        classification(&report),
        ("address-and-port-dependent", "address-and-port-dependent"),
        "{report:#}"
    );
    assert_eq!(public_ip(&report), wan_ip);
}

#[test]
fn lab_probe_udp_blocked_fails_clearly() {
    let mut lab = lab_or_skip!("lab_probe_udp_blocked_fails_clearly");
    let nat = lab.add_nat(NatKind::UdpBlocked).unwrap();
    let client = lab.add_host_behind(&nat).unwrap();
    let _server = start_server(&lab, true);
    let out = probe(&client, &lab);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "probe must fail when UDP is blocked");
    let server = format!("{}:3478", lab.server_ips().0);
    assert!(
        stderr.contains(&server) && stderr.contains("this network blocks UDP"),
        "message names the server and the cause: {stderr}"
    );
    assert!(
        stderr.contains("answered over TCP") && stderr.contains(&nat.wan_ip().to_string()),
        "the TCP check proves the server is up: {stderr}"
    );
    assert!(
        out.stdout.is_empty(),
        "no JSON on failure: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn lab_probe_no_nat() {
    let mut lab = lab_or_skip!("lab_probe_no_nat");
    let client = lab.add_public_host().unwrap();
    let server = start_server(&lab, true);
    let report = probe_json(&client, &lab, &server);
    assert_eq!(
        classification(&report),
        ("endpoint-independent", "endpoint-independent"),
        "{report:#}"
    );
    assert_eq!(public_ip(&report), client.ip().to_string());
    assert_eq!(report["behind_nat"], false);
}

#[test]
fn lab_probe_carrier_grade_nat() {
    let mut lab = lab_or_skip!("lab_probe_carrier_grade_nat");
    let carrier = lab.add_carrier_nat(NatKind::PortRestrictedCone).unwrap();
    let home = lab
        .add_nat_behind(&carrier, NatKind::PortRestrictedCone)
        .unwrap();
    let client = lab.add_host_behind(&home).unwrap();
    let server = start_server(&lab, true);
    let report = probe_json(&client, &lab, &server);
    assert_eq!(
        classification(&report),
        ("endpoint-independent", "address-and-port-dependent"),
        "{report:#}"
    );
    assert_eq!(
        public_ip(&report),
        carrier.wan_ip().to_string(),
        "seen as the carrier's address"
    );
}

#[test]
fn lab_probe_two_hosts_behind_one_nat() {
    let mut lab = lab_or_skip!("lab_probe_two_hosts_behind_one_nat");
    let nat = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let first = lab.add_host_behind(&nat).unwrap();
    let second = lab.add_host_behind(&nat).unwrap();
    let server = start_server(&lab, true);
    let (a, b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| probe_json(&first, &lab, &server));
        let b = scope.spawn(|| probe_json(&second, &lab, &server));
        (
            a.join().expect("first probe"),
            b.join().expect("second probe"),
        )
    });
    for report in [&a, &b] {
        assert_eq!(
            classification(report),
            ("endpoint-independent", "address-and-port-dependent"),
            "{report:#}"
        );
        assert_eq!(public_ip(report), nat.wan_ip().to_string());
    }
    assert_ne!(
        a["public_address"], b["public_address"],
        "two hosts share the IP, not the port"
    );
}

#[test]
fn lab_probe_without_rfc5780_is_honest() {
    let Some((report, wan_ip, _lab)) = probe_behind_nat(
        "lab_probe_without_rfc5780_is_honest",
        NatKind::PortRestrictedCone,
        false,
    ) else {
        return;
    };
    assert_eq!(report["filtering"], "unknown", "{report:#}");
    assert_eq!(report["rfc5780"], false);
    assert_eq!(
        report["mapping_measured"], false,
        "one server address cannot show the mapping"
    );
    assert!(
        !report["notes"].as_array().unwrap().is_empty(),
        "the report says what it assumed"
    );
    assert_eq!(public_ip(&report), wan_ip);
}

#[test]
fn lab_probe_retransmits_through_a_lossy_link() {
    let test = "lab_probe_retransmits_through_a_lossy_link";
    if let Err(why) = natter_lab::impairment_available() {
        return natter_lab::skip(test, &why);
    }
    let mut lab = Lab::new(test).expect("build the lab");
    let nat = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let client = lab.add_host_behind(&nat).unwrap();
    let server = start_server(&lab, true);
    let lossy = Impairment::none().with_loss(0.2);
    let link = lab.impair_nat_link(&nat, lossy, lossy).unwrap();
    let target = format!("{}:3478", lab.server_ips().0);
    // 8 s lets every request be sent 5 times (0, 0.5, 1.5, 3.5, 7.5 s).
    let args = ["probe", &target, "--json", "--timeout-ms", "8000"];
    let out = client
        .run(NATTER, &args, Duration::from_secs(30))
        .expect("probe ran");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(
        classification(&report),
        ("endpoint-independent", "address-and-port-dependent"),
        "{report:#}"
    );
    let stats = link.stats();
    assert!(
        stats.up.dropped + stats.down.dropped > 0,
        "the link really lost packets: {stats:?}"
    );
    drop(server);
}
