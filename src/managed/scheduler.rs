//! Cloud Scheduler's calls: at each time a job's schedule names (or at once, for
//! `RunJob`), its URI is called with its method, headers and body, Google's
//! `X-CloudScheduler*` headers and the token its `oidcToken` or `oauthToken` asks for,
//! within its attempt deadline. A 2xx ends the run; anything else, or no answer in time,
//! is retried as the job's retry config says (`cronjobs`).

use std::time::SystemTime;

use googleapis_tonic_google_cloud_scheduler_v1::google::cloud::scheduler::v1 as pb;
use pb::http_target::AuthorizationHeader;

use super::{Due, Outgoing, as_whom, headers_of, method_of, token_of};
use crate::cronjobs::Fire;
use crate::state::AppState;
use crate::taskqueue::{Outcome, id_of};

/// Google's user agent for Cloud Scheduler's HTTP targets.
const USER_AGENT: &str = "Google-Cloud-Scheduler";

impl Due for Fire {
    fn take(state: &AppState, now: SystemTime) -> (Vec<Fire>, Option<SystemTime>) {
        state.scheduler().take_due(now)
    }

    fn changed(state: &AppState) -> tokio::sync::futures::Notified<'_> {
        state.scheduler().changed()
    }

    fn outgoing(&self) -> Result<Outgoing, String> {
        outgoing(self)
    }

    fn finished(&self, state: &AppState, outcome: &Outcome) {
        let after = state.scheduler().finished(self, outcome, SystemTime::now());
        tracing::info!(
            job = %self.job.name,
            attempt = self.attempt,
            outcome = ?outcome,
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
        .map_or(axum::http::Method::POST, |m| method_of(m.as_str_name()));
    let google = vec![
        ("x-cloudscheduler", "true".to_owned()),
        ("x-cloudscheduler-jobname", id_of(&job.name).to_owned()),
        (
            "x-cloudscheduler-scheduletime",
            humantime::format_rfc3339_seconds(fire.scheduled).to_string(),
        ),
    ];
    let token = match &http.authorization_header {
        Some(AuthorizationHeader::OidcToken(o)) => {
            token_of(Some((&o.service_account_email, &o.audience)), None)
        }
        Some(AuthorizationHeader::OauthToken(o)) => {
            token_of(None, Some((&o.service_account_email, &o.scope)))
        }
        None => None,
    };
    Ok(Outgoing {
        url: http.uri.clone(),
        method,
        headers: headers_of(&http.headers, &http.body, USER_AGENT, google),
        body: http.body.clone().into(),
        label: format!(
            "Cloud Scheduler job {}{}, attempt {}",
            id_of(&job.name),
            as_whom(token.as_ref()),
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
