//! IAM as Cloud Run and the IAM Credentials API apply it: roles, members, policies, and a
//! pure `check` that answers whether a principal holds a permission, with a reason a learner
//! can act on either way.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The permission the front door checks (SPEC §3 step 9).
pub const INVOKE: &str = "run.routes.invoke";
pub const GET_OPENID_TOKEN: &str = "iam.serviceAccounts.getOpenIdToken";
pub const GET_ACCESS_TOKEN: &str = "iam.serviceAccounts.getAccessToken";
pub const SIGN_JWT: &str = "iam.serviceAccounts.signJwt";
pub const SIGN_BLOB: &str = "iam.serviceAccounts.signBlob";
pub const IMPLICIT_DELEGATION: &str = "iam.serviceAccounts.implicitDelegation";
/// Running something as an account: what a deployer needs on a service's run-as account
/// (Cloud Run checks it on every deploy, whatever else the caller may do).
pub const ACT_AS: &str = "iam.serviceAccounts.actAs";

/// The Cloud Run Admin API's permissions (the deployer's side, seed 002).
pub const RUN_GET: &str = "run.services.get";
pub const RUN_LIST: &str = "run.services.list";
pub const RUN_UPDATE: &str = "run.services.update";
pub const RUN_GET_IAM_POLICY: &str = "run.services.getIamPolicy";
pub const RUN_SET_IAM_POLICY: &str = "run.services.setIamPolicy";

/// Resource Manager's, on the project.
pub const PROJECT_GET: &str = "resourcemanager.projects.get";
pub const PROJECT_GET_IAM_POLICY: &str = "resourcemanager.projects.getIamPolicy";
pub const PROJECT_SET_IAM_POLICY: &str = "resourcemanager.projects.setIamPolicy";

/// The IAM API's, on service accounts and their keys.
pub const ACCOUNT_GET: &str = "iam.serviceAccounts.get";
pub const ACCOUNT_LIST: &str = "iam.serviceAccounts.list";
pub const ACCOUNT_GET_IAM_POLICY: &str = "iam.serviceAccounts.getIamPolicy";
pub const ACCOUNT_SET_IAM_POLICY: &str = "iam.serviceAccounts.setIamPolicy";
pub const KEYS_LIST: &str = "iam.serviceAccountKeys.list";
pub const KEYS_CREATE: &str = "iam.serviceAccountKeys.create";
pub const KEYS_DELETE: &str = "iam.serviceAccountKeys.delete";

// Groups of permissions that roles share; each role below is a list of them.
// Pub/Sub's, on the project or on the topic or subscription itself.
pub const TOPICS_CREATE: &str = "pubsub.topics.create";
pub const TOPICS_GET: &str = "pubsub.topics.get";
pub const TOPICS_LIST: &str = "pubsub.topics.list";
pub const TOPICS_DELETE: &str = "pubsub.topics.delete";
pub const TOPICS_PUBLISH: &str = "pubsub.topics.publish";
pub const TOPICS_ATTACH: &str = "pubsub.topics.attachSubscription";
pub const SUBSCRIPTIONS_CREATE: &str = "pubsub.subscriptions.create";
pub const SUBSCRIPTIONS_GET: &str = "pubsub.subscriptions.get";
pub const SUBSCRIPTIONS_LIST: &str = "pubsub.subscriptions.list";
pub const SUBSCRIPTIONS_DELETE: &str = "pubsub.subscriptions.delete";
pub const SUBSCRIPTIONS_UPDATE: &str = "pubsub.subscriptions.update";
pub const SUBSCRIPTIONS_CONSUME: &str = "pubsub.subscriptions.consume";
pub const TOPICS_GET_IAM_POLICY: &str = "pubsub.topics.getIamPolicy";
pub const TOPICS_SET_IAM_POLICY: &str = "pubsub.topics.setIamPolicy";
pub const SUBSCRIPTIONS_GET_IAM_POLICY: &str = "pubsub.subscriptions.getIamPolicy";
pub const SUBSCRIPTIONS_SET_IAM_POLICY: &str = "pubsub.subscriptions.setIamPolicy";
pub const QUEUES_CREATE: &str = "cloudtasks.queues.create";
pub const QUEUES_GET: &str = "cloudtasks.queues.get";
pub const QUEUES_LIST: &str = "cloudtasks.queues.list";
pub const QUEUES_UPDATE: &str = "cloudtasks.queues.update";
pub const QUEUES_DELETE: &str = "cloudtasks.queues.delete";
pub const QUEUES_PURGE: &str = "cloudtasks.queues.purge";
pub const QUEUES_PAUSE: &str = "cloudtasks.queues.pause";
pub const QUEUES_RESUME: &str = "cloudtasks.queues.resume";
pub const TASKS_CREATE: &str = "cloudtasks.tasks.create";
pub const TASKS_GET: &str = "cloudtasks.tasks.get";
pub const TASKS_LIST: &str = "cloudtasks.tasks.list";
pub const TASKS_DELETE: &str = "cloudtasks.tasks.delete";
pub const TASKS_RUN: &str = "cloudtasks.tasks.run";
pub const TASKS_FULL_VIEW: &str = "cloudtasks.tasks.fullView";
pub const JOBS_CREATE: &str = "cloudscheduler.jobs.create";
pub const JOBS_GET: &str = "cloudscheduler.jobs.get";
pub const JOBS_LIST: &str = "cloudscheduler.jobs.list";
pub const JOBS_UPDATE: &str = "cloudscheduler.jobs.update";
pub const JOBS_DELETE: &str = "cloudscheduler.jobs.delete";
pub const JOBS_PAUSE: &str = "cloudscheduler.jobs.pause";
pub const JOBS_ENABLE: &str = "cloudscheduler.jobs.enable";
pub const JOBS_RUN: &str = "cloudscheduler.jobs.run";
pub const TRIGGERS_CREATE: &str = "eventarc.triggers.create";
pub const TRIGGERS_GET: &str = "eventarc.triggers.get";
pub const TRIGGERS_LIST: &str = "eventarc.triggers.list";
pub const TRIGGERS_DELETE: &str = "eventarc.triggers.delete";
pub const EVENTARC_OPERATIONS_GET: &str = "eventarc.operations.get";

const INVOKING: &[&str] = &[INVOKE];
const PUBSUB_READ: &[&str] = &[
    TOPICS_GET,
    TOPICS_LIST,
    SUBSCRIPTIONS_GET,
    SUBSCRIPTIONS_LIST,
];
const PUBSUB_CHANGE: &[&str] = &[
    TOPICS_CREATE,
    TOPICS_DELETE,
    TOPICS_PUBLISH,
    TOPICS_ATTACH,
    SUBSCRIPTIONS_CREATE,
    SUBSCRIPTIONS_DELETE,
    SUBSCRIPTIONS_UPDATE,
    SUBSCRIPTIONS_CONSUME,
];
// Reading a topic's or subscription's policy is the basic roles' and Pub/Sub Admin's, not
// Pub/Sub Viewer's or Editor's, as on Google; changing it, Owner's and Pub/Sub Admin's.
const PUBSUB_POLICY_READ: &[&str] = &[TOPICS_GET_IAM_POLICY, SUBSCRIPTIONS_GET_IAM_POLICY];
const PUBSUB_POLICY: &[&str] = &[TOPICS_SET_IAM_POLICY, SUBSCRIPTIONS_SET_IAM_POLICY];
const TASKS_READ: &[&str] = &[QUEUES_GET, QUEUES_LIST, TASKS_GET, TASKS_LIST];
const QUEUES_CHANGE: &[&str] = &[
    QUEUES_CREATE,
    QUEUES_UPDATE,
    QUEUES_DELETE,
    QUEUES_PURGE,
    QUEUES_PAUSE,
    QUEUES_RESUME,
];
const TASKS_CHANGE: &[&str] = &[TASKS_CREATE, TASKS_DELETE, TASKS_RUN, TASKS_FULL_VIEW];
const JOBS_READ: &[&str] = &[JOBS_GET, JOBS_LIST];
const JOBS_CHANGE: &[&str] = &[
    JOBS_CREATE,
    JOBS_UPDATE,
    JOBS_DELETE,
    JOBS_PAUSE,
    JOBS_ENABLE,
    JOBS_RUN,
];
const TRIGGERS_READ: &[&str] = &[TRIGGERS_GET, TRIGGERS_LIST, EVENTARC_OPERATIONS_GET];
const TRIGGERS_CHANGE: &[&str] = &[TRIGGERS_CREATE, TRIGGERS_DELETE];
const RUN_READ: &[&str] = &[RUN_GET, RUN_LIST, RUN_GET_IAM_POLICY, PROJECT_GET];
const RUN_CHANGE: &[&str] = &[INVOKE, RUN_UPDATE];
const RUN_POLICY: &[&str] = &[RUN_SET_IAM_POLICY];
const PROJECT_POLICY_READ: &[&str] = &[PROJECT_GET_IAM_POLICY];
const PROJECT_POLICY: &[&str] = &[PROJECT_SET_IAM_POLICY];
const ACCOUNT_READ: &[&str] = &[ACCOUNT_GET, ACCOUNT_LIST, KEYS_LIST];
const ACCOUNT_POLICY: &[&str] = &[ACCOUNT_GET_IAM_POLICY, ACCOUNT_SET_IAM_POLICY];
const KEYS_CHANGE: &[&str] = &[KEYS_CREATE, KEYS_DELETE];
const ACTING: &[&str] = &[ACT_AS];
const TOKENS: &[&str] = &[
    GET_OPENID_TOKEN,
    GET_ACCESS_TOKEN,
    SIGN_JWT,
    SIGN_BLOB,
    IMPLICIT_DELEGATION,
];

/// Every role the configuration may name, with the permissions we model. A role with no
/// permissions here is still accepted so that real policies copy over unchanged.
const ROLES: &[(&str, &[&[&str]])] = &[
    ("roles/run.invoker", &[INVOKING]),
    ("roles/run.servicesInvoker", &[INVOKING]),
    // Developer may deploy and change a service but not its IAM policy; Admin may both.
    ("roles/run.developer", &[RUN_READ, RUN_CHANGE]),
    ("roles/run.admin", &[RUN_READ, RUN_CHANGE, RUN_POLICY]),
    ("roles/run.viewer", &[RUN_READ]),
    // Owner and Editor carry run.routes.invoke but, as on Google Cloud, not the right to
    // mint tokens as a service account: that needs Token Creator granted explicitly. Only
    // Owner may change IAM policies.
    (
        "roles/owner",
        &[
            RUN_READ,
            RUN_CHANGE,
            RUN_POLICY,
            PROJECT_POLICY_READ,
            PROJECT_POLICY,
            ACCOUNT_READ,
            ACCOUNT_POLICY,
            KEYS_CHANGE,
            ACTING,
            PUBSUB_READ,
            PUBSUB_CHANGE,
            PUBSUB_POLICY_READ,
            PUBSUB_POLICY,
            TASKS_READ,
            QUEUES_CHANGE,
            TASKS_CHANGE,
            JOBS_READ,
            JOBS_CHANGE,
            TRIGGERS_READ,
            TRIGGERS_CHANGE,
        ],
    ),
    (
        "roles/editor",
        &[
            RUN_READ,
            RUN_CHANGE,
            PROJECT_POLICY_READ,
            ACCOUNT_READ,
            KEYS_CHANGE,
            ACTING,
            PUBSUB_READ,
            PUBSUB_CHANGE,
            PUBSUB_POLICY_READ,
            TASKS_READ,
            QUEUES_CHANGE,
            TASKS_CHANGE,
            JOBS_READ,
            JOBS_CHANGE,
            TRIGGERS_READ,
            TRIGGERS_CHANGE,
        ],
    ),
    (
        "roles/viewer",
        &[
            RUN_READ,
            PROJECT_POLICY_READ,
            ACCOUNT_READ,
            PUBSUB_READ,
            PUBSUB_POLICY_READ,
            TASKS_READ,
            JOBS_READ,
            TRIGGERS_READ,
        ],
    ),
    ("roles/pubsub.publisher", &[&[TOPICS_PUBLISH]]),
    (
        "roles/pubsub.subscriber",
        &[&[SUBSCRIPTIONS_CONSUME, TOPICS_ATTACH]],
    ),
    ("roles/pubsub.viewer", &[PUBSUB_READ]),
    ("roles/pubsub.editor", &[PUBSUB_READ, PUBSUB_CHANGE]),
    (
        "roles/pubsub.admin",
        &[
            PUBSUB_READ,
            PUBSUB_CHANGE,
            PUBSUB_POLICY_READ,
            PUBSUB_POLICY,
        ],
    ),
    // Cloud Tasks' roles: an enqueuer may add tasks and nothing else; Queue Admin runs the
    // queues but not their tasks.
    (
        "roles/cloudtasks.admin",
        &[TASKS_READ, QUEUES_CHANGE, TASKS_CHANGE],
    ),
    ("roles/cloudtasks.queueAdmin", &[TASKS_READ, QUEUES_CHANGE]),
    ("roles/cloudtasks.enqueuer", &[&[TASKS_CREATE]]),
    ("roles/cloudtasks.viewer", &[TASKS_READ]),
    ("roles/cloudtasks.taskRunner", &[&[TASKS_RUN]]),
    ("roles/cloudtasks.taskDeleter", &[&[TASKS_DELETE]]),
    // Cloud Scheduler's: a job runner may run a job now and nothing else.
    ("roles/cloudscheduler.admin", &[JOBS_READ, JOBS_CHANGE]),
    ("roles/cloudscheduler.viewer", &[JOBS_READ]),
    ("roles/cloudscheduler.jobRunner", &[&[JOBS_RUN]]),
    // Eventarc's: a developer makes triggers as an admin does (both need actAs on the
    // trigger's account besides).
    ("roles/eventarc.admin", &[TRIGGERS_READ, TRIGGERS_CHANGE]),
    (
        "roles/eventarc.developer",
        &[TRIGGERS_READ, TRIGGERS_CHANGE],
    ),
    ("roles/eventarc.viewer", &[TRIGGERS_READ]),
    // Who may grant Token Creator on an account: its admins, not its users.
    (
        "roles/iam.serviceAccountAdmin",
        &[ACCOUNT_READ, ACCOUNT_POLICY],
    ),
    (
        "roles/iam.serviceAccountKeyAdmin",
        &[ACCOUNT_READ, KEYS_CHANGE],
    ),
    ("roles/iam.serviceAccountViewer", &[ACCOUNT_READ]),
    ("roles/iam.serviceAccountTokenCreator", &[TOKENS]),
    (
        "roles/iam.serviceAccountOpenIdTokenCreator",
        &[&[GET_OPENID_TOKEN]],
    ),
    (
        "roles/iam.workloadIdentityUser",
        &[&[GET_ACCESS_TOKEN, GET_OPENID_TOKEN]],
    ),
    // What a deployer needs besides a Cloud Run role: to run a service as an account.
    ("roles/iam.serviceAccountUser", &[ACTING]),
];

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

/// A role known to this emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    name: &'static str,
    /// Groups of permissions; the role carries each permission of each.
    permissions: &'static [&'static [&'static str]],
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

impl Role {
    pub fn parse(name: &str) -> Result<Role, NameError> {
        ROLES
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(name, permissions)| Role { name, permissions })
            .ok_or_else(|| {
                let known: Vec<&str> = ROLES.iter().map(|(n, _)| *n).collect();
                NameError::UnknownRole {
                    name: name.to_owned(),
                    suggestion: crate::suggest::did_you_mean(name, known.iter().copied()),
                    known: known.join(", "),
                }
            })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub fn grants(&self, permission: &str) -> bool {
        self.permissions
            .iter()
            .any(|group| group.contains(&permission))
    }

    /// The roles that carry `permission`, for messages.
    pub fn carrying(permission: &str) -> Vec<&'static str> {
        ROLES
            .iter()
            .filter(|(_, groups)| groups.iter().any(|g| g.contains(&permission)))
            .map(|(n, _)| *n)
            .collect()
    }

    /// `name` as the permission a role here carries, if one does: the permissions
    /// frontdoor models, and so the ones it can explain.
    pub fn permission_named(name: &str) -> Option<&'static str> {
        Role::permissions().find(|p| *p == name)
    }

    /// Every permission a role here carries (some more than once).
    pub fn permissions() -> impl Iterator<Item = &'static str> {
        ROLES
            .iter()
            .flat_map(|(_, groups)| groups.iter().copied().flatten())
            .copied()
    }
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
