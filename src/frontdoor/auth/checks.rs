//! The front door's checks, one function each in Cloud Run's order (SPEC §3 steps 2 to 9):
//! each records what it found in the chain and returns what the next needs, or the
//! refusal that ends the chain.

// The refusal is the request's one verdict, returned once through at most two calls:
// boxing it would cost an allocation on every refused request to save a few moved bytes.
#![allow(clippy::result_large_err)]

use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::{Chain, Judge, Origin, Verdict, X_SERVERLESS_AUTHORIZATION};
use crate::config::{Config, Ingress, Service};
use crate::decisions::chain::Check;
use crate::decisions::{Code, ShownToken};
use crate::iam::{self, Principal, Scope};
use crate::tokens::{GCLOUD_CLIENT_ID, Verified};

/// Step 2: ingress, before any IAM check; a denial looks like an unknown host. Internal
/// callers are the addresses listed, and the services frontdoor started itself (the
/// origin's `started_service`, looked up once per connection and only when needed).
pub(super) fn ingress(
    chain: &mut Chain,
    config: &Config,
    service: &Service,
    origin: Origin<'_>,
) -> Result<(), Verdict> {
    let ip = origin.peer.remote.ip();
    if service.ingress == Ingress::All {
        chain.passed(Check::Ingress, "ingress `all`: any caller may reach it");
    } else if let Some(caller) = origin.managed {
        chain.passed(
            Check::Ingress,
            format!(
                "ingress `{}`: the caller is {caller}, a Google-managed caller in the project, which Cloud Run counts as internal",
                service.ingress.as_str()
            ),
        );
    } else if let Some(caller) = origin.started_service {
        chain.passed(
            Check::Ingress,
            format!(
                "ingress `{}`: the caller is service `{caller}`, which frontdoor started",
                service.ingress.as_str()
            ),
        );
    } else if config.internal_callers.contains(&ip) {
        chain.passed(
            Check::Ingress,
            format!(
                "ingress `{}`: {ip} is listed in internal_callers",
                service.ingress.as_str()
            ),
        );
    } else {
        return Err(chain.deny(
            Check::Ingress,
            StatusCode::NOT_FOUND,
            Code::IngressInternalOnly,
            format!(
                "service `{}` has ingress `{}`: only internal callers may reach it (frontdoor's own `command` services, or internal_callers: [{}]); this request came from {ip}, so Cloud Run answers 404 as if the service did not exist",
                service.name,
                service.ingress.as_str(),
                config
                    .internal_callers
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            ),
        ));
    }
    tracing::debug!(service = %service.name, ingress = service.ingress.as_str(), "check ingress: passed");
    Ok(())
}

/// Step 3: a public service gets the request with every header untouched; the reason it
/// is public, if it is.
pub(super) fn public(chain: &mut Chain, config: &Config, service: &Service) -> Option<String> {
    if service.invoker_iam_disabled {
        chain.passed(Check::Public, "yes: invoker_iam_disabled");
        return Some(format!(
            "service `{}` has invoker_iam_disabled: no token is checked",
            service.name
        ));
    }
    if service.policy.is_public(iam::INVOKE) || config.policy.is_public(iam::INVOKE) {
        chain.passed(Check::Public, "yes: allUsers holds run.routes.invoke");
        return Some(format!(
            "service `{}` is public (allUsers may invoke it): no token is checked",
            service.name
        ));
    }
    chain.passed(Check::Public, "no: a token is needed");
    None
}

/// Steps 4 to 6: which credential, and the token in it.
pub(super) fn credential<'h>(
    chain: &mut Chain,
    service: &Service,
    headers: &'h HeaderMap,
) -> Result<(HeaderName, &'h str), Verdict> {
    let (header, value) = match pick_credential(headers) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Err(chain.deny(
                Check::Credential,
                StatusCode::FORBIDDEN,
                Code::NoCredential,
                format!(
                    "no credential: the request has neither an Authorization nor an X-Serverless-Authorization header, and service `{}` is private; send `Authorization: Bearer ID_TOKEN` with an ID token whose audience is {}",
                    service.name, service.url
                ),
            ));
        }
        Err((header, why)) => {
            return Err(chain
                .deny(
                    Check::Credential,
                    StatusCode::UNAUTHORIZED,
                    Code::HeaderRepeated,
                    why,
                )
                .via(&header));
        }
    };
    tracing::debug!(service = %service.name, %header, "check credential: found");
    let token = match bearer(value) {
        Ok(t) => t,
        Err(why) => {
            return Err(chain
                .deny(
                    Check::Credential,
                    StatusCode::UNAUTHORIZED,
                    Code::NotBearer,
                    format!("the {header} header is unusable: {why}"),
                )
                .via(&header));
        }
    };
    // Words of ours for the two headers a credential comes in: no formatting per request.
    let found: std::borrow::Cow<'static, str> = match header.as_str() {
        "authorization" => "authorization: Bearer".into(),
        "x-serverless-authorization" => "x-serverless-authorization: Bearer".into(),
        other => format!("{other}: Bearer").into(),
    };
    chain.passed(Check::Credential, found);
    Ok((header, token))
}

/// The token's own checks (format, alg, kid, signature, issuer, lifetime), by the verifier
/// and its cache.
pub(super) fn token(
    chain: &mut Chain,
    judge: Judge<'_>,
    header: &HeaderName,
    token: &str,
) -> Result<Arc<Verified>, Verdict> {
    let Judge {
        config,
        door,
        keys,
        now,
    } = judge;
    let verified = match door.verify(keys, token, &config.issuer, now) {
        Ok(v) => v,
        Err(e) => {
            let shown = ShownToken::of(token);
            let failed = Check::of_token(&e);
            // A claim the front door reads itself (`sub`) fails after the token's own
            // checks, and before the audience is compared with the service's.
            let upto = if failed == Check::Principal {
                Check::Audience
            } else {
                failed
            };
            for check in upto.token_checks_before() {
                chain.passed(check, "");
            }
            return Err(chain
                .deny(
                    failed,
                    StatusCode::UNAUTHORIZED,
                    Code::of_token(&e),
                    format!("the token in {header} is unusable: {e}"),
                )
                .via(header)
                .showing(shown));
        }
    };
    // The passed checks' words are joined, not formatted: they are written on every
    // request, and `format!`'s machinery was a tenth of a warm request's instructions.
    chain.passed(Check::Format, "three base64url segments of JSON");
    chain.passed(Check::Alg, "RS256");
    chain.passed(
        Check::Kid,
        ["`", &verified.kid, "`, one of the issuer's keys"].concat(),
    );
    chain.passed(Check::Signature, "verified with that key");
    chain.passed(Check::Issuer, config.issuer.clone());
    let (mut ago, mut left) = (itoa::Buffer::new(), itoa::Buffer::new());
    chain.passed(
        Check::Lifetime,
        [
            "issued ",
            ago.format(now.saturating_sub(verified.iat)),
            " s ago, expires in ",
            left.format(verified.exp.saturating_sub(now)),
            " s",
        ]
        .concat(),
    );
    // Token-derived strings are written with `?`, escaped.
    tracing::debug!(
        kid = ?verified.kid,
        aud = ?verified.aud,
        email = ?verified.email(),
        "check token: signature, issuer and lifetime verified"
    );
    Ok(verified)
}

/// Steps 7 and 8: the audience, then the principal. The principal is found first only
/// because the accepted audiences depend on whether the caller is a user; the order of
/// outcomes is the spec's. The principal, and whether it is a user.
pub(super) fn audience_and_principal(
    chain: &mut Chain,
    config: &Config,
    service: &Service,
    header: &HeaderName,
    verified: &Verified,
) -> Result<(Principal, bool), Verdict> {
    let principal = principal_of(config, verified);
    let is_user = matches!(principal, Some(Principal::User(_)));
    if !audience_accepted(service, &verified.aud, is_user) {
        let mut accepted = accepted_audiences(service);
        if is_user {
            accepted.push(format!("{GCLOUD_CLIENT_ID} (user tokens only)"));
        }
        let hint = if verified.aud.contains("run.app/") || verified.aud.contains('?') {
            " (an audience is the service's URL alone, with no path or query)"
        } else if verified.aud == GCLOUD_CLIENT_ID {
            " (gcloud's client id, the audience `gcloud auth print-identity-token` gives without `--audiences`, is accepted only in user tokens: add `--audiences=` and the service's URL)"
        } else {
            ""
        };
        return Err(chain
            .deny(
                Check::Audience,
                StatusCode::UNAUTHORIZED,
                Code::AudienceNotAccepted,
                format!(
                    "audience `{}` is not one of service `{}`'s audiences{hint}: expected one of {}",
                    verified.aud,
                    service.name,
                    accepted.join(", ")
                ),
            )
            .via(header)
            .of(principal)
            .showing(Some(ShownToken::verified(verified))));
    }
    chain.passed(Check::Audience, ["`", &verified.aud, "`"].concat());
    tracing::debug!(service = %service.name, aud = ?verified.aud, "check audience: accepted");

    let Some(principal) = principal else {
        return Err(chain
            .deny(
                Check::Principal,
                StatusCode::FORBIDDEN,
                Code::NoPrincipal,
                format!(
                    "the token has no email and its sub `{}` is no declared service account's unique id, so there is no principal to check IAM for; mint it with its email included",
                    verified.sub
                ),
            )
            .via(header)
            .showing(Some(ShownToken::verified(verified))));
    };
    chain.passed(Check::Principal, principal.member());
    Ok((principal, is_user))
}

/// Step 9: IAM, `run.routes.invoke` on the service or the project; IAM's reason if granted.
pub(super) fn iam(
    chain: &mut Chain,
    config: &Config,
    service: &Service,
    principal: &Principal,
) -> Result<String, Verdict> {
    let outcome = iam::check(
        iam::INVOKE,
        Some(principal),
        &[
            Scope {
                kind: "service",
                name: &service.name,
                policy: &service.policy,
            },
            Scope {
                kind: "project",
                name: &config.project.id,
                policy: &config.policy,
            },
        ],
        &config.groups,
    );
    tracing::debug!(
        service = %service.name,
        principal = ?principal.to_string(),
        allowed = outcome.allowed,
        "check IAM: run.routes.invoke"
    );
    if outcome.allowed {
        chain.passed(Check::Iam, outcome.reason.clone());
        Ok(outcome.reason)
    } else {
        Err(chain.deny(
            Check::Iam,
            StatusCode::FORBIDDEN,
            Code::NoInvokerBinding,
            outcome.reason,
        ))
    }
}

/// `X-Serverless-Authorization` if present (even when `Authorization` is too: only it is
/// checked, as documented), else `Authorization`. A header given twice is unusable.
fn pick_credential(
    headers: &HeaderMap,
) -> Result<Option<(HeaderName, &HeaderValue)>, (HeaderName, String)> {
    for name in [
        X_SERVERLESS_AUTHORIZATION,
        axum::http::header::AUTHORIZATION,
    ] {
        let mut values = headers.get_all(&name).iter();
        if let Some(first) = values.next() {
            let more = values.count();
            if more > 0 {
                return Err((
                    name.clone(),
                    format!(
                        "the {name} header is given {} times; send it once, with one token",
                        more + 1
                    ),
                ));
            }
            return Ok(Some((name, first)));
        }
    }
    Ok(None)
}

/// Why a credential header is not `Bearer TOKEN`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotBearer {
    #[error("it is not printable ASCII")]
    NotPrintable,
    #[error("expected `Bearer ID_TOKEN`")]
    NoToken,
    #[error("the scheme is `{0}`; Cloud Run expects `Bearer ID_TOKEN`")]
    Scheme(String),
    #[error("the bearer token is empty")]
    Empty,
    #[error("it holds more than one token; send exactly one")]
    Several,
}

/// The token of `Bearer TOKEN`.
pub(crate) fn bearer(value: &HeaderValue) -> Result<&str, NotBearer> {
    let value = value.to_str().map_err(|_| NotBearer::NotPrintable)?;
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Err(NotBearer::NoToken);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(NotBearer::Scheme(scheme.to_owned()));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(NotBearer::Empty);
    }
    if crate::decisions::any_byte(token.as_bytes(), |b| {
        (b == b' ') | (b == b',') | (b == b'\t')
    }) {
        return Err(NotBearer::Several);
    }
    Ok(token)
}

/// `serviceAccount:` by email, or by `sub` = a service account's unique id; otherwise
/// `user:` by email.
fn principal_of(config: &Config, v: &Verified) -> Option<Principal> {
    if let Some(email) = v.email().filter(|e| e.ends_with(".gserviceaccount.com")) {
        return Some(Principal::ServiceAccount(email.to_owned()));
    }
    if let Some(sa) = config.service_account_by_id(&v.sub) {
        return Some(Principal::ServiceAccount(sa.email.clone()));
    }
    v.email().map(|e| Principal::User(e.to_owned()))
}

/// Either service URL, with or without one trailing `/`; custom audiences exactly; and
/// gcloud's client id for user tokens.
fn audience_accepted(service: &Service, aud: &str, is_user: bool) -> bool {
    let bare = aud.strip_suffix('/').unwrap_or(aud);
    bare == service.url
        || bare == service.legacy_url
        || service.custom_audiences.iter().any(|a| a == aud)
        || (is_user && aud == GCLOUD_CLIENT_ID)
}

fn accepted_audiences(service: &Service) -> Vec<String> {
    let mut all = vec![service.url.clone(), service.legacy_url.clone()];
    all.extend(service.custom_audiences.iter().cloned());
    all
}
