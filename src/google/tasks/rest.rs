//! Cloud Tasks' REST/JSON transport (`https://cloudtasks.googleapis.com/v2/…`): what
//! gcloud calls. Each handler reads the path, query and body, and hands over to the one
//! [`Call`] both transports share.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::Call;
use super::json::{self, CreateTaskIn, QueueIn, RunTaskIn};
use crate::broker::Page;
use crate::google::emulated::{self, body, custom, listed, page};
use crate::google::errors::ApiError;
use crate::state::Live;

const QUEUES: &str = "/v2/projects/{project}/locations/{location}/queues";

pub(crate) fn routes() -> Router<Live> {
    Router::new()
        .route(QUEUES, get(queues).post(queues))
        .route(
            &format!("{QUEUES}/{{queue}}"),
            get(queue).patch(queue).delete(queue).post(queue),
        )
        .route(&format!("{QUEUES}/{{queue}}/tasks"), get(tasks).post(tasks))
        .route(
            &format!("{QUEUES}/{{queue}}/tasks/{{task}}"),
            get(task).delete(task).post(task),
        )
}

/// The most a request's body may be: a task of Google's 1 MB in base64, with its JSON.
const MAX_BODY: usize = 2 * 1024 * 1024;

async fn answer(
    live: &Live,
    req: Request,
    f: impl FnOnce(&mut Call, Method, Bytes) -> Result<Value, ApiError>,
) -> Response {
    emulated::answer(live, req, MAX_BODY, f).await
}

fn no_method(method: &Method, what: &str) -> ApiError {
    ApiError::NotFound(format!(
        "frontdoor answers no Cloud Tasks method `{method}` on {what}"
    ))
}

/// A query parameter's value, if given.
fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn queues(
    State(live): State<Live>,
    Path((project, location)): Path<(String, String)>,
    req: Request,
) -> Response {
    let query = req.uri().query().map(str::to_owned);
    let parent = format!("projects/{project}/locations/{location}");
    answer(&live, req, |call, method, bytes| {
        if method == Method::POST {
            let queue = body::<QueueIn>(&bytes)?.into_queue(None)?;
            return Ok(json::queue_out(&call.create_queue(&parent, queue)?));
        }
        if query_value(query.as_deref(), "filter").is_some_and(|f| !f.is_empty()) {
            return Err(ApiError::InvalidArgument(
                "frontdoor does not filter queues: list them without a filter".into(),
            ));
        }
        let (size, token) = page(query.as_deref())?;
        let (queues, next) = call.list_queues(
            &parent,
            Page {
                size,
                token: &token,
            },
        )?;
        Ok(listed("queues", queues.iter().map(json::queue_out), next))
    })
    .await
}

async fn queue(
    State(live): State<Live>,
    Path((project, location, segment)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let query = req.uri().query().map(str::to_owned);
    answer(&live, req, |call, method, bytes| {
        let (id, verb) = custom(&segment);
        let name = format!("projects/{project}/locations/{location}/queues/{id}");
        let queue = match (&method, verb) {
            (&Method::GET, None) => call.get_queue(&name)?,
            (&Method::PATCH, None) => {
                let update = body::<QueueIn>(&bytes)?.into_queue(Some(&name))?;
                let mask: Vec<String> = query_value(query.as_deref(), "updateMask")
                    .or_else(|| query_value(query.as_deref(), "update_mask"))
                    .map(|m| m.split(',').map(str::to_owned).collect())
                    .unwrap_or_default();
                call.update_queue(update, &mask)?
            }
            (&Method::DELETE, None) => {
                call.delete_queue(&name)?;
                return Ok(json!({}));
            }
            (&Method::POST, Some("pause")) => call.pause_queue(&name)?,
            (&Method::POST, Some("resume")) => call.resume_queue(&name)?,
            (&Method::POST, Some("purge")) => call.purge_queue(&name)?,
            _ => return Err(no_method(&method, &segment)),
        };
        Ok(json::queue_out(&queue))
    })
    .await
}

async fn tasks(
    State(live): State<Live>,
    Path((project, location, queue)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let query = req.uri().query().map(str::to_owned);
    let queue = format!("projects/{project}/locations/{location}/queues/{queue}");
    answer(&live, req, |call, method, bytes| {
        if method == Method::POST {
            let asked = body::<CreateTaskIn>(&bytes)?;
            let view = json::view_in(asked.response_view.as_deref())?;
            let task = asked.task.unwrap_or_default().into_task()?;
            return Ok(json::task_out(&call.create_task(&queue, task, view)?));
        }
        let view = json::view_in(
            query_value(query.as_deref(), "responseView")
                .or_else(|| query_value(query.as_deref(), "response_view"))
                .as_deref(),
        )?;
        let (size, token) = page(query.as_deref())?;
        let (tasks, next) = call.list_tasks(
            &queue,
            view,
            Page {
                size,
                token: &token,
            },
        )?;
        Ok(listed("tasks", tasks.iter().map(json::task_out), next))
    })
    .await
}

async fn task(
    State(live): State<Live>,
    Path((project, location, queue, segment)): Path<(String, String, String, String)>,
    req: Request,
) -> Response {
    let query = req.uri().query().map(str::to_owned);
    answer(&live, req, |call, method, bytes| {
        let (id, verb) = custom(&segment);
        let name = format!("projects/{project}/locations/{location}/queues/{queue}/tasks/{id}");
        let view_asked = query_value(query.as_deref(), "responseView")
            .or_else(|| query_value(query.as_deref(), "response_view"));
        let task = match (&method, verb) {
            (&Method::GET, None) => call.get_task(&name, json::view_in(view_asked.as_deref())?)?,
            (&Method::DELETE, None) => {
                call.delete_task(&name)?;
                return Ok(json!({}));
            }
            (&Method::POST, Some("run")) => {
                let asked = body::<RunTaskIn>(&bytes)?;
                call.run_task(&name, json::view_in(asked.response_view.as_deref())?)?
            }
            _ => return Err(no_method(&method, &segment)),
        };
        Ok(json::task_out(&task))
    })
    .await
}
