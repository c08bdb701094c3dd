//! Account keys for the SIP core, read from the store through a small
//! cache so the registration hot path does not hit SQLite every time.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use natter_sip::auth::{Accounts, DigestKeys};
use natter_store::Store;

/// How long a looked-up key (or a "no such account") is trusted. A changed
/// password or a removed account takes effect within this time.
const TTL: Duration = Duration::from_secs(10);
/// Cache entries kept at most (cleared wholesale beyond it).
const MAX_ENTRIES: usize = 200_000;

pub(crate) struct StoreAccounts {
    store: Store,
    realm: String,
    cache: RefCell<HashMap<String, (Option<DigestKeys>, Instant)>>,
}

impl StoreAccounts {
    pub(crate) fn new(store: Store, realm: &str) -> StoreAccounts {
        StoreAccounts {
            store,
            realm: realm.to_owned(),
            cache: RefCell::new(HashMap::new()),
        }
    }
}

impl Accounts for StoreAccounts {
    fn digest_keys(&self, user: &str) -> Option<DigestKeys> {
        let now = Instant::now();
        if let Some((keys, at)) = self.cache.borrow().get(user) {
            if now.duration_since(*at) < TTL {
                return keys.clone();
            }
        }
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
        let mut cache = self.cache.borrow_mut();
        if cache.len() >= MAX_ENTRIES {
            cache.clear();
        }
        cache.insert(user.to_owned(), (keys.clone(), now));
        keys
    }
}
