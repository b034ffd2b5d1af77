//! The resources Google's APIs here check IAM on (the project, a service, a service
//! account), each with the policies that apply to it, and the one judgment they all make:
//! the Admin APIs on every method, IAM Credentials at each hop of a delegation chain, and
//! `frontdoor explain` when asked about any of them.

use super::errors::ApiError;
use crate::config::{Config, Service, ServiceAccount};
use crate::iam::{self, Principal, Scope};

/// A resource with an IAM policy, below the project (or the project itself).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Resource<'c> {
    Project,
    Service(&'c Service),
    Account(&'c ServiceAccount),
    /// A resource the configuration does not hold (a Pub/Sub topic or subscription), with
    /// its own policy.
    Held(Scope<'c>),
}

impl<'c> Resource<'c> {
    /// The resource `name` names, as `frontdoor explain` is asked: `projects/ID` (or its
    /// number), `services/NAME`, `serviceAccounts/EMAIL` (or its unique id; also after
    /// `projects/ID/`, as IAM writes it). A resource not here is Google's 404.
    pub(crate) fn named(config: &'c Config, name: &str) -> Result<Resource<'c>, ApiError> {
        let project = &config.project;
        // `projects/P` alone, or before the resource: P must be this project (or `-`).
        let (in_project, unprefixed) = match name.strip_prefix("projects/") {
            Some(rest) => match rest.split_once('/') {
                Some((id, rest)) => (Some(id), rest),
                None => (Some(rest), ""),
            },
            None => (None, name),
        };
        if let Some(id) = in_project {
            // `-` stands for the project only before a resource, as IAM writes it.
            let wildcard = id == "-" && !unprefixed.is_empty();
            if id != project.id && id != project.number && !wildcard {
                return Err(ApiError::NotFound(format!(
                    "project `{id}` is not the one frontdoor emulates ({}, number {})",
                    project.id, project.number
                )));
            }
            if unprefixed.is_empty() {
                return Ok(Resource::Project);
            }
        }
        if let Some(service) = unprefixed.strip_prefix("services/") {
            return config
                .service(service)
                .map(Resource::Service)
                .ok_or_else(|| {
                    let known = config.services.iter().map(|s| s.name.as_str());
                    ApiError::NotFound(format!(
                        "no service `{service}`{}",
                        crate::suggest::did_you_mean(service, known)
                    ))
                });
        }
        if let Some(account) = unprefixed.strip_prefix("serviceAccounts/") {
            return config
                .service_account_named(account)
                .map(Resource::Account)
                .ok_or_else(|| {
                    ApiError::NotFound(format!("no service account `{account}` is declared"))
                });
        }
        Err(ApiError::InvalidArgument(format!(
            "`{name}` names no resource: give projects/{}, services/NAME or serviceAccounts/EMAIL",
            project.id
        )))
    }

    /// The bindings on the resource itself, if it is below the project.
    pub(crate) fn own_scope(self) -> Option<Scope<'c>> {
        match self {
            Resource::Project => None,
            Resource::Held(scope) => Some(scope),
            Resource::Service(service) => Some(Scope {
                kind: "service",
                name: &service.name,
                policy: &service.policy,
            }),
            Resource::Account(account) => Some(Scope {
                kind: "service account",
                name: &account.email,
                policy: &account.policy,
            }),
        }
    }

    /// Where IAM looks for a binding: the resource's own policy, then the project's.
    pub(crate) fn scopes(self, config: &'c Config) -> Vec<Scope<'c>> {
        let project = Scope {
            kind: "project",
            name: &config.project.id,
            policy: &config.policy,
        };
        self.own_scope().into_iter().chain([project]).collect()
    }
}

/// Whether `who` holds `permission` on `resource`: IAM's reason if so; if not, Google's
/// refusal with IAM's reason for the log (running something as an account, actAs, worded
/// as Cloud Run words it on a deploy).
pub(crate) fn judge(
    config: &Config,
    who: &Principal,
    permission: &'static str,
    resource: Resource<'_>,
) -> Result<String, ApiError> {
    let outcome = iam::check(
        permission,
        Some(who),
        &resource.scopes(config),
        &config.groups,
    );
    tracing::debug!(allowed = outcome.allowed, permission, reason = %outcome.reason, "iam check");
    match resource {
        _ if outcome.allowed => Ok(outcome.reason),
        Resource::Account(account) if permission == iam::ACT_AS => Err(ApiError::ActAsDenied {
            account: account.email.clone(),
            why: outcome.reason,
        }),
        _ => Err(ApiError::PermissionDenied {
            permission,
            why: outcome.reason,
        }),
    }
}
