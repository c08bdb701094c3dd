//! The lab's error type.

use std::time::Duration;

/// Everything that can go wrong while building a lab or running processes in it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lab cannot run on this machine (not root, `ip` or `iptables` missing, ...).
    #[error("network lab unavailable: {0}")]
    Unavailable(String),
    /// A setup command (`ip`, `iptables`, `sysctl`) exited non-zero.
    #[error("lab setup command `{command}` failed ({status}): {stderr}")]
    Command {
        /// The command line, for the reader.
        command: String,
        /// Exit status as text.
        status: String,
        /// What the command printed on stderr.
        stderr: String,
    },
    /// A program could not be started at all.
    #[error("could not start `{command}`: {source}; is it installed and on PATH?")]
    Spawn {
        /// The command line.
        command: String,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },
    /// A program run with [`crate::Host::run`] did not finish in time (it was killed).
    #[error(
        "`{command}` did not finish within {timeout:?}; stdout: {stdout:?}; stderr: {stderr:?}"
    )]
    Timeout {
        /// The command line.
        command: String,
        /// The limit that was exceeded.
        timeout: Duration,
        /// Output collected before it was killed.
        stdout: String,
        /// Error output collected before it was killed.
        stderr: String,
    },
    /// The topology ran out of addresses or names (more than the lab supports).
    #[error("lab topology too large: {0}")]
    Exhausted(&'static str),
    /// An impairment router could not open or drive its TUN device.
    #[error("impairment router on `{link}`: {source}")]
    Impair {
        /// The link being impaired.
        link: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// Other I/O failure (reading process output, waiting for a child).
    #[error("lab I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// Result alias for the lab.
pub type Result<T, E = Error> = std::result::Result<T, E>;
