//! The state directory: where signing keys (and, later, other state) live between runs.
//!
//! Keys are created atomically by whichever command needs them first: a key is written to a
//! private temporary file and linked into place only if no key is there yet, so two commands
//! racing on a fresh directory end up agreeing on one key.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{KeyError, KeySet, PublicKey, SigningKey};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use state directory {}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing key {} is unusable (delete it to have a new one made)", path.display())]
    BadKey { path: PathBuf, source: KeyError },
    #[error("cannot make a signing key: {0}")]
    Generate(KeyError),
}

/// Names of the published keys, in order: the signer first.
const SIGNING_KEYS: [&str; 2] = ["current.pem", "next.pem"];

#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    pub fn new(path: impl Into<PathBuf>) -> StateDir {
        StateDir { path: path.into() }
    }

    /// The default: `.frontdoor/` beside the configuration file.
    pub fn beside(config_file: &Path) -> StateDir {
        let dir = config_file.parent().filter(|p| !p.as_os_str().is_empty());
        StateDir::new(dir.unwrap_or(Path::new(".")).join(".frontdoor"))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The issuer's key set, creating whichever keys are missing.
    pub fn signing_keys(&self) -> Result<KeySet, StoreError> {
        let dir = self.path.join("signing");
        create_dir(&dir)?;
        let keys = SIGNING_KEYS
            .iter()
            .map(|name| load_or_create(&dir.join(name)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(KeySet::new(keys))
    }

    /// Writes `contents` to `name` in the state directory atomically (temp file + rename).
    pub fn write_file(&self, name: &str, contents: &[u8]) -> Result<(), StoreError> {
        create_dir(&self.path)?;
        let target = self.path.join(name);
        let io = |source| StoreError::Io {
            path: target.clone(),
            source,
        };
        let mut tmp = tempfile::NamedTempFile::new_in(&self.path).map_err(io)?;
        tmp.write_all(contents).map_err(io)?;
        tmp.persist(&target).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Makes a new key for service account `email` (as `gcloud iam service-accounts keys
    /// create` does) and keeps its public half, so assertions signed with it verify across
    /// restarts. The private key is returned, never stored.
    pub fn create_account_key(&self, email: &str) -> Result<SigningKey, StoreError> {
        let dir = self.account_dir(email);
        create_dir(&dir)?;
        let key = SigningKey::generate().map_err(StoreError::Generate)?;
        let pem = pem::encode(&pem::Pem::new("RSA PUBLIC KEY", key.public_key_der()));
        let path = dir.join(format!("{}.pem", key.kid()));
        std::fs::write(&path, pem).map_err(|source| StoreError::Io { path, source })?;
        Ok(key)
    }

    /// The public key `kid` of service account `email`, if it exists (was not deleted).
    pub fn account_key(&self, email: &str, kid: &str) -> Result<Option<PublicKey>, StoreError> {
        let Some(path) = self.account_key_path(email, kid) else {
            return Ok(None);
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => parse_public(&text, &path).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// Every key of `email`: (key id, public key, when it was made).
    pub fn account_keys(
        &self,
        email: &str,
    ) -> Result<Vec<(String, PublicKey, std::time::SystemTime)>, StoreError> {
        let dir = self.account_dir(email);
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StoreError::Io { path: dir, source }),
        };
        let mut keys = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(kid) = path.file_stem().and_then(|s| s.to_str()).map(str::to_owned) else {
                continue;
            };
            let text = std::fs::read_to_string(&path).map_err(|source| StoreError::Io {
                path: path.clone(),
                source,
            })?;
            let created = entry
                .metadata()
                .and_then(|m| m.modified())
                .unwrap_or(std::time::UNIX_EPOCH);
            keys.push((kid, parse_public(&text, &path)?, created));
        }
        keys.sort_by_key(|(_, _, created)| *created);
        Ok(keys)
    }

    /// Deletes key `kid` of whichever account has it; returns that account.
    pub fn delete_account_key(&self, kid: &str) -> Result<Option<String>, StoreError> {
        let root = self.path.join("account-keys");
        let Ok(accounts) = std::fs::read_dir(&root) else {
            return Ok(None);
        };
        for account in accounts.flatten() {
            let Some(email) = account.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if self.delete_key_of(&email, kid)? {
                return Ok(Some(email));
            }
        }
        Ok(None)
    }

    /// Deletes key `kid` of account `email`; whether there was one.
    pub fn delete_key_of(&self, email: &str, kid: &str) -> Result<bool, StoreError> {
        let Some(path) = self.account_key_path(email, kid) else {
            return Ok(false);
        };
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(source) => Err(StoreError::Io { path, source }),
        }
    }

    /// The Google-managed key of service account `email`, which `signJwt` and `signBlob`
    /// sign with: made on first use (mode 0600) and reused across restarts.
    pub fn system_key(&self, email: &str) -> Result<SigningKey, StoreError> {
        let path = self.system_key_path(email);
        create_dir(path.parent().unwrap_or(&self.path))?;
        load_or_create(&path)
    }

    /// The Google-managed key of `email` if one was made; never makes one.
    pub fn existing_system_key(&self, email: &str) -> Result<Option<SigningKey>, StoreError> {
        load(&self.system_key_path(email))
    }

    fn system_key_path(&self, email: &str) -> PathBuf {
        // Emails were validated by the configuration; `/` cannot appear in one.
        self.path
            .join("system-keys")
            .join(format!("{}.pem", email.replace('/', "_")))
    }

    /// The signing key of frontdoor's built-in external issuer (`jwks: builtin`
    /// providers), made on first use.
    pub fn external_issuer_key(&self) -> Result<SigningKey, StoreError> {
        let dir = self.path.join("external");
        create_dir(&dir)?;
        load_or_create(&dir.join("issuer.pem"))
    }

    /// The text of private file `rel` (mode 0600, in a 0700 folder), made by `make` on first
    /// use and reused across restarts; when two processes race, the first one written wins.
    pub fn private_text(
        &self,
        rel: &str,
        make: impl FnOnce() -> Result<String, StoreError>,
    ) -> Result<String, StoreError> {
        private_file(&self.path.join(rel), make)
    }

    /// Where key `kid` of `email` is kept, if `kid` has a key id's shape. Key ids come from
    /// clients (a JWT header, a URL): only a 40-hex name may touch the disk.
    fn account_key_path(&self, email: &str, kid: &str) -> Option<PathBuf> {
        (kid.len() == 40 && kid.bytes().all(|b| b.is_ascii_hexdigit())).then(|| {
            self.account_dir(email)
                .join(format!("{}.pem", kid.to_ascii_lowercase()))
        })
    }

    fn account_dir(&self, email: &str) -> PathBuf {
        // Emails were validated by the configuration; `/` cannot appear in one.
        self.path.join("account-keys").join(email.replace('/', "_"))
    }

    pub fn read_file(&self, name: &str) -> Result<String, StoreError> {
        let path = self.path.join(name);
        std::fs::read_to_string(&path).map_err(|source| StoreError::Io { path, source })
    }
}

fn parse_public(text: &str, path: &Path) -> Result<PublicKey, StoreError> {
    let bad = |source| StoreError::BadKey {
        path: path.to_owned(),
        source,
    };
    let parsed = pem::parse(text).map_err(|_| bad(KeyError::NotPkcs8))?;
    PublicKey::from_pkcs1_der(parsed.contents()).map_err(bad)
}

/// Creates `dir` and its missing parents mode 0700 (whatever the umask allows less): the
/// state directory holds private keys.
fn create_dir(dir: &Path) -> Result<(), StoreError> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| StoreError::Io {
            path: dir.to_owned(),
            source,
        })
}

/// The private key at `path`, if there is one.
fn load(path: &Path) -> Result<Option<SigningKey>, StoreError> {
    match std::fs::read_to_string(path) {
        Ok(text) => SigningKey::from_pkcs8_pem(&text)
            .map(Some)
            .map_err(|source| StoreError::BadKey {
                path: path.to_owned(),
                source,
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StoreError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

fn load_or_create(path: &Path) -> Result<SigningKey, StoreError> {
    let pem = private_file(path, || {
        Ok(SigningKey::generate()
            .map_err(StoreError::Generate)?
            .private_key_pem()
            .to_owned())
    })?;
    SigningKey::from_pkcs8_pem(&pem).map_err(|source| StoreError::BadKey {
        path: path.to_owned(),
        source,
    })
}

/// The text at `path`, or, if there is none, what `make` gives, written there mode 0600;
/// when two processes race, the first one written wins and both return it.
fn private_file(
    path: &Path,
    make: impl FnOnce() -> Result<String, StoreError>,
) -> Result<String, StoreError> {
    let io = |source| StoreError::Io {
        path: path.to_owned(),
        source,
    };
    match std::fs::read_to_string(path) {
        Ok(text) => return Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dir(dir)?;
    let text = make()?;
    // NamedTempFile is created with mode 0600, and linking keeps the mode.
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    tmp.write_all(text.as_bytes()).map_err(io)?;
    tmp.as_file().sync_all().map_err(io)?;
    match tmp.persist_noclobber(path) {
        Ok(_) => Ok(text),
        // Someone else made it first: theirs is the one.
        Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(path).map_err(io)
        }
        Err(e) => Err(io(e.error)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn keys_are_reused_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let signing = dir.path().join("signing");
        std::fs::create_dir_all(&signing).unwrap();
        std::fs::write(signing.join("current.pem"), super::super::testkeys::A).unwrap();
        std::fs::write(signing.join("next.pem"), super::super::testkeys::B).unwrap();
        let state = StateDir::new(dir.path());
        let first = state.signing_keys().unwrap().kids().join(",");
        let second = state.signing_keys().unwrap().kids().join(",");
        assert_eq!(first, second);
        assert_eq!(first.len(), 81);
    }

    #[test]
    fn a_missing_key_is_made_with_mode_0600_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let signing = dir.path().join("signing");
        std::fs::create_dir_all(&signing).unwrap();
        std::fs::write(signing.join("current.pem"), super::super::testkeys::A).unwrap();
        let state = StateDir::new(dir.path());
        let kids = state.signing_keys().unwrap().kids().join(",");
        let mode = std::fs::metadata(signing.join("next.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(kids, state.signing_keys().unwrap().kids().join(","));

        std::fs::write(signing.join("next.pem"), "garbage").unwrap();
        let err = state.signing_keys().unwrap_err().to_string();
        assert!(err.contains("next.pem is unusable"), "{err}");
        let cause = std::error::Error::source(&state.signing_keys().unwrap_err())
            .unwrap()
            .to_string();
        assert!(cause.contains("no PKCS#8 private key"), "{cause}");
    }
}
