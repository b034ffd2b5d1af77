//! Resource Manager v1 as gcloud calls it: the project itself (`gcloud run services
//! replace` looks it up to match a numeric namespace) and its IAM policy (`gcloud projects
//! get-iam-policy|add-iam-policy-binding|remove-iam-policy-binding`). The project's policy
//! is the one `iam_policy` in `services.yaml` gives, with the Admin APIs' layer over it.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::json;

use super::admin::{answer, answered, authorized_project, set_policy, split_method};
use super::policy;
use crate::decisions::Explanation;
use crate::iam;
use crate::state::{AppState, Live};

pub(super) fn routes() -> Router<Live> {
    Router::new().route("/v1/projects/{project}", get(project).post(policy_method))
}

async fn project(
    State(state): State<AppState>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    let explained = Explanation::default();
    answered(explained, |explained| {
        authorized_project(&state, &headers, &project, iam::PROJECT_GET, explained)?;
        let p = &state.config().project;
        Ok(json!({
            "projectNumber": p.number,
            "projectId": p.id,
            "lifecycleState": "ACTIVE",
            "name": p.id,
            "createTime": "2024-01-01T00:00:00.000Z",
            "parent": {"type": "organization", "id": "0"},
        }))
    })
}

async fn policy_method(
    State(live): State<Live>,
    Path(project_and_method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut explained = Explanation::default();
    let result = async {
        let (project, method) =
            split_method(&project_and_method, &["getIamPolicy", "setIamPolicy"])?;
        explained.target = Some(format!("project {project}"));
        let state = live.get();
        let permission = if method == "getIamPolicy" {
            iam::PROJECT_GET_IAM_POLICY
        } else {
            iam::PROJECT_SET_IAM_POLICY
        };
        authorized_project(&state, &headers, project, permission, &mut explained)?;
        if method == "getIamPolicy" {
            return Ok(policy::render(&state.config().policy));
        }
        let next = set_policy(
            &live,
            &body,
            |now| Ok(now.config().policy.clone()),
            |layer, sent| layer.project_policy = Some(sent),
        )
        .await?;
        explained.did(format!(
            "set the project's IAM policy: {}",
            next.config().policy.describe()
        ));
        Ok(policy::render(&next.config().policy))
    }
    .await;
    answer(result, explained)
}
