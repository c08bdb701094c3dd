//! Personal data in logs. Usernames and client addresses are logged through
//! [`Pii`], which shows them only when the operator turned that on
//! (`natter serve --log-pii`). Otherwise a short salted digest stands in:
//! stable for the life of the process, so lines about the same user or
//! address can still be matched, but not reversible without the salt, which
//! never leaves memory.
//!
//! ```
//! use natter_turn::pii::Redaction;
//!
//! let hidden = Redaction::hidden(7);
//! let line = format!("user {}", hidden.pii("alice"));
//! assert!(!line.contains("alice"));
//! assert_eq!(line, format!("user {}", hidden.pii("alice")), "same value, same digest");
//! assert_eq!(Redaction::shown().pii("alice").to_string(), "alice");
//! ```

use std::fmt;

use sha2::{Digest, Sha256};

/// Whether personal data is shown in logs, and the salt for its digest when not.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Redaction {
    show: bool,
    salt: u64,
}

impl Redaction {
    /// Log personal data as it is (the operator asked for it).
    pub fn shown() -> Self {
        Redaction {
            show: true,
            salt: 0,
        }
    }

    /// Log a digest of personal data, salted with `salt` (draw it at random).
    pub fn hidden(salt: u64) -> Self {
        Redaction { show: false, salt }
    }

    /// True when personal data is logged as it is.
    pub fn shows(&self) -> bool {
        self.show
    }

    /// Wrap `value` for a log line.
    pub fn pii<T: fmt::Display>(&self, value: T) -> Pii<T> {
        Pii {
            value,
            redaction: *self,
        }
    }
}

impl fmt::Debug for Redaction {
    /// Never prints the salt.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = if self.show { "shown" } else { "hidden" };
        write!(f, "Redaction({mode})")
    }
}

/// A username or address on its way to a log line: the value itself, or
/// `~` and eight hex digits of a salted SHA-256 digest of it.
pub struct Pii<T> {
    value: T,
    redaction: Redaction,
}

impl<T: fmt::Display> fmt::Display for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.redaction.show {
            return self.value.fmt(f);
        }
        let mut h = Sha256::new();
        h.update(self.redaction.salt.to_be_bytes());
        h.update(self.value.to_string().as_bytes());
        let d = h.finalize();
        write!(f, "~{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
    }
}

impl<T: fmt::Display> fmt::Debug for Pii<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    #[test]
    fn hidden_values_are_digests_stable_per_salt() {
        let addr: SocketAddr = "203.0.113.5:40000".parse().unwrap();
        let r = Redaction::hidden(42);
        let shown = r.pii(addr).to_string();
        assert!(!shown.contains("203.0.113"), "{shown}");
        assert_eq!(shown.len(), 9);
        assert!(shown.starts_with('~'));
        assert_eq!(shown, r.pii(addr).to_string());
        assert_ne!(shown, r.pii("203.0.113.6:40000").to_string());
        assert_ne!(shown, Redaction::hidden(43).pii(addr).to_string());
        assert_eq!(format!("{:?}", r.pii(addr)), shown);
    }

    #[test]
    fn shown_values_are_verbatim_and_debug_hides_the_salt() {
        assert_eq!(Redaction::shown().pii("bob").to_string(), "bob");
        assert_eq!(format!("{:?}", Redaction::hidden(99)), "Redaction(hidden)");
        assert!(Redaction::shown().shows());
        assert!(!Redaction::hidden(1).shows());
    }
}
