//! Files the configuration names: a service's Knative export (`knative:`) and a provider's
//! JWKS (`jwks:`). They are read before the configuration is resolved, so that resolving
//! is pure (tests give them as strings), and the reload watcher reads them beside the main
//! file, so that saving one of them reloads like saving `services.yaml`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::raw::RawConfig;
use super::{At, ConfigError};

/// The text of every named file, or why it could not be read.
#[derive(Debug, Clone, Default)]
pub struct NamedFiles {
    files: BTreeMap<PathBuf, Result<String, Unreadable>>,
}

#[derive(Debug, Clone)]
enum Unreadable {
    Io(String),
    NotUtf8,
}

/// A path the configuration gives, relative to the configuration file's folder.
pub(super) fn beside(config_file: &Path, rel: &str) -> PathBuf {
    config_file.parent().unwrap_or(Path::new(".")).join(rel)
}

/// Every file `raw` names, in the order written.
pub(super) fn paths(raw: &RawConfig, config_file: &Path) -> Vec<PathBuf> {
    let knative = raw.services.iter().filter_map(|s| s.knative.as_deref());
    let jwks = raw
        .workload_identity_pools
        .iter()
        .flat_map(|pool| &pool.providers)
        .map(|p| p.jwks.as_str())
        .filter(|jwks| *jwks != "builtin");
    knative
        .chain(jwks)
        .map(|rel| beside(config_file, rel))
        .collect()
}

impl NamedFiles {
    /// No file: what a configuration that names none resolves with.
    pub const NONE: NamedFiles = NamedFiles {
        files: BTreeMap::new(),
    };

    /// Reads each file, capped like the configuration itself.
    pub(super) fn read(paths: &[PathBuf]) -> NamedFiles {
        let files = paths
            .iter()
            .map(|path| {
                let text = match super::read_capped(path) {
                    Ok(bytes) => String::from_utf8(bytes).map_err(|_| Unreadable::NotUtf8),
                    Err(e) => Err(Unreadable::Io(e.to_string())),
                };
                (path.clone(), text)
            })
            .collect();
        NamedFiles { files }
    }

    /// Files given as text, for resolving a configuration without touching the disk.
    pub fn from_texts<P: Into<PathBuf>>(texts: impl IntoIterator<Item = (P, String)>) -> Self {
        NamedFiles {
            files: texts
                .into_iter()
                .map(|(path, text)| (path.into(), Ok(text)))
                .collect(),
        }
    }

    /// The text of `file`, which the configuration names at `field`; a file that could not
    /// be read is blamed on that field.
    pub(super) fn text(
        &self,
        file: &Path,
        at: &At<'_>,
        field: String,
    ) -> Result<&str, ConfigError> {
        match self.files.get(file) {
            Some(Ok(text)) => Ok(text),
            Some(Err(Unreadable::NotUtf8)) => Err(ConfigError::Invalid {
                file: file.to_owned(),
                path: "(top level)".into(),
                reason: "the file is not UTF-8".into(),
            }),
            Some(Err(Unreadable::Io(why))) => {
                Err(at.err(field, format!("cannot read {}: {why}", file.display())))
            }
            None => Err(at.err(
                field,
                format!(
                    "cannot read {}: it was not read with the configuration",
                    file.display()
                ),
            )),
        }
    }
}
