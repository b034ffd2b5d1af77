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
        serde_json::from_slice(&bytes).map_err(|e| ConfigError::Invalid {
            file,
            path: format!("line {}", e.line()),
            reason: format!(
                "{e}; this file holds the changes made through the Admin APIs (remove it to drop them all)"
            ),
        })
    }

    pub fn to_json(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    pub fn is_empty(&self) -> bool {
        *self == Layer::default()
    }

    /// One line per changed thing, for `frontdoor check`.
    pub fn summary(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for (name, change) in &self.services {
            let mut fields = Vec::new();
            let mut note = |set: bool, what: &str| {
                if set {
                    fields.push(what.to_owned());
                }
            };
            note(change.service_account.is_some(), "service account");
            note(change.custom_audiences.is_some(), "custom audiences");
            note(change.ingress.is_some(), "ingress");
            note(change.invoker_iam_disabled.is_some(), "invoker IAM check");
            note(change.timeout_seconds.is_some(), "timeout");
            note(change.tags.is_some(), "tags");
            note(change.iam_policy.is_some(), "IAM policy");
            note(change.knative.is_some(), "Knative document");
            lines.push(format!("service {name}: {}", fields.join(", ")));
        }
        if self.project_policy.is_some() {
            lines.push("project: IAM policy".to_owned());
        }
        for email in self.account_policies.keys() {
            lines.push(format!("service account {email}: IAM policy"));
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
    replace!(tags);
    if let Some(secs) = change.timeout_seconds {
        entry.timeout = Some(StringOrNumber::Number(secs));
    }
    if let Some(policy) = &change.iam_policy {
        entry.iam_policy = Some(policy.raw());
    }
    entry
}
