//! `GET /frontdoor/v1/decisions[?limit=N]`: the front door's recent decisions, oldest first.

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::{AppState, Live};

pub(super) fn routes() -> Router<Live> {
    Router::new().route("/frontdoor/v1/decisions", get(list))
}

#[derive(Deserialize)]
struct Params {
    limit: Option<usize>,
}

async fn list(State(state): State<AppState>, Query(params): Query<Params>) -> Json<Value> {
    let limit = params.limit.unwrap_or(crate::decisions::CAPACITY);
    Json(json!({ "decisions": state.decisions.recent(limit) }))
}
