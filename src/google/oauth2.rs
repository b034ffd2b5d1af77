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
use super::errors::{OAuthError, OAuthRefusal};
use crate::config::ServiceAccount;
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

/// What the JWT-bearer grant gives, once the request is judged: an ID token when the
/// assertion asks for a `target_audience`, else an access token for its scopes.
enum Grant<'s> {
    IdToken {
        account: &'s ServiceAccount,
        audience: String,
    },
    AccessToken {
        account: &'s ServiceAccount,
        scopes: Vec<String>,
    },
}

async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match authorize(&state, &form(&body), peer, &headers) {
        Ok(grant) => issue(&state, grant),
        Err(refused) => refused.into_response(),
    }
}

/// Judges a token request, Google's checks in Google's order: the grant type, the
/// assertion (its size, its signature by a key of the account it names, its audience
/// this endpoint), then what it asks for.
fn authorize<'s>(
    state: &'s AppState,
    fields: &[(String, String)],
    peer: Peer,
    headers: &HeaderMap,
) -> Result<Grant<'s>, OAuthRefusal> {
    match field(fields, "grant_type") {
        Some(JWT_BEARER) => {}
        Some(other) => {
            return Err(OAuthRefusal::new(
                OAuthError::UnsupportedGrantType,
                format!("Invalid grant_type: {other}"),
            ));
        }
        None => {
            return Err(OAuthRefusal::new(
                OAuthError::InvalidRequest,
                "Missing required parameter: grant_type",
            ));
        }
    }
    let Some(jwt) = field(fields, "assertion") else {
        return Err(OAuthRefusal::new(
            OAuthError::InvalidRequest,
            "Missing required parameter: assertion",
        ));
    };
    if jwt.len() > tokens::MAX_TOKEN_BYTES {
        return Err(OAuthRefusal::new(
            OAuthError::InvalidGrant,
            format!(
                "The assertion is {} bytes, more than the {} frontdoor reads.",
                jwt.len(),
                tokens::MAX_TOKEN_BYTES
            ),
        ));
    }
    let (account, claims) = assertion::verify(state, jwt).map_err(|e| {
        tracing::info!(error = %e, "token endpoint refused an assertion");
        OAuthRefusal::new(OAuthError::InvalidGrant, e.to_string())
    })?;
    if !claims
        .get("aud")
        .and_then(Value::as_str)
        .is_some_and(|a| names_this_endpoint(a, state, peer, headers))
    {
        return Err(OAuthRefusal::new(
            OAuthError::InvalidGrant,
            format!(
                "Invalid JWT: Failed audience check. The right audience is http://{}/token (or {})",
                peer.local, GOOGLE_TOKEN_URLS[0]
            ),
        ));
    }
    if let Some(audience) = claims.get("target_audience").and_then(Value::as_str) {
        if audience.is_empty() {
            return Err(OAuthRefusal::new(
                OAuthError::InvalidRequest,
                "Invalid target_audience: it may not be empty",
            ));
        }
        return Ok(Grant::IdToken {
            account,
            audience: audience.to_owned(),
        });
    }
    let scopes: Vec<String> = claims
        .get("scope")
        .and_then(Value::as_str)
        .unwrap_or("")
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    if scopes.is_empty() {
        return Err(OAuthRefusal::new(
            OAuthError::InvalidScope,
            "Empty or missing scope not allowed.",
        ));
    }
    Ok(Grant::AccessToken { account, scopes })
}

/// Mints what `grant` gives, and tells the decision log who got it.
fn issue(state: &AppState, grant: Grant<'_>) -> Response {
    let now = state.now();
    match grant {
        Grant::IdToken { account, audience } => {
            let id =
                tokens::service_account_claims(&state.config().issuer, account, &audience, now);
            let mut response =
                Json(json!({ "id_token": tokens::mint(state.keys(), &id) })).into_response();
            Explanation {
                principal: Some(format!("serviceAccount:{}", account.email)),
                reason: Some(format!(
                    "the assertion is signed by a key of {}: issued an ID token for audience {audience}",
                    account.email
                )),
                target: Some(audience),
                ..Explanation::default()
            }
            .attach(&mut response);
            response
        }
        Grant::AccessToken { account, scopes } => {
            let reason = format!(
                "the assertion is signed by a key of {}: issued an access token for {}",
                account.email,
                scopes.join(" ")
            );
            let principal = Principal::ServiceAccount(account.email.clone());
            let (token, grant) =
                match state
                    .access_tokens()
                    .issue(principal, scopes, now, tokens::LIFETIME)
                {
                    Ok(issued) => issued,
                    Err(e) => {
                        return OAuthRefusal::new(OAuthError::InvalidScope, e.to_string())
                            .into_response();
                    }
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
    }
}

impl From<AssertionError> for super::errors::ApiError {
    fn from(e: AssertionError) -> Self {
        super::errors::ApiError::Unauthenticated(format!("the self-signed JWT was refused: {e}"))
    }
}
