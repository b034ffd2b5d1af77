//! frontdoor's own endpoints: `GET /frontdoor/v1/decisions[?limit=N]`, the front door's
//! recent decisions, oldest first; and `GET /frontdoor/v1/status`, the configuration in
//! force, each service's revision and instance, and how the last reload went.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::{AppState, Live};
use crate::upstream::supervisor::Phase;

pub(super) fn routes() -> Router<Live> {
    Router::new()
        .route("/frontdoor/v1/decisions", get(list))
        .route("/frontdoor/v1/status", get(status))
}

#[derive(Deserialize)]
struct Params {
    limit: Option<usize>,
}

async fn list(State(state): State<AppState>, Query(params): Query<Params>) -> Json<Value> {
    let limit = params.limit.unwrap_or(crate::decisions::CAPACITY);
    Json(json!({ "decisions": state.decisions.recent(limit) }))
}

async fn status(State(state): State<AppState>) -> Json<Value> {
    let reload = state
        .reload
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let services: Vec<Value> = state
        .config
        .services
        .iter()
        .map(|s| {
            let instance = match (&s.upstream, state.supervisor.get(&s.name)) {
                (crate::config::Upstream::Command(_), Some(i)) => json!({
                    "revision": i.revision,
                    "phase": match i.phase() {
                        Phase::Starting => "starting".to_owned(),
                        Phase::Ready(addr) => format!("ready at {addr}"),
                        Phase::Failed(why) => format!("failed: {why}"),
                        Phase::Stopped => "stopped".to_owned(),
                    },
                }),
                _ => Value::Null,
            };
            json!({
                "name": s.name,
                "revision": state.revision(&s.name),
                "upstream": s.upstream.to_string(),
                "instance": instance,
            })
        })
        .collect();
    Json(json!({
        "config_file": state.config.file.display().to_string(),
        // From the reload status, so that generation and last_reload always agree.
        "generation": reload.generation,
        "last_reload": reload.last,
        "services": services,
    }))
}
