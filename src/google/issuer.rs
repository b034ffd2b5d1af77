//! `/.well-known/openid-configuration`, `/oauth2/v3/certs` (JWKS) and `/oauth2/v1/certs`
//! (PEM certificates), shaped as Google serves them; and each service account's own
//! Google-managed key at `/service_accounts/v1/jwk/EMAIL` and `…/metadata/x509/EMAIL`.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use super::errors::ApiError;
use crate::keys::{KeySet, SigningKey};
use crate::state::{AppState, Live};

/// How long verifiers may cache the keys. Safe because the next key is published ahead of
/// any rotation.
const KEYS_CACHE_CONTROL: &str = "public, max-age=3600, must-revalidate, no-transform";

pub(super) fn routes() -> Router<Live> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth2/v3/certs", get(jwks))
        .route("/oauth2/v1/certs", get(pem_certs))
        .route("/service_accounts/v1/jwk/{email}", get(account_jwks))
        .route(
            "/service_accounts/v1/metadata/x509/{email}",
            get(account_certs),
        )
        // The older name of the same document, which key files' client_x509_cert_url give.
        .route("/robot/v1/metadata/x509/{email}", get(account_certs))
}

async fn discovery(State(state): State<AppState>, uri: Uri, headers: HeaderMap) -> Json<Value> {
    let base = super::base_url(&uri, &headers, &state);
    Json(json!({
        "issuer": state.config().issuer,
        "jwks_uri": format!("{base}/oauth2/v3/certs"),
        "token_endpoint": format!("{base}/token"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["aud", "azp", "email", "email_verified", "exp", "iat", "iss", "sub"],
    }))
}

async fn jwks(State(keys): State<Arc<KeySet>>) -> Response {
    cacheable(keys.jwks())
}

async fn pem_certs(State(keys): State<Arc<KeySet>>) -> Response {
    cacheable(keys.pem_certificates())
}

/// `{"keys":[JWK]}`: the key `signJwt` and `signBlob` sign with for this account.
async fn account_jwks(state: State<AppState>, email: Path<String>) -> Response {
    account_key(state, email, |key| json!({ "keys": [key.jwk()] })).await
}

/// `{"KID": "-----BEGIN CERTIFICATE-----…"}` for the same key.
async fn account_certs(state: State<AppState>, email: Path<String>) -> Response {
    account_key(
        state,
        email,
        |key| json!({ key.kid(): key.certificate_pem() }),
    )
    .await
}

/// Publishes the account's key in one of its forms, making the key if it was never made
/// (Google's accounts always have one). Unknown accounts get Google's 404.
async fn account_key(
    State(state): State<AppState>,
    Path(email): Path<String>,
    form: fn(&SigningKey) -> Value,
) -> Response {
    let Some(account) = state.config().service_account_named(&email) else {
        return ApiError::NotFound(format!(
            "service account `{email}` is not declared in the configuration"
        ))
        .into_response();
    };
    let email = account.email.clone();
    // Making a key is an RSA key generation: off the runtime.
    let keys = state.system_keys().clone();
    match tokio::task::spawn_blocking(move || keys.get_or_create(&email)).await {
        Ok(Ok(key)) => cacheable(form(&key)),
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot load or make an account's key");
            ApiError::Internal(e.to_string()).into_response()
        }
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    }
}

fn cacheable(body: Value) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(KEYS_CACHE_CONTROL),
    );
    response
}
