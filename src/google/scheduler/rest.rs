//! Cloud Scheduler's REST/JSON transport (`https://cloudscheduler.googleapis.com/v1/…`):
//! what gcloud calls. Each handler hands over to the one [`Call`] both transports share.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::Call;
use super::json::{self, JobIn};
use crate::broker::Page;
use crate::google::emulated::{self, body, custom, listed, page};
use crate::google::errors::ApiError;
use crate::state::Live;

const JOBS: &str = "/v1/projects/{project}/locations/{location}/jobs";

pub(crate) fn routes() -> Router<Live> {
    Router::new().route(JOBS, get(jobs).post(jobs)).route(
        &format!("{JOBS}/{{job}}"),
        get(job).patch(job).delete(job).post(job),
    )
}

/// The most a request's body may be.
const MAX_BODY: usize = 2 * 1024 * 1024;

async fn answer(
    live: &Live,
    req: Request,
    f: impl FnOnce(&mut Call, Method, Bytes) -> Result<Value, ApiError>,
) -> Response {
    emulated::answer(live, req, MAX_BODY, f).await
}

async fn jobs(
    State(live): State<Live>,
    Path((project, location)): Path<(String, String)>,
    req: Request,
) -> Response {
    let query = req.uri().query().map(str::to_owned);
    let parent = format!("projects/{project}/locations/{location}");
    answer(&live, req, |call, method, bytes| {
        if method == Method::POST {
            let job = body::<JobIn>(&bytes)?.into_job(None)?;
            return Ok(json::job_out(&call.create_job(&parent, job)?));
        }
        let (size, token) = page(query.as_deref())?;
        let (jobs, next) = call.list_jobs(
            &parent,
            Page {
                size,
                token: &token,
            },
        )?;
        Ok(listed("jobs", jobs.iter().map(json::job_out), next))
    })
    .await
}

async fn job(
    State(live): State<Live>,
    Path((project, location, segment)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let query = req.uri().query().map(str::to_owned);
    answer(&live, req, |call, method, bytes| {
        let (id, verb) = custom(&segment);
        let name = format!("projects/{project}/locations/{location}/jobs/{id}");
        let job = match (&method, verb) {
            (&Method::GET, None) => call.get_job(&name)?,
            (&Method::PATCH, None) => {
                let update = body::<JobIn>(&bytes)?.into_job(Some(&name))?;
                let mask: Vec<String> =
                    url::form_urlencoded::parse(query.as_deref().unwrap_or("").as_bytes())
                        .filter(|(k, _)| k == "updateMask" || k == "update_mask")
                        .flat_map(|(_, v)| v.split(',').map(str::to_owned).collect::<Vec<_>>())
                        .collect();
                call.update_job(update, &mask)?
            }
            (&Method::DELETE, None) => {
                call.delete_job(&name)?;
                return Ok(json!({}));
            }
            (&Method::POST, Some("pause")) => call.pause_job(&name)?,
            (&Method::POST, Some("resume")) => call.resume_job(&name)?,
            (&Method::POST, Some("run")) => call.run_job(&name)?,
            _ => {
                return Err(ApiError::NotFound(format!(
                    "frontdoor answers no Cloud Scheduler method `{method}` on {segment}"
                )));
            }
        };
        Ok(json::job_out(&job))
    })
    .await
}
