//! Sealing secrets the server must read back (an organization's HS256 JWT secret), so that a
//! dump of the database does not reveal them: ChaCha20-Poly1305 under a key that is never in
//! the database.
//!
//! The key comes from `TENSCALE_SECRETS_KEY` (64 hex digits; every instance of a deployment
//! shares it). Without it, a SQLite deployment keeps a key file beside its database
//! (`<database>.secrets-key`, created on first use, mode 0600); a PostgreSQL deployment has
//! no key, and storing such a secret is refused with a message saying what to set.
//!
//! Sealed text: `v1:` + base64(12-byte random nonce ‖ ciphertext ‖ 16-byte tag).

use std::io::Write;
use std::path::{Path, PathBuf};

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;

const PREFIX: &str = "v1:";
const NONCE_LEN: usize = 12;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("no secrets key: set TENSCALE_SECRETS_KEY (64 hex digits, the same on every instance)")]
    NoKey,
    #[error("TENSCALE_SECRETS_KEY must be 64 hex digits")]
    BadKey,
    #[error("secrets key file {path}: {err}")]
    KeyFile { path: PathBuf, err: std::io::Error },
    #[error("a sealed secret could not be opened (another secrets key?)")]
    Unseal,
}

/// The key that seals and opens stored secrets; absent when the deployment has none.
#[derive(Clone)]
pub struct SecretsKey(Option<Key>);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "SecretsKey([redacted])" } else { "SecretsKey(none)" })
    }
}

impl SecretsKey {
    /// From the configured hex key, else from (or into) the key file beside a SQLite database.
    pub fn load(configured: Option<&str>, database_url: &str) -> Result<Self, SecretsError> {
        if let Some(hex_key) = configured {
            return Self::from_hex(hex_key);
        }
        match sqlite_path(database_url) {
            Some(db) => Self::from_file(&key_file_beside(&db)),
            None => Ok(Self(None)),
        }
    }

    pub fn from_hex(text: &str) -> Result<Self, SecretsError> {
        let bytes = hex::decode(text.trim()).map_err(|_| SecretsError::BadKey)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| SecretsError::BadKey)?;
        Ok(Self(Some(Key::from(bytes))))
    }

    fn from_file(path: &Path) -> Result<Self, SecretsError> {
        let io = |err| SecretsError::KeyFile { path: path.to_path_buf(), err };
        match std::fs::read_to_string(path) {
            Ok(text) => Self::from_hex(&text),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                rand::thread_rng().fill_bytes(&mut bytes);
                write_private(path, hex::encode(bytes).as_bytes()).map_err(io)?;
                // Another process may have won the race to create it: read what is there.
                Self::from_hex(&std::fs::read_to_string(path).map_err(io)?)
            }
            Err(err) => Err(io(err)),
        }
    }

    pub fn seal(&self, plaintext: &[u8]) -> Result<String, SecretsError> {
        let key = self.0.as_ref().ok_or(SecretsError::NoKey)?;
        let mut nonce = [0u8; NONCE_LEN];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = ChaCha20Poly1305::new(key)
            .encrypt(Nonce::from_slice(&nonce), plaintext)
            .map_err(|_| SecretsError::Unseal)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}", base64::engine::general_purpose::STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &str) -> Result<Vec<u8>, SecretsError> {
        let key = self.0.as_ref().ok_or(SecretsError::NoKey)?;
        let body = sealed.strip_prefix(PREFIX).ok_or(SecretsError::Unseal)?;
        let bytes = base64::engine::general_purpose::STANDARD.decode(body).map_err(|_| SecretsError::Unseal)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretsError::Unseal);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        ChaCha20Poly1305::new(key).decrypt(Nonce::from_slice(nonce), ciphertext).map_err(|_| SecretsError::Unseal)
    }
}

/// The file path of a `sqlite://PATH?…` URL (`None` for in-memory databases and other schemes).
fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    (!path.is_empty() && path != ":memory:").then(|| PathBuf::from(path))
}

fn key_file_beside(db: &Path) -> PathBuf {
    let mut name = db.file_name().unwrap_or_default().to_os_string();
    name.push(".secrets-key");
    db.with_file_name(name)
}

fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
        Ok(file) => file,
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(err) => return Err(err),
    };
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_only_with_its_key() {
        let key = SecretsKey::from_hex(&"11".repeat(32)).unwrap();
        let sealed = key.seal(b"hunter2").unwrap();
        assert!(sealed.starts_with("v1:") && !sealed.contains("hunter2"));
        assert_eq!(key.open(&sealed).unwrap(), b"hunter2");
        assert_ne!(key.seal(b"hunter2").unwrap(), sealed, "a fresh nonce each time");
        let other = SecretsKey::from_hex(&"22".repeat(32)).unwrap();
        assert!(matches!(other.open(&sealed), Err(SecretsError::Unseal)));
        assert!(matches!(key.open("v1:AAAA"), Err(SecretsError::Unseal)));
        assert!(matches!(SecretsKey(None).seal(b"x"), Err(SecretsError::NoKey)));
        assert!(matches!(SecretsKey::from_hex("abc"), Err(SecretsError::BadKey)));
    }

    #[test]
    fn sqlite_deployments_keep_a_key_file_beside_the_database() {
        let dir = std::env::temp_dir().join(format!("tenscale-secrets-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.join("t.db").display());
        let first = SecretsKey::load(None, &url).unwrap();
        let again = SecretsKey::load(None, &url).unwrap();
        assert_eq!(again.open(&first.seal(b"s").unwrap()).unwrap(), b"s");
        assert!(dir.join("t.db.secrets-key").exists());
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(SecretsKey::load(None, "postgres://u@h/db").unwrap().0.is_none());
        assert!(SecretsKey::load(None, "sqlite::memory:").unwrap().0.is_none());
    }
}
