//! Cloud Tasks' gRPC transport, `google.cloud.tasks.v2.CloudTasks`: what the client
//! libraries speak. As for Pub/Sub, the generated crate ships messages and clients only,
//! so each method is dispatched here by its path to tonic's own server codec
//! (`emulated::unary`).

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::post;
use googleapis_tonic_google_cloud_tasks_v2::google::cloud::tasks::v2 as pb;

use super::Call;
use crate::broker::Page;
use crate::google::emulated::{self, Who};
use crate::google::errors::ApiError;
use crate::state::{AppState, Live};

pub(crate) fn routes() -> Router<Live> {
    Router::new().route("/google.cloud.tasks.v2.CloudTasks/{method}", post(methods))
}

/// The largest message a call may carry: a task of Google's 1 MB, with room to spare.
const MAX_MESSAGE: usize = 2 * 1024 * 1024;

async fn unary<Q, A>(
    state: AppState,
    who: Who,
    req: Request,
    f: fn(&mut Call, Q) -> Result<A, ApiError>,
) -> Response
where
    Q: prost::Message + Default + Send + 'static,
    A: prost::Message + Send + 'static,
{
    emulated::unary(state, who, req, MAX_MESSAGE, f).await
}

async fn methods(State(live): State<Live>, Path(method): Path<String>, req: Request) -> Response {
    let state = live.get();
    let who = match emulated::grpc_who(&state, &req) {
        Ok(who) => who,
        Err(refused) => return refused,
    };
    match method.as_str() {
        "CreateQueue" => {
            unary(state, who, req, |call, r: pb::CreateQueueRequest| {
                call.create_queue(&r.parent, r.queue.unwrap_or_default())
            })
            .await
        }
        "GetQueue" => {
            unary(state, who, req, |call, r: pb::GetQueueRequest| {
                call.get_queue(&r.name)
            })
            .await
        }
        "ListQueues" => {
            unary(state, who, req, |call, r: pb::ListQueuesRequest| {
                if !r.filter.is_empty() {
                    return Err(ApiError::InvalidArgument(
                        "frontdoor does not filter queues: list them without a filter".into(),
                    ));
                }
                let (queues, next_page_token) =
                    call.list_queues(&r.parent, Page::of(r.page_size, &r.page_token))?;
                Ok(pb::ListQueuesResponse {
                    queues,
                    next_page_token,
                })
            })
            .await
        }
        "UpdateQueue" => {
            unary(state, who, req, |call, r: pb::UpdateQueueRequest| {
                let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
                call.update_queue(r.queue.unwrap_or_default(), &mask)
            })
            .await
        }
        "DeleteQueue" => {
            unary(state, who, req, |call, r: pb::DeleteQueueRequest| {
                call.delete_queue(&r.name)
            })
            .await
        }
        "PurgeQueue" => {
            unary(state, who, req, |call, r: pb::PurgeQueueRequest| {
                call.purge_queue(&r.name)
            })
            .await
        }
        "PauseQueue" => {
            unary(state, who, req, |call, r: pb::PauseQueueRequest| {
                call.pause_queue(&r.name)
            })
            .await
        }
        "ResumeQueue" => {
            unary(state, who, req, |call, r: pb::ResumeQueueRequest| {
                call.resume_queue(&r.name)
            })
            .await
        }
        "CreateTask" => {
            unary(state, who, req, |call, r: pb::CreateTaskRequest| {
                call.create_task(&r.parent, r.task.unwrap_or_default(), r.response_view)
            })
            .await
        }
        "GetTask" => {
            unary(state, who, req, |call, r: pb::GetTaskRequest| {
                call.get_task(&r.name, r.response_view)
            })
            .await
        }
        "ListTasks" => {
            unary(state, who, req, |call, r: pb::ListTasksRequest| {
                let (tasks, next_page_token) = call.list_tasks(
                    &r.parent,
                    r.response_view,
                    Page::of(r.page_size, &r.page_token),
                )?;
                Ok(pb::ListTasksResponse {
                    tasks,
                    next_page_token,
                })
            })
            .await
        }
        "DeleteTask" => {
            unary(state, who, req, |call, r: pb::DeleteTaskRequest| {
                call.delete_task(&r.name)
            })
            .await
        }
        "RunTask" => {
            unary(state, who, req, |call, r: pb::RunTaskRequest| {
                call.run_task(&r.name, r.response_view)
            })
            .await
        }
        other => {
            emulated::unimplemented("google.cloud.tasks.v2.CloudTasks", other, "docs/tasks.md")
        }
    }
}
