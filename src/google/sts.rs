//! The Security Token Service, `POST /v1/token` (SPEC §6): exchanges an external identity
//! provider's token for a federated access token, for workload identity federation.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use super::errors::oauth;
use super::oauth2::{field, form};
use crate::config::{Provider, ProviderKeys};
use crate::decisions::Explanation;
use crate::iam::Principal;
use crate::keys::PublicKey;
use crate::state::{AppState, Live};
use crate::tokens;

const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
const SUBJECT_TYPES: [&str; 2] = [
    "urn:ietf:params:oauth:token-type:jwt",
    "urn:ietf:params:oauth:token-type:id_token",
];

pub(super) fn routes() -> Router<Live> {
    Router::new().route("/v1/token", post(exchange))
}

/// The request's fields: a form with snake_case names, or JSON with camelCase ones.
fn fields(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, &'static str> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("json"));
    if !json {
        return Ok(form(body));
    }
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else {
        return Err("The request body is not a JSON object.");
    };
    let snake = |k: &str| {
        k.chars().fold(String::new(), |mut s, c| {
            if c.is_ascii_uppercase() {
                s.push('_');
                s.push(c.to_ascii_lowercase());
            } else {
                s.push(c);
            }
            s
        })
    };
    Ok(map
        .into_iter()
        .map(|(k, v)| {
            (
                snake(&k),
                v.as_str().map_or_else(|| v.to_string(), str::to_owned),
            )
        })
        .collect())
}

async fn exchange(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let fields = match fields(&headers, &body) {
        Ok(f) => f,
        Err(why) => return oauth("invalid_request", why),
    };
    match field(&fields, "grant_type") {
        Some(TOKEN_EXCHANGE) => {}
        Some(other) => {
            return oauth(
                "unsupported_grant_type",
                &format!("Unsupported grant_type `{other}`; expected {TOKEN_EXCHANGE}."),
            );
        }
        None => return oauth("invalid_request", "Missing required parameter: grant_type."),
    }
    if let Some(t) = field(&fields, "requested_token_type").filter(|t| *t != ACCESS_TOKEN_TYPE) {
        return oauth(
            "invalid_request",
            &format!("Unsupported requested_token_type `{t}`; expected {ACCESS_TOKEN_TYPE}."),
        );
    }
    match field(&fields, "subject_token_type") {
        Some(t) if SUBJECT_TYPES.contains(&t) => {}
        other => {
            return oauth(
                "invalid_request",
                &format!(
                    "Invalid subject_token_type {:?}; expected one of {}.",
                    other.unwrap_or(""),
                    SUBJECT_TYPES.join(", ")
                ),
            );
        }
    }
    let audience = field(&fields, "audience").unwrap_or("");
    let Some(provider) = state
        .config
        .providers
        .iter()
        .find(|p| p.resource == audience)
    else {
        return oauth(
            "invalid_target",
            &format!(
                "The target service indicated by the \"audience\" parameters is invalid: `{audience}` is not a configured workload identity provider."
            ),
        );
    };
    let Some(subject_token) = field(&fields, "subject_token") else {
        return oauth(
            "invalid_request",
            "Missing required parameter: subject_token.",
        );
    };
    if subject_token.len() > tokens::MAX_TOKEN_BYTES
        || field(&fields, "scope").is_some_and(|s| s.len() > tokens::MAX_PARAMETER_BYTES)
    {
        return oauth(
            "invalid_request",
            &format!(
                "The subject_token or scope is longer than frontdoor reads ({} and {} bytes).",
                tokens::MAX_TOKEN_BYTES,
                tokens::MAX_PARAMETER_BYTES
            ),
        );
    }
    let claims = match verify_subject(&state, provider, subject_token) {
        Ok(c) => c,
        Err(why) => {
            tracing::info!(provider = %provider.id(), reason = %why, "sts refused a subject token");
            return oauth("invalid_grant", &why);
        }
    };
    let Some(subject) = claims
        .get(&provider.subject_claim)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return oauth(
            "invalid_grant",
            &format!(
                "The mapped google.subject (assertion.{}) is missing from the subject token.",
                provider.subject_claim
            ),
        );
    };
    let mut sets = vec![format!("principalSet:{}/*", provider.pool_resource)];
    for (name, claim) in &provider.attributes {
        if let Some(value) = claims.get(claim).and_then(Value::as_str) {
            sets.push(format!(
                "principalSet:{}/attribute.{name}/{value}",
                provider.pool_resource
            ));
        }
    }
    let principal = Principal::Federated {
        subject: format!("principal:{}/subject/{subject}", provider.pool_resource),
        sets,
    };
    let scopes: Vec<String> = field(&fields, "scope")
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let now = state.now();
    let explained = Explanation {
        principal: Some(principal.to_string()),
        target: Some(provider.id()),
        permission: None,
        reason: Some(format!(
            "the subject token verifies with provider {}'s keys: issued a federated access token",
            provider.id()
        )),
    };
    let (token, grant) = state
        .access_tokens
        .issue(principal, scopes, now, tokens::LIFETIME);
    let mut response = Json(json!({
        "access_token": token,
        "issued_token_type": ACCESS_TOKEN_TYPE,
        "token_type": "Bearer",
        "expires_in": grant.exp - now,
    }))
    .into_response();
    explained.attach(&mut response);
    response
}

/// Checks the subject token against the provider's issuer, keys and audiences.
fn verify_subject(
    state: &AppState,
    provider: &Provider,
    jwt: &str,
) -> Result<Map<String, Value>, String> {
    let mut it = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err("The subject token is not a JWT.".into());
    };
    let object = |part: &str| match URL_SAFE_NO_PAD
        .decode(part)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
    {
        Some(Value::Object(m)) => Some(m),
        _ => None,
    };
    let (Some(header), Some(claims)) = (object(h), object(p)) else {
        return Err("The subject token's header or payload is not a JSON object.".into());
    };
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err("The subject token must be signed with RS256.".into());
    }
    if let Some(crit) = header.get("crit") {
        return Err(format!(
            "The subject token's header lists critical extensions ({crit}); none is understood."
        ));
    }
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| "The subject token's signature is not base64url.".to_owned())?;
    let signed = &jwt.as_bytes()[..h.len() + 1 + p.len()];
    let kid = header.get("kid").and_then(Value::as_str);
    let verified = match &provider.keys {
        ProviderKeys::Builtin => state
            .state_dir
            .external_issuer_key()
            .map_err(|e| format!("frontdoor's external issuer key is unusable: {e}"))?
            .verify(signed, &signature),
        ProviderKeys::Jwks(keys) => keys
            .iter()
            .filter(|k| kid.is_none() || k.kid.as_deref() == kid)
            .any(|k| PublicKey::from_components(&k.n, &k.e).verify(signed, &signature)),
    };
    if !verified {
        return Err(format!(
            "The subject token's signature does not verify with provider {}'s keys.",
            provider.id()
        ));
    }
    let iss = claims.get("iss").and_then(Value::as_str).unwrap_or("");
    if iss != provider.issuer {
        return Err(format!(
            "The issuer `{iss}` of the subject token does not match the provider's issuer `{}`.",
            provider.issuer
        ));
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => provider.allowed_audiences.contains(a),
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .any(|a| provider.allowed_audiences.iter().any(|x| x == a)),
        _ => false,
    };
    if !aud_ok {
        return Err(format!(
            "The audience {} of the subject token is not one of the provider's allowed audiences: {}.",
            claims
                .get("aud")
                .map_or_else(|| "(none)".to_owned(), ToString::to_string),
            provider.allowed_audiences.join(", ")
        ));
    }
    // The same time rules as every token frontdoor verifies (they used to differ here: an
    // STS subject token issued in the future, or living a year, passed).
    tokens::check_times(&claims, state.now())
        .map_err(|e| format!("The subject token is unusable: {e}."))?;
    Ok(claims)
}
