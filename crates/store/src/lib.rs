//! Accounts (and, through the signaling work, registrations) in an embedded
//! SQLite database.
//!
//! Only digest keys are stored, never passwords: `HA1 = H(id:realm:password)`
//! with MD5 (SIP RFC 3261, TURN long-term credentials) and SHA-256 (RFC 8760,
//! RFC 8489). The same keys serve SIP and TURN.
//!
//! ```no_run
//! use natter_store::{AccountId, Store};
//! let store = Store::open("natter-data/natter.db".as_ref())?;
//! store.ensure_realm("example.org")?;
//! let id = AccountId::parse("+1 (415) 555-0100")?;
//! store.add_account(&id, "correct horse battery staple")?;
//! assert!(store.digest_keys(id.as_str())?.is_some());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

#![forbid(unsafe_code)]

mod accounts;
mod bindings;
mod id;

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

pub use accounts::{generate_password, DigestKeys, ImportReport};
pub use bindings::StoredBinding;
pub use id::{AccountId, IdError};

/// Errors from the store. Messages name the cause and the fix.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error("database {path}: {error}; check that the data directory is writable (--data DIR)")]
    Open {
        path: String,
        error: rusqlite::Error,
    },
    #[error("database error: {0}")]
    Sql(#[from] rusqlite::Error),
    #[error("account {0} already exists; change its password with `natter user passwd {0}`")]
    Exists(AccountId),
    #[error("no account {0}; list accounts with `natter user list`")]
    NotFound(AccountId),
    #[error(transparent)]
    Id(#[from] IdError),
    #[error("cannot read {what}: {error}")]
    Io { what: String, error: std::io::Error },
}

/// A handle to the database; cheap to clone, safe to share between threads.
#[derive(Clone)]
pub struct Store {
    conn: Arc<Mutex<Connection>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

const SCHEMA_VERSION: i64 = 1;

impl Store {
    /// Open (creating if needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let open_err = |error| StoreError::Open {
            path: path.display().to_string(),
            error,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(open_err)?;
        Store::from_connection(conn)
    }

    /// A private in-memory database (tests, benchmarks).
    pub fn open_in_memory() -> Result<Store, StoreError> {
        Store::from_connection(Connection::open_in_memory()?)
    }

    fn from_connection(conn: Connection) -> Result<Store, StoreError> {
        migrate(&conn)?;
        Ok(Store {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    /// Run `f` with the connection locked. For modules of this crate and
    /// for extensions that keep their own tables.
    pub fn with_conn<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        f(&mut self.lock())
    }

    /// A number that moves whenever another connection (another process,
    /// such as `natter user`) committed a change to the database: caches
    /// compare it to know when to forget what they read.
    pub fn external_changes(&self) -> Result<i64, StoreError> {
        Ok(self
            .lock()
            .pragma_query_value(None, "data_version", |r| r.get(0))?)
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A poisoned lock means another thread panicked mid-statement; SQLite
        // keeps the database consistent (the statement's transaction is rolled
        // back), so continuing with the connection is safe.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn migrate(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version < 1 {
        conn.execute_batch(
            "BEGIN;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS accounts (
                 id TEXT PRIMARY KEY,
                 realm TEXT NOT NULL,
                 ha1_md5 BLOB NOT NULL,
                 ha1_sha256 BLOB NOT NULL,
                 created INTEGER NOT NULL
             );
             COMMIT;",
        )?;
    }
    conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    Ok(())
}
