//! `POST /frontdoor/v1/keys`: what `frontdoor keys create` asks of a running server, so
//! that the key is made in the state directory the server keys from, under the same limit
//! and lock as the IAM API's `keys create`, and logged as one of the Admin API's
//! decisions. Mounted by `ops` beside `frontdoor token`'s endpoint, for callers on this
//! machine alone (a key file holds a private key).
//! - `{"service_account": EMAIL, "as": MEMBER}`: MEMBER's `iam.serviceAccountKeys.create`
//!   on the account is judged as the IAM API judges it, and a refusal is Google's 403;
//! - without `as`, an administrator's key, which the decision says (as the CLI says on
//!   stderr).
//!
//! `"loopback_urls": true` names the listener the request came to in the key file instead
//! of Google's hosts (`--loopback-urls`).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::post;
use serde::Deserialize;
use serde_json::json;

use super::MAX_KEYS_PER_ACCOUNT;
use super::cli_token::{on_this_machine, principal, recorded};
use super::errors::ApiError;
use super::iamcredentials::authorize;
use crate::decisions::{Explanation, Surface};
use crate::iam;
use crate::peer::Peer;
use crate::state::{AppState, Live};

const PATH: &str = "/frontdoor/v1/keys";

/// The route, for `ops` to mount.
pub(crate) fn routes() -> axum::Router<Live> {
    axum::Router::new().route(PATH, post(create))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Ask {
    service_account: String,
    #[serde(rename = "as")]
    caller: Option<String>,
    #[serde(default)]
    loopback_urls: bool,
}

async fn create(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let mut explained = Explanation::default();
    let result = match on_this_machine(&peer, PATH, iam::KEYS_CREATE) {
        Ok(()) => make(&state, &peer, &body, &mut explained).await,
        Err(e) => Err(e),
    };
    recorded(
        &state,
        &headers,
        (Surface::Admin, PATH),
        started,
        result.map(Json),
        explained,
    )
}

async fn make(
    state: &AppState,
    peer: &Peer,
    body: &[u8],
    explained: &mut Explanation,
) -> Result<serde_json::Value, ApiError> {
    let ask: Ask = serde_json::from_slice(body).map_err(|e| {
        ApiError::InvalidArgument(format!(
            "the body is not {{\"service_account\": EMAIL, \"as\": MEMBER, \"loopback_urls\": BOOL}}: {e}"
        ))
    })?;
    let config = state.config();
    let target = config
        .service_account(&ask.service_account)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "service account `{}` is not declared in the configuration in force{}",
                ask.service_account,
                crate::suggest::did_you_mean(
                    &ask.service_account,
                    config.service_accounts.iter().map(|a| a.email.as_str())
                )
            ))
        })?
        .clone();
    explained.target = Some(target.email.clone());
    explained.permission = Some(iam::KEYS_CREATE);
    let checked = match ask.caller.as_deref() {
        Some(caller) => {
            let who = principal(caller)?;
            explained.principal = Some(who.to_string());
            authorize(state, &who, &[], &target, iam::KEYS_CREATE)?;
            format!(
                "(`frontdoor keys create --as`: {who} may use {} on the account)",
                iam::KEYS_CREATE
            )
        }
        None => {
            explained.principal = Some("administrator".to_owned());
            "with `frontdoor keys create`, as an administrator would: no IAM check was made (`--as MEMBER` asks for one)".to_owned()
        }
    };
    let hint = format!(
        " (`frontdoor keys list --iam-account {0}`, then `frontdoor keys delete KEY_ID`)",
        target.email
    );
    let (key, held) = super::service_accounts::new_key(state, &target.email, &hint).await?;
    let (oauth2, certs) = if ask.loopback_urls {
        let base = format!("http://{}", peer.local);
        (base.clone(), base)
    } else {
        (
            "https://oauth2.googleapis.com".to_owned(),
            "https://www.googleapis.com".to_owned(),
        )
    };
    let file = super::key_file(state.config(), &target, &key, &oauth2, &certs);
    explained.did(format!(
        "made key {} of service account {}, which now holds {held} of Google's {MAX_KEYS_PER_ACCOUNT}, {checked}",
        key.kid(),
        target.email
    ));
    Ok(
        json!({ "key_file": file, "key_id": key.kid(), "held": held, "limit": MAX_KEYS_PER_ACCOUNT }),
    )
}
