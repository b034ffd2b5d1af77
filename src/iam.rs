//! IAM as Cloud Run and the IAM Credentials API apply it: roles, members, policies, and a
//! pure `check` that answers whether a principal holds a permission, with a reason a learner
//! can act on either way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

mod roles;

pub use roles::*;

/// Google's limit on the principals of one policy, counted in every binding they appear in.
pub const MAX_POLICY_PRINCIPALS: usize = 1500;

/// Google's refusal of a policy whose bindings have `members` principals each, if they add
/// up to more than [`MAX_POLICY_PRINCIPALS`]. A binding with none counts as one, so that a
/// policy of empty bindings is bounded too.
pub fn too_many_principals(members: impl IntoIterator<Item = usize>) -> Option<String> {
    let count: usize = members.into_iter().map(|n| n.max(1)).sum();
    (count > MAX_POLICY_PRINCIPALS).then(|| {
        format!(
            "The number of members in the policy ({}) is larger than the maximum allowed size {}.",
            thousands(count),
            thousands(MAX_POLICY_PRINCIPALS)
        )
    })
}

/// `1501` as Google writes it in that message: `1,501`.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Why a role, member, email or domain named in a policy or the configuration is refused,
/// in words the configuration error or the API's 400 quotes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("unknown role `{name}`{suggestion}; known roles are {known}")]
    UnknownRole {
        name: String,
        suggestion: String,
        known: String,
    },
    #[error(
        "member `{member}` has no kind{suggestion}; write user:EMAIL, serviceAccount:EMAIL, group:EMAIL, domain:DOMAIN, allUsers or allAuthenticatedUsers"
    )]
    NoKind { member: String, suggestion: String },
    #[error(
        "unknown kind `{kind}`{suggestion}; known kinds are user, serviceAccount, group, domain, principal, principalSet"
    )]
    UnknownKind { kind: String, suggestion: String },
    /// A member whose value is refused, and why.
    #[error("member `{member}`: {reason}")]
    Member {
        member: String,
        reason: Box<NameError>,
    },
    #[error(
        "federated member `{0}` is malformed; expected //iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/subject/SUBJECT (principal:) or …/POOL/attribute.NAME/VALUE or …/POOL/* (principalSet:)"
    )]
    Federated(String),
    #[error("`{0}` is not an email address (no `@`)")]
    NoAt(String),
    #[error("`{0}` is not an email address (bad local part)")]
    LocalPart(String),
    #[error("`{0}` is not an email address (bad domain)")]
    EmailDomain(String),
    #[error(
        "`{0}` is not a service-account email (expected NAME@PROJECT_ID.iam.gserviceaccount.com)"
    )]
    NotServiceAccount(String),
    #[error("`{0}` is not a domain name")]
    Domain(String),
}

/// A member of an IAM binding, in Google's `kind:value` syntax.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Member {
    AllUsers,
    AllAuthenticatedUsers,
    User(String),
    ServiceAccount(String),
    Group(String),
    Domain(String),
    /// `principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/subject/S`
    Principal(String),
    /// `principalSet://…/workloadIdentityPools/P/attribute.NAME/VALUE`, `…/group/G` or `…/*`
    PrincipalSet(String),
}

const FEDERATED_PREFIX: &str = "//iam.googleapis.com/projects/";

impl Member {
    pub fn parse(s: &str) -> Result<Member, NameError> {
        match s {
            "allUsers" => return Ok(Member::AllUsers),
            "allAuthenticatedUsers" => return Ok(Member::AllAuthenticatedUsers),
            _ => {}
        }
        if let Some(rest) = s.strip_prefix("principal:") {
            return parse_federated(rest, "/subject/").map(|_| Member::Principal(s.to_owned()));
        }
        if let Some(rest) = s.strip_prefix("principalSet:") {
            return parse_federated(rest, "/").map(|_| Member::PrincipalSet(s.to_owned()));
        }
        let Some((kind, value)) = s.split_once(':') else {
            // `allusers`, `AllUsers`: the two members without a kind, miscased.
            return Err(NameError::NoKind {
                member: s.to_owned(),
                suggestion: crate::suggest::did_you_mean(s, ["allUsers", "allAuthenticatedUsers"]),
            });
        };
        match kind {
            "user" => check_email(value).map(Member::User),
            "group" => check_email(value).map(Member::Group),
            "serviceAccount" => check_service_account_email(value).map(Member::ServiceAccount),
            "domain" => check_domain(value).map(|d| Member::Domain(d.to_ascii_lowercase())),
            _ => Err(NameError::UnknownKind {
                kind: kind.to_owned(),
                suggestion: crate::suggest::did_you_mean(
                    kind,
                    [
                        "user",
                        "serviceAccount",
                        "group",
                        "domain",
                        "principal",
                        "principalSet",
                    ],
                ),
            }),
        }
        .map_err(|reason| NameError::Member {
            member: s.to_owned(),
            reason: Box::new(reason),
        })
    }
}

fn parse_federated(rest: &str, marker: &str) -> Result<(), NameError> {
    let ok = rest
        .strip_prefix(FEDERATED_PREFIX)
        .and_then(|r| r.split_once("/locations/global/workloadIdentityPools/"))
        .is_some_and(|(number, tail)| {
            !number.is_empty()
                && number.bytes().all(|b| b.is_ascii_digit())
                && tail.split_once(marker).is_some_and(|(pool, what)| {
                    !pool.is_empty() && !pool.contains('/') && !what.is_empty()
                })
        });
    if ok {
        Ok(())
    } else {
        Err(NameError::Federated(rest.to_owned()))
    }
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Member::AllUsers => f.write_str("allUsers"),
            Member::AllAuthenticatedUsers => f.write_str("allAuthenticatedUsers"),
            Member::User(e) => f.write_str("user:").and(f.write_str(e)),
            Member::ServiceAccount(e) => f.write_str("serviceAccount:").and(f.write_str(e)),
            Member::Group(e) => f.write_str("group:").and(f.write_str(e)),
            Member::Domain(d) => f.write_str("domain:").and(f.write_str(d)),
            Member::Principal(p) | Member::PrincipalSet(p) => f.write_str(p),
        }
    }
}

/// A lowercased email, or why it is not one.
pub fn check_email(s: &str) -> Result<String, NameError> {
    let Some((local, domain)) = s.rsplit_once('@') else {
        return Err(NameError::NoAt(s.to_owned()));
    };
    let local_ok = !local.is_empty()
        && local
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._%+-".contains(&b));
    if !local_ok {
        return Err(NameError::LocalPart(s.to_owned()));
    }
    check_domain(domain).map_err(|_| NameError::EmailDomain(s.to_owned()))?;
    Ok(s.to_ascii_lowercase())
}

/// Service-account emails end in `.gserviceaccount.com`, as Google's do.
pub fn check_service_account_email(s: &str) -> Result<String, NameError> {
    let email = check_email(s)?;
    if email.ends_with(".gserviceaccount.com") {
        Ok(email)
    } else {
        Err(NameError::NotServiceAccount(s.to_owned()))
    }
}

fn check_domain(s: &str) -> Result<&str, NameError> {
    let labels_ok = s.split('.').all(|l| {
        !l.is_empty()
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if s.contains('.') && labels_ok {
        Ok(s)
    } else {
        Err(NameError::Domain(s.to_owned()))
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    pub role: Role,
    pub members: Vec<Member>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    pub bindings: Vec<Binding>,
}

impl Policy {
    /// Whether `allUsers` holds `permission` here: such a resource is public.
    pub fn is_public(&self, permission: &str) -> bool {
        self.bindings
            .iter()
            .any(|b| b.role.grants(permission) && b.members.contains(&Member::AllUsers))
    }

    /// `role → [members]; …` for reasons, or `(none)`.
    pub fn describe(&self) -> String {
        if self.bindings.is_empty() {
            return "(none)".to_owned();
        }
        self.bindings
            .iter()
            .map(|b| {
                let members: Vec<String> = b.members.iter().map(ToString::to_string).collect();
                format!("{} → [{}]", b.role.name(), members.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// Who is asking, as established from a verified credential.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Principal {
    ServiceAccount(String),
    User(String),
    /// A workload-identity-federation identity: its `principal://…/subject/S` member and
    /// the `principalSet://…` members it falls into.
    Federated {
        subject: String,
        sets: Vec<String>,
    },
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Principal::ServiceAccount(e) => write!(f, "serviceAccount:{e}"),
            Principal::User(e) => write!(f, "user:{e}"),
            Principal::Federated { subject, .. } => f.write_str(subject),
        }
    }
}

impl Principal {
    /// As a member is written (`serviceAccount:EMAIL`, …): the `Display`, without the
    /// `fmt` machinery, for the front door's every request.
    pub fn member(&self) -> String {
        match self {
            Principal::ServiceAccount(e) => ["serviceAccount:", e].concat(),
            Principal::User(e) => ["user:", e].concat(),
            Principal::Federated { subject, .. } => subject.clone(),
        }
    }

    /// The email of an account or user; a federated identity's `principal://…` member.
    pub fn id(&self) -> &str {
        match self {
            Principal::ServiceAccount(e) | Principal::User(e) => e,
            Principal::Federated { subject, .. } => subject,
        }
    }

    fn email(&self) -> Option<&str> {
        match self {
            Principal::ServiceAccount(e) | Principal::User(e) => Some(e),
            Principal::Federated { .. } => None,
        }
    }
}

/// Group memberships from the configuration: group email → members.
pub type Groups = BTreeMap<String, Vec<Member>>;

/// Where a policy sits, for reasons: `service `search``, `project `demo-project``.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    pub kind: &'a str,
    pub name: &'a str,
    pub policy: &'a Policy,
}

impl fmt::Display for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} `{}`", self.kind, self.name)
    }
}

/// The answer to "may this principal do this?", with the reason in words. (Not to be
/// confused with `decisions::Decision`, a request's whole answer as the log keeps it.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub allowed: bool,
    pub reason: String,
}

/// Whether `principal` (None: an anonymous caller) holds `permission` through any binding
/// in `scopes` (resource first, then its ancestors).
pub fn check(
    permission: &str,
    principal: Option<&Principal>,
    scopes: &[Scope<'_>],
    groups: &Groups,
) -> Outcome {
    for scope in scopes {
        for binding in &scope.policy.bindings {
            if !binding.role.grants(permission) {
                continue;
            }
            if let Some(member) = binding
                .members
                .iter()
                .find(|m| matches(m, principal, groups))
            {
                // Joined rather than formatted: the front door grants on every request, and
                // `format!` here was 3% of a warm request's instructions.
                let who =
                    principal.map_or_else(|| "an anonymous caller".to_owned(), Principal::member);
                let member = member.to_string();
                return Outcome {
                    allowed: true,
                    reason: [
                        &who,
                        " holds ",
                        binding.role.name(),
                        " on ",
                        scope.kind,
                        " `",
                        scope.name,
                        "` (as member ",
                        &member,
                        "), which carries ",
                        permission,
                    ]
                    .concat(),
                };
            }
        }
    }
    let who = principal.map_or_else(|| "an anonymous caller".to_owned(), |p| p.to_string());
    let where_: Vec<String> = scopes
        .iter()
        .map(|s| format!("on {s}: {}", s.policy.describe()))
        .collect();
    Outcome {
        allowed: false,
        // The groups first: the bindings may be long, and a reason is cut from its end.
        reason: format!(
            "{who} has no role carrying {permission} ({}){}; bindings {}",
            Role::carrying(permission).join(", "),
            principal.map_or_else(String::new, |_| outside_groups(
                &who, permission, scopes, groups
            )),
            where_.join("; ")
        ),
    }
}

/// For a refusal: each group a binding that would do grants to, and who is in it (the
/// caller is not), so that a learner sees the roster rather than only the group's name.
fn outside_groups(who: &str, permission: &str, scopes: &[Scope<'_>], groups: &Groups) -> String {
    /// Members listed of one group, and groups listed, at most.
    const SHOWN: usize = 10;
    let mut named: BTreeSet<&str> = BTreeSet::new();
    for scope in scopes {
        for binding in scope
            .policy
            .bindings
            .iter()
            .filter(|b| b.role.grants(permission))
        {
            for member in &binding.members {
                if let Member::Group(g) = member {
                    named.insert(g);
                }
            }
        }
    }
    let mut out = String::new();
    let more = named.len().saturating_sub(SHOWN);
    for group in named.into_iter().take(SHOWN) {
        let members = groups.get(group).map_or(&[][..], Vec::as_slice);
        if members.is_empty() {
            out.push_str(&format!(
                "; group:{group} has no members under `groups:`, so nobody is in it"
            ));
            continue;
        }
        let mut listed: Vec<String> = members
            .iter()
            .take(SHOWN)
            .map(ToString::to_string)
            .collect();
        if members.len() > SHOWN {
            listed.push(format!("and {} more", members.len() - SHOWN));
        }
        out.push_str(&format!(
            "; {who} is not in group:{group} (its members: {})",
            listed.join(", ")
        ));
    }
    if more > 0 {
        out.push_str(&format!("; and {more} more groups"));
    }
    out
}

fn matches(member: &Member, principal: Option<&Principal>, groups: &Groups) -> bool {
    let Some(principal) = principal else {
        return *member == Member::AllUsers;
    };
    let mut seen = BTreeSet::new();
    matches_authenticated(member, principal, groups, &mut seen)
}

fn matches_authenticated<'g>(
    member: &'g Member,
    principal: &Principal,
    groups: &'g Groups,
    seen: &mut BTreeSet<&'g str>,
) -> bool {
    match (member, principal) {
        (Member::AllUsers | Member::AllAuthenticatedUsers, _) => true,
        (Member::ServiceAccount(e), Principal::ServiceAccount(p)) => e == p,
        (Member::User(e), Principal::User(p)) => e == p,
        (Member::Domain(d), _) => principal
            .email()
            .and_then(|e| e.rsplit_once('@'))
            .is_some_and(|(_, domain)| domain == d),
        (Member::Principal(m), Principal::Federated { subject, .. }) => m == subject,
        (Member::PrincipalSet(m), Principal::Federated { sets, .. }) => sets.contains(m),
        (Member::Group(g), _) => {
            // Groups may contain groups; `seen` stops a cycle from looping forever.
            if !seen.insert(g.as_str()) {
                return false;
            }
            groups.get(g).is_some_and(|members| {
                members
                    .iter()
                    .any(|m| matches_authenticated(m, principal, groups, seen))
            })
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
