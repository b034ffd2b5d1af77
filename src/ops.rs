//! frontdoor's own surfaces, not Google's: its decisions, status, health and metrics
//! (`introspect`), the dashboard (`dashboard`), "would this pass?" (`explain`) and
//! `frontdoor token`'s minting and `frontdoor keys create`'s keys (`google::cli_token_routes`
//! and `google::cli_keys_routes`, which IAM's checks live beside). Mounted
//! once, beside Google's APIs on the google listener (`server::google_listener`), and
//! answering only a request that names this machine (issue 26: a web page could otherwise
//! reach them by DNS rebinding, read the decision log and post to explain).

mod dashboard;
mod explain;
mod fixes;
mod introspect;

use axum::Router;

use crate::state::Live;

pub(crate) use dashboard::PATH as DASHBOARD_PATH;

/// Every route of frontdoor's own, for the google listener.
pub(crate) fn app(live: Live) -> Router {
    Router::new()
        .merge(introspect::routes())
        .merge(dashboard::routes())
        .merge(explain::routes())
        .merge(crate::google::cli_token_routes())
        .merge(crate::google::cli_keys_routes())
        .route_layer(axum::middleware::from_fn(
            crate::peer::same_origin_json_only,
        ))
        .route_layer(axum::middleware::from_fn(crate::peer::local_names_only))
        .with_state(live)
}
