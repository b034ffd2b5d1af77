//! The dashboard, on the google listener at [`PATH`]: live front-door decisions with their
//! chain of checks (and IAM Credentials' on who may mint which account's tokens), ranked
//! fixes, who can call whom, and "would this pass?" (which asks
//! `POST /frontdoor/v1/explain`). Server-rendered by askama templates (`templates/`, every
//! string escaped), with a little plain JavaScript for the live parts; every asset is in
//! the binary and the page's Content-Security-Policy lets it load nothing from elsewhere.

mod callers;
mod events;
mod graph;

use std::sync::Arc;

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

use crate::config::Enforcement;
use crate::decisions::chain::ORDER;
use crate::state::{AppState, Live};

/// Where the page is, on the google listener.
pub(crate) const PATH: &str = "/frontdoor/ui/";

const APP_JS: &str = include_str!("dashboard/assets/app.js");
const STYLE_CSS: &str = include_str!("dashboard/assets/style.css");
const ICON_SVG: &str = include_str!("dashboard/assets/icon.svg");

/// Only this origin's scripts, styles and connections; no frames, no plugins.
const CSP: HeaderValue = HeaderValue::from_static(
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
);

pub(crate) fn routes() -> Router<Live> {
    let hub = Arc::new(events::Hub::default());
    Router::new()
        .route("/frontdoor/ui", get(|| async { Redirect::permanent(PATH) }))
        .route(PATH, get(page))
        .route("/frontdoor/ui/graph", get(graph_fragment))
        .route(
            "/frontdoor/ui/app.js",
            get(|| async { asset(APP_JS, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/frontdoor/ui/style.css",
            get(|| async { asset(STYLE_CSS, "text/css; charset=utf-8") }),
        )
        .route(
            "/frontdoor/ui/icon.svg",
            get(|| async { asset(ICON_SVG, "image/svg+xml") }),
        )
        .route(
            "/frontdoor/v1/events",
            get(move |State(live): State<Live>| async move { hub.subscribe(live) }),
        )
}

fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        body,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "dashboard.html")]
struct Page<'a> {
    project: &'a str,
    audit: bool,
    services: Vec<&'a str>,
    accounts: Vec<&'a str>,
    checks_json: String,
    codes_json: String,
    /// The graph fragment, rendered (and escaped) by its own template.
    graph: String,
    /// Why the last reload was refused, while it stands: a banner at the top of the page,
    /// which the feed's `config` event keeps up to date.
    refused: Option<String>,
}

#[derive(Template)]
#[template(path = "graph.html")]
struct GraphView {
    generation: u64,
    graph: graph::Graph,
}

fn render(template: &impl Template) -> Response {
    match template.render() {
        Ok(html) => {
            let mut response =
                ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
            let headers = response.headers_mut();
            headers.insert(header::CONTENT_SECURITY_POLICY, CSP);
            headers.insert(
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            );
            headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        // Our own templates over our own data: a failure here is a bug of ours.
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("the dashboard's template failed: {e}"),
        )
            .into_response(),
    }
}

fn graph_view(state: &AppState) -> GraphView {
    GraphView {
        generation: state.generation(),
        graph: graph::of(state.config(), &callers::of_state(state)),
    }
}

async fn graph_fragment(State(state): State<AppState>) -> Response {
    render(&graph_view(&state))
}

async fn page(State(state): State<AppState>) -> Response {
    let config = state.config();
    let graph = match graph_view(&state).render() {
        Ok(html) => html,
        Err(e) => return render_error(&e),
    };
    let checks: Vec<(&str, &str)> = ORDER.iter().map(|(c, t)| (c.as_str(), *t)).collect();
    render(&Page {
        project: &config.project.id,
        audit: config.enforcement == Enforcement::Audit,
        services: config.services.iter().map(|s| s.name.as_str()).collect(),
        accounts: config
            .service_accounts
            .iter()
            .map(|a| a.email.as_str())
            .collect(),
        checks_json: serde_json::to_string(&checks).unwrap_or_default(),
        codes_json: crate::decisions::codes::as_json().to_string(),
        graph,
        refused: state
            .reloads()
            .snapshot()
            .last
            .filter(|l| !l.ok)
            .and_then(|l| l.error),
    })
}

fn render_error(e: &askama::Error) -> Response {
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("the dashboard's template failed: {e}"),
    )
        .into_response()
}
