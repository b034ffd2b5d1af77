//! Whether Cloud Run would let a request through to a service: SPEC §3 steps 2 to 9, in
//! that order. The answer is a `Verdict` with its reason in words a learner can act on.
//! Token checks happen here and nowhere else; the proxy only acts on the verdict.

use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::Peer;
use crate::config::{Config, Ingress, Service};
use crate::decisions::Code;
use crate::iam::{self, Principal, Scope};
use crate::keys::KeySet;
use crate::routing::FrontDoor;
use crate::tokens::{GCLOUD_CLIENT_ID, Verified};

pub(crate) const X_SERVERLESS_AUTHORIZATION: HeaderName =
    HeaderName::from_static("x-serverless-authorization");

/// The checked credential, and whether the container gets it with its signature removed.
#[derive(Debug, Clone)]
pub(crate) struct Credential {
    pub(crate) header: HeaderName,
    pub(crate) token: String,
    pub(crate) redact: bool,
}

/// Who asked, as far as the checks got: the principal a verified token named, and the
/// header the credential came in.
#[derive(Debug, Default)]
pub(crate) struct Caller {
    pub(crate) principal: Option<Principal>,
    pub(crate) header: Option<HeaderName>,
}

/// What Cloud Run would do with the request, and why.
#[derive(Debug)]
pub(crate) enum Verdict {
    /// Let through. `credential` is the checked token to forward (for redaction); a public
    /// service checks none.
    Allow {
        caller: Caller,
        credential: Option<Credential>,
        reason: String,
    },
    /// Turned away with `status`, for the reason `code` names.
    Deny {
        caller: Caller,
        status: StatusCode,
        code: Code,
        reason: String,
    },
}

impl Verdict {
    fn allow(reason: String) -> Verdict {
        Verdict::Allow {
            caller: Caller::default(),
            credential: None,
            reason,
        }
    }

    fn deny(status: StatusCode, code: Code, reason: String) -> Verdict {
        Verdict::Deny {
            caller: Caller::default(),
            status,
            code,
            reason,
        }
    }

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

    fn via(mut self, header: &HeaderName) -> Verdict {
        self.caller_mut().header = Some(header.clone());
        self
    }

    fn of(mut self, principal: Option<Principal>) -> Verdict {
        self.caller_mut().principal = principal;
        self
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

    // Step 2: ingress, before any IAM check; a denial looks like an unknown host. Internal
    // callers are the addresses listed, and the services frontdoor started itself (the
    // caller's `started_caller`, looked up once per connection and only when needed).
    let internal =
        || config.internal_callers.contains(&peer.remote.ip()) || started_caller.is_some();
    if service.ingress != Ingress::All && !internal() {
        let ip = peer.remote.ip();
        return Verdict::deny(
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
        return Verdict::allow(format!(
            "service `{}` has invoker_iam_disabled: no token is checked",
            service.name
        ));
    }
    if service.policy.is_public(iam::INVOKE) || config.policy.is_public(iam::INVOKE) {
        return Verdict::allow(format!(
            "service `{}` is public (allUsers may invoke it): no token is checked",
            service.name
        ));
    }

    // Steps 4 and 5: which credential, if any.
    let (header, value) = match pick_credential(headers) {
        Ok(Some(found)) => found,
        Ok(None) => {
            return Verdict::deny(
                StatusCode::FORBIDDEN,
                Code::NoCredential,
                format!(
                    "no credential: the request has neither an Authorization nor an X-Serverless-Authorization header, and service `{}` is private; send `Authorization: Bearer ID_TOKEN` with an ID token whose audience is {}",
                    service.name, service.url
                ),
            );
        }
        Err((header, why)) => {
            return Verdict::deny(StatusCode::UNAUTHORIZED, Code::HeaderRepeated, why).via(&header);
        }
    };

    tracing::debug!(service = %service.name, %header, "check credential: found");

    // Step 6: a usable token.
    let token = match bearer(value) {
        Ok(t) => t,
        Err(why) => {
            return Verdict::deny(
                StatusCode::UNAUTHORIZED,
                Code::NotBearer,
                format!("the {header} header is unusable: {why}"),
            )
            .via(&header);
        }
    };
    let verified = match door.verify(keys, token, &config.issuer, now) {
        Ok(v) => v,
        Err(e) => {
            return Verdict::deny(
                StatusCode::UNAUTHORIZED,
                Code::of_token(&e),
                format!("the token in {header} is unusable: {e}"),
            )
            .via(&header);
        }
    };

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
        return Verdict::deny(
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
        .of(principal);
    }

    tracing::debug!(service = %service.name, aud = ?verified.aud, "check audience: accepted");

    let Some(principal) = principal else {
        return Verdict::deny(
            StatusCode::FORBIDDEN,
            Code::NoPrincipal,
            format!(
                "the token has no email and its sub `{}` is no declared service account's unique id, so there is no principal to check IAM for; mint it with its email included",
                verified.sub
            ),
        )
        .via(&header);
    };

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
    };
    if outcome.allowed {
        Verdict::Allow {
            caller,
            credential: Some(Credential {
                header,
                token: token.to_owned(),
                redact,
            }),
            reason: outcome.reason,
        }
    } else {
        Verdict::Deny {
            caller,
            status: StatusCode::FORBIDDEN,
            code: Code::NoInvokerBinding,
            reason: outcome.reason,
        }
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
fn bearer(value: &HeaderValue) -> Result<&str, String> {
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
    if token.contains([' ', ',', '\t']) {
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
        let door = FrontDoor::new(&config, None);
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
