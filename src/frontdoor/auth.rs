//! Whether Cloud Run would let a request through to a service: SPEC §3 steps 2 to 9, in
//! that order. The answer is a `Verdict` with its reason in words a learner can act on.
//! Token checks happen here and nowhere else; the proxy only acts on the verdict.

mod checks;

pub(crate) use checks::bearer;

use axum::http::{HeaderMap, HeaderName, StatusCode};

use super::Peer;
use crate::config::{Config, Service};
use crate::decisions::chain::{Check, Step};
use crate::decisions::{Code, ShownToken};
use crate::iam::Principal;
use crate::keys::KeySet;
use crate::routing::FrontDoor;

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

    /// The checked credential to forward (for redaction), if the verdict allowed one.
    pub(crate) fn credential(&self) -> Option<&Credential> {
        match self {
            Verdict::Allow { credential, .. } => credential.as_ref(),
            Verdict::Deny { .. } => None,
        }
    }

    pub(crate) fn steps(&self) -> &[Step] {
        match self {
            Verdict::Allow { steps, .. } | Verdict::Deny { steps, .. } => steps,
        }
    }

    /// The refusal, with the caller found before it.
    fn by(mut self, caller: Caller) -> Verdict {
        *self.caller_mut() = caller;
        self
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

/// The checks made so far, each passed; a refusal ends them.
struct Chain(Vec<Step>);

impl Chain {
    fn passed(&mut self, check: Check, detail: impl Into<std::borrow::Cow<'static, str>>) {
        self.0.push(Step::passed(check, detail));
    }

    /// Refused at `check`: the step failed, with the reason, and the chain ends in a
    /// refusal (whose caller the check fills in as far as it got).
    fn deny(&mut self, check: Check, status: StatusCode, code: Code, reason: String) -> Verdict {
        self.0.push(Step::failed(check, reason.clone()));
        Verdict::Deny {
            caller: Caller::default(),
            status,
            code,
            reason,
            steps: std::mem::take(&mut self.0),
        }
    }

    fn allow(self, caller: Caller, credential: Option<Credential>, reason: String) -> Verdict {
        Verdict::Allow {
            caller,
            credential,
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
    /// A Google-managed caller in the project (a Pub/Sub push), which Cloud Run counts as
    /// internal for ingress.
    pub(crate) managed: Option<&'a str>,
}

/// A pure function of its inputs: no I/O, no clock, no state beyond the verifier's cache.
/// The checks run in Cloud Run's order (SPEC §3), each in `checks`; the first to refuse
/// ends the chain.
pub(crate) fn authorize(
    judge: Judge<'_>,
    service: &Service,
    headers: &HeaderMap,
    origin: Origin<'_>,
) -> Verdict {
    let mut chain = Chain(Vec::with_capacity(12));
    match judged(&mut chain, judge, service, headers, origin) {
        Ok(Judged::Public(reason)) => chain.allow(Caller::default(), None, reason),
        Ok(Judged::Granted {
            caller,
            credential,
            reason,
        }) => chain.allow(caller, Some(credential), reason),
        Err(refused) => refused,
    }
}

/// How a chain that refused nothing ended.
enum Judged {
    /// A public service: no token checked (step 3).
    Public(String),
    /// IAM granted the caller `run.routes.invoke` (step 9), for `reason`.
    Granted {
        caller: Caller,
        credential: Credential,
        reason: String,
    },
}

/// Steps 2 to 9, each a check of `checks`; a refusal is the `Err`.
#[allow(clippy::result_large_err)] // as in `checks`: the one verdict, moved, not boxed
fn judged(
    chain: &mut Chain,
    judge: Judge<'_>,
    service: &Service,
    headers: &HeaderMap,
    origin: Origin<'_>,
) -> Result<Judged, Verdict> {
    let config = judge.config;
    checks::ingress(chain, config, service, origin)?;
    if let Some(reason) = checks::public(chain, config, service) {
        return Ok(Judged::Public(reason));
    }
    let (header, token) = checks::credential(chain, service, headers)?;
    let verified = checks::token(chain, judge, &header, token)?;
    let (principal, is_user) =
        checks::audience_and_principal(chain, config, service, &header, &verified)?;
    let redact =
        header == X_SERVERLESS_AUTHORIZATION || is_user || service.redact_service_account_tokens;
    let granted = checks::iam(chain, config, service, &principal);
    let caller = Caller {
        principal: Some(principal),
        header: Some(header.clone()),
        token: Some(ShownToken::verified(&verified)),
    };
    match granted {
        Ok(reason) => Ok(Judged::Granted {
            caller,
            credential: Credential { header, redact },
            reason,
        }),
        Err(denied) => Err(denied.by(caller)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn bearer_values() {
        let v = |s: &str| HeaderValue::from_str(s).unwrap();
        assert_eq!(bearer(&v("Bearer abc")), Ok("abc"));
        assert_eq!(bearer(&v("bearer  abc ")), Ok("abc"));
        assert!(
            bearer(&v("Basic abc"))
                .unwrap_err()
                .to_string()
                .contains("scheme is `Basic`")
        );
        assert!(
            bearer(&v("Bearer"))
                .unwrap_err()
                .to_string()
                .contains("expected `Bearer ID_TOKEN`")
        );
        assert!(
            bearer(&v("Bearer a b"))
                .unwrap_err()
                .to_string()
                .contains("more than one token")
        );
        assert!(
            bearer(&v("Bearer a,b"))
                .unwrap_err()
                .to_string()
                .contains("more than one token")
        );
        assert!(
            bearer(&HeaderValue::from_bytes(b"Bearer \xff").unwrap())
                .unwrap_err()
                .to_string()
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
            managed: None,
        };
        let from_a_service = Origin {
            peer,
            started_service: Some("vault"),
            managed: None,
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
