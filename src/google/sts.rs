//! The Security Token Service, `POST /v1/token` (SPEC §6): exchanges an external identity
//! provider's token for a federated access token, for workload identity federation.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::errors::{OAuthError, OAuthRefusal};
use super::oauth2::{field, form};
use crate::config::{Provider, ProviderKeys};
use crate::decisions::Explanation;
use crate::iam::Principal;
use crate::state::{AppState, Live};
use crate::tokens::jws::{Audience, Jws, KidRule, Rules};
use crate::tokens::{self, Claims, TokenError};

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

/// What a token exchange gives, once judged: a federated access token for `principal`,
/// from `provider`, with `scopes`.
struct Grant<'s> {
    provider: &'s Provider,
    principal: Principal,
    scopes: Vec<String>,
}

async fn exchange(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let judged = fields(&headers, &body)
        .map_err(|why| OAuthRefusal::new(OAuthError::InvalidRequest, why))
        .and_then(|fields| authorize(&state, &fields));
    match judged {
        Ok(grant) => issue(&state, grant),
        Err(refused) => refused.into_response(),
    }
}

/// Judges a token exchange, RFC 8693's checks and Google's: the grant and token types, the
/// provider the audience names, the subject token against the provider's keys and rules,
/// and the subject its mapping yields.
fn authorize<'s>(
    state: &'s AppState,
    fields: &[(String, String)],
) -> Result<Grant<'s>, OAuthRefusal> {
    match field(fields, "grant_type") {
        Some(TOKEN_EXCHANGE) => {}
        Some(other) => {
            return Err(OAuthRefusal::new(
                OAuthError::UnsupportedGrantType,
                format!("Unsupported grant_type `{other}`; expected {TOKEN_EXCHANGE}."),
            ));
        }
        None => {
            return Err(OAuthRefusal::new(
                OAuthError::InvalidRequest,
                "Missing required parameter: grant_type.",
            ));
        }
    }
    if let Some(t) = field(fields, "requested_token_type").filter(|t| *t != ACCESS_TOKEN_TYPE) {
        return Err(OAuthRefusal::new(
            OAuthError::InvalidRequest,
            format!("Unsupported requested_token_type `{t}`; expected {ACCESS_TOKEN_TYPE}."),
        ));
    }
    match field(fields, "subject_token_type") {
        Some(t) if SUBJECT_TYPES.contains(&t) => {}
        other => {
            return Err(OAuthRefusal::new(
                OAuthError::InvalidRequest,
                format!(
                    "Invalid subject_token_type {:?}; expected one of {}.",
                    other.unwrap_or(""),
                    SUBJECT_TYPES.join(", ")
                ),
            ));
        }
    }
    let audience = field(fields, "audience").unwrap_or("");
    let Some(provider) = state
        .config()
        .providers
        .iter()
        .find(|p| p.resource == audience)
    else {
        return Err(OAuthRefusal::new(
            OAuthError::InvalidTarget,
            format!(
                "The target service indicated by the \"audience\" parameters is invalid: `{audience}` is not a configured workload identity provider."
            ),
        ));
    };
    let Some(subject_token) = field(fields, "subject_token") else {
        return Err(OAuthRefusal::new(
            OAuthError::InvalidRequest,
            "Missing required parameter: subject_token.",
        ));
    };
    if subject_token.len() > tokens::MAX_TOKEN_BYTES
        || field(fields, "scope").is_some_and(|s| s.len() > tokens::MAX_PARAMETER_BYTES)
    {
        return Err(OAuthRefusal::new(
            OAuthError::InvalidRequest,
            format!(
                "The subject_token or scope is longer than frontdoor reads ({} and {} bytes).",
                tokens::MAX_TOKEN_BYTES,
                tokens::MAX_PARAMETER_BYTES
            ),
        ));
    }
    let claims = match verify_subject(state, provider, subject_token) {
        Ok(c) => c,
        Err(why) => {
            tracing::info!(provider = %provider.id(), reason = %why, "sts refused a subject token");
            return Err(OAuthRefusal::new(OAuthError::InvalidGrant, why));
        }
    };
    let Some(subject) = claims
        .get(&provider.subject_claim)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    else {
        return Err(OAuthRefusal::new(
            OAuthError::InvalidGrant,
            format!(
                "The mapped google.subject (assertion.{}) is missing from the subject token.",
                provider.subject_claim
            ),
        ));
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
    let scopes: Vec<String> = field(fields, "scope")
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    Ok(Grant {
        provider,
        principal,
        scopes,
    })
}

/// Issues the federated access token `grant` gives, and tells the decision log whose.
fn issue(state: &AppState, grant: Grant<'_>) -> Response {
    let Grant {
        provider,
        principal,
        scopes,
    } = grant;
    let now = state.now();
    let explained = Explanation {
        principal: Some(principal.to_string()),
        target: Some(provider.id()),
        permission: None,
        reason: Some(format!(
            "the subject token verifies with provider {}'s keys: issued a federated access token",
            provider.id()
        )),
        code: None,
    };
    let (token, grant) = match state
        .access_tokens()
        .issue(principal, scopes, now, tokens::LIFETIME)
    {
        Ok(issued) => issued,
        Err(e) => {
            return OAuthRefusal::new(OAuthError::InvalidScope, e.to_string()).into_response();
        }
    };
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

/// Checks the subject token against the provider's keys, issuer, audiences and the time
/// rules every token frontdoor verifies (`tokens::jws`).
fn verify_subject(state: &AppState, provider: &Provider, jwt: &str) -> Result<Claims, String> {
    let rules = Rules {
        issuer: &provider.issuer,
        audience: Audience::AnyOf(&provider.allowed_audiences),
        kid: KidRule::Optional,
        max_lifetime: tokens::MAX_LIFETIME,
    };
    let jws = Jws::parse(jwt).map_err(|e| format!("The subject token is unusable: {e}."))?;
    let checked = match &provider.keys {
        ProviderKeys::Builtin => {
            let key = state
                .state_dir()
                .external_issuer_key()
                .map_err(|e| format!("frontdoor's external issuer key is unusable: {e}"))?;
            jws.verify([(Some(key.kid()), &key)], &rules, state.now())
        }
        ProviderKeys::Jwks(keys) => jws.verify(
            keys.iter().map(|k| (k.kid.as_deref(), &*k.key)),
            &rules,
            state.now(),
        ),
    };
    match checked {
        Ok(checked) => Ok(checked.claims),
        Err(
            TokenError::UnknownKid(_) | TokenError::BadSignature(_) | TokenError::NoKeyVerifies(_),
        ) => Err(format!(
            "The subject token's signature does not verify with provider {}'s keys.",
            provider.id()
        )),
        Err(TokenError::WrongIssuer { found, .. }) => Err(format!(
            "The issuer {found} of the subject token does not match the provider's issuer `{}`.",
            provider.issuer
        )),
        Err(TokenError::WrongAudience { found, accepted }) => Err(format!(
            "The audience {found} of the subject token is not one of the provider's allowed audiences: {accepted}."
        )),
        Err(e) => Err(format!("The subject token is unusable: {e}.")),
    }
}
