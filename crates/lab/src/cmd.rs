//! Running the setup tools (`ip`, `iptables`, `sysctl`) and checking their exit status.

use std::process::Command;
use std::sync::OnceLock;

use crate::{Error, Result};

/// Runs `program args...` to completion; an error carries the command line and its stderr.
pub(crate) fn run(program: &str, args: &[&str]) -> Result<String> {
    let command = display(program, args);
    tracing::trace!(%command, "lab setup");
    let output = Command::new(program)
        .args(args)
        .output()
        .map_err(|source| Error::Spawn {
            command: command.clone(),
            source,
        })?;
    if !output.status.success() {
        return Err(Error::Command {
            command,
            status: output.status.to_string(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// Runs `program args...` inside network namespace `ns` (via `ip netns exec`).
pub(crate) fn run_in(ns: &str, program: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Runs `ip -n ns args...` (an `ip` command acting on namespace `ns`).
pub(crate) fn ip_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-n", ns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Runs `iptables -w args...` in namespace `ns` (`-w`: wait for the global xtables lock,
/// which parallel tests in other namespaces share).
pub(crate) fn iptables_in(ns: &str, args: &[&str]) -> Result<String> {
    let mut full = vec!["-w"];
    full.extend_from_slice(args);
    run_in(ns, "iptables", &full)
}

/// Sets a sysctl in namespace `ns`.
pub(crate) fn sysctl_in(ns: &str, key: &str, value: &str) -> Result<String> {
    let setting = format!("{key}={value}");
    run_in(ns, "sysctl", &["-qw", &setting])
}

/// Joins a command line for messages.
pub(crate) fn display(program: &str, args: &[&str]) -> String {
    let mut line = program.to_owned();
    for arg in args {
        line.push(' ');
        line.push_str(arg);
    }
    line
}

/// Tells whether the lab can run here, and if not, why (for a loud `SKIPPED: <why>`).
///
/// Checks: running as root, `ip`, `iptables` and `sysctl` present, and that a network
/// namespace can really be created (containers may forbid it even for root).
/// The answer is computed once per process.
pub fn lab_available() -> Result<(), String> {
    static ANSWER: OnceLock<Result<(), String>> = OnceLock::new();
    ANSWER.get_or_init(check_available).clone()
}

fn check_available() -> Result<(), String> {
    if !is_root() {
        return Err(
            "the network lab needs root (network namespaces, iptables); \
                    run the tests as root, e.g. `sudo -E scripts/test`"
                .to_owned(),
        );
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("sysctl", "procps"),
    ] {
        if let Err(err) = run(tool, &["-V"]).or_else(|_| run(tool, &["--version"])) {
            return Err(format!(
                "`{tool}` is not usable ({err}); install the `{package}` package"
            ));
        }
    }
    let probe = format!("nlcheck-{}", std::process::id());
    if let Err(err) = run("ip", &["netns", "add", &probe]) {
        return Err(format!(
            "cannot create a network namespace ({err}); \
                            the lab needs CAP_SYS_ADMIN outside a restricted container"
        ));
    }
    let deleted = run("ip", &["netns", "del", &probe]);
    deleted
        .map(|_| ())
        .map_err(|err| format!("cannot delete a network namespace: {err}"))
}

/// Tells whether link impairment can run here: the lab itself plus a TUN device
/// (`/dev/net/tun`, kernel module `tun`).
pub fn impairment_available() -> Result<(), String> {
    lab_available()?;
    if std::path::Path::new("/dev/net/tun").exists() {
        Ok(())
    } else {
        Err(
            "link impairment needs /dev/net/tun (load the `tun` kernel module, or pass \
             --device /dev/net/tun to the container)"
                .to_owned(),
        )
    }
}

/// Reads the effective uid from /proc (no `unsafe` needed).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| effective_uid(&status))
        .is_some_and(|uid| uid == 0)
}

/// Parses the effective uid (second field of the `Uid:` line) out of /proc/self/status.
fn effective_uid(status: &str) -> Option<u32> {
    let line = status.lines().find(|line| line.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_uid_is_the_second_number() {
        let status = "Name:\tcat\nUid:\t1000\t0\t1000\t1000\nGid:\t5\t5\t5\t5\n";
        assert_eq!(effective_uid(status), Some(0));
        assert_eq!(effective_uid("Name: x\n"), None);
        assert_eq!(effective_uid("Uid: 12\n"), None);
    }

    #[test]
    fn failing_command_names_itself_and_its_stderr() {
        let err = run("sh", &["-c", "echo boom >&2; exit 3"]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sh -c"), "{text}");
        assert!(text.contains("boom"), "{text}");
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let err = run("natter-no-such-program", &[]).unwrap_err();
        assert!(matches!(err, Error::Spawn { .. }), "{err}");
    }
}
