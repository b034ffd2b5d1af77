//! ID tokens: minting the shapes Google issues (SPEC §2) and verifying them with a distinct
//! error for every way a credential can be unusable (SPEC §3 step 6). Pure: keys and the
//! current time are passed in.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::config::{ServiceAccount, User};
use crate::keys::{KeySet, VerifyingKey};

/// The OAuth client id of `gcloud`, the audience of its user ID tokens, which Cloud Run
/// accepts for user tokens (documented).
pub const GCLOUD_CLIENT_ID: &str = "32555940559.apps.googleusercontent.com";
/// Lifetime of every token Google issues.
pub const LIFETIME: i64 = 3600;
/// Clock skew allowed on `exp`, `iat` and `nbf` (our choice).
pub const SKEW: i64 = 300;
/// The longest lifetime (`exp - iat`) a verified token may claim. Google's own are an hour;
/// Google's Node verifier refuses anything over a day, and so do we.
pub const MAX_LIFETIME: i64 = 86_400;
/// The longest credential read (our choice): Google's ID tokens are about 1 KiB, and
/// anything longer is refused before it is decoded or remembered.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// The longest audience, scope list or signing payload accepted from a client (our
/// choice): far above any real one, and a bound on what one request can make frontdoor keep.
pub const MAX_PARAMETER_BYTES: usize = 8 * 1024;
/// Google's access tokens start with this; they are not ID tokens.
pub const ACCESS_TOKEN_PREFIX: &str = "ya29.";

pub type Claims = Map<String, Value>;

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

/// Signs `claims` with the key set's current key: `{"alg":"RS256","kid":…,"typ":"JWT"}`.
pub fn mint(keys: &KeySet, claims: &Claims) -> String {
    let key = keys.current();
    let header = json!({"alg": "RS256", "kid": key.kid(), "typ": "JWT"});
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(Value::Object(claims.clone()).to_string()));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}

/// Why a credential is unusable. Every variant is a 401 at the front door; the messages are
/// written for the person who sent the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the credential is {0} bytes, more than the {MAX_TOKEN_BYTES} frontdoor reads; an ID token is about 1 KiB"
    )]
    TooLarge(usize),
    #[error(
        "an access token (ya29.…) was sent where an ID token is needed; fetch an ID token for the service's URL (metadata `identity?audience=…`, `fetch_id_token`, `generateIdToken`) instead of an access token"
    )]
    AccessToken,
    #[error(
        "the credential is not a JWT: it has {0} dot-separated segments, a JWT has three (header.payload.signature)"
    )]
    NotThreeSegments(usize),
    #[error("the JWT's {0} is not base64url")]
    NotBase64(&'static str),
    #[error("the JWT's {0} is not a JSON object")]
    NotJsonObject(&'static str),
    #[error("the JWT is signed with `{0}`; only RS256 tokens signed by the issuer are accepted")]
    Algorithm(String),
    #[error(
        "the JWT header lists critical extensions ({0}) in `crit`; frontdoor understands none, so it must refuse the token (RFC 7515 §4.1.11)"
    )]
    CriticalExtensions(String),
    #[error("the JWT header has no `kid`, so no issuer key can verify it")]
    MissingKid,
    #[error(
        "the JWT's key id `{0}` is not one of the issuer's published keys (was it minted by another frontdoor, or with a different state directory?)"
    )]
    UnknownKid(String),
    #[error(
        "the JWT's signature does not verify with the issuer's key `{0}`; the token was altered or signed by another key"
    )]
    BadSignature(String),
    #[error("the JWT's issuer is {found}, expected `{expected}`")]
    WrongIssuer { expected: String, found: String },
    #[error("the JWT's `{0}` claim is missing")]
    MissingClaim(&'static str),
    #[error("the JWT's `{0}` claim is not {1}")]
    ClaimType(&'static str, &'static str),
    #[error(
        "the JWT expired at {exp}, {ago} s ago (allowing {SKEW} s of clock skew); fetch a new token"
    )]
    Expired { exp: i64, ago: i64 },
    #[error(
        "the JWT was issued at {iat}, {ahead} s in the future (allowing {SKEW} s of clock skew)"
    )]
    IssuedInFuture { iat: i64, ahead: i64 },
    #[error(
        "the JWT is not valid before {nbf}, {ahead} s from now (`nbf`, allowing {SKEW} s of clock skew)"
    )]
    NotYetValid { nbf: i64, ahead: i64 },
    #[error(
        "the JWT claims a lifetime of {lifetime} s (`exp` - `iat`), more than the {MAX_LIFETIME} s a verifier accepts; Google's tokens live 3600 s"
    )]
    TooLongLived { lifetime: i128 },
}

/// A token whose signature, issuer and lifetime have been checked. The audience is not:
/// which audiences are accepted depends on who verifies (the front door, tokeninfo, …).
#[derive(Debug, Clone, PartialEq)]
pub struct Verified {
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

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::NotBase64(what))
}

fn json_object(bytes: &[u8], what: &'static str) -> Result<Claims, TokenError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::NotJsonObject(what)),
    }
}

/// The compact-JWS checks every token goes through before its claims are read, in this
/// order: its size, three base64url segments, a JSON header with `alg` RS256 and no
/// `crit`, a `kid` that `key_for` knows, and the signature. Returns the kid and the
/// payload's bytes. (Tested against Project Wycheproof's vectors in `wycheproof.rs`.)
pub fn verify_signature<'k, K: VerifyingKey + ?Sized + 'k>(
    token: &str,
    key_for: impl FnOnce(&str) -> Option<&'k K>,
) -> Result<(String, Vec<u8>), TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge(token.len()));
    }
    let mut parts = token.split('.');
    let (Some(header_part), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::NotThreeSegments(token.split('.').count()));
    };
    let header = json_object(&decode_part(header_part, "header")?, "header")?;
    match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => {}
        Some(other) => return Err(TokenError::Algorithm(other.to_owned())),
        None => return Err(TokenError::Algorithm("(no alg)".to_owned())),
    }
    if let Some(crit) = header.get("crit") {
        return Err(TokenError::CriticalExtensions(crit.to_string()));
    }
    let kid = header
        .get("kid")
        .and_then(Value::as_str)
        .ok_or(TokenError::MissingKid)?;
    let key = key_for(kid).ok_or_else(|| TokenError::UnknownKid(kid.to_owned()))?;
    let signature = decode_part(signature, "signature")?;
    let signed = &token[..header_part.len() + 1 + payload.len()];
    if !key.verify(signed.as_bytes(), &signature) {
        return Err(TokenError::BadSignature(kid.to_owned()));
    }
    Ok((kid.to_owned(), decode_part(payload, "payload")?))
}

/// Checks structure, algorithm, key, signature, issuer, `exp` and `iat`, in that order.
/// Header fields other than `alg` and `kid` (`jku`, `x5u`, `jwk`, …) are ignored: keys come
/// only from the issuer's own set.
pub fn verify(keys: &KeySet, token: &str, issuer: &str, now: i64) -> Result<Verified, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(TokenError::TooLarge(token.len()));
    }
    if token.starts_with(ACCESS_TOKEN_PREFIX) {
        return Err(TokenError::AccessToken);
    }
    let (kid, payload) = verify_signature(token, |kid| keys.get(kid))?;
    let claims = json_object(&payload, "payload")?;

    match claims.get("iss") {
        Some(Value::String(iss)) if iss == issuer => {}
        found => {
            return Err(TokenError::WrongIssuer {
                expected: issuer.to_owned(),
                found: found.map_or_else(
                    || "missing".to_owned(),
                    |v| {
                        format!(
                            "`{}`",
                            v.as_str().map_or_else(|| v.to_string(), str::to_owned)
                        )
                    },
                ),
            });
        }
    }
    let (exp, iat) = check_times(&claims, now)?;
    let aud = string(&claims, "aud", "a string (one audience)")?;
    let sub = string(&claims, "sub", "a string")?;
    let email = match claims.get("email") {
        None => None,
        Some(Value::String(e)) => Some(e.to_ascii_lowercase()),
        Some(_) => return Err(TokenError::ClaimType("email", "a string")),
    };
    Ok(Verified {
        kid,
        aud,
        sub,
        email,
        iat,
        exp,
        claims,
    })
}

/// The time rules every verified JWT meets, ID token or STS subject token: `exp` not past,
/// `iat` not ahead and `nbf` (if any) not ahead, each allowing [`SKEW`], and a lifetime of at
/// most [`MAX_LIFETIME`]. Returns `exp` and `iat`.
pub fn check_times(claims: &Claims, now: i64) -> Result<(i64, i64), TokenError> {
    // Times are attacker-chosen integers: compare and subtract in i128 so that values near
    // i64::MAX or MIN neither overflow nor print nonsense.
    let exp = integer(claims, "exp")?;
    let ahead = |t: i64| i128::from(t) - i128::from(now);
    if ahead(exp) < -i128::from(SKEW) {
        return Err(TokenError::Expired {
            exp,
            ago: clamp(-ahead(exp)),
        });
    }
    let iat = integer(claims, "iat")?;
    if ahead(iat) > i128::from(SKEW) {
        return Err(TokenError::IssuedInFuture {
            iat,
            ahead: clamp(ahead(iat)),
        });
    }
    if claims.contains_key("nbf") {
        let nbf = integer(claims, "nbf")?;
        if ahead(nbf) > i128::from(SKEW) {
            return Err(TokenError::NotYetValid {
                nbf,
                ahead: clamp(ahead(nbf)),
            });
        }
    }
    let lifetime = i128::from(exp) - i128::from(iat);
    if lifetime > i128::from(MAX_LIFETIME) {
        return Err(TokenError::TooLongLived { lifetime });
    }
    Ok((exp, iat))
}

/// A difference of two i64 times, which always fits in i128, shown as an i64.
fn clamp(seconds: i128) -> i64 {
    i64::try_from(seconds).unwrap_or(if seconds < 0 { i64::MIN } else { i64::MAX })
}

fn integer(claims: &Claims, name: &'static str) -> Result<i64, TokenError> {
    match claims.get(name) {
        None => Err(TokenError::MissingClaim(name)),
        Some(v) => v
            .as_i64()
            .ok_or(TokenError::ClaimType(name, "an integer number of seconds")),
    }
}

fn string(
    claims: &Claims,
    name: &'static str,
    expected: &'static str,
) -> Result<String, TokenError> {
    match claims.get(name) {
        None => Err(TokenError::MissingClaim(name)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(TokenError::ClaimType(name, expected)),
    }
}

/// The claims of a JWT without any check, for showing what a container received. Never use
/// this to decide anything.
pub fn peek_claims(token: &str) -> Option<Claims> {
    let payload = token.split('.').nth(1)?;
    json_object(&URL_SAFE_NO_PAD.decode(payload).ok()?, "payload").ok()
}

pub mod minted;
pub mod verified;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod wycheproof;
