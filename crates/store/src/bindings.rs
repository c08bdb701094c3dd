//! SIP registrations (bindings), persisted so devices stay reachable across
//! a restart. Written behind the registrar by the SIP driver, in batches.
//!
//! Only UDP bindings are worth keeping: a stream binding dies with its
//! connection, and the device re-registers when it reconnects (RFC 5626).

use rusqlite::params;

use crate::{Store, StoreError};

/// One binding as stored. Times are Unix seconds; addresses are `IP:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredBinding {
    /// The account id (user part of the address-of-record).
    pub account: String,
    /// The Contact URI.
    pub contact: String,
    /// RFC 5626 `+sip.instance`.
    pub instance: Option<String>,
    /// RFC 5626 `reg-id`.
    pub reg_id: Option<u32>,
    pub expires_unix: i64,
    pub call_id: String,
    pub cseq: u32,
    /// `UDP`, `TCP`, `TLS`, `WS`, `WSS`.
    pub transport: String,
    /// Our listener address the binding arrived on.
    pub local: String,
    /// The device's address as we saw it (its NAT's public side).
    pub remote: String,
}

/// Create the table (idempotent). Called by the functions below, so a
/// database made before this table existed gains it on first use.
pub(crate) fn migrate(conn: &rusqlite::Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS sip_bindings (
             account TEXT NOT NULL,
             contact TEXT NOT NULL,
             instance TEXT,
             reg_id INTEGER,
             expires INTEGER NOT NULL,
             call_id TEXT NOT NULL,
             cseq INTEGER NOT NULL,
             transport TEXT NOT NULL,
             local TEXT NOT NULL,
             remote TEXT NOT NULL
         );
         CREATE INDEX IF NOT EXISTS sip_bindings_account ON sip_bindings(account);",
    )?;
    Ok(())
}

impl Store {
    /// Replace the bindings of each listed account (empty list: delete them),
    /// all in one transaction.
    pub fn replace_bindings(
        &self,
        batch: &[(String, Vec<StoredBinding>)],
    ) -> Result<(), StoreError> {
        self.with_conn(|conn| {
            migrate(conn)?;
            let tx = conn.transaction()?;
            {
                let mut delete = tx.prepare_cached("DELETE FROM sip_bindings WHERE account = ?1")?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO sip_bindings (account, contact, instance, reg_id, expires, call_id, cseq, transport, local, remote)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                )?;
                for (account, bindings) in batch {
                    delete.execute(params![account])?;
                    for b in bindings {
                        insert.execute(params![
                            account, b.contact, b.instance, b.reg_id, b.expires_unix, b.call_id, b.cseq, b.transport,
                            b.local, b.remote
                        ])?;
                    }
                }
            }
            tx.commit()?;
            Ok(())
        })
    }

    /// Every binding that expires after `now_unix`; older rows are deleted.
    pub fn load_bindings(&self, now_unix: i64) -> Result<Vec<StoredBinding>, StoreError> {
        self.with_conn(|conn| {
            migrate(conn)?;
            conn.execute("DELETE FROM sip_bindings WHERE expires <= ?1", params![now_unix])?;
            let mut stmt = conn.prepare(
                "SELECT account, contact, instance, reg_id, expires, call_id, cseq, transport, local, remote
                 FROM sip_bindings ORDER BY account",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(StoredBinding {
                    account: r.get(0)?,
                    contact: r.get(1)?,
                    instance: r.get(2)?,
                    reg_id: r.get(3)?,
                    expires_unix: r.get(4)?,
                    call_id: r.get(5)?,
                    cseq: r.get(6)?,
                    transport: r.get(7)?,
                    local: r.get(8)?,
                    remote: r.get(9)?,
                })
            })?;
            Ok(rows.collect::<Result<Vec<_>, _>>()?)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn binding(account: &str, contact: &str, expires_unix: i64) -> StoredBinding {
        StoredBinding {
            account: account.into(),
            contact: contact.into(),
            instance: Some("urn:uuid:1".into()),
            reg_id: Some(1),
            expires_unix,
            call_id: "c".into(),
            cseq: 7,
            transport: "UDP".into(),
            local: "0.0.0.0:5060".into(),
            remote: "198.51.100.7:40000".into(),
        }
    }

    #[test]
    fn replace_load_and_expire() {
        let store = Store::open_in_memory().unwrap();
        let a = vec![
            binding("alice", "sip:a@1", 100),
            binding("alice", "sip:a@2", 50),
        ];
        store
            .replace_bindings(&[
                ("alice".into(), a.clone()),
                ("bob".into(), vec![binding("bob", "sip:b@1", 100)]),
            ])
            .unwrap();
        assert_eq!(store.load_bindings(10).unwrap().len(), 3);
        store
            .replace_bindings(&[("bob".into(), Vec::new())])
            .unwrap();
        assert_eq!(store.load_bindings(10).unwrap(), a);
        let later = store.load_bindings(60).unwrap();
        assert_eq!(later, vec![a[0].clone()], "expired rows are dropped");
    }
}
