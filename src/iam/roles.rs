//! The permissions frontdoor models, in the sets roles carry them in, and the roles
//! themselves: Google's names, each with what it grants here.

use super::NameError;

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

/// A role known to this emulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Role {
    name: &'static str,
    /// Groups of permissions; the role carries each permission of each.
    permissions: &'static [&'static [&'static str]],
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
