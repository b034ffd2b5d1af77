//! `GET|POST /tokeninfo` (and `/oauth2/v3/tokeninfo`): what a token says, flat, every value
//! a string, as Google's endpoint answers; `invalid_token` for anything it cannot vouch for.

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Map, Value};

use super::errors::{OAuthError, OAuthRefusal};
use super::oauth2::{field, form};
use crate::decisions::Explanation;
use crate::iam::Principal;
use crate::state::{AppState, Live};
use crate::tokens;

pub(super) fn routes() -> Router<Live> {
    Router::new()
        .route("/tokeninfo", get(info).post(info))
        .route("/oauth2/v3/tokeninfo", get(info).post(info))
}

fn flat(value: &Value) -> Value {
    match value {
        Value::String(s) => Value::String(s.clone()),
        other => Value::String(other.to_string()),
    }
}

async fn info(State(state): State<AppState>, RawQuery(query): RawQuery, body: Bytes) -> Response {
    let mut fields = form(query.unwrap_or_default().as_bytes());
    fields.extend(form(&body));
    let now = state.now();
    if let Some(jwt) = field(&fields, "id_token") {
        let verified = match tokens::verify(state.keys(), jwt, &state.config().issuer, now) {
            Ok(v) => v,
            Err(e) => {
                return OAuthRefusal::explained(
                    OAuthError::InvalidToken,
                    "Invalid Value",
                    e.to_string(),
                )
                .into_response();
            }
        };
        let mut out: Map<String, Value> = verified
            .claims
            .iter()
            .map(|(k, v)| (k.clone(), flat(v)))
            .collect();
        out.insert("alg".into(), "RS256".into());
        out.insert("kid".into(), Value::String(verified.kid.clone()));
        out.insert("typ".into(), "JWT".into());
        let mut response = Json(Value::Object(out)).into_response();
        Explanation {
            principal: verified
                .email()
                .map(|e| e.to_owned())
                .or(Some(verified.sub.clone())),
            target: Some(verified.aud.clone()),
            permission: None,
            reason: Some("a valid ID token of this issuer".into()),
            code: None,
        }
        .attach(&mut response);
        return response;
    }
    if let Some(token) = field(&fields, "access_token") {
        let Some(grant) = state.access_tokens().lookup(token, now) else {
            return OAuthRefusal::explained(
                OAuthError::InvalidToken,
                "Invalid Value",
                "the access token is unknown to this frontdoor or has expired",
            )
            .into_response();
        };
        let mut out = Map::new();
        match &grant.principal {
            Principal::ServiceAccount(email) => {
                let id = state
                    .config()
                    .service_account(email)
                    .map_or_else(|| email.clone(), |sa| sa.unique_id.clone());
                for k in ["azp", "aud", "sub"] {
                    out.insert(k.into(), Value::String(id.clone()));
                }
                out.insert("email".into(), Value::String(email.clone()));
                out.insert("email_verified".into(), "true".into());
            }
            other => {
                out.insert("sub".into(), Value::String(other.to_string()));
            }
        }
        out.insert("scope".into(), Value::String(grant.scopes.join(" ")));
        out.insert("exp".into(), Value::String(grant.exp.to_string()));
        out.insert(
            "expires_in".into(),
            Value::String((grant.exp - now).to_string()),
        );
        out.insert("access_type".into(), "online".into());
        let mut response = Json(Value::Object(out)).into_response();
        Explanation {
            principal: Some(grant.principal.to_string()),
            reason: Some("an access token this frontdoor issued".into()),
            ..Explanation::default()
        }
        .attach(&mut response);
        return response;
    }
    OAuthRefusal::explained(
        OAuthError::InvalidToken,
        "Invalid Value",
        "give `id_token=` or `access_token=`",
    )
    .into_response()
}
