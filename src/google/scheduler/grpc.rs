//! Cloud Scheduler's gRPC transport, `google.cloud.scheduler.v1.CloudScheduler`: what the
//! client libraries speak, dispatched by path to tonic's own server codec
//! (`emulated::unary`).

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::post;
use googleapis_tonic_google_cloud_scheduler_v1::google::cloud::scheduler::v1 as pb;

use super::Call;
use crate::broker::Page;
use crate::google::emulated::{self, Who};
use crate::google::errors::ApiError;
use crate::state::{AppState, Live};

pub(crate) fn routes() -> Router<Live> {
    Router::new().route(
        "/google.cloud.scheduler.v1.CloudScheduler/{method}",
        post(methods),
    )
}

/// The largest message a call may carry.
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
        "CreateJob" => {
            unary(state, who, req, |call, r: pb::CreateJobRequest| {
                call.create_job(&r.parent, r.job.unwrap_or_default())
            })
            .await
        }
        "GetJob" => {
            unary(state, who, req, |call, r: pb::GetJobRequest| {
                call.get_job(&r.name)
            })
            .await
        }
        "ListJobs" => {
            unary(state, who, req, |call, r: pb::ListJobsRequest| {
                let (jobs, next_page_token) =
                    call.list_jobs(&r.parent, Page::of(r.page_size, &r.page_token))?;
                Ok(pb::ListJobsResponse {
                    jobs,
                    next_page_token,
                })
            })
            .await
        }
        "UpdateJob" => {
            unary(state, who, req, |call, r: pb::UpdateJobRequest| {
                let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
                call.update_job(r.job.unwrap_or_default(), &mask)
            })
            .await
        }
        "DeleteJob" => {
            unary(state, who, req, |call, r: pb::DeleteJobRequest| {
                call.delete_job(&r.name)
            })
            .await
        }
        "PauseJob" => {
            unary(state, who, req, |call, r: pb::PauseJobRequest| {
                call.pause_job(&r.name)
            })
            .await
        }
        "ResumeJob" => {
            unary(state, who, req, |call, r: pb::ResumeJobRequest| {
                call.resume_job(&r.name)
            })
            .await
        }
        "RunJob" => {
            unary(state, who, req, |call, r: pb::RunJobRequest| {
                call.run_job(&r.name)
            })
            .await
        }
        other => emulated::unimplemented(
            "google.cloud.scheduler.v1.CloudScheduler",
            other,
            "docs/scheduler.md",
        ),
    }
}
