//! The data directory: created on first start, reused afterwards.
//!
//! ```text
//! natter-data/
//!   natter.db        SQLite: accounts, realm, registrations
//!   tls/cert.pem     certificate chain (self-signed on first start; replace with your own)
//!   tls/key.pem      its private key (mode 0600)
//!   turn-secret      TURN REST secret (mode 0600) unless --turn-secret is given
//! ```

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use rand::RngCore as _;

use crate::{Config, ServeError};

/// Paths inside the data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    pub root: PathBuf,
}

impl DataDir {
    /// The directory named by the configuration (not created yet).
    pub fn new(root: &Path) -> DataDir {
        DataDir {
            root: root.to_owned(),
        }
    }
    pub fn db(&self) -> PathBuf {
        self.root.join("natter.db")
    }
    pub fn cert(&self) -> PathBuf {
        self.root.join("tls").join("cert.pem")
    }
    pub fn key(&self) -> PathBuf {
        self.root.join("tls").join("key.pem")
    }
    pub fn turn_secret(&self) -> PathBuf {
        self.root.join("turn-secret")
    }

    /// Create the directory (and `tls/`) if missing and check it is writable.
    pub fn create(&self) -> Result<(), ServeError> {
        let err = |reason: String| ServeError::DataDir {
            path: self.root.clone(),
            reason,
        };
        fs::create_dir_all(self.root.join("tls"))
            .map_err(|e| err(format!("cannot create it ({e})")))?;
        // The directory holds keys and the TURN secret: owner only.
        use std::os::unix::fs::PermissionsExt as _;
        let _ = fs::set_permissions(&self.root, fs::Permissions::from_mode(0o700));
        let probe = self.root.join(".write-test");
        fs::write(&probe, b"ok").map_err(|e| err(format!("is not writable ({e})")))?;
        let _ = fs::remove_file(probe);
        Ok(())
    }

    /// The TURN secret: from the config, else the file, else a new random one
    /// written to the file.
    pub fn load_or_create_secret(&self, cfg: &Config) -> Result<String, ServeError> {
        if let Some(s) = &cfg.turn_secret {
            return Ok(s.clone());
        }
        let path = self.turn_secret();
        let err = |reason: String| ServeError::DataDir {
            path: path.clone(),
            reason,
        };
        match fs::read_to_string(&path) {
            Ok(s) if s.trim().len() >= 16 => return Ok(s.trim().to_owned()),
            Ok(_) => return Err(err("holds fewer than 16 characters; delete it to have a new secret made, or pass --turn-secret".into())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(err(format!("cannot read it ({e})"))),
        }
        let mut raw = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut raw);
        let secret: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        write_private(&path, secret.as_bytes())
            .map_err(|e| err(format!("cannot write it ({e})")))?;
        Ok(secret)
    }
}

/// Write a file readable only by its owner.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_is_made_once_and_reused() {
        let root = std::env::temp_dir().join(format!("natter-data-test-{}", std::process::id()));
        let d = DataDir::new(&root);
        d.create().unwrap();
        let cfg = Config::default();
        let a = d.load_or_create_secret(&cfg).unwrap();
        assert_eq!(a.len(), 64);
        assert_eq!(d.load_or_create_secret(&cfg).unwrap(), a);
        let given = Config {
            turn_secret: Some("x".repeat(20)),
            ..Config::default()
        };
        assert_eq!(d.load_or_create_secret(&given).unwrap(), "x".repeat(20));
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn unwritable_dir_is_a_clear_error() {
        let d = DataDir::new(Path::new("/proc/natter-cannot-exist"));
        let e = d.create().unwrap_err().to_string();
        assert!(e.contains("--data"), "{e}");
    }
}
