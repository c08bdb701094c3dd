//! The location service: account → bindings, each with the flow it was
//! registered on, so requests reach devices behind NAT (RFC 5626).

use std::collections::HashMap;
use std::time::Instant;

use crate::flow::{ConnId, Flow};

/// One registered contact of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI as registered (without angle brackets).
    pub contact: String,
    /// `+sip.instance` (RFC 5626), quotes and brackets removed.
    pub instance: Option<String>,
    /// `reg-id` (RFC 5626).
    pub reg_id: Option<u32>,
    pub expires_at: Instant,
    /// Call-ID and CSeq of the REGISTER that made it (§10.3 step 7 ordering).
    pub call_id: String,
    pub cseq: u32,
    /// Where it registered from; requests to it go back over this flow.
    pub flow: Flow,
}

impl Binding {
    /// Same binding per RFC 5626 §6: instance + reg-id when both are given,
    /// else instance, else the contact URI.
    pub fn same_key(&self, instance: Option<&str>, reg_id: Option<u32>, contact: &str) -> bool {
        match (instance, &self.instance) {
            (Some(i), Some(mine)) => i == mine && reg_id == self.reg_id,
            (None, None) => contact.eq_ignore_ascii_case(&self.contact),
            _ => false,
        }
    }
}

/// All bindings, by account id (the user part of the AOR).
#[derive(Debug, Default)]
pub struct Location {
    aors: HashMap<Box<str>, Vec<Binding>>,
    by_conn: HashMap<ConnId, Vec<Box<str>>>,
    count: usize,
}

impl Location {
    /// The unexpired bindings of `account`.
    pub fn lookup(&self, account: &str, now: Instant) -> impl Iterator<Item = &Binding> {
        self.aors
            .get(account)
            .into_iter()
            .flatten()
            .filter(move |b| b.expires_at > now)
    }

    /// Every binding of `account`, expired or not.
    pub fn all(&self, account: &str) -> &[Binding] {
        self.aors.get(account).map_or(&[], Vec::as_slice)
    }

    /// Replace the bindings of `account` (an empty list removes it).
    pub fn set(&mut self, account: &str, bindings: Vec<Binding>) {
        for b in &bindings {
            if let Some(conn) = b.flow.conn {
                let list = self.by_conn.entry(conn).or_default();
                if !list.iter().any(|a| &**a == account) {
                    list.push(account.into());
                }
            }
        }
        let old = match self.aors.get_mut(account) {
            _ if bindings.is_empty() => self.aors.remove(account),
            // A refresh: no new key allocated.
            Some(slot) => Some(std::mem::replace(slot, bindings)),
            None => self.aors.insert(account.into(), bindings),
        };
        self.count -= old.map_or(0, |o| o.len());
        self.count += self.all(account).len();
    }

    /// Drop expired bindings; returns the accounts that changed.
    pub fn remove_expired(&mut self, now: Instant) -> Vec<String> {
        let mut changed = Vec::new();
        let mut removed = 0;
        self.aors.retain(|account, bindings| {
            let before = bindings.len();
            bindings.retain(|b| b.expires_at > now);
            if bindings.len() != before {
                removed += before - bindings.len();
                changed.push(account.to_string());
            }
            !bindings.is_empty()
        });
        self.count -= removed;
        changed
    }

    /// A stream connection closed: its bindings are unreachable (RFC 5626
    /// §5.2), so remove them. Returns the accounts that changed.
    pub fn remove_connection(&mut self, conn: ConnId) -> Vec<String> {
        let Some(accounts) = self.by_conn.remove(&conn) else {
            return Vec::new();
        };
        let mut changed = Vec::new();
        for account in accounts {
            let mut list = self.all(&account).to_vec();
            let before = list.len();
            list.retain(|b| b.flow.conn != Some(conn));
            if list.len() != before {
                self.set(&account, list);
                changed.push(account.to_string());
            }
        }
        changed
    }

    /// Number of bindings held.
    pub fn len(&self) -> usize {
        self.count
    }

    /// True when nobody is registered.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Transport;
    use std::time::Duration;

    fn binding(contact: &str, expires_at: Instant, conn: Option<u64>) -> Binding {
        Binding {
            contact: contact.into(),
            instance: None,
            reg_id: None,
            expires_at,
            call_id: "c".into(),
            cseq: 1,
            flow: Flow {
                transport: if conn.is_some() {
                    Transport::Tcp
                } else {
                    Transport::Udp
                },
                local: "127.0.0.1:5060".parse().unwrap(),
                remote: "192.0.2.1:40000".parse().unwrap(),
                conn: conn.map(ConnId),
            },
        }
    }

    #[test]
    fn expiry_hides_then_removes() {
        let t0 = Instant::now();
        let mut loc = Location::default();
        loc.set(
            "alice",
            vec![
                binding("sip:a@1", t0 + Duration::from_secs(10), None),
                binding("sip:a@2", t0 + Duration::from_secs(20), None),
            ],
        );
        assert_eq!(loc.len(), 2);
        let later = t0 + Duration::from_secs(15);
        assert_eq!(loc.lookup("alice", later).count(), 1);
        assert_eq!(loc.remove_expired(later), vec!["alice".to_string()]);
        assert_eq!(loc.len(), 1);
        assert!(loc.remove_expired(later).is_empty());
        loc.remove_expired(t0 + Duration::from_secs(30));
        assert!(loc.is_empty());
        assert!(loc.all("alice").is_empty());
    }

    #[test]
    fn closed_connection_removes_its_bindings_only() {
        let t0 = Instant::now();
        let far = t0 + Duration::from_secs(100);
        let mut loc = Location::default();
        loc.set(
            "bob",
            vec![
                binding("sip:b@tcp", far, Some(7)),
                binding("sip:b@udp", far, None),
            ],
        );
        assert_eq!(loc.remove_connection(ConnId(7)), vec!["bob".to_string()]);
        assert_eq!(loc.all("bob").len(), 1);
        assert_eq!(loc.all("bob")[0].contact, "sip:b@udp");
        assert!(loc.remove_connection(ConnId(7)).is_empty());
        assert_eq!(loc.len(), 1);
    }

    #[test]
    fn binding_identity_follows_rfc5626() {
        let mut b = binding("sip:a@1", Instant::now(), None);
        assert!(b.same_key(None, None, "SIP:A@1"));
        assert!(!b.same_key(Some("urn:x"), Some(1), "sip:a@1"));
        b.instance = Some("urn:x".into());
        b.reg_id = Some(1);
        assert!(b.same_key(Some("urn:x"), Some(1), "sip:a@somewhere-else"));
        assert!(!b.same_key(Some("urn:x"), Some(2), "sip:a@1"));
    }
}
