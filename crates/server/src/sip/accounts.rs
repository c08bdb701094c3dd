//! Account keys for the SIP core, read from the store through a cache so
//! the registration hot path does not hit SQLite every time.
//!
//! Accounts change only through `natter user` (another process, another
//! database connection), and SQLite counts such commits (`PRAGMA
//! data_version`). The cache checks that count at most once per
//! [`CHECK_EVERY`] and starts over when it moved: a changed password or a
//! removed account takes effect within a second, and a key stays cached
//! for as long as nothing changed.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::{Duration, Instant};

use natter_sip::auth::{Accounts, DigestKeys};
use natter_store::Store;

/// How often the store is asked whether another process changed it.
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// Keys of existing accounts kept at most (cleared wholesale beyond it,
/// which only a server with more active accounts than this reaches).
const MAX_KNOWN: usize = 200_000;
/// Names without an account remembered at most, apart from the known ones
/// so that a flood of made-up names never evicts a real user's keys.
const MAX_UNKNOWN: usize = 4096;
/// How long a name without an account is answered from memory.
const UNKNOWN_TTL: Duration = Duration::from_secs(10);

pub(crate) struct StoreAccounts {
    store: Store,
    realm: String,
    known: RefCell<HashMap<String, DigestKeys>>,
    /// Names the store had no account for, until when that answer holds.
    unknown: RefCell<HashMap<String, Instant>>,
    /// The store's change count when the cache was last known good, and when.
    version: Cell<Option<i64>>,
    checked: Cell<Option<Instant>>,
    /// Store lookups made (each a cache miss).
    lookups: Cell<u64>,
}

impl StoreAccounts {
    pub(crate) fn new(store: Store, realm: &str) -> StoreAccounts {
        StoreAccounts {
            store,
            realm: realm.to_owned(),
            known: RefCell::new(HashMap::new()),
            unknown: RefCell::new(HashMap::new()),
            version: Cell::new(None),
            checked: Cell::new(None),
            lookups: Cell::new(0),
        }
    }

    /// Forget every cached answer when another process changed the store
    /// (or when asking failed: then the store is read every time).
    fn revalidate(&self, now: Instant) {
        if self
            .checked
            .get()
            .is_some_and(|at| now.duration_since(at) < CHECK_EVERY)
        {
            return;
        }
        self.checked.set(Some(now));
        let version = match self.store.external_changes() {
            Ok(v) => Some(v),
            Err(e) => {
                tracing::warn!(error = %e, "cannot tell whether accounts changed; not caching them");
                None
            }
        };
        if version.is_none() || version != self.version.get() {
            self.known.borrow_mut().clear();
            self.unknown.borrow_mut().clear();
        }
        self.version.set(version);
    }

    /// The cached answer for `user`, if there is a valid one.
    fn cached(&self, user: &str, now: Instant) -> Option<Option<DigestKeys>> {
        if let Some(keys) = self.known.borrow().get(user) {
            return Some(Some(keys.clone()));
        }
        let until = self.unknown.borrow().get(user).copied()?;
        (until > now).then_some(None)
    }

    fn load(&self, user: &str, now: Instant) -> Option<DigestKeys> {
        self.lookups.set(self.lookups.get() + 1);
        let keys = match self.store.digest_keys(user) {
            Ok(k) => k,
            Err(e) => {
                tracing::warn!(error = %e, "account lookup failed");
                return None;
            }
        };
        // Keys made for another realm cannot verify a digest for ours.
        let keys = keys.filter(|k| k.realm == self.realm).map(|k| DigestKeys {
            md5: k.md5,
            sha256: k.sha256,
        });
        if self.version.get().is_some() {
            match &keys {
                Some(k) => self.remember_known(user, k),
                None => self.remember_unknown(user, now),
            }
        }
        keys
    }

    fn remember_known(&self, user: &str, keys: &DigestKeys) {
        let mut known = self.known.borrow_mut();
        if known.len() >= MAX_KNOWN {
            known.clear();
        }
        known.insert(user.to_owned(), keys.clone());
    }

    fn remember_unknown(&self, user: &str, now: Instant) {
        let mut unknown = self.unknown.borrow_mut();
        if unknown.len() >= MAX_UNKNOWN {
            unknown.retain(|_, until| *until > now);
            if unknown.len() >= MAX_UNKNOWN {
                unknown.clear(); // a flood: only made-up names are forgotten
            }
        }
        unknown.insert(user.to_owned(), now + UNKNOWN_TTL);
    }
}

impl Accounts for StoreAccounts {
    fn digest_keys(&self, user: &str) -> Option<DigestKeys> {
        let now = Instant::now();
        self.revalidate(now);
        match self.cached(user, now) {
            Some(answer) => answer,
            None => self.load(user, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natter_store::AccountId;

    #[test]
    fn a_password_changed_by_another_connection_is_seen_within_a_check() {
        let dir = natter_lab::testing::TempDir::new("sip-accounts");
        let path = dir.path().join("natter.db");
        let store = Store::open(&path).unwrap();
        store.ensure_realm("example.org").unwrap();
        let id = AccountId::parse("alice").unwrap();
        store.add_account(&id, "old password").unwrap();
        let accounts = StoreAccounts::new(store.clone(), "example.org");
        let old = accounts.digest_keys("alice").unwrap();
        assert!(accounts.digest_keys("bob").is_none());

        // `natter user passwd` and `user add` run in another process.
        let cli = Store::open(&path).unwrap();
        cli.set_password(&id, "new password").unwrap();
        cli.add_account(&AccountId::parse("bob").unwrap(), "pw")
            .unwrap();
        assert!(
            accounts.digest_keys("alice").as_ref() == Some(&old),
            "cached until the next check"
        );
        accounts.checked.set(Some(
            Instant::now() - CHECK_EVERY - Duration::from_millis(1),
        ));
        let new = accounts.digest_keys("alice").unwrap();
        assert!(new != old, "the new password's keys after the check");
        assert!(accounts.digest_keys("bob").is_some(), "the new account too");
    }

    #[test]
    fn a_flood_of_unknown_names_does_not_evict_a_known_user() {
        let dir = natter_lab::testing::TempDir::new("sip-accounts-flood");
        let store = Store::open(&dir.path().join("natter.db")).unwrap();
        store.ensure_realm("example.org").unwrap();
        store
            .add_account(&AccountId::parse("alice").unwrap(), "pw")
            .unwrap();
        let accounts = StoreAccounts::new(store, "example.org");
        let keys = accounts.digest_keys("alice").unwrap();
        assert_eq!(accounts.lookups.get(), 1);

        // More made-up names than any cache bound, each looked up once.
        let flood = MAX_KNOWN + 1;
        for n in 0..flood {
            assert!(accounts.digest_keys(&format!("x{n}")).is_none());
        }
        assert_eq!(accounts.lookups.get(), 1 + flood as u64);
        assert!(accounts.unknown.borrow().len() <= MAX_UNKNOWN);
        assert!(accounts.digest_keys("alice") == Some(keys));
        assert_eq!(
            accounts.lookups.get(),
            1 + flood as u64,
            "alice answered from the cache, not the store"
        );
    }

    #[test]
    fn a_name_without_account_is_remembered_briefly() {
        let dir = natter_lab::testing::TempDir::new("sip-accounts-unknown");
        let store = Store::open(&dir.path().join("natter.db")).unwrap();
        store.ensure_realm("example.org").unwrap();
        let accounts = StoreAccounts::new(store, "example.org");
        let t0 = Instant::now();
        accounts.revalidate(t0);
        assert!(accounts.load("mallory", t0).is_none());
        assert!(
            matches!(accounts.cached("mallory", t0), Some(None)),
            "a known no"
        );
        let later = t0 + UNKNOWN_TTL;
        assert!(
            accounts.cached("mallory", later).is_none(),
            "expired: ask again"
        );
        assert_eq!(accounts.lookups.get(), 1);
    }
}
