//! Changes made through the Admin APIs (`gcloud run services update|replace`,
//! `add-iam-policy-binding`, …), kept as a layer over `services.yaml` rather than written
//! into it: the file stays the user's, comments and all, and the layer lives in the state
//! directory as `changes.json`.
//!
//! The rule, field by field: a value the layer sets wins over the file's (and over the
//! Knative export the file names); everything the layer does not set comes from the file,
//! so editing the file afterwards still takes effect for every other field. A change for a
//! service the file no longer describes is kept but applies to nothing.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::raw::{RawBinding, RawPolicy, RawService, StringOrNumber};
use super::{ConfigError, read_capped};

/// The layer's file name in the state directory.
pub const FILE: &str = "changes.json";

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    /// By service name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub services: BTreeMap<String, ServiceChange>,
    /// The project's IAM policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_policy: Option<PolicyText>,
    /// Service accounts' IAM policies, by email (`gcloud iam service-accounts
    /// add-iam-policy-binding`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub account_policies: BTreeMap<String, PolicyText>,
    /// Pub/Sub's topics and subscriptions as its API left them.
    #[serde(default, skip_serializing_if = "PubsubChanges::is_empty")]
    pub pubsub: PubsubChanges,
    /// Cloud Tasks' queues its API made, by full name, each as Google's REST API shows it
    /// without its name (its state kept): written whole after each change
    /// (`google::kept`); their tasks are not kept, as Pub/Sub's messages are not.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tasks: BTreeMap<String, serde_json::Value>,
    /// Cloud Scheduler's jobs its API made, the same way.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub scheduler: BTreeMap<String, serde_json::Value>,
}

/// What Pub/Sub's API made (topics, subscriptions) or changed (a subscription the file
/// declares), by full name (`projects/P/topics/T`), each as Google's REST API shows it
/// without its name: kept so that a restart finds them, and folded into `pubsub:` by
/// `frontdoor fold`. The broker writes this whole after each change
/// (`google::pubsub::persist`); the configuration resolves nothing from it, so a change
/// here makes no new generation.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PubsubChanges {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub topics: BTreeMap<String, serde_json::Value>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub subscriptions: BTreeMap<String, serde_json::Value>,
    /// For a subscription the file declares and the API changed: the declaration it
    /// changed. A restart keeps the API's change only while the file still says this.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub changed_from: BTreeMap<String, serde_json::Value>,
    /// The IAM policies set on topics and subscriptions (the file's or the API's), by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub policies: BTreeMap<String, PolicyText>,
}

impl PubsubChanges {
    pub fn is_empty(&self) -> bool {
        self.topics.is_empty()
            && self.subscriptions.is_empty()
            && self.changed_from.is_empty()
            && self.policies.is_empty()
    }
}

/// What the Admin API changed on one service. Each field set replaces the file's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_audiences: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoker_iam_disabled: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_http2: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iam_policy: Option<PolicyText>,
    /// The Knative `Service` document last sent by `update` or `replace`, as sent (its
    /// `status` dropped): the fields frontdoor cannot honour (an image, say) are kept and
    /// shown by `describe`, not silently dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knative: Option<serde_json::Value>,
}

impl ServiceChange {
    /// The fields this change sets: each as `services.yaml` names it, and in words.
    pub fn fields(&self) -> Vec<(&'static str, &'static str)> {
        [
            (
                self.service_account.is_some(),
                "service_account",
                "service account",
            ),
            (
                self.custom_audiences.is_some(),
                "custom_audiences",
                "custom audiences",
            ),
            (self.ingress.is_some(), "ingress", "ingress"),
            (
                self.invoker_iam_disabled.is_some(),
                "invoker_iam_disabled",
                "invoker IAM check",
            ),
            (self.use_http2.is_some(), "use_http2", "HTTP/2 end to end"),
            (self.timeout_seconds.is_some(), "timeout", "timeout"),
            (self.tags.is_some(), "tags", "tags"),
            (self.iam_policy.is_some(), "iam_policy", "IAM policy"),
            (self.knative.is_some(), "knative", "Knative document"),
        ]
        .into_iter()
        .filter(|(set, ..)| *set)
        .map(|(_, key, words)| (key, words))
        .collect()
    }

    /// The fields set, in words: `custom audiences, IAM policy`.
    pub fn words(&self) -> String {
        let words: Vec<&str> = self.fields().into_iter().map(|(_, w)| w).collect();
        words.join(", ")
    }
}

/// A policy as the layer writes it: roles and members as text, checked when resolved.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyText {
    #[serde(default)]
    pub bindings: Vec<BindingText>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindingText {
    pub role: String,
    pub members: Vec<String>,
}

impl PolicyText {
    pub(super) fn raw(&self) -> RawPolicy {
        RawPolicy {
            bindings: self
                .bindings
                .iter()
                .map(|b| RawBinding {
                    role: b.role.clone(),
                    members: b.members.clone(),
                })
                .collect(),
        }
    }
}

impl From<&crate::iam::Policy> for PolicyText {
    fn from(policy: &crate::iam::Policy) -> PolicyText {
        PolicyText {
            bindings: policy
                .bindings
                .iter()
                .map(|b| BindingText {
                    role: b.role.name().to_owned(),
                    members: b.members.iter().map(ToString::to_string).collect(),
                })
                .collect(),
        }
    }
}

impl Layer {
    /// The layer in `dir`, or an empty one when there is none yet.
    pub fn read(dir: &Path) -> Result<Layer, ConfigError> {
        let file = dir.join(FILE);
        let bytes = match read_capped(&file) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Layer::default()),
            Err(source) => return Err(ConfigError::Read { file, source }),
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            let aside = format!("{}.unreadable", file.display());
            ConfigError::Invalid {
                path: format!("line {}", e.line()),
                reason: format!(
                    "{e}; this file holds the changes made through the Admin APIs, and frontdoor leaves it as it is: to go on without those changes, move it aside (`mv '{}' '{aside}'`)",
                    file.display()
                ),
                file,
            }
        })
    }

    /// The layer as `changes.json` holds it, if that is no larger than frontdoor reads
    /// back ([`super::MAX_CONFIG_BYTES`]): otherwise every later read of the layer would
    /// fail. Written into a capped buffer, so a huge layer is refused, not built.
    pub fn to_json(&self) -> Result<String, String> {
        let cap = usize::try_from(super::MAX_CONFIG_BYTES).unwrap_or(usize::MAX);
        let mut out = Capped(Vec::new(), cap);
        if serde_json::to_writer_pretty(&mut out, self).is_err() {
            return Err(format!(
                "the changes would make {FILE} larger than the {cap} bytes frontdoor reads back"
            ));
        }
        out.0.push(b'\n');
        // What is written must read back (issue 26: a document nested deeper than
        // serde_json's reader goes, accepted once, failed every later read of the layer
        // and kept the server from starting).
        if let Err(e) = serde_json::from_slice::<Layer>(&out.0) {
            return Err(format!(
                "the changes would make {FILE} unreadable by frontdoor ({e}), so they were not kept"
            ));
        }
        // serde_json writes UTF-8.
        String::from_utf8(out.0).map_err(|e| e.to_string())
    }

    pub fn is_empty(&self) -> bool {
        *self == Layer::default()
    }

    /// One line per changed thing, for `frontdoor check`.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (name, change) in &self.services {
            lines.push(format!("service {name}: {}", change.words()));
        }
        if self.project_policy.is_some() {
            lines.push("project: IAM policy".to_owned());
        }
        for email in self.account_policies.keys() {
            lines.push(format!("service account {email}: IAM policy"));
        }
        if !self.pubsub.is_empty() {
            lines.push(format!(
                "Pub/Sub: {} topics, {} subscriptions and {} IAM policies made or changed through its API",
                self.pubsub.topics.len(),
                self.pubsub.subscriptions.len(),
                self.pubsub.policies.len()
            ));
        }
        if !self.tasks.is_empty() {
            lines.push(format!(
                "Cloud Tasks: {} queues made through its API",
                self.tasks.len()
            ));
        }
        if !self.scheduler.is_empty() {
            lines.push(format!(
                "Cloud Scheduler: {} jobs made through its API",
                self.scheduler.len()
            ));
        }
        lines
    }
}

/// `entry` (named `name`) with the layer's values in place of the file's.
pub(super) fn apply(mut entry: RawService, change: Option<&ServiceChange>) -> RawService {
    let Some(change) = change else {
        return entry;
    };
    macro_rules! replace {
        ($field:ident) => {
            if let Some(v) = &change.$field {
                entry.$field = Some(v.clone());
            }
        };
    }
    replace!(service_account);
    replace!(custom_audiences);
    replace!(ingress);
    replace!(invoker_iam_disabled);
    replace!(use_http2);
    replace!(tags);
    if let Some(secs) = change.timeout_seconds {
        entry.timeout = Some(StringOrNumber::Number(secs));
    }
    if let Some(policy) = &change.iam_policy {
        entry.iam_policy = Some(policy.raw());
    }
    entry
}

/// A writer that refuses to grow past its cap.
struct Capped(Vec<u8>, usize);

impl std::io::Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + bytes.len() > self.1 {
            return Err(std::io::Error::other("over the cap"));
        }
        self.0.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
