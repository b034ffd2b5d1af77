//! `POST /frontdoor/v1/explain` (frontdoor's own, on the google listener), two questions:
//! - the decision the front door would make for a token and a service, computed by the same
//!   function the front door calls (`frontdoor::auth::authorize`), with nothing sent to the
//!   service. The token is pasted, or minted for a service account when asked
//!   (`impersonate_service_account` and an optional `audience`, the service's URL by
//!   default). The answer carries the token's decoded header and claims, never its
//!   signature;
//! - whether a principal holds a permission on a resource, as the Admin APIs and IAM
//!   Credentials would judge it (`google::judge`, the function they call), with the code
//!   and reason their refusal would carry: Policy Troubleshooter's question, offline.

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
use crate::google;
use crate::iam::{self, Principal};
use crate::peer::Peer;
use crate::state::{AppState, Live};
use crate::tokens;

pub(super) fn routes() -> Router<Live> {
    Router::new().route("/frontdoor/v1/explain", post(explain))
}

/// What is asked: a service, and a pasted token or an account to mint one for; or a
/// principal, a permission and a resource; or a group and a service.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    service: Option<String>,
    token: Option<String>,
    impersonate_service_account: Option<String>,
    audience: Option<String>,
    principal: Option<String>,
    permission: Option<String>,
    resource: Option<String>,
    /// A group whose members' invoker access to `service` is asked.
    group: Option<String>,
}

/// The two questions' shapes, for a body that is neither.
const SHAPES: &str = "{\"service\": NAME, \"token\": JWT}, {\"service\": NAME, \"impersonate_service_account\": EMAIL, \"audience\": URL}, {\"principal\": MEMBER, \"permission\": PERMISSION, \"resource\": NAME} or {\"group\": EMAIL, \"service\": NAME}";

fn refuse(status: StatusCode, why: String) -> Response {
    (status, Json(json!({"error": why}))).into_response()
}

async fn explain(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    body: Bytes,
) -> Response {
    let mut ask: Ask = match serde_json::from_slice(&body) {
        Ok(ask) => ask,
        Err(e) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                format!("the body is not {SHAPES}: {e}"),
            );
        }
    };
    let (service, principal, permission, resource) = (
        ask.service.take(),
        ask.principal.take(),
        ask.permission.take(),
        ask.resource.take(),
    );
    if let Some(group) = ask.group.take() {
        let about_a_token = ask.token.is_some()
            || ask.impersonate_service_account.is_some()
            || ask.audience.is_some();
        return match (service, principal, permission, resource) {
            (Some(service), None, None, None) if !about_a_token => {
                group_on(&state, &group, &service)
            }
            _ => refuse(
                StatusCode::BAD_REQUEST,
                format!("give one question: {SHAPES}"),
            ),
        };
    }
    match (service, principal, permission, resource) {
        (Some(service), None, None, None) => front_door(&state, peer, &service, ask),
        (None, Some(principal), Some(permission), Some(resource)) => {
            permission_on(&state, &principal, &permission, &resource)
        }
        _ => refuse(
            StatusCode::BAD_REQUEST,
            format!("give one question: {SHAPES}"),
        ),
    }
}

/// Whether `principal` holds `permission` on `resource`, judged as the Google APIs judge it.
fn permission_on(state: &AppState, principal: &str, permission: &str, resource: &str) -> Response {
    let who = match principal_named(principal) {
        Ok(who) => who,
        Err(why) => return refuse(StatusCode::BAD_REQUEST, why),
    };
    match judged(state, &who, permission, resource) {
        Ok(verdict) => Json(verdict).into_response(),
        Err((status, why)) => refuse(status, why),
    }
}

/// Each member of `group` (as the configuration lists them): may it invoke `service`? A
/// member that is not one caller (a group in the group, a domain) is listed unjudged.
fn group_on(state: &AppState, group: &str, service: &str) -> Response {
    let config = state.config();
    let email = group.strip_prefix("group:").unwrap_or(group);
    let found = config
        .groups
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(email));
    let Some((email, members)) = found else {
        let known: Vec<&str> = config.groups.keys().map(String::as_str).collect();
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no group `{email}` under `groups:`{} (groups: {})",
                crate::suggest::did_you_mean(email, known.iter().copied()),
                if known.is_empty() {
                    "none".to_owned()
                } else {
                    known.join(", ")
                }
            ),
        );
    };
    let resource = format!("services/{service}");
    // The service is named once, whoever the members are (none, say).
    if let Err(e) = google::Resource::named(config, &resource) {
        return refuse(e.status(), e.message().to_owned());
    }
    let mut verdicts = Vec::new();
    for member in members {
        let who = match member {
            iam::Member::ServiceAccount(e) => Principal::ServiceAccount(e.clone()),
            iam::Member::User(e) => Principal::User(e.clone()),
            other => {
                verdicts.push(json!({
                    "principal": other.to_string(),
                    "allowed": null,
                    "status": null,
                    "code": null,
                    "reason": "not judged here: ask about a member of it, or with a token for it",
                }));
                continue;
            }
        };
        match judged(state, &who, iam::INVOKE, &resource) {
            Ok(verdict) => verdicts.push(verdict),
            Err((status, why)) => return refuse(status, why),
        }
    }
    Json(json!({
        "group": format!("group:{email}"),
        "service": service,
        "members": members.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "verdicts": verdicts,
    }))
    .into_response()
}

/// The verdict's JSON for `who` holding `permission` on `resource`, or why it cannot be
/// judged.
fn judged(
    state: &AppState,
    who: &Principal,
    permission: &str,
    resource: &str,
) -> Result<serde_json::Value, (StatusCode, String)> {
    let config = state.config();
    let Some(permission) = iam::Role::permission_named(permission) else {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "no role frontdoor models carries `{permission}`, so it cannot say who holds it{} (the permissions of docs/deployer.md's table, and IAM Credentials': iam.serviceAccounts.getOpenIdToken, getAccessToken, signJwt, signBlob)",
                crate::suggest::did_you_mean(permission, iam::Role::permissions())
            ),
        ));
    };
    let found = match google::Resource::named(config, resource) {
        Ok(found) => found,
        Err(e) => return Err((e.status(), e.message().to_owned())),
    };
    // The front door's own permission is answered as the front door would: a service with
    // the invoker check off lets anyone in, and a refusal has the front door's code.
    let judged = match found {
        google::Resource::Service(service)
            if permission == iam::INVOKE && service.invoker_iam_disabled =>
        {
            Ok(format!(
                "service `{}` has invoker_iam_disabled: no token is checked, so anyone may invoke it",
                service.name
            ))
        }
        _ => google::judge(config, who, permission, found),
    };
    let (allowed, status, code, reason) = match judged {
        Ok(reason) => (true, StatusCode::OK, None, reason),
        Err(e) if permission == iam::INVOKE && matches!(found, google::Resource::Service(_)) => {
            let why = e.why().unwrap_or_default().to_owned();
            (
                false,
                StatusCode::FORBIDDEN,
                Some(Code::NoInvokerBinding),
                why,
            )
        }
        Err(e) => (
            false,
            e.status(),
            Some(e.code()),
            e.why().unwrap_or(e.message()).to_owned(),
        ),
    };
    // The same ranked fixes a refusal of the front door or IAM Credentials gets.
    let principal = who.to_string();
    let fixes = code.map_or_else(Vec::new, |code| {
        super::fixes::ranked(
            config,
            &super::fixes::Refusal {
                code: Some(code),
                service: match found {
                    google::Resource::Service(service) => Some(service.name.as_str()),
                    _ => None,
                },
                principal: Some(&principal),
                target: match found {
                    google::Resource::Account(account) => Some(account.email.as_str()),
                    _ => None,
                },
                permission: Some(permission),
                ..Default::default()
            },
        )
    });
    Ok(json!({
        "principal": principal,
        "permission": permission,
        "resource": resource,
        "allowed": allowed,
        "status": status.as_u16(),
        "code": code,
        "reason": reason,
        "fixes": fixes,
    }))
}

/// `serviceAccount:EMAIL`, `user:EMAIL`, or an email alone (a service account's by its
/// domain, else a user's).
fn principal_named(member: &str) -> Result<Principal, String> {
    let member = if member.contains(':') {
        member.to_owned()
    } else if member.ends_with(".gserviceaccount.com") {
        format!("serviceAccount:{member}")
    } else {
        format!("user:{member}")
    };
    match iam::Member::parse(&member).map_err(|e| e.to_string())? {
        iam::Member::ServiceAccount(email) => Ok(Principal::ServiceAccount(email)),
        iam::Member::User(email) => Ok(Principal::User(email)),
        _ => Err(format!(
            "`{member}` is not one caller: explain asks about a serviceAccount:EMAIL or a user:EMAIL"
        )),
    }
}

/// The front door's decision for a token sent to `service`.
fn front_door(state: &AppState, peer: Peer, service: &str, ask: Ask) -> Response {
    let config = state.config();
    let Some(service) = config.service(service) else {
        let known: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
        return refuse(
            StatusCode::NOT_FOUND,
            format!(
                "no service `{}`{} (services: {})",
                service,
                crate::suggest::did_you_mean(service, known.iter().copied()),
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
                managed: None,
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
    let claims = tokens::peek_claims(&token);
    let fixes = code.map_or_else(Vec::new, |code| {
        super::fixes::ranked(
            config,
            &super::fixes::Refusal {
                code: Some(code),
                service: Some(&service.name),
                principal: principal.as_deref(),
                audience: claims.as_ref().and_then(|c| c.get("aud")?.as_str()),
                ..Default::default()
            },
        )
    });
    Json(json!({
        "service": service.name,
        "allowed": allowed,
        "status": status.as_u16(),
        "code": code,
        "reason": reason,
        "fixes": fixes,
        "principal": principal,
        "minted": minted,
        "steps": steps,
        "token": {"header": tokens::peek_header(&token), "claims": claims},
    }))
    .into_response()
}
