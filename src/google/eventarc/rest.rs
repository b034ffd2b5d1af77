//! Eventarc's REST/JSON transport (`https://eventarc.googleapis.com/v1/…`): what gcloud
//! calls. Each handler hands over to [`Call`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::get;
use serde_json::Value;

use super::Call;
use super::json::TriggerIn;
use crate::broker::Page;
use crate::google::emulated::{self, body, listed, page};
use crate::google::errors::ApiError;
use crate::state::Live;

const LOCATION: &str = "/v1/projects/{project}/locations/{location}";

pub(crate) fn routes() -> Router<Live> {
    Router::new()
        .route(
            &format!("{LOCATION}/triggers"),
            get(triggers).post(triggers),
        )
        .route(
            &format!("{LOCATION}/triggers/{{trigger}}"),
            get(trigger).delete(trigger).patch(trigger),
        )
        .route(
            &format!("{LOCATION}/operations/{{operation}}"),
            get(operation),
        )
}

/// The most a request's body may be: a trigger is small.
const MAX_BODY: usize = 64 * 1024;

async fn answer(
    live: &Live,
    req: Request,
    f: impl FnOnce(&mut Call, Method, Bytes) -> Result<Value, ApiError>,
) -> Response {
    emulated::answer(live, req, MAX_BODY, f).await
}

/// The value of query parameter `key`, if given.
fn query_value(query: Option<&str>, key: &str) -> Option<String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

async fn triggers(
    State(live): State<Live>,
    Path((project, location)): Path<(String, String)>,
    req: Request,
) -> Response {
    let query = req.uri().query().map(str::to_owned);
    let parent = format!("projects/{project}/locations/{location}");
    answer(&live, req, |call, method, bytes| {
        if method == Method::POST {
            let id = query_value(query.as_deref(), "triggerId")
                .or_else(|| query_value(query.as_deref(), "trigger_id"))
                .unwrap_or_default();
            if query_value(query.as_deref(), "validateOnly").as_deref() == Some("true") {
                return Err(ApiError::InvalidArgument(
                    "frontdoor does not emulate validateOnly: create the trigger".to_owned(),
                ));
            }
            return call.create_trigger(&parent, &id, body::<TriggerIn>(&bytes)?);
        }
        let (size, token) = page(query.as_deref())?;
        let (triggers, next) = call.list_triggers(
            &parent,
            Page {
                size,
                token: &token,
            },
        )?;
        Ok(listed("triggers", triggers.into_iter(), next))
    })
    .await
}

async fn trigger(
    State(live): State<Live>,
    Path((project, location, id)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let name = format!("projects/{project}/locations/{location}/triggers/{id}");
    answer(&live, req, |call, method, _| match method {
        Method::GET => call.get_trigger(&name),
        Method::DELETE => call.delete_trigger(&name),
        _ => Err(ApiError::NotFound(
            "frontdoor does not emulate UpdateTrigger (gcloud eventarc triggers update): delete the trigger and create it again".to_owned(),
        )),
    })
    .await
}

async fn operation(
    State(live): State<Live>,
    Path((project, location, id)): Path<(String, String, String)>,
    req: Request,
) -> Response {
    let name = format!("projects/{project}/locations/{location}/operations/{id}");
    answer(&live, req, |call, _, _| call.get_operation(&name)).await
}
