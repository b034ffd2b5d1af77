//! Whether Cloud Run would let a request through to a service: SPEC §3 steps 2 to 9, in
//! that order. The answer is a `Verdict` with its reason in words a learner can act on.
//! Token checks happen here and nowhere else; the proxy only acts on the verdict.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::Peer;
use crate::config::{Config, Ingress, Service};
use crate::decisions::chain::{Check, Step};
use crate::decisions::{Code, ShownToken};
use crate::iam::{self, Principal, Scope};
use crate::keys::KeySet;
use crate::routing::FrontDoor;
use crate::tokens::{GCLOUD_CLIENT_ID, Verified};

pub(crate) const X_SERVERLESS_AUTHORIZATION: HeaderName =
    HeaderName::from_static("x-serverless-authorization");

/// Where the checked credential is, and whether the container gets it with its signature
/// removed. The token itself stays in the request's header (a copy of it was 1% of the
/// warm path's CPU).
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    pub(crate) header: HeaderName,
    pub(crate) redact: bool,
}

/// Who asked, as far as the checks got: the principal a verified token named, and the
/// header the credential came in.
#[derive(Debug, Default)]
pub(crate) struct Caller {
    pub(crate) principal: Option<Principal>,
    pub(crate) header: Option<HeaderName>,
    /// The bearer token's header and claims, for showing (never its signature).
    pub(crate) token: Option<ShownToken>,
}

/// What Cloud Run would do with the request, and why: the verdict, and the chain of
/// checks made on the way to it (the failed one last, for a refusal).
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Let through. `credential` is the checked token to forward (for redaction); a public
    /// service checks none.
    Allow {
        caller: Caller,
        credential: Option<Credential>,
        reason: String,
        steps: Vec<Step>,
    },
    /// Turned away with `status`, for the reason `code` names.
    Deny {
        caller: Caller,
        status: StatusCode,
        code: Code,
        reason: String,
        steps: Vec<Step>,
    },
}

impl Verdict {
    pub(crate) fn caller(&self) -> &Caller {
        match self {
            Verdict::Allow { caller, .. } | Verdict::Deny { caller, .. } => caller,
        }
    }

    fn caller_mut(&mut self) -> &mut Caller {
        match self {
            Verdict::Allow { caller, .. } | Verdict::Deny { caller, .. } => caller,
        }
    }

    pub(crate) fn steps(&self) -> &[Step] {
        match self {
            Verdict::Allow { steps, .. } | Verdict::Deny { steps, .. } => steps,
        }
    }

    fn via(mut self, header: &HeaderName) -> Verdict {
        self.caller_mut().header = Some(header.clone());
        self
    }

    fn of(mut self, principal: Option<Principal>) -> Verdict {
        self.caller_mut().principal = principal;
        self
    }

    fn showing(mut self, token: Option<ShownToken>) -> Verdict {
        self.caller_mut().token = token;
        self
    }
}

/// The checks made so far, each passed; a verdict ends them.
struct Chain(Vec<Step>);

impl Chain {
    fn passed(&mut self, check: Check, detail: impl Into<std::borrow::Cow<'static, str>>) {
        self.0.push(Step::passed(check, detail));
    }

    fn allow(self, reason: String) -> Verdict {
        Verdict::Allow {
            caller: Caller::default(),
            credential: None,
            reason,
            steps: self.0,
        }
    }

    /// Refused at `check`: the step failed, with the reason.
    fn deny(mut self, check: Check, status: StatusCode, code: Code, reason: String) -> Verdict {
        self.0.push(Step::failed(check, reason.clone()));
        Verdict::Deny {
            caller: Caller::default(),
            status,
            code,
            reason,
            steps: self.0,
        }
    }
}

/// What a request is judged against: the configuration in force, the front door's
/// verifier (its routes' verified-token cache and the issuer's keys), and the time.
#[derive(Clone, Copy)]
pub(crate) struct Judge<'a> {
    pub(crate) config: &'a Config,
    pub(crate) door: &'a FrontDoor,
    pub(crate) keys: &'a KeySet,
    pub(crate) now: i64,
}

/// Where a request comes from: its connection, and the service frontdoor started whose
/// process holds the connection's other end, if any (looked up once per connection, off
/// the request path, and only for services whose ingress asks).
#[derive(Clone, Copy)]
pub(crate) struct Origin<'a> {
    pub(crate) peer: Peer,
    pub(crate) started_service: Option<&'a str>,
}

/// A pure function of its inputs: no I/O, no clock, no state beyond the verifier's cache.
pub(crate) fn authorize(
    judge: Judge<'_>,
    service: &Service,
    headers: &HeaderMap,
    origin: Origin<'_>,
) -> Verdict {
    let Judge {
        config,
        door,
        keys,
        now,
    } = judge;
    let Origin {
        peer,
        started_service: started_caller,
    } = origin;
    let mut chain = Chain(Vec::with_capacity(12));

    // Step 2: ingress, before any IAM check; a denial looks like an unknown host. Internal
    // callers are the addresses listed, and the services frontdoor started itself (the
    // caller's `started_caller`, looked up once per connection and only when needed).
    let ip = peer.remote.ip();
    if service.ingress == Ingress::All {
        chain.passed(Check::Ingress, "ingress `all`: any caller may reach it");
    } else if let Some(caller) = started_caller {
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
        return chain.deny(
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
        );
    }

    tracing::debug!(service = %service.name, ingress = service.ingress.as_str(), "check ingress: passed");

    // Step 3: a public service gets the request with every header untouched.
    if service.invoker_iam_disabled {
        chain.passed(Check::Public, "yes: invoker_iam_disabled");
        return chain.allow(format!(
            "service `{}` has invoker_iam_disabled: no token is checked",
            service.name
        ));
    }
    if service.policy.is_public(iam::INVOKE) || config.policy.is_public(iam::INVOKE) {
        chain.passed(Check::Public, "yes: allUsers holds run.routes.invoke");
        return chain.allow(format!(
            "service `{}` is public (allUsers may invoke it): no token is checked",
            service.name
        ));
    }
    chain.passed(Check::Public, "no: a token is needed");

    // Steps 4 and 5: which credential, if any.
    let (header, value) = match pick_credential(headers) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return chain.deny(
                Check::Credential,
                StatusCode::FORBIDDEN,
                Code::NoCredential,
                format!(
                    "no credential: the request has neither an Authorization nor an X-Serverless-Authorization header, and service `{}` is private; send `Authorization: Bearer ID_TOKEN` with an ID token whose audience is {}",
                    service.name, service.url
                ),
            );
        }
        Err((header, why)) => {
            return chain
                .deny(
                    Check::Credential,
                    StatusCode::UNAUTHORIZED,
                    Code::HeaderRepeated,
                    why,
                )
                .via(&header);
        }
    };

    tracing::debug!(service = %service.name, %header, "check credential: found");

    // Step 6: a usable token.
    let token = match bearer(value) {
        Ok(t) => t,
        Err(why) => {
            return chain
                .deny(
                    Check::Credential,
                    StatusCode::UNAUTHORIZED,
                    Code::NotBearer,
                    format!("the {header} header is unusable: {why}"),
                )
                .via(&header);
        }
    };
    // Words of ours for the two headers a credential comes in: no formatting per request.
    let found: std::borrow::Cow<'static, str> = match header.as_str() {
        "authorization" => "authorization: Bearer".into(),
        "x-serverless-authorization" => "x-serverless-authorization: Bearer".into(),
        other => format!("{other}: Bearer").into(),
    };
    chain.passed(Check::Credential, found);
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
            return chain
                .deny(
                    failed,
                    StatusCode::UNAUTHORIZED,
                    Code::of_token(&e),
                    format!("the token in {header} is unusable: {e}"),
                )
                .via(&header)
                .showing(shown);
        }
    };
    let shown = Some(ShownToken::verified(&verified));
    chain.passed(Check::Format, "three base64url segments of JSON");
    chain.passed(Check::Alg, "RS256");
    chain.passed(
        Check::Kid,
        format!("`{}`, one of the issuer's keys", verified.kid),
    );
    chain.passed(Check::Signature, "verified with that key");
    chain.passed(Check::Issuer, config.issuer.clone());
    chain.passed(
        Check::Lifetime,
        format!(
            "issued {} s ago, expires in {} s",
            now.saturating_sub(verified.iat),
            verified.exp.saturating_sub(now)
        ),
    );

    // Token-derived strings are written with `?`, escaped.
    tracing::debug!(
        service = %service.name,
        kid = ?verified.kid,
        aud = ?verified.aud,
        email = ?verified.email(),
        "check token: signature, issuer and lifetime verified"
    );

    // Step 8 comes before 7 here only because the accepted audiences depend on whether
    // the caller is a user; the order of outcomes is the spec's.
    let principal = principal_of(config, &verified);
    let is_user = matches!(principal, Some(Principal::User(_)));

    // Step 7: the audience.
    if !audience_accepted(service, &verified.aud, is_user) {
        let mut accepted = accepted_audiences(service);
        if is_user {
            accepted.push(format!("{GCLOUD_CLIENT_ID} (user tokens only)"));
        }
        let hint = if verified.aud.contains("run.app/") || verified.aud.contains('?') {
            " (an audience is the service's URL alone, with no path or query)"
        } else if verified.aud == GCLOUD_CLIENT_ID {
            " (gcloud's client id is accepted only in user tokens)"
        } else {
            ""
        };
        return chain
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
            .via(&header)
            .of(principal)
            .showing(shown);
    }
    chain.passed(Check::Audience, format!("`{}`", verified.aud));

    tracing::debug!(service = %service.name, aud = ?verified.aud, "check audience: accepted");

    let Some(principal) = principal else {
        return chain
            .deny(
                Check::Principal,
                StatusCode::FORBIDDEN,
                Code::NoPrincipal,
                format!(
                    "the token has no email and its sub `{}` is no declared service account's unique id, so there is no principal to check IAM for; mint it with its email included",
                    verified.sub
                ),
            )
            .via(&header)
            .showing(shown);
    };
    chain.passed(Check::Principal, principal.to_string());

    // Step 9: IAM.
    let outcome = iam::check(
        iam::INVOKE,
        Some(&principal),
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
    let redact =
        header == X_SERVERLESS_AUTHORIZATION || is_user || service.redact_service_account_tokens;
    let caller = Caller {
        principal: Some(principal),
        header: Some(header.clone()),
        token: shown,
    };
    if outcome.allowed {
        chain.passed(Check::Iam, outcome.reason.clone());
        Verdict::Allow {
            caller,
            credential: Some(Credential { header, redact }),
            reason: outcome.reason,
            steps: chain.0,
        }
    } else {
        let mut denied = chain.deny(
            Check::Iam,
            StatusCode::FORBIDDEN,
            Code::NoInvokerBinding,
            outcome.reason,
        );
        *denied.caller_mut() = caller;
        denied
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

/// The token of `Bearer TOKEN`.
pub(crate) fn bearer(value: &HeaderValue) -> Result<&str, String> {
    let value = value
        .to_str()
        .map_err(|_| "it is not printable ASCII".to_owned())?;
    let Some((scheme, token)) = value.trim().split_once(' ') else {
        return Err("expected `Bearer ID_TOKEN`".to_owned());
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(format!(
            "the scheme is `{scheme}`; Cloud Run expects `Bearer ID_TOKEN`"
        ));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err("the bearer token is empty".to_owned());
    }
    if crate::decisions::any_byte(token.as_bytes(), |b| {
        (b == b' ') | (b == b',') | (b == b'\t')
    }) {
        return Err("it holds more than one token; send exactly one".to_owned());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(bearer(&v("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(&v("bearer  abc ")), Ok("abc"));
        assert!(
            bearer(&v("Basic abc"))
                .unwrap_err()
                .contains("scheme is `Basic`")
        );
        assert!(
            bearer(&v("Bearer"))
                .unwrap_err()
                .contains("expected `Bearer ID_TOKEN`")
        );
        assert!(
            bearer(&v("Bearer a b"))
                .unwrap_err()
                .contains("more than one token")
        );
        assert!(
            bearer(&v("Bearer a,b"))
                .unwrap_err()
                .contains("more than one token")
        );
        assert!(
            bearer(&HeaderValue::from_bytes(b"Bearer \xff").unwrap())
                .unwrap_err()
                .contains("not printable")
        );
    }

    /// `authorize` called directly, as the dashboard's "would this pass?" will: the same
    /// request judged under different inputs, nothing started.
    #[test]
    fn the_verdict_depends_on_its_inputs_alone() {
        let yaml = r#"project: {id: demo-project, number: "123456789012", region: us-central1}
service_accounts: [{email: login@demo-project.iam.gserviceaccount.com}]
services:
  - name: vault
    upstream: builtin:echo
    ingress: internal
    iam_policy: {bindings: [{role: roles/run.invoker, members: [serviceAccount:login@demo-project.iam.gserviceaccount.com]}]}
"#;
        let named = crate::config::NamedFiles::NONE;
        let config =
            crate::config::parse_with(yaml, std::path::Path::new("services.yaml"), &named).unwrap();
        let keys = crate::keys::testkeys::key_set();
        let tokens =
            crate::tokens::verified::VerifiedTokens::new(crate::tokens::verified::CAPACITY_BYTES);
        let door = FrontDoor::new(&config, std::sync::Arc::new(tokens));
        let service = config.service("vault").unwrap();
        let now = 1_800_000_000;
        let login = config
            .service_account("login@demo-project.iam.gserviceaccount.com")
            .unwrap();
        let token = crate::tokens::mint(
            &keys,
            &crate::tokens::service_account_claims(&config.issuer, login, &service.url, now),
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::header::AUTHORIZATION,
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
        let judge = Judge {
            config: &config,
            door: &door,
            keys: &keys,
            now,
        };
        let peer = Peer {
            remote: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:8080".parse().unwrap(),
        };
        let outside = Origin {
            peer,
            started_service: None,
        };
        let from_a_service = Origin {
            peer,
            started_service: Some("vault"),
        };
        let status = |v: Verdict| match v {
            Verdict::Allow { .. } => StatusCode::OK,
            Verdict::Deny { status, .. } => status,
        };
        // Ingress internal: the same request is turned away from outside, let in from a
        // started service, and turned away again once the token has expired.
        assert_eq!(
            status(authorize(judge, service, &headers, outside)),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(authorize(judge, service, &headers, from_a_service)),
            StatusCode::OK
        );
        let later = Judge {
            now: now + 7200,
            ..judge
        };
        assert_eq!(
            status(authorize(later, service, &headers, from_a_service)),
            StatusCode::UNAUTHORIZED
        );
    }
}
