//! Each service account's Google-managed key: what IAM Credentials' `signJwt` and `signBlob`
//! sign with, published per account (`/service_accounts/v1/jwk/EMAIL`), never in the
//! issuer's JWKS. Signing with the issuer's key instead would let anyone allowed to sign as
//! one account mint an ID token claiming any identity (issue 10); a key of the account's
//! own cannot be mistaken for the issuer's.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::{SigningKey, StateDir, StoreError};

/// The accounts' keys, loaded once from the state directory and kept. Only configured
/// accounts get here (callers look the account up first), so the map is as bounded as the
/// configuration.
#[derive(Debug)]
pub struct SystemKeys {
    dir: StateDir,
    loaded: Mutex<HashMap<String, Arc<SigningKey>>>,
}

impl SystemKeys {
    pub fn new(dir: StateDir) -> SystemKeys {
        SystemKeys {
            dir,
            loaded: Mutex::default(),
        }
    }

    /// The key of `email`, made on first use. Making one is an RSA key generation (tens
    /// of milliseconds), once per account for the life of the state directory.
    pub fn get_or_create(&self, email: &str) -> Result<Arc<SigningKey>, StoreError> {
        if let Some(key) = self.cached(email) {
            return Ok(key);
        }
        let key = Arc::new(self.dir.system_key(email)?);
        Ok(self.remember(email, key))
    }

    /// The key of `email` if one was ever made; verifying never makes one.
    pub fn existing(&self, email: &str) -> Option<Arc<SigningKey>> {
        if let Some(key) = self.cached(email) {
            return Some(key);
        }
        let key = Arc::new(self.dir.existing_system_key(email).ok().flatten()?);
        Some(self.remember(email, key))
    }

    fn cached(&self, email: &str) -> Option<Arc<SigningKey>> {
        self.lock().get(email).cloned()
    }

    /// Keeps `key` unless another thread got there first; returns the one kept.
    fn remember(&self, email: &str, key: Arc<SigningKey>) -> Arc<SigningKey> {
        self.lock().entry(email.to_owned()).or_insert(key).clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<SigningKey>>> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.loaded.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_key_is_made_once_private_and_found_again_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("system-keys");
        std::fs::create_dir_all(&keys_dir).unwrap();
        // A checked-in key stands for the one that would be generated.
        let email = "search@demo-project.iam.gserviceaccount.com";
        std::fs::write(
            keys_dir.join(format!("{email}.pem")),
            super::super::testkeys::C,
        )
        .unwrap();
        let keys = SystemKeys::new(StateDir::new(dir.path()));
        assert!(
            keys.existing("other@demo-project.iam.gserviceaccount.com")
                .is_none()
        );
        let first = keys.get_or_create(email).unwrap();
        assert_eq!(first.kid(), super::super::testkeys::stranger().kid());
        let again = SystemKeys::new(StateDir::new(dir.path()));
        assert_eq!(again.existing(email).unwrap().kid(), first.kid());
    }

    #[test]
    fn a_new_key_file_and_its_directory_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let keys = SystemKeys::new(StateDir::new(dir.path().join("state")));
        let key = keys.get_or_create("a@p.iam.gserviceaccount.com").unwrap();
        let file = dir
            .path()
            .join("state/system-keys/a@p.iam.gserviceaccount.com.pem");
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&dir.path().join("state")), 0o700);
        assert_eq!(mode(file.parent().unwrap()), 0o700);
        assert_eq!(
            keys.existing("a@p.iam.gserviceaccount.com").unwrap().kid(),
            key.kid()
        );
    }
}
