//! `/.well-known/openid-configuration`, `/oauth2/v3/certs` (JWKS) and `/oauth2/v1/certs`
//! (PEM certificates), shaped as Google serves them.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::state::{AppState, Live};

/// How long verifiers may cache the keys. Safe because the next key is published ahead of
/// any rotation.
const KEYS_CACHE_CONTROL: &str = "public, max-age=3600, must-revalidate, no-transform";

pub(super) fn routes() -> Router<Live> {
    Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/oauth2/v3/certs", get(jwks))
        .route("/oauth2/v1/certs", get(pem_certs))
}

async fn discovery(State(state): State<AppState>, headers: HeaderMap) -> Json<Value> {
    let base = super::base_url(&headers, &state);
    Json(json!({
        "issuer": state.config.issuer,
        "jwks_uri": format!("{base}/oauth2/v3/certs"),
        "token_endpoint": format!("{base}/token"),
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "claims_supported": ["aud", "azp", "email", "email_verified", "exp", "iat", "iss", "sub"],
    }))
}

async fn jwks(State(state): State<AppState>) -> Response {
    cacheable(state.keys.jwks())
}

async fn pem_certs(State(state): State<AppState>) -> Response {
    cacheable(state.keys.pem_certificates())
}

fn cacheable(body: Value) -> Response {
    let mut response = Json(body).into_response();
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(KEYS_CACHE_CONTROL),
    );
    response
}
