//! The configuration file as written: serde structs that refuse unknown fields. Nothing here
//! is validated; `super::resolve` turns it into a `Config`.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    pub(crate) project: RawProject,
    #[serde(default)]
    pub(crate) listen: RawListen,
    pub(crate) issuer: Option<String>,
    #[serde(default)]
    pub(crate) service_accounts: Vec<RawServiceAccount>,
    #[serde(default)]
    pub(crate) users: Vec<String>,
    #[serde(default)]
    pub(crate) groups: Vec<RawGroup>,
    pub(crate) iam_policy: Option<RawPolicy>,
    /// The identity the default metadata listener serves to processes that are not
    /// services (default: the first service account declared).
    pub(crate) metadata_service_account: Option<String>,
    /// Addresses whose requests count as "internal" for ingress (SPEC §3 step 2).
    #[serde(default)]
    pub(crate) internal_callers: Vec<String>,
    #[serde(default)]
    pub(crate) services: Vec<RawService>,
    #[serde(default)]
    pub(crate) workload_identity_pools: Vec<RawPool>,
    #[serde(default)]
    pub(crate) egress: RawEgress,
    #[serde(default)]
    pub(crate) pubsub: RawPubsub,
    /// Eventarc's triggers with a Pub/Sub transport.
    #[serde(default)]
    pub(crate) eventarc: super::eventarc::RawEventarc,
    /// Cloud Tasks' queues.
    #[serde(default)]
    pub(crate) tasks: super::tasks::RawTasks,
    /// Cloud Scheduler's jobs.
    #[serde(default)]
    pub(crate) scheduler: super::scheduler::RawScheduler,
    /// `enforce` (the default) or `audit`: every request passes, and what enforcement
    /// would refuse is recorded as "would deny".
    pub(crate) enforcement: Option<String>,
}

/// Pub/Sub's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPubsub {
    /// Every backoff (retry policies', pushes') is divided by this: a test of retries
    /// need not wait Google's seconds. 1, Google's timings, by default.
    pub(crate) backoff_divisor: Option<u32>,
    /// The topics (and their subscriptions) the environment starts with.
    #[serde(default)]
    pub(crate) topics: Vec<RawTopic>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTopic {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) subscriptions: Vec<RawSubscription>,
}

/// A subscription, its fields named as gcloud's flags.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawSubscription {
    pub(crate) name: String,
    pub(crate) push_endpoint: Option<String>,
    pub(crate) push_service_account: Option<String>,
    pub(crate) push_audience: Option<String>,
    #[serde(default)]
    pub(crate) push_no_wrapper: bool,
    #[serde(default)]
    pub(crate) push_write_metadata: bool,
    pub(crate) ack_deadline_seconds: Option<i32>,
    #[serde(default)]
    pub(crate) enable_message_ordering: bool,
    pub(crate) dead_letter_topic: Option<String>,
    pub(crate) max_delivery_attempts: Option<i32>,
    pub(crate) min_retry_delay: Option<String>,
    pub(crate) max_retry_delay: Option<String>,
}

/// What the egress proxy lets through beside the hosts frontdoor emulates.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEgress {
    /// Hosts tunnelled untouched (`CONNECT` only).
    #[serde(default)]
    pub(crate) passthrough: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPool {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) providers: Vec<RawProvider>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProvider {
    pub(crate) name: String,
    pub(crate) issuer: String,
    /// `builtin` (frontdoor's own external issuer) or a JWKS file path.
    pub(crate) jwks: String,
    #[serde(default)]
    pub(crate) allowed_audiences: Vec<String>,
    #[serde(default)]
    pub(crate) attribute_mapping: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawProject {
    pub(crate) id: String,
    pub(crate) number: StringOrNumber,
    pub(crate) region: String,
}

/// YAML reads `123456789012` as a number and `"123456789012"` as a string; take either.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum StringOrNumber {
    String(String),
    Number(u64),
}

impl StringOrNumber {
    pub(crate) fn into_string(self) -> String {
        match self {
            StringOrNumber::String(s) => s,
            StringOrNumber::Number(n) => n.to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawListen {
    pub(crate) frontdoor: Option<String>,
    pub(crate) google: Option<String>,
    pub(crate) metadata: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawServiceAccount {
    pub(crate) email: String,
    pub(crate) unique_id: Option<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) iam_policy: Option<RawPolicy>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    pub(crate) email: String,
    #[serde(default)]
    pub(crate) members: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPolicy {
    #[serde(default)]
    pub(crate) bindings: Vec<RawBinding>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBinding {
    pub(crate) role: String,
    #[serde(default)]
    pub(crate) members: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawService {
    pub(crate) name: Option<String>,
    /// A file written by `gcloud run services describe --format export`.
    pub(crate) knative: Option<String>,
    pub(crate) service_account: Option<String>,
    pub(crate) upstream: Option<String>,
    /// A program frontdoor starts itself, `[PROGRAM, ARGS…]`.
    pub(crate) command: Option<Vec<String>>,
    pub(crate) env: Option<BTreeMap<String, String>>,
    pub(crate) working_dir: Option<String>,
    pub(crate) start_timeout: Option<StringOrNumber>,
    pub(crate) listen: Option<String>,
    pub(crate) metadata: Option<String>,
    pub(crate) custom_audiences: Option<Vec<String>>,
    #[serde(default)]
    pub(crate) custom_domains: Vec<String>,
    pub(crate) tags: Option<Vec<String>>,
    pub(crate) ingress: Option<String>,
    pub(crate) invoker_iam_disabled: Option<bool>,
    /// HTTP/2 end to end (gcloud's `--use-http2`): every request reaches the container
    /// over h2c, not only gRPC's.
    pub(crate) use_http2: Option<bool>,
    pub(crate) iam_policy: Option<RawPolicy>,
    pub(crate) timeout: Option<StringOrNumber>,
    /// Whether a service-account token taken from `Authorization` reaches the container
    /// with its signature removed (our choice: no, SPEC §4).
    pub(crate) redact_service_account_tokens: Option<bool>,
}

/// The parts of a Knative `Service` document that Cloud Run's authentication depends on.
/// An export carries much more; everything else is ignored, as `gcloud` would keep it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KnativeService {
    pub(crate) api_version: String,
    pub(crate) kind: String,
    pub(crate) metadata: KnativeMetadata,
    #[serde(default)]
    pub(crate) spec: KnativeSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct KnativeMetadata {
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct KnativeSpec {
    #[serde(default)]
    pub(crate) template: KnativeTemplate,
    #[serde(default)]
    pub(crate) traffic: Vec<KnativeTraffic>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct KnativeTemplate {
    #[serde(default)]
    pub(crate) spec: KnativeTemplateSpec,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct KnativeTemplateSpec {
    pub(crate) service_account_name: Option<String>,
    pub(crate) timeout_seconds: Option<u64>,
    #[serde(default)]
    pub(crate) containers: Vec<KnativeContainer>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct KnativeContainer {
    #[serde(default)]
    pub(crate) ports: Vec<KnativePort>,
}

/// A container's port: Cloud Run reads only its name (`h2c` or `http1`) and number.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct KnativePort {
    pub(crate) name: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct KnativeTraffic {
    pub(crate) tag: Option<String>,
}
