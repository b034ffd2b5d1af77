//! The google APIs listener (SPEC §6): the issuer's discovery document and published keys,
//! the OAuth2 token endpoint, tokeninfo, IAM Credentials, STS and the Cloud Run Admin API
//! (`run`, through `admin`), whose decisions go to the one decision log. Google's APIs only:
//! frontdoor's own endpoints are `ops`, which the server mounts beside these.

mod admin;
mod assertion;
mod caller;
mod cli_keys;
mod cli_token;
pub(crate) mod emulated;
mod errors;
mod eventarc;
mod iamcredentials;
mod issuer;
pub(crate) mod kept;
mod oauth2;
mod policy;
mod protojson;
pub(crate) mod pubsub;
mod resource;
mod resourcemanager;
mod run;
pub(crate) mod scheduler;
mod service_accounts;
mod sts;
pub(crate) mod tasks;
mod tokeninfo;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;

use crate::decisions::{Decision, Explanation, Surface, record_answer};
use crate::state::{AppState, Live};

pub(crate) use cli_keys::routes as cli_keys_routes;
pub(crate) use cli_token::routes as cli_token_routes;
pub(crate) use resource::{Resource, judge};
pub use service_accounts::{MAX_KEYS_PER_ACCOUNT, key_file};

pub fn app(live: Live) -> Router {
    Router::new()
        .merge(issuer::routes())
        .merge(oauth2::routes())
        .merge(tokeninfo::routes())
        .merge(sts::routes())
        .merge(run::routes())
        .merge(resourcemanager::routes())
        .merge(service_accounts::routes())
        .merge(pubsub::rest_routes())
        .merge(pubsub::grpc_routes())
        .merge(tasks::rest_routes())
        .merge(tasks::grpc_routes())
        .merge(scheduler::rest_routes())
        .merge(scheduler::grpc_routes())
        .merge(eventarc::rest_routes())
        .fallback(no_such_path)
        .method_not_allowed_fallback(no_such_path)
        // Google's paths only: frontdoor's own (`ops`, beside these on the listener) keep
        // their own errors.
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(axum::middleware::map_response(too_large_as_google))
        .layer(axum::middleware::from_fn_with_state(live.clone(), record))
        .with_state(live)
}

/// The largest request body Google's paths read (axum's default, stated here so that the
/// error below can name it): a Knative document or a policy of 1,500 principals is a small
/// part of it.
const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// A body over [`BODY_LIMIT`] gets Google's JSON error, as any other refusal here, not the
/// framework's plain-text 413 (issue 26).
async fn too_large_as_google(response: Response) -> Response {
    use axum::response::IntoResponse;
    if response.status() != axum::http::StatusCode::PAYLOAD_TOO_LARGE {
        return response;
    }
    errors::ApiError::InvalidArgument(format!(
        "Request payload size exceeds the limit: {BODY_LIMIT} bytes."
    ))
    .into_response()
}

/// Google's JSON error for a path (or a method on it) no API here answers, so a client
/// reports it as an API error: gcloud said only `HTTPError 404` for axum's empty body.
async fn no_such_path(method: axum::http::Method, uri: axum::http::Uri) -> Response {
    use axum::response::IntoResponse;
    // Someone opening the listener's address in a browser or with curl wants the dashboard.
    // (`ops::DASHBOARD_PATH`, a layer above this one, which may not name it.)
    let pointer = if uri.path() == "/" {
        "; frontdoor's dashboard is /frontdoor/ui/ on its google listener, its own API under /frontdoor/v1/"
    } else {
        ""
    };
    errors::ApiError::NotFound(format!(
        "frontdoor answers no Google API method at `{method} {}`{pointer}",
        uri.path()
    ))
    .into_response()
}

/// The surface that decides at `path`, if one does (the issuer's keys decide nothing).
fn surface(path: &str) -> Option<Surface> {
    match path {
        "/token" | "/oauth2/v4/token" => Some(Surface::Token),
        "/v1/token" => Some(Surface::Sts),
        "/tokeninfo" | "/oauth2/v3/tokeninfo" => Some(Surface::Tokeninfo),
        p if pubsub::is_path(p) => Some(Surface::Pubsub),
        p if tasks::is_path(p) => Some(Surface::Tasks),
        p if scheduler::is_path(p) => Some(Surface::Scheduler),
        p if eventarc::is_path(p) => Some(Surface::Eventarc),
        p if p.starts_with("/apis/serving.knative.dev/") => Some(Surface::Admin),
        p if p.starts_with("/v1/projects/") && iamcredentials::is_method(p) => {
            Some(Surface::Iamcredentials)
        }
        p if p.starts_with("/v1/projects/") => Some(Surface::Admin),
        _ => None,
    }
}

/// Records each decision of the deciding surfaces in the one decision log, with what the
/// handler attached to its answer (who asked, for what, and why), and puts the reason in
/// `X-Frontdoor-Reason` on a refusal, as the front door does.
async fn record(State(live): State<Live>, req: Request, next: Next) -> Response {
    let Some(surface) = surface(req.uri().path()) else {
        return next.run(req).await;
    };
    let method = req.method().clone();
    // HTTP/2 (every request in an egress tunnel that negotiated it) carries the host as
    // the URI's authority, not a Host header.
    let host = req
        .headers()
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(ToString::to_string))
        .unwrap_or_default();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let mut response = next.run(req).await;
    record_decision(
        &live.get(),
        surface,
        (method.as_str(), &host, &path),
        started,
        &mut response,
    );
    response
}

/// Records `response`, begun at `started`, as `surface`'s decision on the request
/// `(method, host, path)`, with what its handler attached to it.
pub(super) fn record_decision(
    state: &AppState,
    surface: Surface,
    (method, host, path): (&str, &str, &str),
    started: std::time::Instant,
    response: &mut Response,
) {
    let decision = Decision::about(surface, state.now(), method, host, path);
    record_answer(
        state.decisions(),
        decision.timed(started),
        Explanation::default(),
        response,
    );
}

/// `http://HOST` as the caller reached us, so the URLs we hand out work from wherever the
/// caller is (a container may know us by another name than the bound address); the
/// request's own scheme and authority when it carries them (HTTP/2, and every request
/// through the egress proxy's TLS tunnels: `https://accounts.google.com`).
pub(crate) fn base_url(uri: &axum::http::Uri, headers: &HeaderMap, state: &AppState) -> String {
    if let (Some(scheme), Some(authority)) = (uri.scheme_str(), uri.authority()) {
        return format!("{scheme}://{authority}");
    }
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| state.config().listen.google.to_string(), str::to_owned);
    format!("http://{host}")
}
