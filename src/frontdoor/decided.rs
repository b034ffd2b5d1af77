//! A front-door decision, built in one place from what happened to the request: what was
//! asked, where it was routed, the verdict, and how the proxying ended.

use axum::extract::Request;
use axum::http::{StatusCode, header};

use super::auth::Verdict;
use super::proxy::ProxyError;
use crate::config::Service;
use crate::decisions::chain::{Check, Step};
use crate::decisions::{Code, Decision, Surface};
use crate::iam::Principal;

/// What was asked: read off the request once, before it is judged or sent.
pub(super) struct Asked {
    time: i64,
    method: axum::http::Method,
    host: String,
    path: String,
    /// The Google-managed caller that sent it, if one did (a Pub/Sub push).
    via: Option<std::sync::Arc<str>>,
}

impl Asked {
    /// `req` at `time`. RFC 9112 §3.2.2: a request in absolute form (`GET http://HOST/path`)
    /// is for the target's host, whatever `Host` says; HTTP/2 names it in `:authority`.
    pub(super) fn of(req: &Request, time: i64) -> Asked {
        let host = req
            .uri()
            .authority()
            .map(|a| a.as_str().rsplit('@').next().unwrap_or(""))
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or("");
        Asked {
            time,
            method: req.method().clone(),
            host: host.to_owned(),
            path: req.uri().path().to_owned(),
            via: req
                .extensions()
                .get::<crate::peer::ManagedCaller>()
                .map(|m| m.0.clone()),
        }
    }

    /// The Google-managed caller that sent it, if one did.
    pub(super) fn via(&self) -> Option<&str> {
        self.via.as_deref()
    }

    pub(super) fn host(&self) -> &str {
        &self.host
    }
}

/// Where a request went: its service (and revision), and how it was found.
pub(super) struct Routed<'s> {
    pub(super) service: &'s Service,
    pub(super) revision: Option<&'s str>,
    /// On the service's own listener, rather than by `Host` on the shared one.
    pub(super) pinned: bool,
}

/// How a request's course ran. Built once per request and consumed at once, so the two
/// shapes' difference in size costs nothing worth a box.
#[allow(clippy::large_enum_variant)]
pub(super) enum Course<'s> {
    /// Turned away before any check of a service: malformed, or routed nowhere.
    Unrouted {
        status: StatusCode,
        code: Code,
        reason: String,
    },
    /// Routed and judged; `end` says whether and how the container answered.
    Judged {
        route: Routed<'s>,
        verdict: Verdict,
        end: End<'s>,
    },
}

/// Whether, and how, the container answered a judged request.
pub(super) enum End<'e> {
    /// Refused, and enforcing: nothing was sent.
    NotSent,
    /// Sent; the container answered with this status.
    /// Sent; the container answered with this status, and with this `grpc-status` in its
    /// headers (a gRPC call it ended at once, a "trailers-only" answer; a status in the
    /// trailers is added to the recorded decision when it comes).
    Answered(StatusCode, Option<u16>),
    /// Sent, or about to be, and no answer came.
    Failed(&'e ProxyError),
}

/// What stands around a decision but is not the request's: whether the front door only
/// audits, and the note that the configuration's last change was refused (which every
/// refusal carries while it stands; asked for only by a refusal).
pub(super) struct Circumstances<'a> {
    pub(super) audit: bool,
    pub(super) refused_change: &'a (dyn Fn() -> Option<String> + Sync),
}

/// The decision about `asked`, from its course, whole: every field is set here and
/// nowhere else.
pub(super) fn decision(asked: Asked, course: Course<'_>, around: &Circumstances<'_>) -> Decision {
    let Asked {
        time,
        method,
        host,
        path,
        via,
    } = asked;
    // The route's words need the host before the decision takes it.
    let routed_step = match &course {
        Course::Judged { route, .. } if route.pinned => {
            Some(["the service's own listener: `", &route.service.name, "`"].concat())
        }
        Course::Judged { route, .. } => {
            Some(["host `", &host, "` is service `", &route.service.name, "`"].concat())
        }
        Course::Unrouted { .. } => None,
    };
    let mut decision = Decision::about(Surface::Frontdoor, time, method.as_str(), host, path);
    decision.via = via.map(|v| v.to_string());
    let (route, verdict, end) = match course {
        Course::Unrouted {
            status,
            code,
            reason,
        } => {
            // Refused before any check: the route is the failed step.
            decision
                .steps
                .push(Step::failed(Check::Route, reason.clone()));
            decision.status = status.as_u16();
            decision.code = Some(code);
            decision.reason = reason;
            noted(&mut decision, around);
            return decision;
        }
        Course::Judged {
            route,
            verdict,
            end,
        } => (route, verdict, end),
    };
    let service = route.service;
    // Joined, not formatted, as every passed check's words are (`auth::checks`).
    if let Some(words) = routed_step {
        decision.steps.push(Step::passed(Check::Route, words));
    }
    decision.service = Some(service.name.clone());
    decision.revision = route.revision.map(str::to_owned);

    let (caller, steps, reason, refusal) = match verdict {
        Verdict::Allow {
            caller,
            reason,
            steps,
            ..
        } => (caller, steps, reason, None),
        Verdict::Deny {
            caller,
            status,
            code,
            reason,
            steps,
        } => (caller, steps, reason, Some((status, code))),
    };
    decision.steps.extend(steps);
    decision.principal = caller.principal.as_ref().map(Principal::member);
    decision.credential = caller.header.as_ref().map(|h| h.as_str().to_owned());
    decision.token = caller.token;
    decision.code = refusal.map(|(_, code)| code);
    if around.audit {
        decision.would_deny = refusal.map(|(status, _)| status.as_u16());
    }

    match end {
        End::NotSent => {
            let (status, _) = refusal.expect("only a refusal is not sent");
            decision.status = status.as_u16();
            decision.reason = reason;
            noted(&mut decision, around);
        }
        End::Answered(status, grpc_status) => {
            let upstream = service.upstream.label();
            let mut code = itoa::Buffer::new();
            let mut answered = [&upstream, " answered ", code.format(status.as_u16())].concat();
            if let Some(grpc) = grpc_status {
                decision.grpc_status = Some(grpc);
                answered.push_str(&crate::decisions::with_grpc_status(grpc));
            }
            decision
                .steps
                .push(Step::passed(Check::Container, answered));
            decision.allowed = true;
            decision.status = status.as_u16();
            decision.reason = reason;
            decision.reason.push_str("; proxied to ");
            decision.reason.push_str(&upstream);
        }
        End::Failed(e) => {
            decision
                .steps
                .push(Step::failed(Check::Container, e.to_string()));
            decision.allowed = e.status() != StatusCode::PAYLOAD_TOO_LARGE;
            decision.status = e.status().as_u16();
            // An audited request keeps, in its reason, the refusal its code gives way to.
            let audited = match (decision.would_deny, decision.code) {
                (Some(status), Some(code)) => format!(" (audit: would deny {status}: {code})"),
                _ => String::new(),
            };
            decision.reason = format!("{reason}{audited}; but {e}");
            decision.code = Some(e.code());
            noted(&mut decision, around);
        }
    }
    decision
}

/// A refusal says, while it stands, that the configuration's last change was refused.
fn noted(decision: &mut Decision, around: &Circumstances<'_>) {
    if let Some(note) = (around.refused_change)() {
        decision.reason.push_str("; ");
        decision.reason.push_str(&note);
    }
}
