//! Stable codes for the front door's refusals: short names a CI test can assert instead of a
//! sentence, each with its meaning and fix. They appear in the decision (its JSON and log
//! event), in `X-Frontdoor-Reason` (`CODE: reason`) and `frontdoor decisions`;
//! `docs/front-door.md` lists every one (a test here holds it to that).

use serde::{Deserialize, Serialize};

use crate::tokens::TokenError;

/// Why the front door turned a request away, by name. Never renamed: tests depend on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Code {
    MalformedRequest,
    UnknownHost,
    ServiceRemoved,
    IngressInternalOnly,
    NoCredential,
    HeaderRepeated,
    NotBearer,
    TokenTooLarge,
    AccessTokenSent,
    NotAJwt,
    AlgNotAccepted,
    CritNotUnderstood,
    MissingKid,
    UnknownKid,
    BadSignature,
    WrongIssuer,
    AudienceNotAccepted,
    MissingClaim,
    BadClaim,
    TokenExpired,
    IssuedInFuture,
    NotYetValid,
    LifetimeTooLong,
    NoPrincipal,
    NoInvokerBinding,
    BodyTooLarge,
    UpstreamFailed,
}

/// Every code, its meaning and its fix, in the order of Cloud Run's checks: the table of
/// `docs/front-door.md`.
pub(crate) const ALL: &[(Code, &str, &str)] = &[
    (
        Code::MalformedRequest,
        "the front door cannot take the request itself (two Host headers, CONNECT, a body cut short)",
        "fix the client; the reason says what was wrong",
    ),
    (
        Code::UnknownHost,
        "the Host names no service (404, as Cloud Run answers an unknown URL)",
        "use a service's URL or its own listener; the reason lists the known hosts",
    ),
    (
        Code::ServiceRemoved,
        "the service of this listener was removed by a reload",
        "call a service in the configuration",
    ),
    (
        Code::IngressInternalOnly,
        "the service's ingress admits internal callers only, and this one is not (404)",
        "call from a service frontdoor started, list the address in `internal_callers`, or set `ingress: all`",
    ),
    (
        Code::NoCredential,
        "a private service, and no `Authorization` or `X-Serverless-Authorization` header (403)",
        "send `Authorization: Bearer ID_TOKEN` with an ID token for the service's URL",
    ),
    (
        Code::HeaderRepeated,
        "the credential header is given more than once",
        "send it once, with one token",
    ),
    (
        Code::NotBearer,
        "the header is not `Bearer TOKEN` (another scheme, no token, several tokens, not ASCII)",
        "send `Bearer ` and one ID token",
    ),
    (
        Code::TokenTooLarge,
        "the credential is longer than any ID token (16 KiB)",
        "send the ID token alone",
    ),
    (
        Code::AccessTokenSent,
        "an access token (`ya29.…`) was sent where an ID token is needed",
        "fetch an ID token for the service's URL (metadata `identity?audience=…`, `fetch_id_token`, `generateIdToken`)",
    ),
    (
        Code::NotAJwt,
        "the credential is not a JWT (not three base64url segments of JSON)",
        "send the token as issued, whole and unchanged",
    ),
    (
        Code::AlgNotAccepted,
        "the JWT is signed with another algorithm than RS256 (`none`, `HS256`, …)",
        "use a token Google's issuer (frontdoor's) signed",
    ),
    (
        Code::CritNotUnderstood,
        "the JWT header lists critical extensions frontdoor does not understand",
        "use a token Google's issuer (frontdoor's) signed",
    ),
    (
        Code::MissingKid,
        "the JWT header names no key",
        "use a token Google's issuer (frontdoor's) signed",
    ),
    (
        Code::UnknownKid,
        "the JWT's key is not one of the issuer's published keys",
        "mint the token with this frontdoor (another state directory has other keys)",
    ),
    (
        Code::BadSignature,
        "the JWT's signature does not verify: it was altered or signed by another key",
        "send the token unchanged",
    ),
    (
        Code::WrongIssuer,
        "the JWT's issuer is not Google's (frontdoor's)",
        "use a token from the metadata server, `/token`, `generateIdToken` or gcloud",
    ),
    (
        Code::AudienceNotAccepted,
        "the JWT's audience is not the service's URL or one of its custom audiences",
        "mint the token for the service's URL (no path or query) or add a `custom_audiences` entry",
    ),
    (
        Code::MissingClaim,
        "the JWT lacks a claim it must have (`aud`, `exp`, `iat`, `sub`)",
        "use a token the issuer minted",
    ),
    (
        Code::BadClaim,
        "a claim has the wrong type (`exp` a string, `aud` a list)",
        "use a token the issuer minted",
    ),
    (
        Code::TokenExpired,
        "the JWT expired (five minutes of clock skew allowed)",
        "fetch a new token; client libraries refresh before expiry",
    ),
    (
        Code::IssuedInFuture,
        "the JWT's `iat` is in the future beyond the skew",
        "check the clocks",
    ),
    (
        Code::NotYetValid,
        "the JWT's `nbf` is in the future beyond the skew",
        "check the clocks",
    ),
    (
        Code::LifetimeTooLong,
        "the JWT claims to live longer than Google's tokens may",
        "use a token the issuer minted",
    ),
    (
        Code::NoPrincipal,
        "the token names no email, and its `sub` is no declared service account's id",
        "mint it with its email included (`includeEmail`, `format=full`)",
    ),
    (
        Code::NoInvokerBinding,
        "no binding grants `run.routes.invoke` to the caller, on the service or the project (403)",
        "grant `roles/run.invoker` to the principal the reason names",
    ),
    (
        Code::BodyTooLarge,
        "the request was allowed, but its body is over Cloud Run's 32 MiB limit for HTTP/1 (413)",
        "send a smaller body, or stream it over HTTP/2",
    ),
    (
        Code::UpstreamFailed,
        "the request was allowed, but the service's container did not answer (503, 504, 500 for an instance that could not start)",
        "see the service's own log; `frontdoor status` shows its instance",
    ),
];

impl Code {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Code::MalformedRequest => "malformed_request",
            Code::UnknownHost => "unknown_host",
            Code::ServiceRemoved => "service_removed",
            Code::IngressInternalOnly => "ingress_internal_only",
            Code::NoCredential => "no_credential",
            Code::HeaderRepeated => "header_repeated",
            Code::NotBearer => "not_bearer",
            Code::TokenTooLarge => "token_too_large",
            Code::AccessTokenSent => "access_token_sent",
            Code::NotAJwt => "not_a_jwt",
            Code::AlgNotAccepted => "alg_not_accepted",
            Code::CritNotUnderstood => "crit_not_understood",
            Code::MissingKid => "missing_kid",
            Code::UnknownKid => "unknown_kid",
            Code::BadSignature => "bad_signature",
            Code::WrongIssuer => "wrong_issuer",
            Code::AudienceNotAccepted => "audience_not_accepted",
            Code::MissingClaim => "missing_claim",
            Code::BadClaim => "bad_claim",
            Code::TokenExpired => "token_expired",
            Code::IssuedInFuture => "issued_in_future",
            Code::NotYetValid => "not_yet_valid",
            Code::LifetimeTooLong => "lifetime_too_long",
            Code::NoPrincipal => "no_principal",
            Code::NoInvokerBinding => "no_invoker_binding",
            Code::BodyTooLarge => "body_too_large",
            Code::UpstreamFailed => "upstream_failed",
        }
    }

    /// The code of a token the verifier refused.
    pub(crate) fn of_token(e: &TokenError) -> Code {
        match e {
            TokenError::TooLarge(_) => Code::TokenTooLarge,
            TokenError::AccessToken => Code::AccessTokenSent,
            TokenError::NotThreeSegments(_)
            | TokenError::NotBase64(_)
            | TokenError::NotJsonObject(_) => Code::NotAJwt,
            TokenError::Algorithm(_) => Code::AlgNotAccepted,
            TokenError::CriticalExtensions(_) => Code::CritNotUnderstood,
            TokenError::MissingKid => Code::MissingKid,
            TokenError::UnknownKid(_) => Code::UnknownKid,
            TokenError::BadSignature(_) | TokenError::NoKeyVerifies(_) => Code::BadSignature,
            TokenError::WrongIssuer { .. } => Code::WrongIssuer,
            TokenError::WrongAudience { .. } => Code::AudienceNotAccepted,
            TokenError::MissingClaim(_) => Code::MissingClaim,
            TokenError::ClaimType(..) => Code::BadClaim,
            TokenError::Expired { .. } => Code::TokenExpired,
            TokenError::IssuedInFuture { .. } => Code::IssuedInFuture,
            TokenError::NotYetValid { .. } => Code::NotYetValid,
            TokenError::TooLongLived { .. } => Code::LifetimeTooLong,
        }
    }
}

/// [`ALL`] as JSON: `[{"code", "meaning", "fix"}, …]`.
pub(crate) fn as_json() -> serde_json::Value {
    ALL.iter()
        .map(|(code, meaning, fix)| serde_json::json!({"code": code, "meaning": meaning, "fix": fix}))
        .collect()
}

impl std::fmt::Display for Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_is_listed_once_and_serializes_as_its_name() {
        for (i, (code, meaning, fix)) in ALL.iter().enumerate() {
            assert!(!meaning.is_empty() && !fix.is_empty(), "{code}");
            assert!(
                ALL[i + 1..].iter().all(|(other, ..)| other != code),
                "{code} listed twice"
            );
            let json = serde_json::to_string(code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: Code = serde_json::from_str(&json).unwrap();
            assert_eq!(back, *code);
        }
        assert_eq!(ALL.len(), 27, "a code added to the enum is added to ALL");
    }

    /// The table of codes in `docs/front-door.md` names every code, with its meaning and fix.
    #[test]
    fn the_front_door_page_lists_every_code() {
        let page = include_str!("../../docs/front-door.md");
        for (code, meaning, fix) in ALL {
            let row = format!("| `{code}` | {meaning} | {fix} |");
            assert!(
                page.contains(&row),
                "docs/front-door.md lacks the row:\n{row}"
            );
        }
    }
}
