//! The Compute metadata server as a Cloud Run container sees it (SPEC §5): one listener per
//! service, serving that service's account as `default`, and a default listener for
//! processes that are not services. Google's client libraries find it through
//! `GCE_METADATA_HOST` / `GCE_METADATA_IP`.

mod respond;

use std::sync::Arc;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde_json::{Value, json};

use crate::access::CLOUD_PLATFORM;
use crate::config::ServiceAccount;
use crate::decisions::{Code, Decision, Explanation, record_answer};
use crate::iam::Principal;
use crate::state::{AppState, Live};
use crate::tokens;
use respond::{json as json_response, refuse, text};

/// Whom one metadata listener speaks for, resolved per request from the configuration in
/// force (a reload may change a service's account).
#[derive(Debug, Clone)]
struct Identity {
    /// The service account served as `default`.
    email: String,
    /// The service this listener belongs to; `None` for the default listener.
    service: Option<String>,
    /// This instance's id: a long hex string, fixed for the listener's life.
    instance_id: Arc<str>,
}

#[derive(Clone)]
struct Listener {
    live: Live,
    service: Option<String>,
    instance_id: Arc<str>,
}

/// The metadata server of `service`, or the default one (`None`).
pub fn app(live: Live, service: Option<String>) -> Router {
    let instance_id = format!("{:032x}{:032x}", fastrand::u128(..), fastrand::u128(..));
    Router::new().fallback(handle).with_state(Listener {
        live,
        service,
        instance_id: instance_id.into(),
    })
}

async fn handle(State(listener): State<Listener>, req: Request) -> Response {
    let started = std::time::Instant::now();
    let (parts, _) = req.into_parts();
    tracing::debug!(
        service = listener.service.as_deref().unwrap_or("(default)"),
        method = %parts.method,
        uri = ?parts.uri.to_string(),
        "metadata request"
    );
    let query = parse_query(parts.uri.query());
    let state = listener.live.get();
    let email = match &listener.service {
        None => Some(state.config().metadata_identity.clone()),
        Some(name) => state
            .config()
            .service(name)
            .map(|s| s.service_account.clone()),
    };
    let Some(email) = email else {
        return refuse(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            "This service is no longer in the configuration.\n",
        );
    };
    let identity = Identity {
        email,
        service: listener.service.clone(),
        instance_id: listener.instance_id.clone(),
    };
    let response = serve(&state, &identity, parts.uri.path(), &query, &parts.headers);
    record(&state, &identity, &parts, response, started)
}

/// Records the tokens the metadata server mints and the requests it refuses, in the one
/// decision log; a refusal carries its reason in `X-Frontdoor-Reason` too. A cached token
/// handed out again is no new decision, nor are reads of plain values (project id, zone,
/// the ping): client libraries poll those, and recording them would cost the hot path.
fn record(
    state: &AppState,
    id: &Identity,
    parts: &axum::http::request::Parts,
    mut response: Response,
    started: std::time::Instant,
) -> Response {
    let path = parts.uri.path();
    let status = response.status();
    if status.is_success() && response.extensions().get::<Explanation>().is_none() {
        return response;
    }
    let host = parts
        .headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    let decision = Decision::about(
        crate::decisions::Surface::Metadata,
        state.now(),
        parts.method.as_str(),
        host,
        path,
    );
    let whose = Explanation {
        principal: Some(format!("serviceAccount:{}", id.email)),
        target: Some(match &id.service {
            Some(name) => format!("service {name}'s metadata server"),
            None => "the default metadata server".to_owned(),
        }),
        ..Explanation::default()
    };
    record_answer(
        state.decisions(),
        decision.timed(started),
        whose,
        &mut response,
    );
    response
}

fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    // form_urlencoded decodes %2C and leaves an unencoded `https://…` audience intact.
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .into_owned()
        .collect()
}

fn param<'q>(query: &'q [(String, String)], name: &str) -> Option<&'q str> {
    query
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn recursive(query: &[(String, String)]) -> bool {
    param(query, "recursive").is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

const FLAVOR_MISSING: &str = "Missing Metadata-Flavor:Google header.";

/// Whether the request says it means to talk to the metadata server: the `Metadata-Flavor:
/// Google` header, or the legacy `X-Google-Metadata-Request: True`, which Google's v1
/// server still accepts.
fn has_flavor(headers: &HeaderMap) -> bool {
    headers
        .get("metadata-flavor")
        .is_some_and(|v| v == "Google")
        || headers
            .get("x-google-metadata-request")
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"true"))
}

fn serve(
    state: &AppState,
    id: &Identity,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
) -> Response {
    // The real server refuses anything that looks proxied, so that a server-side request
    // forgery through a proxy cannot reach it.
    if headers.contains_key("x-forwarded-for") {
        return refuse(
            StatusCode::FORBIDDEN,
            Code::ProxiedRequest,
            "Request had an X-Forwarded-For header and was refused: the metadata server does not answer proxied requests.",
        );
    }
    if path == "/" {
        // Client libraries ping this to detect that they run on Google Cloud.
        return text(StatusCode::OK, "computeMetadata/\n");
    }
    let Some(rest) = path.strip_prefix("/computeMetadata/") else {
        return not_found();
    };
    if !has_flavor(headers) {
        return refuse(
            StatusCode::FORBIDDEN,
            Code::MetadataFlavorMissing,
            FLAVOR_MISSING,
        );
    }
    let rest = match rest.strip_prefix("v1") {
        Some("") => "",
        Some(r) if r.starts_with('/') => &r[1..],
        _ => return not_found(),
    };
    let project = &state.config().project;
    let zone = format!("{}-1", project.region);

    match rest {
        "" => text(StatusCode::OK, "instance/\nproject/\nuniverse/\n"),
        "project" | "project/" if recursive(query) => json_response(json!({
            "projectId": project.id,
            "numericProjectId": project.number.parse::<u64>().unwrap_or(0),
            "attributes": {},
        })),
        "project" | "project/" => text(
            StatusCode::OK,
            "attributes/\nnumeric-project-id\nproject-id\n",
        ),
        "project/project-id" => text(StatusCode::OK, &project.id),
        "project/numeric-project-id" => text(StatusCode::OK, &project.number),
        "project/attributes" | "project/attributes/" => text(StatusCode::OK, ""),
        "universe" | "universe/" => text(StatusCode::OK, "universe-domain\n"),
        "universe/universe-domain" => text(StatusCode::OK, "googleapis.com"),
        "instance" | "instance/" if recursive(query) => json_response(json!({
            "id": &*id.instance_id,
            "region": format!("projects/{}/regions/{}", project.number, project.region),
            "zone": format!("projects/{}/zones/{zone}", project.number),
            "serviceAccounts": accounts_json(id),
        })),
        "instance" | "instance/" => text(StatusCode::OK, "id\nregion\nservice-accounts/\nzone\n"),
        "instance/id" => text(StatusCode::OK, &id.instance_id),
        "instance/region" => text(
            StatusCode::OK,
            &format!("projects/{}/regions/{}", project.number, project.region),
        ),
        "instance/zone" => text(
            StatusCode::OK,
            &format!("projects/{}/zones/{zone}", project.number),
        ),
        "instance/service-accounts" | "instance/service-accounts/" if recursive(query) => {
            json_response(accounts_json(id))
        }
        "instance/service-accounts" | "instance/service-accounts/" => {
            text(StatusCode::OK, &format!("default/\n{}/\n", id.email))
        }
        _ => match rest.strip_prefix("instance/service-accounts/") {
            Some(account_path) => service_account(state, id, account_path, query),
            None => not_found(),
        },
    }
}

fn not_found() -> Response {
    refuse(
        StatusCode::NOT_FOUND,
        Code::NotFound,
        "Not Found: no such metadata path.\n",
    )
}

/// The listener's account, as `{"default": {...}, "EMAIL": {...}}`.
fn accounts_json(id: &Identity) -> Value {
    let one = account_json(id);
    json!({ "default": one, id.email.clone(): one })
}

fn account_json(id: &Identity) -> Value {
    json!({ "aliases": ["default"], "email": id.email, "scopes": [CLOUD_PLATFORM] })
}

/// `instance/service-accounts/{default|EMAIL}[/…]`
fn service_account(
    state: &AppState,
    id: &Identity,
    path: &str,
    query: &[(String, String)],
) -> Response {
    let (account, leaf) = path.split_once('/').unwrap_or((path, ""));
    if account != "default" && !account.eq_ignore_ascii_case(&id.email) {
        return not_found();
    }
    let Some(sa) = state.config().service_account(&id.email) else {
        // The configuration guarantees the account exists; say so plainly if not.
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::InternalError,
            "this listener's service account is not configured",
        );
    };
    match leaf {
        "" if recursive(query) => json_response(account_json(id)),
        "" => text(StatusCode::OK, "aliases\nemail\nidentity\nscopes\ntoken\n"),
        "email" => text(StatusCode::OK, &sa.email),
        "aliases" => text(StatusCode::OK, "default"),
        "scopes" => text(StatusCode::OK, &format!("{CLOUD_PLATFORM}\n")),
        "token" => access_token(state, sa, query),
        "identity" => identity(state, id, sa, query),
        _ => not_found(),
    }
}

fn access_token(state: &AppState, sa: &ServiceAccount, query: &[(String, String)]) -> Response {
    if let Some(too_long) = param(query, "scopes").filter(|s| s.len() > tokens::MAX_PARAMETER_BYTES)
    {
        return refuse(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            &format!(
                "the scopes parameter is {} bytes, more than the {} frontdoor accepts",
                too_long.len(),
                tokens::MAX_PARAMETER_BYTES
            ),
        );
    }
    let mut scopes: Vec<String> = param(query, "scopes")
        .map(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if scopes.is_empty() {
        scopes.push(CLOUD_PLATFORM.to_owned());
    }
    let now = state.now();
    let asked = format!("token\0{}\0{}", sa.email, scopes.join(","));
    let mut minted_scopes = String::new();
    let minted = state
        .metadata_tokens()
        .get_or_mint(state.config(), &asked, now, || {
            minted_scopes = scopes.join(" ");
            let principal = Principal::ServiceAccount(sa.email.clone());
            let (token, grant) =
                state
                    .access_tokens()
                    .issue(principal, scopes, now, tokens::LIFETIME)?;
            Ok((token, grant.exp))
        });
    let (token, exp, minted) = match minted {
        Ok(minted) => minted,
        Err(e @ crate::access::TooLarge(_)) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                &e.to_string(),
            );
        }
    };
    let mut response = json_response(
        json!({ "access_token": token, "expires_in": exp - now, "token_type": "Bearer" }),
    );
    if minted {
        Explanation::because(format!("minted an access token for {minted_scopes}"))
            .attach(&mut response);
    }
    response
}

fn identity(
    state: &AppState,
    id: &Identity,
    sa: &ServiceAccount,
    query: &[(String, String)],
) -> Response {
    let Some(audience) = param(query, "audience").filter(|a| !a.is_empty()) else {
        return refuse(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            "non-empty audience parameter required",
        );
    };
    if audience.len() > tokens::MAX_PARAMETER_BYTES {
        return refuse(
            StatusCode::BAD_REQUEST,
            Code::InvalidArgument,
            &format!(
                "the audience is {} bytes, more than the {} frontdoor accepts",
                audience.len(),
                tokens::MAX_PARAMETER_BYTES
            ),
        );
    }
    let full = match param(query, "format").unwrap_or("standard") {
        "standard" => false,
        "full" => true,
        other => {
            return refuse(
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                &format!("format must be standard or full, not `{other}`"),
            );
        }
    };
    let licenses = match param(query, "licenses") {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("true") => true,
        Some(v) if v.eq_ignore_ascii_case("false") => false,
        Some(other) => {
            return refuse(
                StatusCode::BAD_REQUEST,
                Code::InvalidArgument,
                &format!("licenses must be TRUE or FALSE, not `{other}`"),
            );
        }
    };
    let now = state.now();
    // Keyed by everything the token depends on (the cache adds the issuer and the
    // project): a `full` token names this listener's instance, so two services on one
    // account must not share it.
    let instance = if full { &*id.instance_id } else { "" };
    let asked = format!(
        "identity\0{}\0{}\0{audience}\0{full}\0{licenses}\0{instance}",
        sa.email, sa.unique_id
    );
    let minted = state
        .metadata_tokens()
        .get_or_mint(state.config(), &asked, now, || {
            let mut claims =
                tokens::service_account_claims(&state.config().issuer, sa, audience, now);
            if full {
                let project = &state.config().project;
                let mut engine = json!({
                    "project_id": project.id,
                    "project_number": project.number.parse::<u64>().unwrap_or(0),
                    "zone": format!("{}-1", project.region),
                    "instance_id": &*id.instance_id,
                    "instance_name": id.service.clone().unwrap_or_else(|| "localhost".to_owned()),
                });
                if licenses {
                    engine["license_id"] = json!([]);
                }
                claims.insert("google".into(), json!({ "compute_engine": engine }));
            }
            Ok::<_, std::convert::Infallible>((
                tokens::mint(state.keys(), &claims),
                now + tokens::LIFETIME,
            ))
        });
    let Ok((token, _, minted)) = minted;
    // The raw JWT, with no trailing newline: some clients use the body as is.
    let mut response = text(StatusCode::OK, &token);
    if minted {
        Explanation::because(format!("minted an ID token for audience {audience}"))
            .attach(&mut response);
    }
    response
}
