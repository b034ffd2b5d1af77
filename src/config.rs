//! `services.yaml`: read (`load`), parsed into raw serde structs (`raw`), then resolved in
//! one function (`resolve::resolve`) into a `Config` in which every derived value —
//! service URLs in both forms, unique ids, the region code — is computed and every
//! reference checked, so nothing downstream meets an unchecked `Option`.

mod depth;
pub mod eventarc;
mod federation;
pub mod fold;
pub mod headers;
mod knative;
pub mod layer;
mod named;
pub(crate) mod names;
pub(crate) mod pubsub;
mod raw;
mod resolve;
pub mod scheduler;
mod service;
pub mod tasks;
#[cfg(test)]
mod tests;

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::iam::{Groups, Policy};
use raw::RawConfig;
use resolve::{At, resolve, resolve_policy, socket};

#[cfg(test)]
pub(crate) use federation::parse_jwks;
pub use federation::{JwkKey, Provider, ProviderKeys};
pub(crate) use knative::{
    CUSTOM_AUDIENCES as KNATIVE_CUSTOM_AUDIENCES, H2C, INGRESS as KNATIVE_INGRESS,
};
pub use layer::Layer;
pub use named::NamedFiles;
pub use names::{region_code, unique_id_for};

/// Whether `region` has the shape of a Google Cloud region (`us-central1`).
pub fn region_is_valid(region: &str) -> bool {
    names::check_region(region).is_ok()
}
pub(crate) use names::is_loopback_name;
pub use service::{CommandSpec, DEFAULT_START_TIMEOUT, Elsewhere, Ingress, Service, Upstream};

impl ConfigError {
    /// The error as the Admin APIs' callers see it: a file named by its name alone, never
    /// by its place on the server's disk (issue 26).
    pub fn for_callers(&self) -> String {
        let name = |file: &Path| {
            file.file_name().map_or_else(
                || "the configuration".to_owned(),
                |n| n.to_string_lossy().into_owned(),
            )
        };
        match self {
            ConfigError::Read { file, source } => format!("cannot read {}: {source}", name(file)),
            ConfigError::Invalid { file, path, reason } => {
                format!("{}: {path}: {reason}", name(file))
            }
            ConfigError::FromLayer { path, reason, .. } => format!("{path}: {reason}"),
        }
    }
}

/// Cloud Run's documented limit on the JSON encoding of a service's custom audiences.
pub const CUSTOM_AUDIENCES_LIMIT: usize = 32_768;
/// The issuer Google's verifiers require.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";
/// Cloud Run's default request timeout.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}", file.display())]
    Read {
        file: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {path}: {reason}", file.display())]
    Invalid {
        file: PathBuf,
        /// Where in the file, e.g. `services[2].custom_audiences`; `(top level)` for the root.
        path: String,
        reason: String,
    },
    /// A value a change made through the Admin APIs sets is refused: the file resolves
    /// without the layer, not with it.
    #[error(
        "{}: {path}: {reason} (the value comes from a change made through the Admin APIs, kept in `{}` in the state directory over the file)",
        file.display(),
        layer::FILE
    )]
    FromLayer {
        file: PathBuf,
        path: String,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub file: PathBuf,
    pub project: Project,
    pub listen: Listen,
    pub issuer: String,
    pub service_accounts: Vec<ServiceAccount>,
    pub users: Vec<User>,
    pub groups: Groups,
    pub policy: Policy,
    pub internal_callers: Vec<IpAddr>,
    /// The service account the default metadata listener serves.
    pub metadata_identity: String,
    pub services: Vec<Service>,
    /// Workload identity federation providers, across every pool.
    pub providers: Vec<Provider>,
    /// The files the configuration names (Knative exports, JWKS), which the reload
    /// watcher reads beside it.
    pub named_files: Vec<PathBuf>,
    /// Hosts the egress proxy tunnels untouched (`egress.passthrough`), lowercase.
    pub egress_passthrough: Vec<String>,
    /// Whether the front door turns away what it refuses (`enforcement:`).
    pub enforcement: Enforcement,
    /// Pub/Sub's backoff divisor, and the topics and subscriptions declared (`pubsub:`).
    pub pubsub: pubsub::Pubsub,
    /// Cloud Tasks' queues declared (`tasks:`).
    pub tasks: tasks::Tasks,
    /// Cloud Scheduler's jobs declared (`scheduler:`).
    pub scheduler: scheduler::Scheduler,
}

/// What the front door does with a request it would refuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Enforcement {
    /// Turns it away, as Cloud Run does.
    #[default]
    Enforce,
    /// Lets it through and records it as "would deny", with its code and reason: for
    /// finding every missing binding in one run. Never what Cloud Run does.
    Audit,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforce => "enforce",
            Enforcement::Audit => "audit",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Project {
    pub id: String,
    pub number: String,
    pub region: String,
    pub region_code: String,
}

impl Project {
    /// `NUMBER-compute@developer.gserviceaccount.com`: the account Cloud Run runs a service
    /// as when it names none. The one place its shape is written.
    pub fn compute_default_account(&self) -> String {
        format!("{}-compute@developer.gserviceaccount.com", self.number)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub frontdoor: SocketAddr,
    pub google: SocketAddr,
    pub metadata: SocketAddr,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServiceAccount {
    pub email: String,
    pub unique_id: String,
    pub display_name: Option<String>,
    pub policy: Policy,
    /// The policy was set through the Admin API (`changes.json`), which wins over
    /// `services.yaml` until `frontdoor fold` writes it there.
    pub policy_by_admin: NotCompared<bool>,
    /// The file declares it under `service_accounts:` (the compute default account is
    /// there whether or not it does).
    pub declared: bool,
}

/// Where a value is kept rather than what it is: left out of comparisons, so that two
/// configurations that set the same values are equal wherever the values are kept (a
/// fold moves a value from the Admin API's layer into the file and changes nothing in
/// force, no revision included). [`Config::same_homes`] compares it.
#[derive(Debug, Clone, Default)]
pub struct NotCompared<T>(pub T);

impl<T> PartialEq for NotCompared<T> {
    fn eq(&self, _: &NotCompared<T>) -> bool {
        true
    }
}

impl<T> std::ops::Deref for NotCompared<T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct User {
    pub email: String,
    /// Stable numeric `sub`, as Google gives every account.
    pub id: String,
}

impl Config {
    /// Whether `other` keeps every value where this one does: in the file, the Admin
    /// API's layer or a Knative file (equal configurations may not). Services and
    /// accounts are matched by name; one that only one of them has differs.
    pub fn same_homes(&self, other: &Config) -> bool {
        self.services.len() == other.services.len()
            && self.services.iter().all(|a| {
                other
                    .service(&a.name)
                    .is_some_and(|b| a.elsewhere.0 == b.elsewhere.0)
            })
            && self.service_accounts.len() == other.service_accounts.len()
            && self.service_accounts.iter().all(|a| {
                other
                    .service_account(&a.email)
                    .is_some_and(|b| a.policy_by_admin.0 == b.policy_by_admin.0)
            })
    }

    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    pub fn service_account(&self, email: &str) -> Option<&ServiceAccount> {
        self.service_accounts
            .iter()
            .find(|sa| sa.email.eq_ignore_ascii_case(email))
    }

    /// The account an API names: by email or unique id, alone or as the last part of
    /// `projects/P/serviceAccounts/NAME`.
    pub fn service_account_named(&self, name: &str) -> Option<&ServiceAccount> {
        let name = name.rsplit_once('/').map_or(name, |(_, last)| last);
        self.service_account(name)
            .or_else(|| self.service_account_by_id(name))
    }

    pub fn service_account_by_id(&self, unique_id: &str) -> Option<&ServiceAccount> {
        self.service_accounts
            .iter()
            .find(|sa| sa.unique_id == unique_id)
    }

    /// Listener addresses that are not loopback, with their field paths: other machines
    /// could reach them, and the metadata server hands out tokens, so serving them takes
    /// an explicit `--bind-all`.
    pub fn exposed_addresses(&self) -> Vec<(String, SocketAddr)> {
        let mut all = vec![
            ("listen.frontdoor".to_owned(), self.listen.frontdoor),
            ("listen.google".to_owned(), self.listen.google),
            ("listen.metadata".to_owned(), self.listen.metadata),
        ];
        for (i, s) in self.services.iter().enumerate() {
            all.extend(s.listen.map(|a| (format!("services[{i}].listen"), a)));
            all.extend(s.metadata.map(|a| (format!("services[{i}].metadata"), a)));
        }
        all.retain(|(_, a)| !a.ip().is_loopback());
        all
    }

    /// Refuses exposed addresses unless `bind_all`.
    pub fn check_exposure(&self, bind_all: bool) -> Result<(), ConfigError> {
        match self.exposed_addresses().into_iter().next() {
            Some((path, addr)) if !bind_all => Err(ConfigError::Invalid {
                file: self.file.clone(),
                path,
                reason: format!(
                    "{addr} is reachable from other machines, and frontdoor hands out tokens there; pass --bind-all to serve on other interfaces than loopback"
                ),
            }),
            _ => Ok(()),
        }
    }

    /// A provider by `POOL/PROVIDER`.
    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.id() == id)
    }

    pub fn user(&self, email: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| u.email.eq_ignore_ascii_case(email))
    }
}

/// Reads and resolves a configuration file and the files it names.
pub fn load(file: &Path) -> Result<Config, ConfigError> {
    let text = read(file)?;
    parse(&text, file)
}

/// Resolves configuration text, reading the files it names (Knative exports, JWKS);
/// `file` names it in errors and anchors relative paths.
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    parse_layered(text, file, &Layer::default())
}

/// Resolves configuration text, reading the files it names, with the changes made through
/// the Admin APIs (`layer`) over it.
pub fn parse_layered(text: &str, file: &Path, layer: &Layer) -> Result<Config, ConfigError> {
    let raw: RawConfig = parse_yaml(text, file)?;
    let named = NamedFiles::read(&named::paths(&raw, file));
    match resolve(raw.clone(), file, &named, layer) {
        // The layer is the cause when the file resolves without it.
        Err(ConfigError::Invalid {
            file: f,
            path,
            reason,
        }) if !layer.is_empty() && resolve(raw, file, &named, &Layer::default()).is_ok() => {
            Err(ConfigError::FromLayer {
                file: f,
                path,
                reason,
            })
        }
        resolved => resolved,
    }
}

/// Reads and resolves a configuration file and the files it names, with `layer` over it.
pub fn load_layered(file: &Path, layer: &Layer) -> Result<Config, ConfigError> {
    let text = read(file)?;
    parse_layered(&text, file, layer)
}

/// Resolves configuration text with the files it names given, touching no disk.
pub fn parse_with(text: &str, file: &Path, named: &NamedFiles) -> Result<Config, ConfigError> {
    resolve(parse_yaml(text, file)?, file, named, &Layer::default())
}

/// The largest configuration file read: far above any real one, and a bound on what a
/// file (or a link to `/dev/zero`) can make frontdoor hold.
pub const MAX_CONFIG_BYTES: u64 = 16 * 1024 * 1024;

fn read(file: &Path) -> Result<String, ConfigError> {
    let bytes = read_capped(file).map_err(|source| ConfigError::Read {
        file: file.to_owned(),
        source,
    })?;
    String::from_utf8(bytes).map_err(|_| ConfigError::Invalid {
        file: file.to_owned(),
        path: "(top level)".into(),
        reason: "the file is not UTF-8".into(),
    })
}

/// The file's bytes, if it is a regular file (a link to one is followed) of at most
/// [`MAX_CONFIG_BYTES`]; a device, a directory or a larger file is refused unread.
pub fn read_capped(file: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let meta = std::fs::metadata(file)?;
    if !meta.is_file() {
        return Err(std::io::Error::other("it is not a regular file"));
    }
    if meta.len() > MAX_CONFIG_BYTES {
        return Err(std::io::Error::other(format!(
            "it is {} bytes, over the {MAX_CONFIG_BYTES} a configuration may be",
            meta.len()
        )));
    }
    let mut bytes = Vec::new();
    std::fs::File::open(file)?
        .take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(std::io::Error::other(format!(
            "it grew past the {MAX_CONFIG_BYTES} bytes a configuration may be while it was read"
        )));
    }
    Ok(bytes)
}

/// The one place YAML is parsed. `serde_yaml` is archived; `serde_yaml_ng` is its maintained
/// successor. `serde_path_to_error` gives the field path for unknown fields and type errors.
pub(crate) fn parse_yaml<T: DeserializeOwned>(text: &str, file: &Path) -> Result<T, ConfigError> {
    if let Some((line, depth)) = depth::too_deep(text) {
        return Err(ConfigError::Invalid {
            file: file.to_owned(),
            path: format!("line {line}"),
            reason: format!(
                "nested {depth} levels deep, more than the {} frontdoor reads",
                depth::MAX_DEPTH
            ),
        });
    }
    let de = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // The YAML error names the enclosing path itself ("services[0].x: unknown field …"):
        // said once, in `path`, is enough.
        let reason = inner
            .split_once(": ")
            .filter(|(prefix, _)| path.starts_with(prefix) && !prefix.contains(' '))
            .map_or(inner.as_str(), |(_, rest)| rest);
        ConfigError::Invalid {
            file: file.to_owned(),
            path: if path == "." {
                "(top level)".into()
            } else {
                path
            },
            reason: format!("{reason}{}", suggestion(reason)),
        }
    })
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (or "unknown variant"), the
/// nearest expected name.
fn suggestion(reason: &str) -> String {
    let Some(rest) = reason
        .strip_prefix("unknown field `")
        .or_else(|| reason.strip_prefix("unknown variant `"))
    else {
        return String::new();
    };
    let Some((typed, expected)) = rest.split_once('`') else {
        return String::new();
    };
    let names = expected.split('`').skip(1).step_by(2);
    crate::suggest::did_you_mean(typed, names)
}
