//! `POST /token` (and `/oauth2/v4/token`): the jwt-bearer grant a service-account key uses
//! (SPEC §6). An ID token when the assertion carries `target_audience`, else an access token.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

use super::assertion::{self, AssertionError};
use super::errors::{OAuthError, oauth};
use crate::decisions::Explanation;
use crate::iam::Principal;
use crate::peer::Peer;
use crate::state::{AppState, Live};
use crate::tokens;

const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";

pub(super) fn routes() -> Router<Live> {
    Router::new()
        .route("/token", post(token))
        .route("/oauth2/v4/token", post(token))
}

/// Form fields of a request body, last value wins.
pub(super) fn form(body: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(body).into_owned().collect()
}

pub(super) fn field<'f>(fields: &'f [(String, String)], name: &str) -> Option<&'f str> {
    fields
        .iter()
        .rev()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Google's own token endpoints, which an assertion's `aud` may always name.
const GOOGLE_TOKEN_URLS: [&str; 2] = [
    "https://oauth2.googleapis.com/token",
    "https://www.googleapis.com/oauth2/v4/token",
];

/// Whether an assertion's `aud` names Google's two token endpoints or this endpoint
/// itself. "Itself" is the address the request arrived on, or a loopback name for its port;
/// any other `Host` only under `serve --bind-all` (a compose network reaches us by its own
/// name), and never another port. The `Host` header alone is the caller's choice: trusting
/// it would let an assertion written for another server's token endpoint be replayed here.
fn names_this_endpoint(aud: &str, state: &AppState, peer: Peer, headers: &HeaderMap) -> bool {
    if GOOGLE_TOKEN_URLS.contains(&aud) {
        return true;
    }
    let Some(authority) = aud.strip_prefix("http://").and_then(|rest| {
        rest.strip_suffix("/oauth2/v4/token")
            .or_else(|| rest.strip_suffix("/token"))
    }) else {
        return false;
    };
    let port = peer.local.port();
    let loopback = [
        peer.local.to_string(),
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ];
    loopback.iter().any(|h| h == authority)
        || (state.binds_all_interfaces()
            && authority.ends_with(&format!(":{port}"))
            && headers
                .get(axum::http::header::HOST)
                .is_some_and(|h| h.as_bytes() == authority.as_bytes()))
}

async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fields = form(&body);
    match field(&fields, "grant_type") {
        Some(JWT_BEARER) => {}
        Some(other) => {
            return oauth(
                OAuthError::UnsupportedGrantType,
                &format!("Invalid grant_type: {other}"),
            );
        }
        None => {
            return oauth(
                OAuthError::InvalidRequest,
                "Missing required parameter: grant_type",
            );
        }
    }
    let Some(jwt) = field(&fields, "assertion") else {
        return oauth(
            OAuthError::InvalidRequest,
            "Missing required parameter: assertion",
        );
    };
    if jwt.len() > tokens::MAX_TOKEN_BYTES {
        return oauth(
            OAuthError::InvalidGrant,
            &format!(
                "The assertion is {} bytes, more than the {} frontdoor reads.",
                jwt.len(),
                tokens::MAX_TOKEN_BYTES
            ),
        );
    }
    let (account, claims) = match assertion::verify(&state, jwt) {
        Ok(found) => found,
        Err(e) => {
            tracing::info!(error = %e, "token endpoint refused an assertion");
            return oauth(OAuthError::InvalidGrant, &e.to_string());
        }
    };
    if !claims
        .get("aud")
        .and_then(Value::as_str)
        .is_some_and(|a| names_this_endpoint(a, &state, peer, &headers))
    {
        return oauth(
            OAuthError::InvalidGrant,
            &format!(
                "Invalid JWT: Failed audience check. The right audience is http://{}/token (or {})",
                peer.local, GOOGLE_TOKEN_URLS[0]
            ),
        );
    }

    let now = state.now();
    if let Some(audience) = claims.get("target_audience").and_then(Value::as_str) {
        if audience.is_empty() {
            return oauth(
                OAuthError::InvalidRequest,
                "Invalid target_audience: it may not be empty",
            );
        }
        let id = tokens::service_account_claims(&state.config().issuer, account, audience, now);
        let mut response =
            Json(json!({ "id_token": tokens::mint(state.keys(), &id) })).into_response();
        Explanation {
            principal: Some(format!("serviceAccount:{}", account.email)),
            target: Some(audience.to_owned()),
            permission: None,
            reason: Some(format!(
                "the assertion is signed by a key of {}: issued an ID token for audience {audience}",
                account.email
            )),
            code: None,
        }
        .attach(&mut response);
        return response;
    }
    let scopes: Vec<String> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return oauth(
            OAuthError::InvalidScope,
            "Empty or missing scope not allowed.",
        );
    }
    let principal = Principal::ServiceAccount(account.email.clone());
    let reason = format!(
        "the assertion is signed by a key of {}: issued an access token for {}",
        account.email,
        scopes.join(" ")
    );
    let (token, grant) = match state
        .access_tokens()
        .issue(principal, scopes, now, tokens::LIFETIME)
    {
        Ok(issued) => issued,
        Err(e) => return oauth(OAuthError::InvalidScope, &e.to_string()),
    };
    let mut response = Json(
        json!({ "access_token": token, "expires_in": grant.exp - now, "token_type": "Bearer" }),
    )
    .into_response();
    Explanation {
        principal: Some(format!("serviceAccount:{}", account.email)),
        reason: Some(reason),
        ..Explanation::default()
    }
    .attach(&mut response);
    response
}

impl From<AssertionError> for super::errors::ApiError {
    fn from(e: AssertionError) -> Self {
        super::errors::ApiError::Unauthenticated(format!("the self-signed JWT was refused: {e}"))
    }
}
