//! Resource Manager v1 as gcloud calls it: the project itself (`gcloud run services
//! replace` looks it up to match a numeric namespace) and its IAM policy (`gcloud projects
//! get-iam-policy|add-iam-policy-binding|remove-iam-policy-binding`). The project's policy
//! is the one `iam_policy` in `services.yaml` gives, with the Admin APIs' layer over it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};

use super::admin::{authorize, project_scope, set_policy};
use super::errors::ApiError;
use super::run::policy;
use crate::decisions::Explanation;
use crate::iam;
use crate::state::{AppState, Live};

pub(super) fn routes() -> Router<Live> {
    Router::new().route("/v1/projects/{project}", get(project).post(policy_method))
}

fn answer(result: Result<Value, ApiError>, explained: Explanation) -> Response {
    let mut response = match result {
        Ok(body) => (StatusCode::OK, axum::Json(body)).into_response(),
        Err(e) => e.into_response(),
    };
    explained.attach(&mut response);
    response
}

fn check_project(state: &AppState, project: &str) -> Result<(), ApiError> {
    let p = &state.config().project;
    if project == p.id || project == p.number {
        Ok(())
    } else {
        // Google answers a project one may not see as it answers one that does not exist.
        Err(ApiError::NotFound(format!(
            "project `{project}` is not the one frontdoor emulates ({}, number {})",
            p.id, p.number
        )))
    }
}

async fn project(
    State(state): State<AppState>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    let mut explained = Explanation::default();
    let result = (|| {
        check_project(&state, &project)?;
        authorize(
            &state,
            &headers,
            iam::PROJECT_GET,
            &[project_scope(&state)],
            &mut explained,
        )?;
        let p = &state.config().project;
        Ok(json!({
            "projectNumber": p.number,
            "projectId": p.id,
            "lifecycleState": "ACTIVE",
            "name": p.id,
            "createTime": "2024-01-01T00:00:00.000Z",
            "parent": {"type": "organization", "id": "0"},
        }))
    })();
    answer(result, explained)
}

async fn policy_method(
    State(live): State<Live>,
    Path(project_and_method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut explained = Explanation::default();
    let result = async {
        let Some((project, method)) = project_and_method.rsplit_once(':') else {
            return Err(ApiError::NotFound(format!(
                "no method in `{project_and_method}`; expected PROJECT:getIamPolicy or PROJECT:setIamPolicy"
            )));
        };
        explained.target = Some(format!("project {project}"));
        let state = live.get();
        check_project(&state, project)?;
        match method {
            "getIamPolicy" => {
                authorize(
                    &state,
                    &headers,
                    iam::PROJECT_GET_IAM_POLICY,
                    &[project_scope(&state)],
                    &mut explained,
                )?;
                Ok(policy::render(&state.config().policy))
            }
            "setIamPolicy" => {
                authorize(
                    &state,
                    &headers,
                    iam::PROJECT_SET_IAM_POLICY,
                    &[project_scope(&state)],
                    &mut explained,
                )?;
                let next = set_policy(
                    &live,
                    &body,
                    |now| Ok(now.config().policy.clone()),
                    |layer, sent| layer.project_policy = Some(sent),
                )
                .await?;
                explained.reason = Some(format!(
                    "{} set the project's IAM policy: {}",
                    explained.principal.as_deref().unwrap_or("the caller"),
                    next.config().policy.describe()
                ));
                Ok(policy::render(&next.config().policy))
            }
            other => Err(ApiError::NotFound(format!(
                "unknown method `{other}`{}",
                crate::suggest::did_you_mean(other, ["getIamPolicy", "setIamPolicy"])
            ))),
        }
    }
    .await;
    answer(result, explained)
}
