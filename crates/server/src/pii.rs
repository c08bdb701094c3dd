//! How the drivers log personal data (client addresses): through one
//! process-wide [`Redaction`], set from `--log-pii` when `serve` starts — like
//! the tracing subscriber it serves, it is per process. The SIP core logs
//! through the same one, so one address has one digest in all of its lines.

use std::sync::OnceLock;

use natter_turn::pii::Redaction;

static LOG_REDACTION: OnceLock<Redaction> = OnceLock::new();

/// Fix the process's redaction: values shown as they are when `show`, else a
/// salted digest. The first call wins (several servers in one test process).
pub(crate) fn set_log_pii(show: bool) {
    let _ = LOG_REDACTION.get_or_init(|| make(show));
}

/// The process's redaction (hidden, if `serve` has not set it).
pub(crate) fn log_redaction() -> Redaction {
    *LOG_REDACTION.get_or_init(|| make(false))
}

/// What a protocol core built from `config` logs through: the process's
/// redaction, or values as they are when this server was given `--log-pii`
/// (tests may run servers with and without it in one process).
pub(crate) fn for_config(log_pii: bool) -> Redaction {
    if log_pii {
        Redaction::shown()
    } else {
        log_redaction()
    }
}

fn make(show: bool) -> Redaction {
    if show {
        Redaction::shown()
    } else {
        Redaction::hidden(rand::random())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_hidden_unless_the_operator_asked() {
        // No `serve` in this test process has asked to show personal data.
        set_log_pii(false);
        let addr: std::net::SocketAddr = "203.0.113.9:40000".parse().unwrap();
        let shown = log_redaction().pii(addr).to_string();
        assert!(!shown.contains("203.0.113.9"), "{shown}");
        assert_eq!(
            shown,
            log_redaction().pii(addr).to_string(),
            "stable digest"
        );
    }
}
