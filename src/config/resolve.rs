//! The one function that resolves a parsed `services.yaml` (with the Admin APIs' layer
//! over it) into a `Config`, and its helpers (`At`, which names each error's file and
//! path; the project, policies, sockets and addresses): every derived value computed,
//! every reference checked.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use super::raw::{self, RawConfig, RawPolicy};
use super::{
    Config, ConfigError, Enforcement, GOOGLE_ISSUER, Layer, Listen, NamedFiles, NotCompared,
    Project, Service, ServiceAccount, User, eventarc, federation, named, names, pubsub,
    region_code, scheduler, service, tasks, unique_id_for,
};
use crate::iam::{self, Binding, Groups, Member, Policy, Role};

/// Collects errors for one file with their paths; the first one is returned.
pub(super) struct At<'a> {
    pub(super) file: &'a Path,
    /// The files the configuration names, read before it is resolved.
    pub(super) named: &'a NamedFiles,
    /// The changes made through the Admin APIs, over the file.
    pub(super) layer: &'a Layer,
}

impl At<'_> {
    pub(super) fn err(
        &self,
        path: impl Into<String>,
        reason: impl std::fmt::Display,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: self.file.to_owned(),
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}

pub(super) fn resolve(
    raw: RawConfig,
    file: &Path,
    named: &NamedFiles,
    layer: &Layer,
) -> Result<Config, ConfigError> {
    let named_files = named::paths(&raw, file);
    let at = At { file, named, layer };
    let mut egress_passthrough = Vec::new();
    for (i, host) in raw.egress.passthrough.iter().enumerate() {
        let host = host.trim().to_ascii_lowercase();
        let valid = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.".contains(&b));
        if !valid {
            return Err(at.err(
                format!("egress.passthrough[{i}]"),
                format!(
                    "`{host}` is not a host name (letters, digits, `-` and `.`; no port or scheme)"
                ),
            ));
        }
        if let Some(why) = names_frontdoor_itself(&host) {
            return Err(at.err(
                format!("egress.passthrough[{i}]"),
                format!(
                    "`{host}` {why}: a tunnel there would reach frontdoor's own listeners (or whatever else listens on this machine) through its proxy; list only hosts off this machine"
                ),
            ));
        }
        egress_passthrough.push(host);
    }
    let enforcement = match raw.enforcement.as_deref() {
        None | Some("enforce") => Enforcement::Enforce,
        Some("audit") => Enforcement::Audit,
        Some(other) => {
            return Err(at.err(
                "enforcement",
                format!(
                    "`{other}` is not an enforcement mode: `enforce` (the default, as Cloud Run) or `audit` (every request passes; refusals are recorded as would deny){}",
                    crate::suggest::did_you_mean(other, ["enforce", "audit"])
                ),
            ));
        }
    };
    let project = resolve_project(raw.project, &at)?;

    let listen = Listen {
        frontdoor: socket(
            raw.listen.frontdoor.as_deref(),
            "127.0.0.1:8080",
            "listen.frontdoor",
            &at,
        )?,
        google: socket(
            raw.listen.google.as_deref(),
            "127.0.0.1:8088",
            "listen.google",
            &at,
        )?,
        metadata: socket(
            raw.listen.metadata.as_deref(),
            "127.0.0.1:8089",
            "listen.metadata",
            &at,
        )?,
    };

    let issuer = raw.issuer.unwrap_or_else(|| GOOGLE_ISSUER.to_owned());
    if !(issuer.starts_with("https://") || issuer.starts_with("http://")) {
        return Err(at.err("issuer", format!("issuer `{issuer}` is not an http(s) URL")));
    }

    let mut service_accounts = Vec::new();
    for (i, sa) in raw.service_accounts.into_iter().enumerate() {
        let path = format!("service_accounts[{i}]");
        let email = iam::check_service_account_email(&sa.email)
            .map_err(|r| at.err(format!("{path}.email"), r))?;
        if service_accounts
            .iter()
            .any(|s: &ServiceAccount| s.email == email)
        {
            return Err(at.err(
                format!("{path}.email"),
                format!("duplicate service account `{email}`"),
            ));
        }
        let unique_id = match sa.unique_id {
            Some(id) if id.len() == 21 && id.bytes().all(|b| b.is_ascii_digit()) => id,
            Some(id) => {
                return Err(at.err(
                    format!("{path}.unique_id"),
                    format!("unique id `{id}` is not 21 digits"),
                ));
            }
            None => unique_id_for(&email),
        };
        let changed = layer.account_policies.get(&email);
        let iam_policy = match changed {
            Some(changed) => Some(changed.raw()),
            None => sa.iam_policy,
        };
        let policy = resolve_policy(iam_policy, &format!("{path}.iam_policy"), &at)?;
        service_accounts.push(ServiceAccount {
            email,
            unique_id,
            display_name: sa.display_name,
            policy,
            policy_by_admin: NotCompared(changed.is_some()),
            declared: true,
        });
    }
    // Cloud Run runs a service that names no account as the compute default account.
    let compute = project.compute_default_account();
    if !service_accounts.iter().any(|s| s.email == compute) {
        service_accounts.push(ServiceAccount {
            unique_id: unique_id_for(&compute),
            display_name: Some("Compute Engine default service account".into()),
            policy: resolve_policy(
                layer.account_policies.get(&compute).map(|p| p.raw()),
                "(the compute default account).iam_policy",
                &at,
            )?,
            policy_by_admin: NotCompared(layer.account_policies.contains_key(&compute)),
            declared: false,
            email: compute,
        });
    }

    let mut users = Vec::new();
    for (i, u) in raw.users.iter().enumerate() {
        let email = iam::check_email(u).map_err(|r| at.err(format!("users[{i}]"), r))?;
        if users.iter().any(|x: &User| x.email == email) {
            return Err(at.err(format!("users[{i}]"), format!("duplicate user `{email}`")));
        }
        users.push(User {
            id: names::user_id_for(&email),
            email,
        });
    }

    let mut groups = Groups::new();
    for (i, g) in raw.groups.into_iter().enumerate() {
        let email =
            iam::check_email(&g.email).map_err(|r| at.err(format!("groups[{i}].email"), r))?;
        let members = g
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| {
                Member::parse(m).map_err(|r| at.err(format!("groups[{i}].members[{j}]"), r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if groups.insert(email.clone(), members).is_some() {
            return Err(at.err(
                format!("groups[{i}].email"),
                format!("duplicate group `{email}`"),
            ));
        }
    }

    let iam_policy = match &layer.project_policy {
        Some(changed) => Some(changed.raw()),
        None => raw.iam_policy,
    };
    let policy = resolve_policy(iam_policy, "iam_policy", &at)?;

    // Declared first, so the compute default account (pushed last) is the fallback.
    let metadata_identity = match raw.metadata_service_account {
        None => service_accounts[0].email.clone(),
        Some(email) => {
            let email = iam::check_service_account_email(&email)
                .map_err(|r| at.err("metadata_service_account", r))?;
            if !service_accounts.iter().any(|a| a.email == email) {
                return Err(at.err(
                    "metadata_service_account",
                    format!("service account `{email}` is not declared under service_accounts"),
                ));
            }
            email
        }
    };

    let internal_callers = raw
        .internal_callers
        .iter()
        .enumerate()
        .map(|(i, a)| {
            a.parse::<IpAddr>().map_err(|_| {
                at.err(
                    format!("internal_callers[{i}]"),
                    format!("`{a}` is not an IP address"),
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;

    let mut services: Vec<Service> = Vec::new();
    for (i, entry) in raw.services.into_iter().enumerate() {
        let path = format!("services[{i}]");
        let service = service::resolve(entry, &path, &project, &service_accounts, &at)?;
        if services.iter().any(|s| s.name == service.name) {
            return Err(at.err(
                format!("{path}.name"),
                format!("duplicate service `{}`", service.name),
            ));
        }
        services.push(service);
    }
    check_addresses(&listen, &services, &at)?;
    let providers = federation::resolve(raw.workload_identity_pools, &project, &at)?;
    let pubsub = pubsub::resolve(&raw.pubsub, &project.id, &service_accounts, &services, &at)?;
    let pubsub = eventarc::resolve(
        &raw.eventarc,
        pubsub,
        &project,
        &service_accounts,
        &services,
        &at,
    )?;

    let tasks = tasks::resolve(&raw.tasks, &project, &at)?;
    let scheduler = scheduler::resolve(&raw.scheduler, &project, &service_accounts, &at)?;

    let config = Config {
        file: file.to_owned(),
        project,
        listen,
        issuer,
        service_accounts,
        users,
        groups,
        policy,
        internal_callers,
        metadata_identity,
        services,
        providers,
        named_files,
        egress_passthrough,
        enforcement,
        pubsub,
        tasks,
        scheduler,
    };
    Ok(config)
}

fn resolve_project(raw: raw::RawProject, at: &At<'_>) -> Result<Project, ConfigError> {
    names::check_project_id(&raw.id).map_err(|r| at.err("project.id", r))?;
    let number = raw.number.into_string();
    if number.is_empty() || number.len() > 19 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(at.err(
            "project.number",
            format!("project number `{number}` is not a number of up to 19 digits"),
        ));
    }
    names::check_region(&raw.region).map_err(|r| at.err("project.region", r))?;
    Ok(Project {
        region_code: region_code(&raw.region),
        id: raw.id,
        number,
        region: raw.region,
    })
}

pub(super) fn socket(
    given: Option<&str>,
    default: &str,
    path: &str,
    at: &At<'_>,
) -> Result<SocketAddr, ConfigError> {
    let s = given.unwrap_or(default);
    s.parse()
        .map_err(|_| at.err(path, format!("`{s}` is not an address of the form IP:PORT")))
}

pub(super) fn resolve_policy(
    raw: Option<RawPolicy>,
    path: &str,
    at: &At<'_>,
) -> Result<Policy, ConfigError> {
    let raw = raw.unwrap_or_default();
    let members = raw.bindings.iter().map(|b| b.members.len());
    if let Some(why) = crate::iam::too_many_principals(members) {
        return Err(at.err(format!("{path}.bindings"), why));
    }
    let mut bindings = Vec::new();
    for (i, b) in raw.bindings.into_iter().enumerate() {
        let role =
            Role::parse(&b.role).map_err(|r| at.err(format!("{path}.bindings[{i}].role"), r))?;
        let members = b
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| {
                Member::parse(m)
                    .map_err(|r| at.err(format!("{path}.bindings[{i}].members[{j}]"), r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        bindings.push(Binding { role, members });
    }
    Ok(Policy { bindings })
}

/// Why `host` (a lowercase host name or IPv4 literal) names this machine, if it does:
/// loopback names and addresses, and the unspecified address. A listener bound to another
/// interface is refused at connect time, once the name has resolved (`egress`).
fn names_frontdoor_itself(host: &str) -> Option<&'static str> {
    if names::is_loopback_name(host) {
        Some("names this machine's loopback")
    } else if host
        .parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
    {
        Some("is the unspecified address")
    } else {
        None
    }
}

/// Every listener needs its own address (port 0 excepted: the OS picks).
fn check_addresses(listen: &Listen, services: &[Service], at: &At<'_>) -> Result<(), ConfigError> {
    let mut seen: BTreeMap<SocketAddr, String> = BTreeMap::new();
    let mut claim = |addr: SocketAddr, path: String| -> Result<(), ConfigError> {
        if addr.port() == 0 {
            return Ok(());
        }
        if let Some(other) = seen.get(&addr) {
            return Err(at.err(path, format!("address {addr} is already used by {other}")));
        }
        seen.insert(addr, path);
        Ok(())
    };
    claim(listen.frontdoor, "listen.frontdoor".into())?;
    claim(listen.google, "listen.google".into())?;
    claim(listen.metadata, "listen.metadata".into())?;
    for (i, s) in services.iter().enumerate() {
        if let Some(a) = s.listen {
            claim(a, format!("services[{i}].listen"))?;
        }
        if let Some(a) = s.metadata {
            claim(a, format!("services[{i}].metadata"))?;
        }
    }
    let mut hosts = BTreeSet::new();
    for (i, s) in services.iter().enumerate() {
        for d in &s.custom_domains {
            if !hosts.insert(d.clone()) {
                return Err(at.err(
                    format!("services[{i}].custom_domains"),
                    format!("custom domain `{d}` is mapped to two services"),
                ));
            }
        }
    }
    Ok(())
}
