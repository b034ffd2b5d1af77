//! IAM policies as Google's `getIamPolicy`/`setIamPolicy` carry them: `version`, `etag`,
//! `bindings`. The etag is a digest of the bindings, so a read-modify-write that raced
//! another change is caught (`setIamPolicy` with a stale etag is a 409).

use std::collections::{HashMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE;
use serde::Deserialize;
use serde_json::{Value, json};

use super::errors::ApiError;
use crate::config::layer::{BindingText, PolicyText};
use crate::iam::{Member, Policy, Role};

/// The policy and its etag, as `getIamPolicy` answers. Bindings without conditions are
/// version 1 whatever version was asked for, as on Google.
pub(crate) fn render(policy: &Policy) -> Value {
    let text = PolicyText::from(policy);
    let mut out = json!({"version": 1, "etag": etag(&text)});
    if !text.bindings.is_empty() {
        out["bindings"] = serde_json::to_value(&text.bindings).unwrap_or_default();
    }
    out
}

/// Whether `sent` is `policy`'s etag. gcloud decodes an etag to bytes and encodes it again
/// in the URL-safe alphabet, so either alphabet is the same etag.
pub(crate) fn etag_matches(sent: &str, policy: &PolicyText) -> bool {
    sent.replace('+', "-").replace('/', "_") == etag(policy)
}

pub(crate) fn etag(policy: &PolicyText) -> String {
    let canonical = serde_json::to_vec(policy).unwrap_or_default();
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &canonical);
    URL_SAFE.encode(&digest.as_ref()[..8])
}

/// `text` (checked by [`SetRequest::checked`], or read back from the layer) as IAM
/// evaluates it; the first role or member it cannot read.
pub(crate) fn resolved(text: &PolicyText) -> Result<Policy, String> {
    let mut bindings = Vec::new();
    for (i, b) in text.bindings.iter().enumerate() {
        let role = Role::parse(&b.role).map_err(|e| format!("bindings[{i}].role: {e}"))?;
        let members = b
            .members
            .iter()
            .enumerate()
            .map(|(j, m)| Member::parse(m).map_err(|e| format!("bindings[{i}].members[{j}]: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        bindings.push(crate::iam::Binding { role, members });
    }
    Ok(Policy { bindings })
}

/// `?options.requestedPolicyVersion=`, which gcloud sends with every `getIamPolicy`.
#[derive(Deserialize)]
pub(crate) struct Options {
    #[serde(rename = "options.requestedPolicyVersion")]
    requested: Option<String>,
}

impl Options {
    pub(crate) fn check(&self) -> Result<(), ApiError> {
        match self.requested.as_deref() {
            Some(v) if !["0", "1", "3"].contains(&v) => Err(ApiError::InvalidArgument(format!(
                "options.requestedPolicyVersion {v}: a policy's version is 1 or 3"
            ))),
            _ => Ok(()),
        }
    }
}

/// `{"policy": {...}, "updateMask": "..."}`, as gcloud sends it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct SetRequest {
    policy: SentPolicy,
    #[serde(default)]
    update_mask: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SentPolicy {
    #[serde(default)]
    version: Option<i64>,
    #[serde(default)]
    etag: Option<String>,
    #[serde(default)]
    bindings: Vec<SentBinding>,
    /// Audit configurations are accepted and not modelled; they change no decision.
    #[serde(default, rename = "auditConfigs")]
    _audit_configs: Option<Value>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SentBinding {
    role: String,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    condition: Option<Value>,
}

impl SetRequest {
    /// The bindings, every role and member checked (the first wrong one named), and the
    /// etag the caller read, if it sent one.
    pub(crate) fn checked(self) -> Result<(PolicyText, Option<String>), String> {
        if let Some(mask) = &self.update_mask
            && mask
                .split(',')
                .any(|f| !matches!(f.trim(), "bindings" | "etag" | "version" | ""))
        {
            return Err(format!(
                "updateMask `{mask}`: frontdoor changes bindings (and etag) only"
            ));
        }
        let policy = self.policy;
        if let Some(v) = policy.version
            && ![0, 1, 3].contains(&v)
        {
            return Err(format!("policy.version {v}: a policy's version is 1 or 3"));
        }
        // Bounded first, so that what follows is bounded too.
        let members = policy.bindings.iter().map(|b| b.members.len());
        if let Some(why) = crate::iam::too_many_principals(members) {
            return Err(why);
        }
        let mut bindings: Vec<BindingText> = Vec::new();
        // Where each role's binding is, and the members it has: linear in what was sent.
        let mut by_role: HashMap<String, (usize, HashSet<String>)> = HashMap::new();
        for (i, b) in policy.bindings.into_iter().enumerate() {
            if b.condition.is_some() {
                return Err(format!(
                    "policy.bindings[{i}].condition: frontdoor does not model IAM conditions; grant the role without one"
                ));
            }
            Role::parse(&b.role).map_err(|e| format!("policy.bindings[{i}].role: {e}"))?;
            for (j, m) in b.members.iter().enumerate() {
                Member::parse(m).map_err(|e| format!("policy.bindings[{i}].members[{j}]: {e}"))?;
            }
            if b.members.is_empty() {
                continue;
            }
            // The same role twice is one binding, and a member is in it once, as Google
            // stores them.
            let (index, seen) = by_role.entry(b.role.clone()).or_insert_with(|| {
                bindings.push(BindingText {
                    role: b.role,
                    members: Vec::new(),
                });
                (bindings.len() - 1, HashSet::new())
            });
            bindings[*index]
                .members
                .extend(b.members.into_iter().filter(|m| seen.insert(m.clone())));
        }
        Ok((PolicyText { bindings }, policy.etag))
    }
}
