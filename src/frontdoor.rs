//! The `*.run.app` ingress (SPEC §3, §4): routes a request to a service, decides as Cloud
//! Run would whether it may pass (`auth`), records the decision, and proxies it (`proxy`).

pub(crate) mod auth;
mod decided;
mod h2c;
mod headers;
mod internal;

pub(crate) use internal::CallerProcess;
pub(crate) mod page;
mod pool;
pub(crate) mod proxy;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, Response, StatusCode, header};

use crate::config::Enforcement;
use crate::decisions::{Code, Decision};
use decided::{Asked, Circumstances, Course, End, Routed, decision};

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
    let asked = Asked::of(&req, state.now());
    let around = Circumstances {
        audit: state.config().enforcement == Enforcement::Audit,
        refused_change: &|| state.refused_change_note(),
    };
    let unrouted = |status, code, reason| Course::Unrouted {
        status,
        code,
        reason,
    };

    if let Some((status, why)) = malformed(&req) {
        let course = unrouted(status, Code::MalformedRequest, why);
        return turned_away(state, decision(asked, course, &around).timed(started), None);
    }
    let routed = match &listener.pinned {
        Some(name) => state.config().services.iter().position(|s| &s.name == name),
        None => door.route(asked.host()),
    };
    let Some(index) = routed else {
        let course = match &listener.pinned {
            Some(name) => unrouted(
                StatusCode::NOT_FOUND,
                Code::ServiceRemoved,
                format!(
                    "service `{name}` is no longer in the configuration (a reload removed it); its listener is closing"
                ),
            ),
            None => {
                let mut known: Vec<&str> = door.known_hosts().collect();
                known.sort_unstable();
                unrouted(
                    StatusCode::NOT_FOUND,
                    Code::UnknownHost,
                    format!(
                        "host `{}` is not the URL of any service (known hosts: {}); send the request to a service's own listener or set the Host header",
                        asked.host(),
                        known.join(", ")
                    ),
                )
            }
        };
        return turned_away(state, decision(asked, course, &around).timed(started), None);
    };
    let service = &state.config().services[index];
    let route = Routed {
        service,
        revision: state.revision(&service.name),
        pinned: listener.pinned.is_some(),
    };

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
        managed: asked.via(),
    };
    let verdict = auth::authorize(judge, service, req.headers(), origin);
    if matches!(verdict, auth::Verdict::Deny { .. }) && !around.audit {
        let course = Course::Judged {
            route,
            verdict,
            end: End::NotSent,
        };
        return turned_away(state, decision(asked, course, &around).timed(started), None);
    }
    // Audit mode sends a refused request anyway, headers untouched (no credential).
    let forwarded = match proxy::Target::of(service, state.supervisor()).await {
        Ok(target) => {
            proxy::forward(service, target, req, peer.remote.ip(), verdict.credential()).await
        }
        Err(e) => Err(e),
    };
    match forwarded {
        Ok(mut r) => {
            // Looked for on a gRPC call's answer only: an HTTP/1 answer costs one empty check.
            let grpc = r.extensions().get::<h2c::GrpcCall>().is_some();
            let grpc_status = grpc
                .then(|| r.headers().get("grpc-status"))
                .flatten()
                .and_then(|v| v.to_str().ok()?.parse().ok());
            let end = End::Answered(r.status(), grpc_status);
            let course = Course::Judged {
                route,
                verdict,
                end,
            };
            let decision = decision(asked, course, &around).timed(started);
            if let (Some(status), Some(code)) = (decision.would_deny, decision.code) {
                // The caller sees what enforcement would have said.
                let said = format!("{status} {code}: {}", decision.reason);
                if let Some(value) = crate::decisions::reason_header(&said) {
                    r.headers_mut().insert(WOULD_DENY, value);
                }
            }
            let number = state.decisions().record(decision);
            // A gRPC call's status usually comes in its trailers, after the decision: it is
            // added to the decision when it does.
            if grpc && grpc_status.is_none() {
                let state = state.clone();
                r = r.map(|body| Body::new(h2c::StatusNoted::new(body, state, number)));
            }
            r
        }
        Err(e) => {
            let course = Course::Judged {
                route,
                verdict,
                end: End::Failed(&e),
            };
            let decision = decision(asked, course, &around).timed(started);
            turned_away(state, decision, Some(&e.to_string()))
        }
    }
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
fn turned_away(state: &AppState, decision: Decision, cause: Option<&str>) -> Response<Body> {
    let status = StatusCode::from_u16(decision.status).unwrap_or(StatusCode::FORBIDDEN);
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
