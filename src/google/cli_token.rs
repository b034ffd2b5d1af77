//! `POST /frontdoor/v1/token`: what `frontdoor token` asks of a running server, answered from
//! the configuration in force (a live edit the server refused leaves `services.yaml`
//! unreadable, and the token still comes). Frontdoor's own path: `ops` mounts it on the
//! google listener alone (never behind the egress proxy's Google hostnames, where a
//! container could mint any account's token), for names of this machine only. Each answer
//! is one of IAM Credentials' decisions in the log:
//! - `{"service_account": EMAIL, "as": MEMBER, "audience": AUD}`: MEMBER's
//!   `iam.serviceAccounts.getOpenIdToken` on the account is judged by the function
//!   `generateIdToken` calls, and a refusal is Google's 403 with IAM's reason;
//! - without `as`, an administrator's minting, which the decision says (as the CLI says on
//!   stderr);
//! - `{"user": EMAIL, "audience": AUD}`: a declared user's token, as `gcloud auth
//!   print-identity-token` gives it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::errors::ApiError;
use super::iamcredentials::{account, authorize, too_long};
use crate::decisions::{Explanation, Surface};
use crate::iam::{self, Member, Principal};
use crate::peer::Peer;
use crate::state::{AppState, Live};
use crate::tokens;

const PATH: &str = "/frontdoor/v1/token";

/// The route, for `ops` to mount.
pub(crate) fn routes() -> axum::Router<Live> {
    axum::Router::new().route(PATH, post(token))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    service_account: Option<String>,
    user: Option<String>,
    audience: Option<String>,
    #[serde(rename = "as")]
    caller: Option<String>,
}

/// Who `as` names: a principal IAM can grant roles to and judge (one that can hold a
/// token).
pub(super) fn principal(caller: &str) -> Result<Principal, ApiError> {
    match Member::parse(caller) {
        Ok(Member::ServiceAccount(email)) => Ok(Principal::ServiceAccount(email)),
        Ok(Member::User(email)) => Ok(Principal::User(email)),
        Ok(_) => Err(ApiError::InvalidArgument(format!(
            "`as` is `{caller}`: give one principal, serviceAccount:EMAIL or user:EMAIL, not a group or a domain"
        ))),
        Err(e) => Err(ApiError::InvalidArgument(format!(
            "`as` is `{caller}`: {e}"
        ))),
    }
}

async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let mut explained = Explanation::default();
    let result = match on_this_machine(&peer, PATH, iam::GET_OPENID_TOKEN) {
        Ok(()) => mint(&state, &body, &mut explained),
        Err(e) => Err(e),
    };
    recorded(
        &state,
        &headers,
        (Surface::Iamcredentials, PATH),
        started,
        result.map(|token| Json(json!({ "token": token }))),
        explained,
    )
}

/// The answer to one of frontdoor's own posts on the google listener, `result` as
/// Google's APIs answer, recorded as one of `surface`'s decisions (the google app's
/// recording layer does not wrap `ops`' routes).
pub(super) fn recorded(
    state: &AppState,
    headers: &HeaderMap,
    (surface, path): (Surface, &str),
    started: std::time::Instant,
    result: Result<Json<serde_json::Value>, ApiError>,
    explained: Explanation,
) -> Response {
    let mut response = super::admin::respond(result.map(IntoResponse::into_response), explained);
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    super::record_decision(state, surface, ("POST", host, path), started, &mut response);
    response
}

/// A credential comes back whole: only to a caller on this machine, never to another host
/// or a container reaching a listener bound with `--bind-all` (the Host header, which
/// `ops` checks, is the caller's to choose). Else `permission`'s refusal.
pub(super) fn on_this_machine(
    peer: &Peer,
    path: &str,
    permission: &'static str,
) -> Result<(), ApiError> {
    if peer.remote.ip().is_loopback() {
        return Ok(());
    }
    Err(ApiError::PermissionDenied {
        permission,
        why: format!(
            "{path} answers callers on this machine alone; {} is not one",
            peer.remote.ip()
        ),
    })
}

fn mint(state: &AppState, body: &[u8], explained: &mut Explanation) -> Result<String, ApiError> {
    let ask: Ask = serde_json::from_slice(body).map_err(|e| {
        ApiError::InvalidArgument(format!(
            "the body is not {{\"service_account\": EMAIL, \"as\": MEMBER, \"audience\": AUD}} or {{\"user\": EMAIL, \"audience\": AUD}}: {e}"
        ))
    })?;
    if let Some(audience) = &ask.audience {
        too_long("audience", audience.len())?;
    }
    let config = state.config();
    match (ask.service_account, ask.user) {
        (Some(email), None) => {
            let target = account(state, &email)?;
            explained.target = Some(target.email.clone());
            explained.permission = Some(iam::GET_OPENID_TOKEN);
            match ask.caller.as_deref() {
                Some(caller) => {
                    let who = principal(caller)?;
                    explained.principal = Some(who.to_string());
                    authorize(state, &who, &[], target, iam::GET_OPENID_TOKEN)?;
                    explained.reason = Some(format!(
                        "{who} may use {} on service account {} (`frontdoor token --as`)",
                        iam::GET_OPENID_TOKEN,
                        target.email
                    ));
                }
                None => {
                    explained.principal = Some("administrator".to_owned());
                    explained.reason = Some(format!(
                        "`frontdoor token` minted {}'s token as an administrator would: no IAM check was made (`--as MEMBER` asks for one)",
                        target.email
                    ));
                }
            }
            let audience = ask.audience.as_deref().unwrap_or(tokens::GCLOUD_CLIENT_ID);
            let claims =
                tokens::service_account_claims(&config.issuer, target, audience, state.now());
            Ok(tokens::mint(state.keys(), &claims))
        }
        (None, Some(email)) if ask.caller.is_none() => {
            let user = config.user(&email).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "user `{email}` is not declared under `users:` in the configuration in force"
                ))
            })?;
            explained.principal = Some(format!("user:{}", user.email));
            explained.reason = Some(format!(
                "`frontdoor token --user` minted {}'s own token, as `gcloud auth print-identity-token` would",
                user.email
            ));
            let claims =
                tokens::user_claims(&config.issuer, user, ask.audience.as_deref(), state.now());
            Ok(tokens::mint(state.keys(), &claims))
        }
        _ => Err(ApiError::InvalidArgument(
            "give `service_account` (with `as` to be checked as IAM Credentials checks it) or `user`, not both".to_owned(),
        )),
    }
}
