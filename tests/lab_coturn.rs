//! Third-party cross-checks in the lab: `natter probe` against coturn's STUN server, and
//! coturn's `turnutils_natdiscovery` against `natter serve`, behind the same real NATs.
//! All four views of each NAT must agree. Needs root and coturn (`scripts/test` installs
//! it); otherwise the tests print `SKIPPED` and pass.

use std::path::PathBuf;
use std::time::Duration;

use natter_lab::{Host, Lab, LabProcess, NatKind};

const NATTER: &str = env!("CARGO_BIN_EXE_natter");

/// The lab with a cone and a symmetric NAT, one client behind each, or why it cannot run.
fn lab_with_clients(test: &str, tools: &[&str]) -> Option<(Lab, Host, Host)> {
    if let Err(why) = natter_lab::lab_available() {
        natter_lab::skip(test, &why);
        return None;
    }
    if let Some(tool) = tools.iter().find(|tool| natter_lab::which(tool).is_none()) {
        natter_lab::skip(
            test,
            &format!("`{tool}` not installed (Debian package coturn)"),
        );
        return None;
    }
    let mut lab = Lab::new(test).expect("build the lab");
    let cone = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let symmetric = lab.add_nat(NatKind::Symmetric).unwrap();
    let cone_client = lab.add_host_behind(&cone).unwrap();
    let symmetric_client = lab.add_host_behind(&symmetric).unwrap();
    Some((lab, cone_client, symmetric_client))
}

const CONE: (&str, &str) = ("endpoint-independent", "address-and-port-dependent");
const SYMMETRIC: (&str, &str) = ("address-and-port-dependent", "address-and-port-dependent");

#[test]
fn lab_natter_probe_agrees_with_coturn_server() {
    let test = "lab_natter_probe_agrees_with_coturn_server";
    let Some((lab, cone, symmetric)) = lab_with_clients(test, &["turnserver"]) else {
        return;
    };
    let (primary, alternate) = lab.server_ips();
    let pidfile =
        std::env::temp_dir().join(format!("{}-coturn.pid", lab.server_host().namespace()));
    let args = [
        "-n",
        "-L",
        &primary.to_string(),
        "-L",
        &alternate.to_string(),
        "--listening-port",
        "3478",
        "--stun-only",
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--log-file",
        "stdout",
        "--simple-log",
        "--pidfile",
        pidfile.to_str().expect("UTF-8 temp dir"),
    ];
    let mut coturn = lab
        .server_host()
        .spawn("turnserver", &args)
        .expect("start coturn");
    coturn
        .wait_for_output("Total General servers", Duration::from_secs(10))
        .expect("coturn started");
    let server = format!("{primary}:3478");
    std::thread::scope(|scope| {
        for (client, expected) in [(&cone, CONE), (&symmetric, SYMMETRIC)] {
            let server = &server;
            scope.spawn(move || {
                let args = ["probe", server, "--json", "--timeout-ms", "1500"];
                let out = client
                    .run(NATTER, &args, Duration::from_secs(20))
                    .expect("probe ran");
                let stdout = String::from_utf8_lossy(&out.stdout);
                assert!(
                    out.status.success(),
                    "{stdout}{}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let report: serde_json::Value = serde_json::from_str(stdout.trim()).expect("JSON");
                let seen = (
                    report["mapping"].as_str().unwrap_or(""),
                    report["filtering"].as_str().unwrap_or(""),
                );
                assert_eq!(seen, expected, "natter probe vs coturn: {report:#}");
                assert_eq!(
                    report["alternate_server"],
                    format!("{alternate}:3479"),
                    "coturn's OTHER-ADDRESS"
                );
            });
        }
    });
    let _ = std::fs::remove_file(pidfile);
}

#[test]
fn lab_coturn_natdiscovery_agrees_with_natter_serve() {
    let test = "lab_coturn_natdiscovery_agrees_with_natter_serve";
    let Some((lab, cone, symmetric)) = lab_with_clients(test, &["turnutils_natdiscovery"]) else {
        return;
    };
    let (primary, alternate) = lab.server_ips();
    let _server = NatterServe::start(
        &lab,
        &format!("{primary}:3478"),
        &format!("{alternate}:3479"),
    );
    std::thread::scope(|scope| {
        for (client, expected) in [(&cone, CONE), (&symmetric, SYMMETRIC)] {
            scope.spawn(move || {
                let args = ["-m", "-f", &primary.to_string()];
                let out = client
                    .run("turnutils_natdiscovery", &args, Duration::from_secs(40))
                    .expect("ran");
                let text = String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr);
                assert_eq!(
                    natdiscovery_words(&text),
                    (Some(expected.0), Some(expected.1)),
                    "{text}"
                );
            });
        }
    });
}

/// Maps turnutils_natdiscovery's sentences to natter's words (mapping, filtering).
fn natdiscovery_words(text: &str) -> (Option<&'static str>, Option<&'static str>) {
    let word = |kind: &str| {
        [
            ("Address and Port Dependent", "address-and-port-dependent"),
            ("Address Dependent", "address-dependent"),
            ("Endpoint Independent", "endpoint-independent"),
        ]
        .into_iter()
        .find(|(phrase, _)| text.contains(&format!("NAT with {phrase} {kind}")))
        .map(|(_, word)| word)
    };
    (word("Mapping"), word("Filtering"))
}

/// `natter serve` with RFC 5780 on the lab server; data removed afterwards.
struct NatterServe {
    process: LabProcess,
    data: PathBuf,
}

impl NatterServe {
    fn start(lab: &Lab, turn: &str, alt: &str) -> Self {
        let data = std::env::temp_dir().join(format!(
            "natter-lab-coturn-{}",
            lab.server_host().namespace()
        ));
        let data_arg = data.to_str().expect("UTF-8 temp dir").to_owned();
        let args = [
            "serve",
            "--turn",
            turn,
            "--stun-alt",
            alt,
            "--sip",
            "off",
            "--sips",
            "off",
            "--turns",
            "off",
            "--http",
            "off",
            "--data",
            &data_arg,
        ];
        let mut process = lab
            .server_host()
            .spawn(NATTER, &args)
            .expect("start natter serve");
        process
            .wait_for_output("Stop with Ctrl-C", Duration::from_secs(20))
            .expect("natter serve started");
        Self { process, data }
    }
}

impl Drop for NatterServe {
    fn drop(&mut self) {
        self.process.kill();
        let _ = std::fs::remove_dir_all(&self.data);
    }
}

#[test]
fn natdiscovery_sentences_map_to_our_words() {
    let text = "-= Mapping Behavior Discovery =-\nNAT with Endpoint Independent Mapping!\n\
                -= Filtering Behavior Discovery =-\nNAT with Address and Port Dependent Filtering!";
    assert_eq!(
        natdiscovery_words(text),
        (
            Some("endpoint-independent"),
            Some("address-and-port-dependent")
        )
    );
    assert_eq!(
        natdiscovery_words("NAT with Address Dependent Mapping!"),
        (Some("address-dependent"), None)
    );
    assert_eq!(natdiscovery_words("STUN receive timeout.."), (None, None));
}
