//! Stable codes for every surface's refusals: short names a CI test can assert instead of a
//! sentence, each with its meaning and fix. They appear in the decision (its JSON and log
//! event), in `X-Frontdoor-Reason` (`CODE: reason`) and `frontdoor decisions`;
//! `docs/front-door.md` lists the front door's, `docs/tokens.md` the other surfaces' (a test
//! here holds each page to its table).

use serde::{Deserialize, Serialize};

use crate::tokens::TokenError;

/// Why a surface turned a request away, by name. Never renamed: tests depend on them.
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
    // The other surfaces': Google's REST APIs (the Admin APIs, IAM Credentials).
    CredentialsMissing,
    CredentialsInvalid,
    PermissionDenied,
    ActAsDenied,
    InvalidArgument,
    NotFound,
    Aborted,
    AlreadyExists,
    ResourceExhausted,
    FailedPrecondition,
    InternalError,
    // The token endpoints' (`/token`, STS, tokeninfo): OAuth2's own error names.
    InvalidRequest,
    UnsupportedGrantType,
    InvalidGrant,
    InvalidScope,
    InvalidToken,
    InvalidTarget,
    // The metadata server's.
    ProxiedRequest,
    MetadataFlavorMissing,
}

/// The front door's codes, their meaning and fix, in the order of Cloud Run's checks: the
/// table of `docs/front-door.md`.
pub(crate) const FRONT_DOOR: &[(Code, &str, &str)] = &[
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

/// The other surfaces' codes (the Admin APIs, IAM Credentials, the token endpoints, the
/// metadata server), their meaning and fix: the table of `docs/tokens.md`. The decision's
/// `permission` names what IAM checked, its `reason` who holds what where.
pub(crate) const OTHER_SURFACES: &[(Code, &str, &str)] = &[
    (
        Code::CredentialsMissing,
        "a Google API call without `Authorization: Bearer ACCESS_TOKEN` (401)",
        "send an access token from the metadata server, `/token`, STS or `gcloud auth print-access-token`",
    ),
    (
        Code::CredentialsInvalid,
        "the bearer token is no access token this frontdoor issued, or it expired (401)",
        "fetch a fresh access token from this frontdoor (an ID token is not an access token)",
    ),
    (
        Code::PermissionDenied,
        "no role of the caller carries the permission the method needs, on the resource or the project (403)",
        "grant one of the roles the reason lists to the principal it names, on the resource it names",
    ),
    (
        Code::ActAsDenied,
        "the deployer may not run a service as that account: no `iam.serviceAccounts.actAs` on it (403)",
        "grant `roles/iam.serviceAccountUser` on the account to the deployer, or deploy as an account it may use",
    ),
    (
        Code::InvalidArgument,
        "a field, parameter or body is malformed, or over a limit of frontdoor's (400)",
        "the reason names the field and what it must be",
    ),
    (
        Code::NotFound,
        "no such service, account, key or project, or no method at that path (404)",
        "check the name against `services.yaml`; the reason says what was looked for",
    ),
    (
        Code::Aborted,
        "a read-modify-write lost a race: its `etag` is stale (409)",
        "read the resource again and retry the change",
    ),
    (
        Code::AlreadyExists,
        "the topic or subscription to create exists already (409)",
        "get the one there, or delete it first; a test can make its names unique",
    ),
    (
        Code::ResourceExhausted,
        "frontdoor holds as many undelivered Pub/Sub messages as it will (429)",
        "acknowledge what the subscriptions hold, or delete the ones nobody reads",
    ),
    (
        Code::FailedPrecondition,
        "the request is well formed but the configuration it would make is refused (400)",
        "the reason quotes the configuration's error; fix that and retry",
    ),
    (
        Code::InternalError,
        "frontdoor failed on its side, not because of the request (500)",
        "the server's log says why",
    ),
    (
        Code::InvalidRequest,
        "a token endpoint's request lacks a parameter or has one it does not support (400)",
        "send the parameters the reason names",
    ),
    (
        Code::UnsupportedGrantType,
        "a token endpoint was asked for a grant it does not serve (400)",
        "use the JWT-bearer grant at `/token`, token exchange at STS",
    ),
    (
        Code::InvalidGrant,
        "the assertion or subject token does not verify: its signature, audience, lifetime or provider is wrong (400)",
        "the reason says which; sign with a key of this frontdoor, for the audience it names",
    ),
    (
        Code::InvalidScope,
        "no scope was asked for, or the scopes are longer than an access token of frontdoor's can carry (400)",
        "ask for `https://www.googleapis.com/auth/cloud-platform`, the scope that covers every API",
    ),
    (
        Code::InvalidToken,
        "tokeninfo was given a token this frontdoor did not issue, or an expired one (400)",
        "check a token fresh from this frontdoor",
    ),
    (
        Code::InvalidTarget,
        "STS was asked for an audience that names no configured workload identity provider (400)",
        "use the provider's resource name from `services.yaml` (`//iam.googleapis.com/projects/…/providers/…`)",
    ),
    (
        Code::ProxiedRequest,
        "a metadata request carried `X-Forwarded-For`: the metadata server refuses proxied requests (403)",
        "call the metadata server directly, not through a proxy",
    ),
    (
        Code::MetadataFlavorMissing,
        "a metadata request without `Metadata-Flavor: Google` (403)",
        "send the header, as every client library does",
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
            Code::CredentialsMissing => "credentials_missing",
            Code::CredentialsInvalid => "credentials_invalid",
            Code::PermissionDenied => "permission_denied",
            Code::ActAsDenied => "act_as_denied",
            Code::InvalidArgument => "invalid_argument",
            Code::NotFound => "not_found",
            Code::Aborted => "aborted",
            Code::AlreadyExists => "already_exists",
            Code::ResourceExhausted => "resource_exhausted",
            Code::FailedPrecondition => "failed_precondition",
            Code::InternalError => "internal_error",
            Code::InvalidRequest => "invalid_request",
            Code::UnsupportedGrantType => "unsupported_grant_type",
            Code::InvalidGrant => "invalid_grant",
            Code::InvalidScope => "invalid_scope",
            Code::InvalidToken => "invalid_token",
            Code::InvalidTarget => "invalid_target",
            Code::ProxiedRequest => "proxied_request",
            Code::MetadataFlavorMissing => "metadata_flavor_missing",
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

    /// The code of a refusal whose handler named none: an answer axum or a library gave
    /// (a method a path does not take, say), by its status alone.
    pub(crate) fn of_status(status: http::StatusCode) -> Code {
        match status.as_u16() {
            401 => Code::CredentialsInvalid,
            403 => Code::PermissionDenied,
            404 | 405 => Code::NotFound,
            409 => Code::Aborted,
            429 => Code::ResourceExhausted,
            s if s >= 500 => Code::InternalError,
            _ => Code::InvalidArgument,
        }
    }
}

/// Every code, the front door's first: `(surfaces, code, meaning, fix)`.
pub(crate) fn all() -> impl Iterator<Item = (&'static str, Code, &'static str, &'static str)> {
    let front = FRONT_DOOR.iter().map(|&(c, m, f)| ("frontdoor", c, m, f));
    let other = OTHER_SURFACES.iter().map(|&(c, m, f)| ("google", c, m, f));
    front.chain(other)
}

/// The fix the table gives for the code named `code`, if it names one.
pub(crate) fn fix_of(code: &str) -> Option<&'static str> {
    all()
        .find(|(_, c, _, _)| c.as_str() == code)
        .map(|(_, _, _, fix)| fix)
}

/// Every code as JSON: `[{"code", "surfaces", "meaning", "fix"}, …]`, `surfaces` being
/// `frontdoor` (the `*.run.app` front door) or `google` (the APIs, token endpoints and
/// metadata server frontdoor emulates).
pub(crate) fn as_json() -> serde_json::Value {
    all()
        .map(|(surfaces, code, meaning, fix)| {
            serde_json::json!({"code": code, "surfaces": surfaces, "meaning": meaning, "fix": fix})
        })
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
        let listed: Vec<Code> = all().map(|(_, code, ..)| code).collect();
        for (i, (_, code, meaning, fix)) in all().enumerate() {
            assert!(!meaning.is_empty() && !fix.is_empty(), "{code}");
            assert!(!listed[i + 1..].contains(&code), "{code} listed twice");
            let json = serde_json::to_string(&code).unwrap();
            assert_eq!(json, format!("\"{}\"", code.as_str()));
            let back: Code = serde_json::from_str(&json).unwrap();
            assert_eq!(back, code);
        }
        // Every variant of the enum is in a table, in its order: read from this file's own
        // `enum Code`, so that a code added there and to no table fails here.
        let source = include_str!("codes.rs");
        let body = source
            .split_once("pub(crate) enum Code {")
            .and_then(|(_, rest)| rest.split_once("\n}"))
            .map(|(body, _)| body)
            .unwrap();
        let variants: Vec<&str> = body
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with("//"))
            .map(|l| l.trim_end_matches(','))
            .collect();
        let names: Vec<String> = listed.iter().map(|c| format!("{c:?}")).collect();
        assert_eq!(names, variants, "each code of the enum is in a table");
        assert_eq!(listed.len(), 46);
    }

    /// Each table of codes is on its page, every row with its meaning and fix.
    #[test]
    fn the_docs_list_every_code() {
        let pages = [
            (
                "docs/front-door.md",
                include_str!("../../docs/front-door.md"),
                FRONT_DOOR,
            ),
            (
                "docs/tokens.md",
                include_str!("../../docs/tokens.md"),
                OTHER_SURFACES,
            ),
        ];
        for (name, page, table) in pages {
            for (code, meaning, fix) in table {
                let row = format!("| `{code}` | {meaning} | {fix} |");
                assert!(page.contains(&row), "{name} lacks the row:\n{row}");
            }
        }
    }
}
