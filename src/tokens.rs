//! ID tokens: minting the shapes Google issues (SPEC §2) and verifying them with a distinct
//! error for every way a credential can be unusable (SPEC §3 step 6). Pure: keys and the
//! current time are passed in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use crate::config::{ServiceAccount, User};
use crate::keys::KeySet;
use jws::{Audience, Jws, KidRule, Rules};

/// The OAuth client id of `gcloud`, the audience of its user ID tokens, which Cloud Run
/// accepts for user tokens (documented).
pub const GCLOUD_CLIENT_ID: &str = "32555940559.apps.googleusercontent.com";
/// Lifetime of every token Google issues.
pub const LIFETIME: i64 = 3600;
/// The longest lifetime (`exp - iat`) a verified ID token may claim. Google's own are an
/// hour; Google's Node verifier refuses anything over a day, and so do we.
pub const MAX_LIFETIME: i64 = 86_400;
/// The longest audience, scope list or signing payload accepted from a client (our
/// choice): far above any real one, and a bound on what one request can make frontdoor keep.
pub const MAX_PARAMETER_BYTES: usize = 8 * 1024;
/// Google's access tokens start with this; they are not ID tokens.
pub const ACCESS_TOKEN_PREFIX: &str = "ya29.";

pub use jws::{Claims, MAX_TOKEN_BYTES, SKEW, TokenError};

/// The claims of a service account's ID token.
pub fn service_account_claims(
    issuer: &str,
    sa: &ServiceAccount,
    audience: &str,
    now: i64,
) -> Claims {
    let Value::Object(claims) = json!({
        "iss": issuer,
        "aud": audience,
        "azp": sa.unique_id,
        "sub": sa.unique_id,
        "email": sa.email,
        "email_verified": true,
        "iat": now,
        "exp": now + LIFETIME,
    }) else {
        unreachable!("json! of an object literal is an object")
    };
    claims
}

/// The claims of a user's ID token, as `gcloud auth print-identity-token` gives them.
pub fn user_claims(issuer: &str, user: &User, audience: Option<&str>, now: i64) -> Claims {
    let Value::Object(claims) = json!({
        "iss": issuer,
        "aud": audience.unwrap_or(GCLOUD_CLIENT_ID),
        "azp": GCLOUD_CLIENT_ID,
        "sub": user.id,
        "email": user.email,
        "email_verified": true,
        "iat": now,
        "exp": now + LIFETIME,
    }) else {
        unreachable!("json! of an object literal is an object")
    };
    claims
}

/// Signs `claims` with the key set's current key.
pub fn mint(keys: &KeySet, claims: &Claims) -> String {
    jws::sign_claims(keys.current(), claims)
}

/// A token whose signature, issuer and lifetime have been checked. The audience is not:
/// which audiences are accepted depends on who verifies (the front door, tokeninfo, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
    /// The token's `header.payload`, without its signature: what a decision shows, shared
    /// by every decision about the token rather than copied into each.
    pub signed_part: std::sync::Arc<str>,
    pub kid: String,
    pub claims: Claims,
    pub aud: String,
    pub sub: String,
    pub email: Option<String>,
    pub iat: i64,
    pub exp: i64,
}

impl Verified {
    /// `email` unless the token has none.
    pub fn email(&self) -> Option<&str> {
        self.email.as_deref()
    }
}

/// Checks structure, algorithm, key, signature, issuer, `exp` and `iat`, in that order,
/// then reads the claims every ID token carries. Keys come only from the issuer's own set.
pub fn verify(keys: &KeySet, token: &str, issuer: &str, now: i64) -> Result<Verified, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge(token.len()));
    }
    if token.starts_with(ACCESS_TOKEN_PREFIX) {
        return Err(TokenError::AccessToken);
    }
    let rules = Rules {
        issuer,
        audience: Audience::One,
        kid: KidRule::Required,
        max_lifetime: MAX_LIFETIME,
    };
    let jws = Jws::parse(token)?;
    // Looked up by kid, the one key there can be.
    let key = jws.kid().and_then(|kid| keys.get(kid));
    let checked = jws.verify(key.map(|k| (Some(k.kid()), k)), &rules, now)?;
    let claims = checked.claims;
    let sub = jws::string(&claims, "sub", "a string")?;
    let email = match claims.get("email") {
        None => None,
        Some(Value::String(e)) => Some(e.to_ascii_lowercase()),
        Some(_) => return Err(TokenError::ClaimType("email", "a string")),
    };
    let signed_part = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
    Ok(Verified {
        signed_part: signed_part.into(),
        // Required by the rules above.
        kid: checked.kid.unwrap_or_default(),
        aud: checked.aud,
        sub,
        email,
        iat: checked.iat,
        exp: checked.exp,
        claims,
    })
}

/// The claims of a JWT without any check, for showing what a container received. Never use
/// this to decide anything.
pub fn peek_claims(token: &str) -> Option<Claims> {
    peek(token, 1, "payload")
}

/// The header of a JWT without any check, for showing; never for deciding.
pub fn peek_header(token: &str) -> Option<Claims> {
    peek(token, 0, "header")
}

fn peek(token: &str, segment: usize, what: &'static str) -> Option<Claims> {
    let text = token.split('.').nth(segment)?;
    jws::json_object(&URL_SAFE_NO_PAD.decode(text).ok()?, what).ok()
}

pub mod jws;
pub mod minted;
pub mod verified;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wycheproof;
