//! Cloud Scheduler's calls: at each time a job's schedule names (or at once, for
//! `RunJob`), its URI is called with its method, headers and body, Google's
//! `X-CloudScheduler*` headers and the token its `oidcToken` or `oauthToken` asks for,
//! within its attempt deadline. A 2xx ends the run; anything else, or no answer in time,
//! is retried as the job's retry config says (`cronjobs`).

use std::time::{Duration, SystemTime};

use axum::http::{HeaderName, HeaderValue, Method, header};
use googleapis_tonic_google_cloud_scheduler_v1::google::cloud::scheduler::v1 as pb;
use pb::http_target::AuthorizationHeader;

use super::{Outgoing, Token};
use crate::cronjobs::Fire;
use crate::state::{AppState, Live};
use crate::taskqueue::{Outcome, id_of};

/// Google's user agent for Cloud Scheduler's HTTP targets.
const USER_AGENT: &str = "Google-Cloud-Scheduler";

/// Runs the jobs until the process ends.
pub(super) async fn run(live: Live) {
    let frontdoor = crate::frontdoor::app(live.clone(), None);
    loop {
        let state = live.get();
        let jobs = state.scheduler().clone();
        let changed = jobs.changed();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        let (due, next) = jobs.take_due(SystemTime::now());
        for fire in due {
            let state = state.clone();
            let frontdoor = frontdoor.clone();
            tokio::spawn(async move {
                // Reported however the call ends, a panic included.
                let mut report = Report {
                    state: state.clone(),
                    fire: Some(fire.clone()),
                    outcome: Outcome::NoAnswer("the call ended without an answer".into()),
                };
                let outcome = match outgoing(&fire) {
                    Ok(out) => super::send(&state, &frontdoor, out).await,
                    Err(e) => Err(e),
                };
                report.outcome = match outcome {
                    Ok(status) => Outcome::Answered(status.as_u16()),
                    Err(e) => Outcome::NoAnswer(e),
                };
            });
        }
        let wait = next
            .map_or(Duration::from_secs(1), |n| {
                n.duration_since(SystemTime::now()).unwrap_or_default()
            })
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// A call's report to its job, made when it is dropped.
struct Report {
    state: AppState,
    fire: Option<Fire>,
    outcome: Outcome,
}

impl Drop for Report {
    fn drop(&mut self) {
        let Some(fire) = self.fire.take() else {
            return;
        };
        let after = self
            .state
            .scheduler()
            .finished(&fire, &self.outcome, SystemTime::now());
        tracing::info!(
            job = %fire.job.name,
            attempt = fire.attempt,
            outcome = ?self.outcome,
            after = ?after,
            "cloud scheduler call"
        );
    }
}

/// The request Cloud Scheduler makes for `fire`.
fn outgoing(fire: &Fire) -> Result<Outgoing, String> {
    let job = &fire.job;
    let Some(pb::job::Target::HttpTarget(http)) = &job.target else {
        return Err("the job has no HTTP target".into());
    };
    let method = pb::HttpMethod::try_from(http.http_method)
        .ok()
        .and_then(|m| Method::from_bytes(m.as_str_name().as_bytes()).ok())
        .unwrap_or(Method::POST);
    let mut headers: Vec<(HeaderName, HeaderValue)> = http
        .headers
        .iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::try_from(k).ok()?,
                HeaderValue::try_from(v).ok()?,
            ))
        })
        .collect();
    if !http.body.is_empty() && !headers.iter().any(|(k, _)| k == header::CONTENT_TYPE) {
        headers.push((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ));
    }
    headers.push((header::USER_AGENT, HeaderValue::from_static(USER_AGENT)));
    let scheduled = humantime::format_rfc3339_seconds(fire.scheduled).to_string();
    for (name, value) in [
        ("x-cloudscheduler", "true".to_owned()),
        ("x-cloudscheduler-jobname", id_of(&job.name).to_owned()),
        ("x-cloudscheduler-scheduletime", scheduled),
    ] {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.push((HeaderName::from_static(name), value));
        }
    }
    let token = match &http.authorization_header {
        Some(AuthorizationHeader::OidcToken(o)) => Some(Token::Oidc {
            account: o.service_account_email.clone(),
            audience: o.audience.clone(),
        }),
        Some(AuthorizationHeader::OauthToken(o)) => Some(Token::Oauth {
            account: o.service_account_email.clone(),
            scope: o.scope.clone(),
        }),
        None => None,
    };
    let r#as = match &token {
        Some(token) => format!(", as {}", token.account()),
        None => ", without a token".to_owned(),
    };
    Ok(Outgoing {
        url: http.uri.clone(),
        method,
        headers,
        body: http.body.clone().into(),
        label: format!(
            "Cloud Scheduler job {}{}, attempt {}",
            id_of(&job.name),
            r#as,
            fire.attempt
        ),
        token,
        deadline: job.attempt_deadline.map_or(
            crate::config::scheduler::DEFAULT_DEADLINE,
            crate::broker::duration,
        ),
        deadline_name: "attempt deadline",
        unanswered: "the attempt has failed and the job is retried as its retry config says",
    })
}
