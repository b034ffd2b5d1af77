//! What every Admin API (Cloud Run's today) shares: the deployer checked by IAM (seed 002:
//! the identity that calls the API, not the service's own), and a change made to the layer
//! over `services.yaml` (`config::layer`) and put in force before the answer.

use axum::http::HeaderMap;

use super::caller::caller;
use super::errors::ApiError;
use crate::config::Layer;
use crate::decisions::Explanation;
use crate::iam::{self, Principal, Scope};
use crate::state::{AppState, Live};

/// The caller, if it holds `permission` through a binding in `scopes` (the resource first,
/// then the project); otherwise Google's PERMISSION_DENIED with IAM's reason for the log.
/// `explained` is told who asked and why the answer is what it is.
pub(super) fn authorize(
    state: &AppState,
    headers: &HeaderMap,
    permission: &'static str,
    scopes: &[Scope<'_>],
    explained: &mut Explanation,
) -> Result<Principal, ApiError> {
    explained.permission = Some(permission);
    let who = caller(state, headers)?;
    explained.principal = Some(who.to_string());
    let outcome = iam::check(permission, Some(&who), scopes, &state.config().groups);
    explained.reason = Some(outcome.reason.clone());
    if outcome.allowed {
        Ok(who)
    } else {
        Err(ApiError::PermissionDenied {
            permission,
            why: outcome.reason,
        })
    }
}

/// The project's scope, for checks that fall back to the project's policy.
pub(super) fn project_scope(state: &AppState) -> Scope<'_> {
    let config = state.config();
    Scope {
        kind: "project",
        name: &config.project.id,
        policy: &config.policy,
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

    // Resolved as the watcher would resolve the file now; a file that does not resolve
    // with the old layer is not this request's fault, and says so.
    let config = blocking({
        let (file, before, after) = (file.clone(), before.clone(), after.clone());
        move || match crate::config::load_layered(&file, &before) {
            Err(e) => Err(ApiError::FailedPrecondition(format!(
                "the configuration file does not resolve, so no change can be made until it is fixed: {e}"
            ))),
            Ok(_) => crate::config::load_layered(&file, &after)
                .map_err(|e| ApiError::InvalidArgument(strip_file(&e.to_string()))),
        }
    })
    .await??;

    let write = |layer: &Layer| {
        dir.write_file(crate::config::layer::FILE, layer.to_json().as_bytes())
            .map_err(|e| ApiError::Internal(format!("cannot keep the change: {e}")))
    };
    write(&after)?;
    let applied = match state.changes().apply(config.clone()).await {
        Some(result) => result,
        None => {
            // No server loop (an embedder serving the router alone): swap it in here.
            let next = state.reconfigured(config);
            live.set(next.clone());
            Ok(next.generation())
        }
    };
    if let Err(why) = applied {
        write(&before)?;
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

/// A configuration error as the API caller should read it: the field and the reason, not
/// a path on the server's disk.
fn strip_file(error: &str) -> String {
    error
        .split_once(": ")
        .map_or(error, |(_, rest)| rest)
        .to_owned()
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
    let request: super::run::policy::SetRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::InvalidArgument(format!("the body is not a setIamPolicy request: {e}"))
    })?;
    let (sent, etag) = request.checked().map_err(ApiError::InvalidArgument)?;
    change(live, |layer, now| {
        let policy = current(now)?;
        if let Some(etag) = etag.filter(|e| !e.is_empty()) {
            if !super::run::policy::etag_matches(&etag, &(&policy).into()) {
                return Err(ApiError::Aborted(
                    "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff. (The etag sent is not the policy's current one.)".into(),
                ));
            }
        }
        store(layer, sent);
        Ok(())
    })
    .await
}
