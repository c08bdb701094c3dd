//! Accounts: add, remove, list, change password, bulk import, digest keys.

use std::io::BufRead;
use std::time::{SystemTime, UNIX_EPOCH};

use md5::{Digest as _, Md5};
use rand::Rng as _;
use rusqlite::{params, OptionalExtension as _};
use sha2::Sha256;

use crate::{AccountId, Store, StoreError};

/// The keys stored for one account: `H(id:realm:password)`.
#[derive(Clone, PartialEq, Eq)]
pub struct DigestKeys {
    /// The realm the keys were made for (the domain at the time).
    pub realm: String,
    /// MD5 HA1: SIP digest (RFC 3261) and TURN long-term credentials.
    pub md5: [u8; 16],
    /// SHA-256 HA1: RFC 8760 digest and RFC 8489 password algorithm.
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for DigestKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys are password equivalents: never print them.
        f.debug_struct("DigestKeys")
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

impl DigestKeys {
    /// Derive the keys for `id` in `realm`.
    pub fn derive(id: &str, realm: &str, password: &str) -> DigestKeys {
        let input = format!("{id}:{realm}:{password}");
        DigestKeys {
            realm: realm.to_owned(),
            md5: Md5::digest(input.as_bytes()).into(),
            sha256: Sha256::digest(input.as_bytes()).into(),
        }
    }
}

/// What `import_csv` did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Accounts created.
    pub added: usize,
    /// Existing accounts whose password was replaced.
    pub updated: usize,
    /// Lines that could not be used: (line number, why).
    pub rejected: Vec<(usize, String)>,
}

/// A strong random password: 20 characters from a 56-symbol alphabet
/// without look-alikes (about 116 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::rngs::OsRng;
    (0..20)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

impl Store {
    /// The realm new accounts are keyed for. `None` before the first start.
    pub fn realm(&self) -> Result<Option<String>, StoreError> {
        let conn = self.lock();
        Ok(conn
            .query_row("SELECT value FROM meta WHERE key = 'realm'", [], |r| {
                r.get(0)
            })
            .optional()?)
    }

    /// Record `realm` as the accounts' realm if none is recorded yet, and
    /// return the recorded one.
    pub fn ensure_realm(&self, realm: &str) -> Result<String, StoreError> {
        let conn = self.lock();
        conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('realm', ?1)",
            [realm],
        )?;
        Ok(
            conn.query_row("SELECT value FROM meta WHERE key = 'realm'", [], |r| {
                r.get(0)
            })?,
        )
    }

    /// Change the recorded realm (accounts made for the old realm need new passwords).
    pub fn set_realm(&self, realm: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT INTO meta (key, value) VALUES ('realm', ?1)
             ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            [realm],
        )?;
        Ok(())
    }

    /// Number of accounts whose keys were made for another realm than `realm`.
    pub fn accounts_outside_realm(&self, realm: &str) -> Result<usize, StoreError> {
        let n: i64 = self.lock().query_row(
            "SELECT COUNT(*) FROM accounts WHERE realm <> ?1",
            [realm],
            |r| r.get(0),
        )?;
        Ok(n as usize)
    }

    /// Create an account. Fails with [`StoreError::Exists`] if it exists.
    pub fn add_account(&self, id: &AccountId, password: &str) -> Result<(), StoreError> {
        let realm = self.current_realm()?;
        let keys = DigestKeys::derive(id.as_str(), &realm, password);
        let conn = self.lock();
        let added = insert(&conn, id, &keys, false)?;
        if added {
            Ok(())
        } else {
            Err(StoreError::Exists(id.clone()))
        }
    }

    /// Replace an account's password. Fails with [`StoreError::NotFound`].
    pub fn set_password(&self, id: &AccountId, password: &str) -> Result<(), StoreError> {
        let realm = self.current_realm()?;
        let keys = DigestKeys::derive(id.as_str(), &realm, password);
        let n = self.lock().execute(
            "UPDATE accounts SET realm = ?2, ha1_md5 = ?3, ha1_sha256 = ?4 WHERE id = ?1",
            params![id.as_str(), keys.realm, &keys.md5[..], &keys.sha256[..]],
        )?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound(id.clone()))
        }
    }

    /// Delete an account. Fails with [`StoreError::NotFound`].
    pub fn remove_account(&self, id: &AccountId) -> Result<(), StoreError> {
        let n = self
            .lock()
            .execute("DELETE FROM accounts WHERE id = ?1", [id.as_str()])?;
        if n == 1 {
            Ok(())
        } else {
            Err(StoreError::NotFound(id.clone()))
        }
    }

    /// All account ids, sorted.
    pub fn list_accounts(&self) -> Result<Vec<AccountId>, StoreError> {
        let conn = self.lock();
        let mut stmt = conn.prepare("SELECT id FROM accounts ORDER BY id")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .filter_map(|r| match r {
                // Rows were validated on insert; skip any edited by hand.
                Ok(s) => AccountId::parse(&s).ok().map(Ok),
                Err(e) => Some(Err(e)),
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    /// Number of accounts.
    pub fn count_accounts(&self) -> Result<usize, StoreError> {
        let n: i64 = self
            .lock()
            .query_row("SELECT COUNT(*) FROM accounts", [], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// The digest keys of `user` (as written by a client: normalised here).
    /// `Ok(None)` for unknown or malformed ids.
    pub fn digest_keys(&self, user: &str) -> Result<Option<DigestKeys>, StoreError> {
        let Ok(id) = AccountId::parse(user) else {
            return Ok(None);
        };
        let conn = self.lock();
        let mut stmt =
            conn.prepare_cached("SELECT realm, ha1_md5, ha1_sha256 FROM accounts WHERE id = ?1")?;
        let row = stmt
            .query_row([id.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })
            .optional()?;
        Ok(row.and_then(|(realm, md5, sha256)| {
            Some(DigestKeys {
                realm,
                md5: md5.try_into().ok()?,
                sha256: sha256.try_into().ok()?,
            })
        }))
    }

    /// Import `ID,PASSWORD` lines (a header line `id,password` and blank or
    /// `#` lines are skipped). Existing accounts get the new password. One
    /// transaction: all valid lines land together.
    pub fn import_csv(&self, input: impl BufRead) -> Result<ImportReport, StoreError> {
        let realm = self.current_realm()?;
        let mut report = ImportReport::default();
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        for (i, line) in input.lines().enumerate() {
            let line_no = i + 1;
            let line = line.map_err(|error| StoreError::Io {
                what: format!("line {line_no}"),
                error,
            })?;
            match parse_csv_line(&line) {
                CsvLine::Skip => {}
                CsvLine::Bad(why) => report.rejected.push((line_no, why)),
                CsvLine::Account(id, password) => {
                    let keys = DigestKeys::derive(id.as_str(), &realm, &password);
                    if insert(&tx, &id, &keys, true)? {
                        report.added += 1;
                    } else {
                        report.updated += 1;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(report)
    }

    fn current_realm(&self) -> Result<String, StoreError> {
        Ok(self.realm()?.unwrap_or_else(|| "localhost".to_owned()))
    }
}

/// Insert; with `replace`, update an existing row. True when a row was added.
fn insert(
    conn: &rusqlite::Connection,
    id: &AccountId,
    keys: &DigestKeys,
    replace: bool,
) -> Result<bool, StoreError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut stmt = conn.prepare_cached(
        "INSERT INTO accounts (id, realm, ha1_md5, ha1_sha256, created) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT(id) DO NOTHING",
    )?;
    let added = stmt.execute(params![
        id.as_str(),
        keys.realm,
        &keys.md5[..],
        &keys.sha256[..],
        now as i64
    ])? == 1;
    if !added && replace {
        conn.prepare_cached(
            "UPDATE accounts SET realm = ?2, ha1_md5 = ?3, ha1_sha256 = ?4 WHERE id = ?1",
        )?
        .execute(params![
            id.as_str(),
            keys.realm,
            &keys.md5[..],
            &keys.sha256[..]
        ])?;
    }
    Ok(added)
}

enum CsvLine {
    Skip,
    Bad(String),
    Account(AccountId, String),
}

fn parse_csv_line(line: &str) -> CsvLine {
    let line = line.trim_end_matches('\r');
    if line.trim().is_empty() || line.trim_start().starts_with('#') {
        return CsvLine::Skip;
    }
    let Some((id, password)) = line.split_once(',') else {
        return CsvLine::Bad("expected ID,PASSWORD".into());
    };
    let (id, password) = (id.trim(), unquote(password.trim()));
    if id.eq_ignore_ascii_case("id") && password.eq_ignore_ascii_case("password") {
        return CsvLine::Skip;
    }
    if password.is_empty() {
        return CsvLine::Bad(format!("{id}: empty password"));
    }
    match AccountId::parse(unquote(id)) {
        Ok(id) => CsvLine::Account(id, password.to_owned()),
        Err(e) => CsvLine::Bad(e.to_string()),
    }
}

fn unquote(s: &str) -> &str {
    s.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> Store {
        let s = Store::open_in_memory().unwrap();
        s.ensure_realm("example.org").unwrap();
        s
    }

    #[test]
    fn keys_are_ha1() {
        // RFC 2617 §3.5 example: HA1 of Mufasa:testrealm@host.com:Circle Of Life.
        let k = DigestKeys::derive("Mufasa", "testrealm@host.com", "Circle Of Life");
        let hex: String = k.md5.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "939e7578ed9e3c518a452acee763bce9");
        assert!(!format!("{k:?}").contains("939e"));
    }

    #[test]
    fn add_list_passwd_remove() {
        let s = store();
        let id = AccountId::parse("+14155550100").unwrap();
        s.add_account(&id, "pw1").unwrap();
        assert!(matches!(
            s.add_account(&id, "pw2"),
            Err(StoreError::Exists(_))
        ));
        let k1 = s.digest_keys("+1 415 555 0100").unwrap().unwrap();
        assert_eq!(k1, DigestKeys::derive("+14155550100", "example.org", "pw1"));
        s.set_password(&id, "pw2").unwrap();
        assert_ne!(s.digest_keys("+14155550100").unwrap().unwrap(), k1);
        assert_eq!(s.list_accounts().unwrap(), vec![id.clone()]);
        s.remove_account(&id).unwrap();
        assert!(matches!(
            s.remove_account(&id),
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(s.digest_keys("+14155550100").unwrap(), None);
        assert_eq!(s.digest_keys("not valid!").unwrap(), None);
    }

    #[test]
    fn realm_is_sticky_and_mismatch_counted() {
        let s = store();
        assert_eq!(s.ensure_realm("other.org").unwrap(), "example.org");
        s.add_account(&AccountId::parse("alice").unwrap(), "x")
            .unwrap();
        assert_eq!(s.accounts_outside_realm("example.org").unwrap(), 0);
        assert_eq!(s.accounts_outside_realm("other.org").unwrap(), 1);
    }

    #[test]
    fn import_reports_each_line() {
        let s = store();
        s.add_account(&AccountId::parse("bob").unwrap(), "old")
            .unwrap();
        let csv = "id,password\n+14155550100,secret1\n# comment\n\nbob,new\nbad id!,x\nnopassword,\n\"carol\",\"pw\"\n4155550100,x\n";
        let r = s.import_csv(csv.as_bytes()).unwrap();
        assert_eq!(r.added, 2);
        assert_eq!(r.updated, 1);
        assert_eq!(
            r.rejected.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            vec![6, 7, 9]
        );
        assert_eq!(s.count_accounts().unwrap(), 3);
        assert_eq!(
            s.digest_keys("bob").unwrap().unwrap(),
            DigestKeys::derive("bob", "example.org", "new")
        );
    }

    #[test]
    fn import_is_fast() {
        let s = store();
        let csv: String = (0..5000).map(|i| format!("+1415{i:07},pw{i}\n")).collect();
        let t = std::time::Instant::now();
        let r = s.import_csv(csv.as_bytes()).unwrap();
        assert_eq!(r.added, 5000);
        // Generous bound for a noisy 2-core machine in debug builds: the
        // requirement is "thousands per second".
        assert!(t.elapsed().as_secs_f64() < 5.0, "{:?}", t.elapsed());
    }

    #[test]
    fn generated_passwords_are_long_and_distinct() {
        let a = generate_password();
        assert_eq!(a.len(), 20);
        assert_ne!(a, generate_password());
    }

    #[test]
    fn reopen_keeps_accounts() {
        let dir = std::env::temp_dir().join(format!("natter-store-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("t.db");
        {
            let s = Store::open(&p).unwrap();
            s.ensure_realm("example.org").unwrap();
            s.add_account(&AccountId::parse("alice").unwrap(), "pw")
                .unwrap();
        }
        let s = Store::open(&p).unwrap();
        assert!(s.digest_keys("alice").unwrap().is_some());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
