//! Workload identity pools and their providers (SPEC §6, STS): which external tokens the
//! emulator's STS accepts, and how their claims map to federated principals.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::raw::{RawPool, RawProvider};
use super::{At, ConfigError, Project};
use crate::keys::PublicKey;

/// Where a provider's signing keys come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKeys {
    /// frontdoor's own external issuer, whose key lives in the state directory; tokens
    /// come from `frontdoor external-token`.
    Builtin,
    /// RSA keys from a JWKS file.
    Jwks(Vec<JwkKey>),
}

/// One RSA key of a JWKS: its id, modulus and exponent (big-endian bytes), and the key
/// parsed from them once, when the file is read.
#[derive(Debug, Clone)]
pub struct JwkKey {
    pub kid: Option<String>,
    pub n: Vec<u8>,
    pub e: Vec<u8>,
    pub key: Arc<PublicKey>,
}

/// The same key when the same id, modulus and exponent (the parsed form follows from them).
impl PartialEq for JwkKey {
    fn eq(&self, other: &JwkKey) -> bool {
        (&self.kid, &self.n, &self.e) == (&other.kid, &other.n, &other.e)
    }
}

impl Eq for JwkKey {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provider {
    pub pool: String,
    pub name: String,
    pub issuer: String,
    pub keys: ProviderKeys,
    /// Accepted `aud` values of subject tokens.
    pub allowed_audiences: Vec<String>,
    /// The claim that becomes `google.subject`.
    pub subject_claim: String,
    /// `attribute.NAME` ← claim, in the order written.
    pub attributes: Vec<(String, String)>,
    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/providers/X`:
    /// the STS `audience` that selects this provider.
    pub resource: String,
    /// `//iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P`
    pub pool_resource: String,
}

impl Provider {
    /// `pool/provider`, as the CLI names it.
    pub fn id(&self) -> String {
        format!("{}/{}", self.pool, self.name)
    }
}

/// Google asks for 4 to 32 characters; we accept 2 so that short names such as the
/// issue's `ci` work (docs/choices.md says so: a choice of ours).
/// A pool's or provider's field refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum BadField {
    #[error(
        "{kind} id `{id}` must be 2 to 32 lowercase letters, digits or hyphens, starting with a letter"
    )]
    Id { kind: &'static str, id: String },
    #[error("mapping `{0}` is not of the form assertion.CLAIM (the only form frontdoor evaluates)")]
    Mapping(String),
}

fn check_id(kind: &'static str, s: &str) -> Result<(), BadField> {
    let ok = (2..=32).contains(&s.len())
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && !s.ends_with('-')
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(BadField::Id {
            kind,
            id: s.to_owned(),
        })
    }
}

/// A mapping value we can evaluate: `assertion.CLAIM`. Google accepts CEL; we take the one
/// form nearly every configuration uses, and say so when another is given.
fn claim_of(expr: &str) -> Result<String, BadField> {
    expr.strip_prefix("assertion.")
        .filter(|c| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'))
        .map(str::to_owned)
        .ok_or_else(|| BadField::Mapping(expr.to_owned()))
}

pub(super) fn resolve(
    raw: Vec<RawPool>,
    project: &Project,
    at: &At<'_>,
) -> Result<Vec<Provider>, ConfigError> {
    let mut providers: Vec<Provider> = Vec::new();
    let mut pools = Vec::new();
    for (i, pool) in raw.into_iter().enumerate() {
        let path = format!("workload_identity_pools[{i}]");
        check_id("pool", &pool.name).map_err(|r| at.err(format!("{path}.name"), r))?;
        if pools.contains(&pool.name) {
            return Err(at.err(
                format!("{path}.name"),
                format!("duplicate pool `{}`", pool.name),
            ));
        }
        pools.push(pool.name.clone());
        for (j, p) in pool.providers.into_iter().enumerate() {
            let path = format!("{path}.providers[{j}]");
            if providers
                .iter()
                .any(|x| x.pool == pool.name && x.name == p.name)
            {
                return Err(at.err(
                    format!("{path}.name"),
                    format!("duplicate provider `{}`", p.name),
                ));
            }
            providers.push(resolve_provider(p, &pool.name, &path, project, at)?);
        }
    }
    Ok(providers)
}

fn resolve_provider(
    p: RawProvider,
    pool: &str,
    path: &str,
    project: &Project,
    at: &At<'_>,
) -> Result<Provider, ConfigError> {
    check_id("provider", &p.name).map_err(|r| at.err(format!("{path}.name"), r))?;
    if !(p.issuer.starts_with("https://") || p.issuer.starts_with("http://")) {
        return Err(at.err(
            format!("{path}.issuer"),
            format!("issuer `{}` is not an http(s) URL", p.issuer),
        ));
    }
    let keys = if p.jwks == "builtin" {
        ProviderKeys::Builtin
    } else {
        let file = super::named::beside(at.file, &p.jwks);
        let text = at.named.text(&file, at, format!("{path}.jwks"))?;
        ProviderKeys::Jwks(
            parse_jwks(text)
                .map_err(|r| at.err(format!("{path}.jwks"), format!("{}: {r}", file.display())))?,
        )
    };
    let pool_resource = format!(
        "//iam.googleapis.com/projects/{}/locations/global/workloadIdentityPools/{pool}",
        project.number
    );
    let resource = format!("{pool_resource}/providers/{}", p.name);
    let allowed_audiences = if p.allowed_audiences.is_empty() {
        // Google's default: the provider's full resource name as an https URL.
        vec![format!("https:{resource}")]
    } else {
        p.allowed_audiences
    };
    let mut subject_claim = None;
    let mut attributes = Vec::new();
    for (key, expr) in &p.attribute_mapping {
        let claim =
            claim_of(expr).map_err(|r| at.err(format!("{path}.attribute_mapping.{key}"), r))?;
        if key == "google.subject" {
            subject_claim = Some(claim);
        } else if let Some(name) = key.strip_prefix("attribute.").filter(|n| !n.is_empty()) {
            attributes.push((name.to_owned(), claim));
        } else {
            return Err(at.err(
                format!("{path}.attribute_mapping.{key}"),
                format!("unknown target `{key}`; map to google.subject or attribute.NAME"),
            ));
        }
    }
    let subject_claim = subject_claim.unwrap_or_else(|| "sub".to_owned());
    Ok(Provider {
        pool: pool.to_owned(),
        name: p.name,
        issuer: p.issuer,
        keys,
        allowed_audiences,
        subject_claim,
        attributes,
        resource,
        pool_resource,
    })
}

/// The RSA keys of a JWKS that may check RS256 signatures. A key whose `alg` names another
/// algorithm (PS512, say), whose `use` is not `sig` or whose `key_ops` lack `verify` is
/// skipped (RFC 7517 §4.2–4.4): a
/// signature made with it for RS256 is a key used for a purpose it was not published for,
/// which Wycheproof's `WrongPrimitive` vectors check.
pub(crate) fn parse_jwks(text: &str) -> Result<Vec<JwkKey>, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let keys = value["keys"].as_array().ok_or("no `keys` array")?;
    let mut out = Vec::new();
    let mut other_purpose = 0;
    for (i, k) in keys.iter().enumerate() {
        if k["kty"] != "RSA" {
            continue;
        }
        let declared = |name: &str, wanted: &str| k.get(name).is_none_or(|v| v == wanted);
        let verifies = k.get("key_ops").is_none_or(|ops| {
            ops.as_array()
                .is_some_and(|ops| ops.iter().any(|op| op == "verify"))
        });
        if !declared("alg", "RS256") || !declared("use", "sig") || !verifies {
            other_purpose += 1;
            continue;
        }
        let part = |name: &str| {
            k[name]
                .as_str()
                .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
                .ok_or_else(|| format!("keys[{i}].{name} is not base64url"))
        };
        let (n, e) = (part("n")?, part("e")?);
        let key = PublicKey::from_components(&n, &e)
            .map_err(|why| format!("keys[{i}] is not a usable RSA key: {why}"))?;
        out.push(JwkKey {
            kid: k["kid"].as_str().map(str::to_owned),
            n,
            e,
            key: Arc::new(key),
        });
    }
    if out.is_empty() {
        return Err(if other_purpose > 0 {
            format!(
                "no RSA key for RS256 signatures ({other_purpose} skipped: their `alg`, `use` or `key_ops` say they are for something else)"
            )
        } else {
            "no RSA keys".to_owned()
        });
    }
    Ok(out)
}
