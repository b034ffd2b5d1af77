//! The `*.run.app` ingress (SPEC §3, §4): routes a request to a service, decides as Cloud
//! Run would whether it may pass (`auth`), records the decision, and proxies it (`proxy`).

pub(crate) mod auth;
mod internal;

pub(crate) use internal::CallerProcess;
pub(crate) mod page;
mod pool;
pub(crate) mod proxy;

use std::fmt::Write;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Response, header};

use crate::config::Enforcement;
use crate::decisions::chain::{Check, Step};
use crate::decisions::{Code, Decision};

/// In audit mode, on a request let through that enforcement would have refused:
/// `STATUS CODE: reason`. frontdoor's own, as `X-Frontdoor-Reason` is.
const WOULD_DENY: axum::http::HeaderName =
    axum::http::HeaderName::from_static("x-frontdoor-would-deny");
use crate::peer::Peer;
use crate::state::{AppState, Live};

/// One front-door listener: the shared one routes by `Host`, a service's own listener
/// (`pinned`) serves only that service.
#[derive(Clone)]
struct Listener {
    live: Live,
    /// The service this listener belongs to, by name: a reload may move or remove it.
    pinned: Option<String>,
}

pub(crate) fn app(live: Live, pinned: Option<String>) -> Router {
    Router::new()
        .fallback(handle)
        .with_state(Listener { live, pinned })
}

const SERVER: HeaderValue = HeaderValue::from_static("Google Frontend");

async fn handle(
    State(listener): State<Listener>,
    ConnectInfo(peer): ConnectInfo<Peer>,
    req: Request,
) -> Response<Body> {
    let mut response = decide_and_forward(&listener, peer, req).await;
    response.headers_mut().insert(header::SERVER, SERVER);
    response
}

async fn decide_and_forward(listener: &Listener, peer: Peer, req: Request) -> Response<Body> {
    let started = std::time::Instant::now();
    let state = &listener.live.get();
    let door = &state.frontdoor();
    // RFC 9112 §3.2.2: a request in absolute form (`GET http://HOST/path`) is for the
    // target's host, whatever `Host` says; HTTP/2 names it in `:authority`.
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().rsplit('@').next().unwrap_or(""))
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .unwrap_or("")
        .to_owned();
    let path = req.uri().path().to_owned();
    let mut decision = Decision::about(
        crate::decisions::Surface::Frontdoor,
        state.now(),
        req.method().as_str(),
        &host,
        &path,
    );

    if let Some((status, why)) = malformed(&req) {
        decision.reason = why;
        decision.code = Some(Code::MalformedRequest);
        return turned_away(state, decision.timed(started), status, None);
    }
    let routed = match &listener.pinned {
        Some(name) => state.config().services.iter().position(|s| &s.name == name),
        None => door.route(&host),
    };
    let Some(index) = routed else {
        if let Some(name) = &listener.pinned {
            decision.reason = format!(
                "service `{name}` is no longer in the configuration (a reload removed it); its listener is closing"
            );
            decision.code = Some(Code::ServiceRemoved);
            return turned_away(
                state,
                decision.timed(started),
                axum::http::StatusCode::NOT_FOUND,
                None,
            );
        }
        let mut known: Vec<&str> = door.known_hosts().collect();
        known.sort_unstable();
        decision.code = Some(Code::UnknownHost);
        decision.reason = format!(
            "host `{host}` is not the URL of any service (known hosts: {}); send the request to a service's own listener or set the Host header",
            known.join(", ")
        );
        return turned_away(
            state,
            decision.timed(started),
            axum::http::StatusCode::NOT_FOUND,
            None,
        );
    };
    let service = &state.config().services[index];
    decision.steps.push(Step::passed(
        Check::Route,
        match &listener.pinned {
            Some(_) => format!("the service's own listener: `{}`", service.name),
            None => format!("host `{host}` is service `{}`", service.name),
        },
    ));
    decision.service = Some(service.name.clone());
    decision.revision = state.revision(&service.name).map(str::to_owned);

    let started_caller = match (service.ingress, req.extensions().get::<CallerProcess>()) {
        (crate::config::Ingress::All, _) | (_, None) => None,
        (_, Some(caller)) => caller.service(state.supervisor(), peer).await,
    };
    let judge = auth::Judge {
        config: state.config(),
        door,
        keys: state.keys(),
        now: state.now(),
    };
    let origin = auth::Origin {
        peer,
        started_service: started_caller,
    };
    let verdict = auth::authorize(judge, service, req.headers(), origin);
    let (credential, reason) = match verdict {
        auth::Verdict::Deny {
            caller,
            status,
            code,
            reason,
            steps,
        } => {
            judged(&mut decision, caller, steps);
            decision.code = Some(code);
            if state.config().enforcement != Enforcement::Audit {
                decision.status = status.as_u16();
                decision.reason = reason;
                return turned_away(state, decision.timed(started), status, None);
            }
            // Audit mode: through anyway, headers untouched, recorded as would deny.
            decision.would_deny = Some(status.as_u16());
            (None, reason)
        }
        auth::Verdict::Allow {
            caller,
            credential,
            reason,
            steps,
        } => {
            judged(&mut decision, caller, steps);
            (credential, reason)
        }
    };

    let forwarded = match proxy::Target::of(service, state.supervisor()).await {
        Ok(target) => {
            proxy::forward(service, target, req, peer.remote.ip(), credential.as_ref()).await
        }
        Err(e) => Err(e),
    };
    match forwarded {
        Ok(mut r) => {
            decision.steps.push(Step::passed(
                Check::Container,
                format!("{} answered {}", service.upstream, r.status().as_u16()),
            ));
            decision.allowed = true;
            decision.status = r.status().as_u16();
            decision.reason = reason;
            let _ = write!(decision.reason, "; proxied to {}", service.upstream);
            if let (Some(status), Some(code)) = (decision.would_deny, decision.code) {
                // The caller sees what enforcement would have said.
                let said = format!("{status} {code}: {}", decision.reason);
                if let Some(value) = crate::decisions::reason_header(&said) {
                    r.headers_mut().insert(WOULD_DENY, value);
                }
            }
            state.decisions().record(decision.timed(started));
            r
        }
        Err(e) => {
            decision.allowed = e.status() != axum::http::StatusCode::PAYLOAD_TOO_LARGE;
            // An audited request keeps, in its reason, the refusal its code gives way to.
            let audited = match (decision.would_deny, decision.code) {
                (Some(status), Some(code)) => format!(" (audit: would deny {status}: {code})"),
                _ => String::new(),
            };
            decision
                .steps
                .push(Step::failed(Check::Container, e.to_string()));
            decision.reason = format!("{reason}{audited}; but {e}");
            decision.code = Some(e.code());
            turned_away(
                state,
                decision.timed(started),
                e.status(),
                Some(&e.to_string()),
            )
        }
    }
}

/// What `authorize` found out about the caller, and the checks it made, into the decision.
fn judged(decision: &mut Decision, caller: auth::Caller, steps: Vec<Step>) {
    decision.steps.extend(steps);
    decision.principal = caller.principal.as_ref().map(ToString::to_string);
    decision.credential = caller.header.as_ref().map(ToString::to_string);
    decision.token = caller.token;
}

/// What the front door refuses before routing: a request that names two hosts, and
/// `CONNECT`, which asks a proxy for a tunnel (the front door is no proxy).
fn malformed(req: &Request) -> Option<(axum::http::StatusCode, String)> {
    let hosts = req.headers().get_all(header::HOST).iter().count();
    if hosts > 1 {
        return Some((
            axum::http::StatusCode::BAD_REQUEST,
            format!(
                "the request has {hosts} Host headers; a request names one host (RFC 9112 §3.2)"
            ),
        ));
    }
    if req.method() == axum::http::Method::CONNECT {
        return Some((
            axum::http::StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT asks for a tunnel, and the front door is not a proxy: send the request itself (GET, POST, …) to the service's URL".to_owned(),
        ));
    }
    None
}

/// The answer for a request that does not reach the container: the GFE page, and — our
/// addition, which Cloud Run does not send — the reason in `X-Frontdoor-Reason`, so that a
/// caller sees why without looking at the decision log.
fn turned_away(
    state: &AppState,
    mut decision: Decision,
    status: axum::http::StatusCode,
    cause: Option<&str>,
) -> Response<Body> {
    decision.status = status.as_u16();
    // Refused before any check (malformed, unrouted): the route is the failed step.
    if decision.steps.is_empty() {
        decision
            .steps
            .push(Step::failed(Check::Route, decision.reason.clone()));
    }
    if let Some(note) = state.refused_change_note() {
        decision.reason.push_str("; ");
        decision.reason.push_str(&note);
    }
    let mut response = page::error(status, &decision.path, cause);
    // `CODE: reason`, so a test can assert the code and a person read the reason.
    let header = match decision.code {
        Some(code) => format!("{code}: {}", decision.reason),
        None => decision.reason.clone(),
    };
    if let Some(value) = crate::decisions::reason_header(&header) {
        response
            .headers_mut()
            .insert(crate::decisions::REASON_HEADER, value);
    }
    state.decisions().record(decision);
    response
}
