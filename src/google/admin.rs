//! What every Admin API (Cloud Run's today) shares: the deployer checked by IAM (seed 002:
//! the identity that calls the API, not the service's own), and a change made to the layer
//! over `services.yaml` (`config::layer`) and put in force before the answer.

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::caller::caller;
use super::errors::ApiError;
use super::resource::{Resource, judge};
use crate::config::{ConfigError, Layer};
use crate::decisions::Explanation;
use crate::iam::{self, Principal};
use crate::state::{AppState, Live};

/// The caller, if it holds `permission` on the project, and `project` is the one frontdoor
/// emulates; otherwise Google's PERMISSION_DENIED (IAM's reason for the log) or NOT_FOUND.
/// `explained` is told who asked and why the answer is what it is.
pub(super) fn authorized_project(
    state: &AppState,
    headers: &HeaderMap,
    project: &str,
    permission: &'static str,
    explained: &mut Explanation,
) -> Result<Principal, ApiError> {
    let who = authenticate(state, headers, explained)?;
    permit(state, &who, permission, Resource::Project, explained)?;
    check_project(state, project)?;
    Ok(who)
}

/// The caller and the resource `find` looks up (and its IAM resource), once the caller —
/// authenticated first, so that a caller with no credential learns nothing of what exists
/// — holds `permission` on it or on the project. Every Admin API method on one resource
/// starts so.
pub(super) fn authorized_as<'a, T>(
    state: &'a AppState,
    headers: &HeaderMap,
    permission: &'static str,
    explained: &mut Explanation,
    find: impl FnOnce() -> Result<(&'a T, Resource<'a>), ApiError>,
) -> Result<(Principal, &'a T), ApiError> {
    let who = authenticate(state, headers, explained)?;
    let (found, resource) = find()?;
    permit(state, &who, permission, resource, explained)?;
    Ok((who, found))
}

/// [`authorized_as`], for the resource alone.
pub(super) fn authorized<'a, T>(
    state: &'a AppState,
    headers: &HeaderMap,
    permission: &'static str,
    explained: &mut Explanation,
    find: impl FnOnce() -> Result<(&'a T, Resource<'a>), ApiError>,
) -> Result<&'a T, ApiError> {
    authorized_as(state, headers, permission, explained, find).map(|(_, resource)| resource)
}

/// Whether `who` holds `permission` on `resource` (IAM's one judgment, [`judge`]), told
/// to `explained`: for a caller already authenticated.
pub(super) fn permit(
    state: &AppState,
    who: &Principal,
    permission: &'static str,
    resource: Resource<'_>,
    explained: &mut Explanation,
) -> Result<(), ApiError> {
    explained.permission = Some(permission);
    explained.reason = Some(judge(state.config(), who, permission, resource)?);
    Ok(())
}

/// Every Admin API answer passes here: the decision log hears who asked and why.
pub(super) fn answer(result: Result<Value, ApiError>, explained: Explanation) -> Response {
    respond(
        result.map(|body| (StatusCode::OK, axum::Json(body)).into_response()),
        explained,
    )
}

/// Runs a handler's body, which may fill in `explained` as it goes, and answers with its
/// result as [`answer`] does.
pub(super) fn answered(
    mut explained: Explanation,
    body: impl FnOnce(&mut Explanation) -> Result<Value, ApiError>,
) -> Response {
    let result = body(&mut explained);
    answer(result, explained)
}

/// [`answer`] for a handler that makes its own response (IAM Credentials').
pub(super) fn respond(result: Result<Response, ApiError>, mut explained: Explanation) -> Response {
    let mut response = match result {
        Ok(response) => response,
        Err(e) => {
            // The error says why; a permission granted before it is not the reason.
            explained.reason = None;
            e.into_response()
        }
    };
    explained.attach(&mut response);
    response
}

/// `project`, by id or number, if it is the one frontdoor emulates. Google answers a project
/// one may not see as it answers one that does not exist: 404.
pub(super) fn check_project(state: &AppState, project: &str) -> Result<(), ApiError> {
    let p = &state.config().project;
    if project == p.id || project == p.number {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "project `{project}` is not the one frontdoor emulates ({}, number {})",
            p.id, p.number
        )))
    }
}

/// The caller named by the request's access token (401 without one), told to `explained`.
/// Asked first, so that a caller with no credential learns nothing of what exists.
pub(super) fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    explained: &mut Explanation,
) -> Result<Principal, ApiError> {
    let who = caller(state, headers)?;
    explained.principal = Some(who.to_string());
    Ok(who)
}

/// `NAME:METHOD` split, with the method one of `allowed` (a did-you-mean otherwise).
pub(super) fn split_method<'a>(
    name_and_method: &'a str,
    allowed: &[&'static str],
) -> Result<(&'a str, &'a str), ApiError> {
    match name_and_method.rsplit_once(':') {
        Some((name, method)) if allowed.contains(&method) => Ok((name, method)),
        Some((_, method)) => Err(ApiError::NotFound(format!(
            "unknown method `{method}`{}; expected NAME:{}",
            crate::suggest::did_you_mean(method, allowed.iter().copied()),
            allowed.join(" or NAME:")
        ))),
        None => Err(ApiError::NotFound(format!(
            "no method in `{name_and_method}`; expected NAME:{}",
            allowed.join(" or NAME:")
        ))),
    }
}

/// Whether `who` may run something as `account` (`iam.serviceAccounts.actAs`, from a
/// binding on the account or the project): what Google asks of whoever names the identity
/// a deployed service runs as, whether or not it changes, because that service's metadata
/// server hands out the account's tokens. An account the project does not have passes
/// here: there is nothing to act as, and the change's own validation refuses it, naming
/// the field (more use to a learner than Google's "or it may not exist").
pub(super) fn act_as(
    state: &AppState,
    who: &Principal,
    account: &str,
    explained: &mut Explanation,
) -> Result<(), ApiError> {
    match state.config().service_account(account) {
        Some(sa) => permit(state, who, iam::ACT_AS, Resource::Account(sa), explained),
        None => Ok(()),
    }
}

/// Makes one change to the layer and puts it in force, as a saved file would be: `edit`
/// sees the layer as it is now (no other change runs meanwhile) and the configuration in
/// force, and may refuse. The layer is written first, then applied; if applying fails the
/// old layer is put back. The generation in force afterwards.
pub(super) async fn change(
    live: &Live,
    edit: impl FnOnce(&mut Layer, &AppState) -> Result<(), ApiError>,
) -> Result<AppState, ApiError> {
    let state = live.get();
    let _serial = state.changes().begin().await;
    // Read again: a change that held the lock before us has swapped in a generation.
    let state = live.get();
    let dir = state.state_dir().clone();
    let file = state.config().file.clone();
    let before = blocking({
        let dir = dir.clone();
        move || Layer::read(dir.path()).map_err(|e| e.to_string())
    })
    .await?
    .map_err(ApiError::Internal)?;
    let mut after = before.clone();
    edit(&mut after, &state)?;
    let after_text = after.to_json().map_err(ApiError::InvalidArgument)?;

    // Resolved as the watcher would resolve the file now. Refused with the layer only (the
    // file resolves alone): this request's change is the cause, or an older change the
    // file no longer fits; refused without it too: the file's fault, said so.
    let config = blocking({
        let (file, after) = (file.clone(), after.clone());
        move || {
            // The field and the reason, not a path on the server's disk.
            crate::config::load_layered(&file, &after).map_err(|e| match e {
                ConfigError::FromLayer { .. } => ApiError::InvalidArgument(e.for_callers()),
                e => ApiError::FailedPrecondition(format!(
                    "the configuration file does not resolve, so no change can be made until it is fixed: {}",
                    e.for_callers()
                )),
            })
        }
    })
    .await??;

    let write = |text: &str| {
        dir.write_file(crate::config::layer::FILE, text.as_bytes())
            .map_err(|e| ApiError::Internal(format!("cannot keep the change: {e}")))
    };
    write(&after_text)?;
    let applied = match state.changes().apply(config).await {
        Ok(result) => result,
        Err(config) => {
            // No server loop (an embedder serving the router alone): swap it in here.
            let next = state.reconfigured(*config);
            live.set(next.clone());
            Ok(next.generation())
        }
    };
    if let Err(why) = applied {
        // It was read back, so it fits.
        write(&before.to_json().map_err(ApiError::Internal)?)?;
        return Err(ApiError::FailedPrecondition(format!(
            "the change could not be put in force, and was not kept: {why}"
        )));
    }
    Ok(live.get())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// `setIamPolicy` on any resource: the body checked (every role and member), then, under
/// the change lock, the etag compared with the policy in force (`current`), so that of two
/// writers that read the same policy the second gets a 409 and loses nothing silently; then
/// `store` puts the new bindings in the layer. The generation in force afterwards.
pub(super) async fn set_policy(
    live: &Live,
    body: &[u8],
    current: impl FnOnce(&AppState) -> Result<crate::iam::Policy, ApiError>,
    store: impl FnOnce(&mut Layer, crate::config::layer::PolicyText),
) -> Result<AppState, ApiError> {
    let request: super::policy::SetRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::InvalidArgument(format!("the body is not a setIamPolicy request: {e}"))
    })?;
    let (sent, etag) = request.checked().map_err(ApiError::InvalidArgument)?;
    change(live, |layer, now| {
        let policy = current(now)?;
        if let Some(etag) = etag.filter(|e| !e.is_empty())
            && !super::policy::etag_matches(&etag, &(&policy).into()) {
                return Err(ApiError::Aborted(
                    "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff. (The etag sent is not the policy's current one.)".into(),
                ));
            }
        store(layer, sent);
        Ok(())
    })
    .await
}
