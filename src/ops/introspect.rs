//! frontdoor's own endpoints, for looking inside it (served on the google listener, but no
//! part of Google's APIs): `GET /frontdoor/v1/decisions[?limit=N][&surface=S]`, the
//! recent decisions of every surface (or one), oldest first, and
//! `GET /frontdoor/v1/decisions/N`, decision number N (as the dashboard's feed numbers them); `GET /healthz` and
//! `GET /metrics` (Prometheus); and `GET /frontdoor/v1/status`, the configuration in
//! force, each service's revision and instance, and how the last reload went;
//! `GET /frontdoor/v1/codes`, every refusal code with its meaning and fix.

use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::decisions::{SURFACES, Surface};
use crate::state::{AppState, Live};
use crate::upstream::supervisor::Phase;

pub(crate) fn routes() -> Router<Live> {
    Router::new()
        .route("/frontdoor/v1/decisions", get(list))
        .route("/frontdoor/v1/decisions/{seq}", get(one))
        .route("/frontdoor/v1/status", get(status))
        .route("/frontdoor/v1/codes", get(codes))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
}

/// The front door's refusal codes, in the order of its checks.
async fn codes() -> Json<Value> {
    Json(json!({ "codes": crate::decisions::codes::as_json() }))
}

/// 200 once every listener is bound (this one answers only after all are) and every
/// `command` service's instance is ready; 503 naming those that are not.
async fn healthz(State(state): State<AppState>) -> Response {
    let waiting: Vec<String> = state
        .config()
        .services
        .iter()
        .filter(|s| matches!(s.upstream, crate::config::Upstream::Command(_)))
        .filter_map(
            |s| match state.supervisor().get(&s.name).map(|i| i.phase()) {
                Some(Phase::Ready(_)) => None,
                Some(Phase::Failed(why)) => Some(format!("{}: failed: {why}", s.name)),
                Some(_) => Some(format!("{}: starting", s.name)),
                None => Some(format!("{}: not started", s.name)),
            },
        )
        .collect();
    if waiting.is_empty() {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        let body = format!("not ready:\n{}\n", waiting.join("\n"));
        (StatusCode::SERVICE_UNAVAILABLE, body).into_response()
    }
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Labeled {
    name: String,
}

/// Prometheus metrics (OpenMetrics text): decisions by surface, service, outcome and status,
/// their latencies, the caches' sizes, instance restarts, and reloads applied and refused.
async fn metrics(State(state): State<AppState>) -> Response {
    let mut registry = Registry::default();
    state.decisions().register_metrics(&mut registry);

    let (decisions, decision_bytes) = state.decisions().size();
    let entries: Family<Labeled, Gauge> = Family::default();
    let bytes: Family<Labeled, Gauge> = Family::default();
    for (name, (n, b)) in [
        ("verified_tokens", state.frontdoor().verified_tokens()),
        ("metadata_tokens", state.metadata_tokens().size()),
        ("decision_log", (decisions, decision_bytes as u64)),
    ] {
        let label = Labeled { name: name.into() };
        entries
            .get_or_create(&label)
            .set(i64::try_from(n).unwrap_or(i64::MAX));
        bytes
            .get_or_create(&label)
            .set(i64::try_from(b).unwrap_or(i64::MAX));
    }
    registry.register(
        "frontdoor_cache_entries",
        "Entries held by each bounded cache",
        entries,
    );
    registry.register_with_unit(
        "frontdoor_cache_size",
        "About how many bytes each cache holds; each is bounded in bytes",
        Unit::Bytes,
        bytes,
    );

    let restarts: Family<Labeled, Counter> = Family::default();
    for s in &state.config().services {
        if let Some(instance) = state.supervisor().get(&s.name) {
            restarts
                .get_or_create(&Labeled {
                    name: s.name.clone(),
                })
                .inc_by(instance.restarts());
        }
    }
    registry.register(
        "frontdoor_instance_restarts",
        "Times a command service's process exited and was started again",
        restarts,
    );

    let (applied, refused) = {
        let reload = state.reloads().snapshot();
        (reload.applied, reload.refused)
    };
    let reloads: Family<Labeled, Counter> = Family::default();
    for (name, n) in [("applied", applied), ("refused", refused)] {
        reloads
            .get_or_create(&Labeled { name: name.into() })
            .inc_by(n);
    }
    registry.register(
        "frontdoor_reloads",
        "Changes to the configuration file applied and refused",
        reloads,
    );

    let mut text = String::new();
    if let Err(e) = encode(&mut text, &registry) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

#[derive(Deserialize)]
struct Params {
    limit: Option<usize>,
    /// Only this surface's decisions (`frontdoor`, `iamcredentials`, `token`, `sts`,
    /// `tokeninfo`, `metadata`).
    surface: Option<String>,
}

/// A decision as JSON, with its ranked fixes (`fixes`) when it is a refusal.
fn with_fixes(config: &crate::config::Config, decision: &crate::decisions::Decision) -> Value {
    let mut body = json!(decision);
    if !decision.allowed || decision.would_deny.is_some() {
        let claims = decision.token.as_ref().map(|t| t.claims());
        let audience = claims.as_ref().and_then(|c| c.get("aud")?.as_str());
        let fixes = super::fixes::ranked(config, &super::fixes::Refusal::of(decision, audience));
        if !fixes.is_empty() {
            body["fixes"] = json!(fixes);
        }
    }
    body
}

async fn list(State(state): State<AppState>, Query(params): Query<Params>) -> Response {
    let decisions = state.decisions();
    let limit = params.limit.unwrap_or(crate::decisions::CAPACITY);
    let surface = match params.surface.as_deref() {
        None => None,
        Some(name) => match Surface::named(name) {
            Some(surface) => Some(surface),
            None => {
                let body = json!({"error": format!(
                    "unknown surface `{name}`{}; surfaces are {}",
                    crate::suggest::did_you_mean(name, SURFACES),
                    SURFACES.join(", ")
                )});
                return (StatusCode::BAD_REQUEST, Json(body)).into_response();
            }
        },
    };
    let config = state.config();
    let listed: Vec<Value> = decisions
        .recent_of(limit, surface)
        .iter()
        .map(|d| with_fixes(config, d))
        .collect();
    Json(json!({ "decisions": listed })).into_response()
}

/// Decision number `seq` (as the dashboard's feed numbers them), while the log keeps it.
async fn one(
    State(state): State<AppState>,
    axum::extract::Path(seq): axum::extract::Path<String>,
) -> Response {
    let decisions = state.decisions();
    let Ok(n) = seq.parse::<u64>() else {
        let body = json!({"error": format!("`{}` is not a decision number (1, 2, …)", crate::decisions::escape_controls(&seq))});
        return (StatusCode::BAD_REQUEST, Json(body)).into_response();
    };
    match decisions.numbered(n) {
        Some(d) => {
            let mut body = with_fixes(state.config(), &d);
            body["seq"] = json!(n);
            Json(body).into_response()
        }
        None => {
            let body = json!({"error": format!(
                "decision {n} is not kept: the log keeps the last {} decisions (at most {} MiB)",
                crate::decisions::CAPACITY,
                crate::decisions::CAPACITY_BYTES / (1024 * 1024)
            )});
            (StatusCode::NOT_FOUND, Json(body)).into_response()
        }
    }
}

async fn status(State(state): State<AppState>) -> Json<Value> {
    let reload = state.reloads().snapshot();
    let services: Vec<Value> = state
        .config()
        .services
        .iter()
        .map(|s| {
            let instance = match (&s.upstream, state.supervisor().get(&s.name)) {
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
                "url": s.url,
                "upstream": s.upstream.to_string(),
                "instance": instance,
            })
        })
        .collect();
    // The layer is read from disk (a few kilobytes at most) so that status shows what is
    // kept, not only what is in force.
    let dir = state.state_dir().path();
    let changes = match crate::config::Layer::read(dir) {
        Ok(layer) => json!(layer.summary()),
        Err(e) => json!([format!("unreadable: {e}")]),
    };
    let project = &state.config().project;
    Json(json!({
        "config_file": state.config().file.display().to_string(),
        // The project in force, which `frontdoor env` prints (a file refused at its last
        // reload says nothing about what runs).
        "project": {"id": project.id, "number": project.number, "region": project.region},
        "enforcement": state.config().enforcement.as_str(),
        "changes_file": dir.join(crate::config::layer::FILE).display().to_string(),
        "changes": changes,
        // From the reload status, so that generation and last_reload always agree.
        "generation": reload.generation,
        "last_reload": reload.last,
        "checks": reload.checks,
        "config_sha256": reload.handled,
        "services": services,
        // What Pub/Sub holds: its topics, subscriptions and undelivered messages, and the
        // bytes they count against the store's limit.
        "pubsub": state.pubsub().held(),
        "tasks": state.tasks().held(),
        "scheduler": state.scheduler().held(),
    }))
}
