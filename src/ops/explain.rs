//! `POST /frontdoor/v1/explain` (frontdoor's own, on the google listener): the decision the
//! front door would make for a token and a service, computed by the same function the
//! front door calls (`frontdoor::auth::authorize`), with nothing sent to the service. The
//! token is pasted, or minted for a service account when asked (`impersonate_service_account`
//! and an optional `audience`, the service's URL by default). The answer carries the
//! token's decoded header and claims, never its signature.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use crate::decisions::Code;
use crate::decisions::chain::{Check, Step};
use crate::frontdoor::auth;
use crate::peer::Peer;
use crate::state::{AppState, Live};
use crate::tokens;

pub(super) fn routes() -> Router<Live> {
    Router::new().route("/frontdoor/v1/explain", post(explain))
}

/// What is asked: a service, and a pasted token or an account to mint one for.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    service: String,
    token: Option<String>,
    impersonate_service_account: Option<String>,
    audience: Option<String>,
}

fn refuse(status: StatusCode, why: String) -> Response {
    (status, Json(json!({"error": why}))).into_response()
}

async fn explain(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Bytes,
) -> Response {
    let ask: Ask = match serde_json::from_slice(&body) {
        Ok(ask) => ask,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!(
                    "the body is not {{\"service\": NAME, \"token\": JWT}} or {{\"service\": NAME, \"impersonate_service_account\": EMAIL, \"audience\": URL}}: {e}"
                ),
            );
        }
    };
    let config = state.config();
    let Some(service) = config.service(&ask.service) else {
        let known: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no service `{}`{} (services: {})",
                ask.service,
                crate::suggest::did_you_mean(&ask.service, known.iter().copied()),
                known.join(", ")
            ),
        );
    };
    let now = state.now();
    let (token, minted) = match (ask.token, ask.impersonate_service_account) {
        (Some(token), None) if ask.audience.is_none() => (token, false),
        (None, Some(email)) => {
            let Some(account) = config.service_account_named(&email) else {
                return refuse(
                    StatusCode::NOT_FOUND,
                    format!("no service account `{email}` is declared"),
                );
            };
            let audience = ask.audience.unwrap_or_else(|| service.url.clone());
            let claims = tokens::service_account_claims(&config.issuer, account, &audience, now);
            (tokens::mint(state.keys(), &claims), true)
        }
        _ => {
            return refuse(
                StatusCode::BAD_REQUEST,
                "give either `token`, or `impersonate_service_account` (with `audience` if not the service's URL)".to_owned(),
            );
        }
    };
    let mut headers = HeaderMap::new();
    let verdict = match HeaderValue::from_str(&format!("Bearer {}", token.trim())) {
        Ok(value) => {
            headers.insert(header::AUTHORIZATION, value);
            let judge = auth::Judge {
                config,
                door: state.frontdoor(),
                keys: state.keys(),
                now,
            };
            let origin = auth::Origin {
                peer,
                started_service: None,
            };
            auth::authorize(judge, service, &headers, origin)
        }
        Err(_) => {
            let reason = "the token has characters no HTTP header may carry (a line break, say); paste the token alone";
            auth::Verdict::Deny {
                caller: auth::Caller::default(),
                status: StatusCode::UNAUTHORIZED,
                code: Code::NotBearer,
                reason: reason.to_owned(),
                steps: vec![Step::failed(Check::Credential, reason)],
            }
        }
    };
    // The service is named, not routed to; nothing reaches its container.
    let mut steps = vec![Step::passed(
        Check::Route,
        format!("asked about service `{}`", service.name),
    )];
    steps.extend_from_slice(verdict.steps());
    let principal = verdict.caller().principal.as_ref().map(ToString::to_string);
    let (allowed, status, code, reason) = match verdict {
        auth::Verdict::Allow { reason, .. } => (true, StatusCode::OK, None, reason),
        auth::Verdict::Deny {
            status,
            code,
            reason,
            ..
        } => (false, status, Some(code), reason),
    };
    Json(json!({
        "service": service.name,
        "allowed": allowed,
        "status": status.as_u16(),
        "code": code,
        "reason": reason,
        "principal": principal,
        "minted": minted,
        "steps": steps,
        "token": {"header": tokens::peek_header(&token), "claims": tokens::peek_claims(&token)},
    }))
    .into_response()
}
