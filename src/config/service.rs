//! A service: its resolved form, and how one `services[N]` entry becomes it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawService, StringOrNumber};
use super::{
    At, CUSTOM_AUDIENCES_LIMIT, ConfigError, DEFAULT_TIMEOUT, Project, ServiceAccount, knative,
    names, resolve_policy, socket,
};
use crate::iam::{self, Policy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ingress {
    All,
    Internal,
    InternalAndCloudLoadBalancing,
}

/// A service field's value Cloud Run would refuse, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BadValue {
    #[error("unknown ingress `{0}`; expected all, internal or internal-and-cloud-load-balancing")]
    Ingress(String),
    #[error("unknown builtin upstream `{0}`; the only builtin is builtin:echo")]
    Builtin(String),
    #[error(
        "upstream `{0}` is https; the front door terminates TLS as Cloud Run does, so give the container's plain http:// address"
    )]
    HttpsUpstream(String),
    #[error("upstream `{0}` is neither an http://HOST:PORT URL nor builtin:echo{1}")]
    Upstream(String, String),
    #[error("timeout `{0}` is not a number of seconds such as `300s`")]
    TimeoutText(String),
    #[error("timeout {0}s is outside Cloud Run's range of 1s to 3600s")]
    TimeoutRange(u64),
}

impl Ingress {
    fn parse(s: &str) -> Result<Ingress, BadValue> {
        match s {
            "all" => Ok(Ingress::All),
            "internal" => Ok(Ingress::Internal),
            "internal-and-cloud-load-balancing" => Ok(Ingress::InternalAndCloudLoadBalancing),
            _ => Err(BadValue::Ingress(s.to_owned())),
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Ingress::All => "all",
            Ingress::Internal => "internal",
            Ingress::InternalAndCloudLoadBalancing => "internal-and-cloud-load-balancing",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// The in-process echo upstream.
    Echo,
    /// An HTTP server, `http://host:port` (a path prefix is kept).
    Http(url::Url),
    /// A process frontdoor starts itself, with Cloud Run's container contract (SPEC §7).
    Command(CommandSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandSpec {
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub working_dir: Option<PathBuf>,
    /// How long it may take to listen on `PORT` before it counts as failed to start.
    pub start_timeout: Duration,
}

/// How long a started command may take to listen on its port, unless `start_timeout` says.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(30);

impl Upstream {
    /// What `Display` writes, borrowed where it can be: the front door names the upstream
    /// in every decision.
    pub fn label(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Upstream::Echo => "builtin:echo".into(),
            Upstream::Http(u) => u.as_str().into(),
            Upstream::Command(_) => self.to_string().into(),
        }
    }
}

impl std::fmt::Display for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Upstream::Echo => f.write_str("builtin:echo"),
            Upstream::Http(u) => f.write_str(u.as_str()),
            Upstream::Command(c) => write!(f, "command `{}`", c.argv.join(" ")),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    pub name: String,
    pub service_account: String,
    pub upstream: Upstream,
    pub listen: Option<SocketAddr>,
    pub metadata: Option<SocketAddr>,
    /// `https://SERVICE-PROJECT_NUMBER.REGION.run.app`
    pub url: String,
    /// `https://SERVICE-HASH-REGIONCODE.a.run.app`
    pub legacy_url: String,
    pub custom_audiences: Vec<String>,
    pub custom_domains: Vec<String>,
    pub tags: Vec<String>,
    pub ingress: Ingress,
    pub invoker_iam_disabled: bool,
    /// HTTP/2 end to end (`use_http2`, a Knative port named `h2c`): every request goes to
    /// the container over h2c. gRPC's go over h2c whatever this says, as on Cloud Run.
    pub use_http2: bool,
    pub policy: Policy,
    pub timeout: Duration,
    pub redact_service_account_tokens: bool,
    /// The Knative document last sent through the Admin API (`config::layer`), kept for
    /// the fields frontdoor cannot honour; a change to it is a new revision, as on Cloud Run.
    pub knative: Option<serde_json::Value>,
    /// The fields whose value is not written under the service in `services.yaml`.
    pub elsewhere: super::NotCompared<Elsewhere>,
}

/// Where a service's fields come from when not from its own lines in `services.yaml`: an
/// edit of those lines would be refused (the Knative file gives the field) or have no
/// effect (the Admin API's layer wins), so a suggested fix must say where the value lives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Elsewhere {
    /// Set through the Admin API and kept in the state directory's `changes.json`, which
    /// wins over the file until `frontdoor fold` writes it there; as `services.yaml`
    /// names them.
    pub admin: Vec<&'static str>,
    /// The Knative file the service names (as written in `services.yaml`) and the fields
    /// it gives.
    pub knative: Option<(String, Vec<&'static str>)>,
}

impl Elsewhere {
    /// Whether the Admin API's layer sets `field` (as `services.yaml` names it).
    pub fn by_admin(&self, field: &str) -> bool {
        self.admin.contains(&field)
    }

    /// The Knative file that gives `field`, unless the Admin API's layer overrides it.
    pub fn by_knative(&self, field: &str) -> Option<&str> {
        match &self.knative {
            Some((file, fields)) if fields.contains(&field) && !self.by_admin(field) => Some(file),
            _ => None,
        }
    }
}

impl Service {
    /// The hosts that route here: both URL forms, every tag of the legacy form, and custom
    /// domains.
    pub fn hosts(&self) -> Vec<String> {
        let mut hosts = vec![host_of(&self.url), host_of(&self.legacy_url)];
        for tag in &self.tags {
            hosts.push(format!("{tag}---{}", host_of(&self.legacy_url)));
        }
        hosts.extend(self.custom_domains.iter().cloned());
        hosts
    }
}

pub(crate) fn host_of(url: &str) -> String {
    url.trim_start_matches("https://").to_owned()
}

pub(super) fn resolve(
    entry: RawService,
    path: &str,
    project: &Project,
    accounts: &[ServiceAccount],
    at: &At<'_>,
) -> Result<Service, ConfigError> {
    let mut elsewhere = Elsewhere::default();
    let entry = match entry.knative.clone() {
        Some(rel) => {
            let knative_file = super::named::beside(at.file, &rel);
            let (entry, given) = knative::merge(entry, &knative_file, path, at)?;
            elsewhere.knative = Some((rel, given));
            entry
        }
        None => entry,
    };
    let changed = entry
        .name
        .as_ref()
        .and_then(|name| at.layer.services.get(name));
    if let Some(change) = changed {
        elsewhere.admin = change.fields().into_iter().map(|(key, _)| key).collect();
    }
    let knative = changed.and_then(|c| c.knative.clone());
    let entry = super::layer::apply(entry, changed);
    let Some(name) = entry.name else {
        return Err(at.err(
            path,
            "a service needs a `name` (or a `knative` file that gives one)",
        ));
    };
    names::check_service_name(&name).map_err(|r| at.err(format!("{path}.name"), r))?;

    let service_account = match entry.service_account {
        Some(email) => {
            let email = iam::check_service_account_email(&email)
                .map_err(|r| at.err(format!("{path}.service_account"), r))?;
            if !accounts.iter().any(|a| a.email == email) {
                let known: Vec<&str> = accounts.iter().map(|a| a.email.as_str()).collect();
                return Err(at.err(
                    format!("{path}.service_account"),
                    format!("service account `{email}` is not declared under service_accounts (declared: {})", known.join(", ")),
                ));
            }
            email
        }
        None => project.compute_default_account(),
    };

    let has_env = entry.env.is_some();
    let upstream = match (entry.upstream.as_deref(), entry.command) {
        (None, None) => {
            return Err(at.err(
                format!("{path}.upstream"),
                "no upstream; give `upstream: builtin:echo`, `upstream: http://HOST:PORT` or `command: [PROGRAM, ARGS…]`",
            ));
        }
        (Some(_), Some(_)) => {
            return Err(at.err(
                format!("{path}.command"),
                "give either `upstream` or `command`, not both",
            ));
        }
        (Some(u), None) => parse_upstream(u).map_err(|r| at.err(format!("{path}.upstream"), r))?,
        (None, Some(argv)) => {
            if argv.is_empty() || argv[0].is_empty() {
                return Err(at.err(
                    format!("{path}.command"),
                    "the command is empty; give [PROGRAM, ARGS…]",
                ));
            }
            let env = entry.env.unwrap_or_default();
            for k in env.keys() {
                if k.is_empty() || k.contains('=') || k.contains('\0') {
                    return Err(at.err(
                        format!("{path}.env"),
                        format!("`{k}` is not an environment variable name"),
                    ));
                }
            }
            let start_timeout = match entry.start_timeout {
                None => DEFAULT_START_TIMEOUT,
                Some(t) => {
                    parse_timeout(t).map_err(|r| at.err(format!("{path}.start_timeout"), r))?
                }
            };
            // Paths in a command are the configuration file's: its directory is the working
            // directory unless `working_dir` says otherwise, and a program named by a
            // relative path (`.venv/bin/python`) is found from there too.
            let base = at
                .file
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let base = std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
            let mut argv = argv;
            if argv[0].contains('/') && Path::new(&argv[0]).is_relative() {
                argv[0] = base.join(&argv[0]).display().to_string();
            }
            Upstream::Command(CommandSpec {
                argv,
                env,
                working_dir: Some(
                    entry
                        .working_dir
                        .map_or_else(|| base.clone(), |d| base.join(d)),
                ),
                start_timeout,
            })
        }
    };
    if has_env && !matches!(upstream, Upstream::Command(_)) {
        return Err(at.err(
            format!("{path}.env"),
            "`env` applies only to a service with `command`",
        ));
    }

    let custom_audiences = entry.custom_audiences.unwrap_or_default();
    let encoded = serde_json::to_string(&custom_audiences)
        .unwrap_or_default()
        .chars()
        .count();
    if encoded > CUSTOM_AUDIENCES_LIMIT {
        return Err(at.err(
            format!("{path}.custom_audiences"),
            format!("the JSON encoding of the custom audiences is {encoded} characters, over Cloud Run's limit of {CUSTOM_AUDIENCES_LIMIT}"),
        ));
    }
    for (j, a) in custom_audiences.iter().enumerate() {
        if a.trim().is_empty() {
            return Err(at.err(
                format!("{path}.custom_audiences[{j}]"),
                "a custom audience may not be empty",
            ));
        }
    }
    for (j, d) in entry.custom_domains.iter().enumerate() {
        if d.contains('/') || d.contains(':') || !d.contains('.') {
            return Err(at.err(
                format!("{path}.custom_domains[{j}]"),
                format!(
                    "`{d}` is not a bare host name (write `api.example.com`, no scheme or path)"
                ),
            ));
        }
    }
    let tags = entry.tags.unwrap_or_default();
    for (j, t) in tags.iter().enumerate() {
        names::check_tag(t).map_err(|r| at.err(format!("{path}.tags[{j}]"), r))?;
    }

    let ingress = match entry.ingress.as_deref() {
        None => Ingress::All,
        Some(s) => Ingress::parse(s).map_err(|r| at.err(format!("{path}.ingress"), r))?,
    };
    let timeout = match entry.timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => parse_timeout(t).map_err(|r| at.err(format!("{path}.timeout"), r))?,
    };
    let listen = entry
        .listen
        .as_deref()
        .map(|s| socket(Some(s), "", &format!("{path}.listen"), at))
        .transpose()?;
    let metadata = entry
        .metadata
        .as_deref()
        .map(|s| socket(Some(s), "", &format!("{path}.metadata"), at))
        .transpose()?;
    let policy = resolve_policy(entry.iam_policy, &format!("{path}.iam_policy"), at)?;

    Ok(Service {
        url: format!(
            "https://{name}-{}.{}.run.app",
            project.number, project.region
        ),
        legacy_url: format!(
            "https://{name}-{}-{}.a.run.app",
            names::legacy_hash(&project.id, &name),
            project.region_code
        ),
        name,
        service_account,
        upstream,
        listen,
        metadata,
        custom_audiences,
        custom_domains: entry.custom_domains,
        tags,
        ingress,
        invoker_iam_disabled: entry.invoker_iam_disabled.unwrap_or(false),
        use_http2: entry.use_http2.unwrap_or(false),
        policy,
        timeout,
        redact_service_account_tokens: entry.redact_service_account_tokens.unwrap_or(false),
        knative,
        elsewhere: super::NotCompared(elsewhere),
    })
}

fn parse_upstream(s: &str) -> Result<Upstream, BadValue> {
    if let Some(name) = s.strip_prefix("builtin:") {
        return match name {
            "echo" => Ok(Upstream::Echo),
            _ => Err(BadValue::Builtin(s.to_owned())),
        };
    }
    match url::Url::parse(s) {
        Ok(u) if u.scheme() == "http" && u.host().is_some() && u.query().is_none() => {
            Ok(Upstream::Http(u))
        }
        Ok(u) if u.scheme() == "https" => Err(BadValue::HttpsUpstream(s.to_owned())),
        // `localhost:3000`, `127.0.0.1:8080`: an address without its scheme.
        _ => {
            let with_scheme = format!("http://{s}");
            let hint = match url::Url::parse(&with_scheme) {
                Ok(u) if u.host().is_some() && u.port().is_some() && u.query().is_none() => {
                    format!(" (did you mean `{with_scheme}`?)")
                }
                _ => String::new(),
            };
            Err(BadValue::Upstream(s.to_owned(), hint))
        }
    }
}

fn parse_timeout(t: StringOrNumber) -> Result<Duration, BadValue> {
    let secs = match t {
        StringOrNumber::Number(n) => n,
        StringOrNumber::String(s) => s
            .strip_suffix('s')
            .and_then(|n| n.parse().ok())
            .ok_or(BadValue::TimeoutText(s))?,
    };
    if (1..=3600).contains(&secs) {
        Ok(Duration::from_secs(secs))
    } else {
        Err(BadValue::TimeoutRange(secs))
    }
}
