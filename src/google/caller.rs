//! Who is calling a Google API: from the bearer token, which must be an access token this
//! emulator issued (metadata server, `/token`, STS) or a service account's self-signed JWT.

use axum::http::{HeaderMap, header};

use super::assertion;
use super::errors::ApiError;
use crate::iam::Principal;
use crate::state::AppState;
use crate::tokens::ACCESS_TOKEN_PREFIX;

pub(super) fn caller(state: &AppState, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, t)| t.trim())
        .ok_or(ApiError::CredentialsMissing)?;
    if token.starts_with(ACCESS_TOKEN_PREFIX) {
        return state
            .access_tokens()
            .lookup(token, state.now())
            .map(|grant| grant.principal)
            .ok_or_else(|| {
                ApiError::Unauthenticated(
                    "the access token is unknown to this frontdoor or has expired".into(),
                )
            });
    }
    // An ID token from our own issuer is the classic mix-up: say so.
    if crate::tokens::verify(state.keys(), token, &state.config().issuer, state.now()).is_ok() {
        return Err(ApiError::Unauthenticated(
            "an ID token was sent; this API needs an access token (metadata `token`, `/token` without target_audience, or STS)".into(),
        ));
    }
    let (account, _) = assertion::verify(state, token)?;
    Ok(Principal::ServiceAccount(account.email.clone()))
}
