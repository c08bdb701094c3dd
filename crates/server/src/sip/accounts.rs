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
/// Cache entries kept at most (cleared wholesale beyond it).
const MAX_ENTRIES: usize = 200_000;

pub(crate) struct StoreAccounts {
    store: Store,
    realm: String,
    cache: RefCell<HashMap<String, Option<DigestKeys>>>,
    /// The store's change count when the cache was last known good, and when.
    version: Cell<Option<i64>>,
    checked: Cell<Option<Instant>>,
}

impl StoreAccounts {
    pub(crate) fn new(store: Store, realm: &str) -> StoreAccounts {
        StoreAccounts {
            store,
            realm: realm.to_owned(),
            cache: RefCell::new(HashMap::new()),
            version: Cell::new(None),
            checked: Cell::new(None),
        }
    }

    /// Forget every cached key when another process changed the store
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
            self.cache.borrow_mut().clear();
        }
        self.version.set(version);
    }

    fn load(&self, user: &str) -> Option<DigestKeys> {
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
            let mut cache = self.cache.borrow_mut();
            if cache.len() >= MAX_ENTRIES {
                cache.clear();
            }
            cache.insert(user.to_owned(), keys.clone());
        }
        keys
    }
}

impl Accounts for StoreAccounts {
    fn digest_keys(&self, user: &str) -> Option<DigestKeys> {
        self.revalidate(Instant::now());
        if let Some(keys) = self.cache.borrow().get(user) {
            return keys.clone();
        }
        self.load(user)
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
}
