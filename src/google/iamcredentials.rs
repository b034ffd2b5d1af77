//! IAM Credentials (SPEC §6): `generateIdToken`, `generateAccessToken`, `signJwt` and
//! `signBlob` on `/v1/projects/-/serviceAccounts/{EMAIL or UNIQUE_ID}:METHOD`, with the caller
//! from its bearer token and permissions checked hop by hop along `delegates`.

use axum::Json;
use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::caller::caller;
use super::errors::ApiError;
use super::resource::{Resource, judge};
use crate::config::ServiceAccount;
use crate::decisions::Explanation;
use crate::iam::{self, Principal};
use crate::state::AppState;
use crate::tokens::{self, jws};

/// `null` as the field's default: Python's library sends `"delegates": null`.
fn or_default<'de, D: serde::Deserializer<'de>, T: Default + Deserialize<'de>>(
    d: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A boolean that may arrive as `true` or `"true"`, as some clients send it.
fn flexible_bool<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Value::deserialize(d)? {
        Value::Bool(b) => Ok(b),
        Value::Null => Ok(false),
        Value::String(s) if s.eq_ignore_ascii_case("true") => Ok(true),
        Value::String(s) if s.eq_ignore_ascii_case("false") || s.is_empty() => Ok(false),
        other => Err(serde::de::Error::custom(format!(
            "expected a boolean, found {other}"
        ))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct IdTokenRequest {
    #[serde(default, deserialize_with = "or_default")]
    audience: String,
    #[serde(default, deserialize_with = "flexible_bool")]
    include_email: bool,
    #[serde(default, deserialize_with = "or_default")]
    delegates: Vec<String>,
    #[serde(default, deserialize_with = "flexible_bool")]
    use_email_azp: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AccessTokenRequest {
    #[serde(default, deserialize_with = "or_default")]
    scope: Vec<String>,
    lifetime: Option<String>,
    #[serde(default, deserialize_with = "or_default")]
    delegates: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct SignRequest {
    #[serde(default, deserialize_with = "or_default")]
    payload: String,
    #[serde(default, deserialize_with = "or_default")]
    delegates: Vec<String>,
}

/// The body as JSON whatever its content type (the documented curl recipe sends
/// `text/json`), or Google's 400.
fn body<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidArgument(format!("Invalid JSON payload received. {e}")))
}

/// Each IAM Credentials method, and the permission it needs on the target account.
pub(super) const METHODS: [(&str, &str); 4] = [
    ("generateIdToken", iam::GET_OPENID_TOKEN),
    ("generateAccessToken", iam::GET_ACCESS_TOKEN),
    ("signJwt", iam::SIGN_JWT),
    ("signBlob", iam::SIGN_BLOB),
];

/// The permission IAM Credentials' `method` needs; `None` for a method not its own.
pub(super) fn permission_of(method: &str) -> Option<&'static str> {
    METHODS.iter().find(|(m, _)| *m == method).map(|(_, p)| *p)
}

/// Whether `path` (`…/serviceAccounts/TARGET:METHOD`) calls an IAM Credentials method.
pub(super) fn is_method(path: &str) -> bool {
    path.rsplit_once(':')
        .is_some_and(|(_, method)| permission_of(method).is_some())
}

/// What `POST /v1/projects/PROJECT/serviceAccounts/NAME:METHOD` asks of IAM Credentials:
/// `method` one of [`METHODS`], and the permission it needs on the target account.
pub(super) struct Call<'a> {
    pub(super) project: &'a str,
    pub(super) name: &'a str,
    pub(super) method: &'a str,
    pub(super) permission: &'static str,
}

/// One of [`METHODS`], which `service_accounts` routes here (IAM's own account methods
/// share the path).
pub(super) async fn dispatch(
    state: AppState,
    Call {
        project,
        name,
        method,
        permission,
    }: Call<'_>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    // What the decision log is told, filled in as the request is understood.
    let mut explained = Explanation {
        target: Some(name.to_owned()),
        ..Explanation::default()
    };
    if project != "-" {
        // Google reads the account from the name alone, and refuses a project in the
        // wildcard's place rather than ignoring it (issue 26).
        return super::admin::respond(
            Err(ApiError::InvalidArgument(format!(
                "Request contains an invalid argument. (IAM Credentials' {method} takes `projects/-/serviceAccounts/ACCOUNT`: the `-` wildcard is required, `{project}` in its place is invalid)"
            ))),
            explained,
        );
    }
    let result = async {
        explained.permission = Some(permission);
        let who = caller(&state, &headers)?;
        explained.principal = Some(who.to_string());
        let account = account(&state, name)?;
        explained.target = Some(account.email.clone());
        explained.reason = Some(format!(
            "{who} may use {permission} on service account {}",
            account.email
        ));
        match method {
            "generateIdToken" => generate_id_token(&state, &who, account, body(&bytes)?),
            "generateAccessToken" => generate_access_token(&state, &who, account, body(&bytes)?),
            "signJwt" => sign_jwt(&state, &who, account, body(&bytes)?).await,
            _ => sign_blob(&state, &who, account, body(&bytes)?).await,
        }
    }
    .await;
    super::admin::respond(result, explained)
}

/// `EMAIL`, a unique id, or `projects/-/serviceAccounts/EMAIL`.
pub(super) fn account<'s>(state: &'s AppState, name: &str) -> Result<&'s ServiceAccount, ApiError> {
    state
        .config()
        .service_account_named(name)
        .ok_or_else(|| ApiError::NotFound(format!("Not found; Gaia id not found for email {name}")))
}

/// Refuses a field of `bytes` over [`tokens::MAX_PARAMETER_BYTES`] (our choice), so that
/// one request cannot make frontdoor keep a token naming megabytes.
pub(super) fn too_long(field: &str, bytes: usize) -> Result<(), ApiError> {
    if bytes > tokens::MAX_PARAMETER_BYTES {
        return Err(ApiError::InvalidArgument(format!(
            "Invalid value for field '{field}': {bytes} bytes, more than the {} frontdoor accepts.",
            tokens::MAX_PARAMETER_BYTES
        )));
    }
    Ok(())
}

/// The longest `delegates` chain followed (our choice; Google documents none): longer
/// chains are refused before any is looked up, so a request cannot make thousands of
/// checks.
const MAX_DELEGATES: usize = 10;

/// The caller may act as `target` for `permission`: directly, or through `delegates`, each
/// hop holding `implicitDelegation` on the next and the last holding `permission`.
pub(super) fn authorize(
    state: &AppState,
    who: &Principal,
    delegates: &[String],
    target: &ServiceAccount,
    permission: &'static str,
) -> Result<(), ApiError> {
    let config = &state.config();
    if delegates.len() > MAX_DELEGATES {
        return Err(ApiError::InvalidArgument(format!(
            "Invalid value for field 'delegates': {} accounts, more than the {MAX_DELEGATES} frontdoor follows.",
            delegates.len()
        )));
    }
    let mut current = who.clone();
    let mut hops: Vec<(&ServiceAccount, &'static str)> = Vec::new();
    for d in delegates {
        let next = account(state, d)?;
        if next.email == target.email || hops.iter().any(|(seen, _)| seen.email == next.email) {
            return Err(ApiError::InvalidArgument(format!(
                "Invalid value for field 'delegates': {} appears twice in the chain (a cycle).",
                next.email
            )));
        }
        hops.push((next, iam::IMPLICIT_DELEGATION));
    }
    hops.push((target, permission));
    for (next, needed) in hops {
        judge(config, &current, needed, Resource::Account(next))?;
        current = Principal::ServiceAccount(next.email.clone());
    }
    Ok(())
}

fn generate_id_token(
    state: &AppState,
    who: &Principal,
    target: &ServiceAccount,
    req: IdTokenRequest,
) -> Result<Response, ApiError> {
    if req.audience.is_empty() {
        return Err(ApiError::InvalidArgument(
            "Invalid value for field 'audience': must not be empty.".into(),
        ));
    }
    too_long("audience", req.audience.len())?;
    authorize(state, who, &req.delegates, target, iam::GET_OPENID_TOKEN)?;
    let mut claims =
        tokens::service_account_claims(&state.config().issuer, target, &req.audience, state.now());
    if !req.include_email {
        claims.remove("email");
        claims.remove("email_verified");
    }
    if req.use_email_azp {
        claims.insert("azp".into(), Value::String(target.email.clone()));
    }
    Ok(Json(json!({ "token": tokens::mint(state.keys(), &claims) })).into_response())
}

fn generate_access_token(
    state: &AppState,
    who: &Principal,
    target: &ServiceAccount,
    req: AccessTokenRequest,
) -> Result<Response, ApiError> {
    too_long("scope", req.scope.iter().map(|s| s.len() + 1).sum())?;
    if req.scope.is_empty() {
        return Err(ApiError::InvalidArgument(
            "Invalid value for field 'scope': at least one scope is required.".into(),
        ));
    }
    let lifetime = match req.lifetime.as_deref() {
        None => tokens::LIFETIME,
        Some(l) => l
            .strip_suffix('s')
            .and_then(|n| n.parse::<f64>().ok())
            .filter(|n| (1.0..=tokens::LIFETIME as f64).contains(n))
            .map(|n| n as i64)
            .ok_or_else(|| ApiError::InvalidArgument(format!("Invalid value for field 'lifetime': `{l}`; give a duration such as \"3600s\", at most 3600s.")))?,
    };
    authorize(state, who, &req.delegates, target, iam::GET_ACCESS_TOKEN)?;
    let now = state.now();
    let principal = Principal::ServiceAccount(target.email.clone());
    let (token, grant) = state
        .access_tokens()
        .issue(principal, req.scope, now, lifetime)
        .map_err(|e| ApiError::InvalidArgument(e.to_string()))?;
    // `YYYY-MM-DDTHH:MM:SSZ` with no fractional seconds: Python's google-auth parses it
    // with exactly that format.
    let expire = std::time::UNIX_EPOCH + std::time::Duration::from_secs(grant.exp.max(0) as u64);
    let expire_time = humantime::format_rfc3339_seconds(expire).to_string();
    Ok(Json(json!({ "accessToken": token, "expireTime": expire_time })).into_response())
}

async fn sign_jwt(
    state: &AppState,
    who: &Principal,
    target: &ServiceAccount,
    req: SignRequest,
) -> Result<Response, ApiError> {
    let Ok(Value::Object(_)) = serde_json::from_str::<Value>(&req.payload) else {
        return Err(ApiError::InvalidArgument(
            "Invalid value for field 'payload': it must be a JSON object in a string.".into(),
        ));
    };
    authorize(state, who, &req.delegates, target, iam::SIGN_JWT)?;
    let key = system_key(state, target).await?;
    let signed_jwt = jws::sign(&key, req.payload.as_bytes());
    Ok(Json(json!({ "keyId": key.kid(), "signedJwt": signed_jwt })).into_response())
}

/// The account's own Google-managed key: never the issuer's, so that nothing signed here
/// can pass for an ID token (SPEC §6). The first use makes an RSA key and writes a file:
/// off the runtime's threads.
async fn system_key(
    state: &AppState,
    target: &ServiceAccount,
) -> Result<std::sync::Arc<crate::keys::SigningKey>, ApiError> {
    let keys = state.system_keys().clone();
    let email = target.email.clone();
    let made = tokio::task::spawn_blocking(move || keys.get_or_create(&email))
        .await
        .map_err(|e| ApiError::Internal(format!("making the account's key stopped: {e}")))?;
    // (An internal error is logged where it is rendered.)
    made.map_err(|e| {
        ApiError::Internal(format!(
            "frontdoor cannot load or make the signing key of {}: {e}",
            target.email
        ))
    })
}

async fn sign_blob(
    state: &AppState,
    who: &Principal,
    target: &ServiceAccount,
    req: SignRequest,
) -> Result<Response, ApiError> {
    let blob = STANDARD.decode(&req.payload).map_err(|_| {
        ApiError::InvalidArgument("Invalid value for field 'payload': it must be base64.".into())
    })?;
    authorize(state, who, &req.delegates, target, iam::SIGN_BLOB)?;
    let key = system_key(state, target).await?;
    Ok(
        Json(json!({ "keyId": key.kid(), "signedBlob": STANDARD.encode(key.sign(&blob)) }))
            .into_response(),
    )
}
