//! Eventarc's `Trigger` and `Operation` as its REST API writes them. A trigger is kept as
//! the push subscription it makes (`crate::config::eventarc`); what it is, is read back
//! from that subscription's labels, endpoint and token.

use std::collections::BTreeMap;
use std::sync::LazyLock;
use std::time::SystemTime;

use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use pb::push_config::AuthenticationMethod;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::Config;
use crate::config::eventarc::{LOCATION_LABEL, MESSAGE_PUBLISHED, TRIGGER_LABEL};

/// When a trigger was made, as its `createTime` says, for one this frontdoor did not see
/// made (declared in services.yaml, or made before a restart): when it first answered for
/// one. Neither the file nor the subscription the trigger is has a time to give.
static STARTED: LazyLock<SystemTime> = LazyLock::new(SystemTime::now);

/// A trigger as a create request gives it. Output-only fields are ignored, as Google
/// ignores them.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TriggerIn {
    #[serde(default)]
    pub(crate) event_filters: Vec<FilterIn>,
    #[serde(default)]
    pub(crate) service_account: String,
    pub(crate) destination: Option<DestinationIn>,
    pub(crate) transport: Option<TransportIn>,
    #[serde(default)]
    pub(crate) labels: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) channel: String,
}

#[derive(Debug, Deserialize)]
pub(crate) struct FilterIn {
    pub(crate) attribute: String,
    pub(crate) value: String,
    #[serde(default)]
    pub(crate) operator: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DestinationIn {
    pub(crate) cloud_run: Option<CloudRunIn>,
    /// Any other destination (a function, a workflow, GKE, an HTTP endpoint): its field's
    /// name, for the refusal.
    #[serde(flatten)]
    pub(crate) other: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct CloudRunIn {
    #[serde(default)]
    pub(crate) service: String,
    pub(crate) path: Option<String>,
    pub(crate) region: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct TransportIn {
    pub(crate) pubsub: Option<PubsubIn>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct PubsubIn {
    pub(crate) topic: Option<String>,
}

/// The trigger `subscription` is, if it is one's; `created` when it was made, if known.
pub(crate) fn trigger_out(
    subscription: &pb::Subscription,
    config: &Config,
    created: Option<SystemTime>,
) -> Option<Value> {
    let trigger = subscription.labels.get(TRIGGER_LABEL)?;
    let location = subscription
        .labels
        .get(LOCATION_LABEL)
        .unwrap_or(&config.project.region);
    let project = subscription.name.split('/').nth(1)?;
    let push = subscription.push_config.as_ref()?;
    let endpoint = url::Url::parse(&push.push_endpoint).ok()?;
    let origin = endpoint.origin().ascii_serialization();
    let service = config
        .services
        .iter()
        .find(|s| s.url == origin)
        .map_or_else(|| endpoint.host_str().unwrap_or_default(), |s| &s.name);
    let account = match &push.authentication_method {
        Some(AuthenticationMethod::OidcToken(o)) => o.service_account_email.as_str(),
        None => "",
    };
    let created = humantime::format_rfc3339_seconds(created.unwrap_or(*STARTED)).to_string();
    let name = format!("projects/{project}/locations/{location}/triggers/{trigger}");
    let mut out = json!({
        "name": name,
        "uid": uid(&format!("{name} {created}")),
        "createTime": created,
        "updateTime": created,
        "eventFilters": [{"attribute": "type", "value": MESSAGE_PUBLISHED}],
        "serviceAccount": account,
        "destination": {"cloudRun": {
            "service": service,
            "path": endpoint.path(),
            "region": config.project.region,
        }},
        "transport": {"pubsub": {"topic": subscription.topic, "subscription": subscription.name}},
        "etag": uid(&format!("etag {name} {created}")),
    });
    let labels: BTreeMap<&String, &String> = subscription
        .labels
        .iter()
        .filter(|(k, _)| !k.starts_with("goog-eventarc-"))
        .collect();
    if !labels.is_empty() {
        out["labels"] = json!(labels);
    }
    Some(out)
}

/// A UUID-shaped id derived from `seed` (the trigger's name and `createTime`): the same
/// while the trigger is, unless a restart forgets when an API-made one was made.
fn uid(seed: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, seed.as_bytes());
    let h = hex::encode(&digest.as_ref()[..16]);
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

/// A long-running operation, done at once, as Eventarc's methods that change a trigger
/// answer: `verb` (`create`, `delete`) on `trigger`, whose state it gives as its response.
pub(crate) fn operation(name: &str, verb: &str, trigger: &Value) -> Value {
    let now = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
    let mut response = trigger.clone();
    response["@type"] = json!("type.googleapis.com/google.cloud.eventarc.v1.Trigger");
    json!({
        "name": name,
        "metadata": {
            "@type": "type.googleapis.com/google.cloud.eventarc.v1.OperationMetadata",
            "createTime": now,
            "endTime": now,
            "target": trigger["name"],
            "verb": verb,
            "requestedCancellation": false,
            "apiVersion": "v1",
        },
        "done": true,
        "response": response,
    })
}
