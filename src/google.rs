//! The google APIs listener (SPEC §6): the issuer's discovery document and published keys,
//! the OAuth2 token endpoint, tokeninfo, IAM Credentials and STS, and the front door's
//! decision log.

mod assertion;
mod caller;
mod decisions;
mod errors;
mod iamcredentials;
mod issuer;
mod oauth2;
mod sts;
mod tokeninfo;

use axum::Router;
use axum::http::HeaderMap;

use crate::state::{AppState, Live};

pub fn app(live: Live) -> Router {
    Router::new()
        .merge(issuer::routes())
        .merge(decisions::routes())
        .merge(oauth2::routes())
        .merge(tokeninfo::routes())
        .merge(iamcredentials::routes())
        .merge(sts::routes())
        .with_state(live)
}

/// `http://HOST` as the caller reached us, so the URLs we hand out work from wherever the
/// caller is (a container may know us by another name than the bound address).
pub(crate) fn base_url(headers: &HeaderMap, state: &AppState) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(|| state.config.listen.google.to_string(), str::to_owned);
    format!("http://{host}")
}
