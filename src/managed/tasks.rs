//! Cloud Tasks' dispatches: each task due in a running queue is sent to its URL with its
//! method, headers and body, Google's `X-CloudTasks-*` headers, and the token its
//! `oidcToken` or `oauthToken` asks for, within its dispatch deadline. A 2xx ends the task;
//! anything else, or no answer in time, is retried as its queue's config says
//! (`taskqueue`), and given up when that is spent.

use std::time::SystemTime;

use googleapis_tonic_google_cloud_tasks_v2::google::cloud::tasks::v2 as pb;
use pb::http_request::AuthorizationHeader;

use super::{Due, Outgoing, as_whom, headers_of, method_of, token_of};
use crate::state::AppState;
use crate::taskqueue::{After, Dispatch, Outcome, id_of};

/// Google's user agent for Cloud Tasks' HTTP targets.
const USER_AGENT: &str = "Google-Cloud-Tasks";

impl Due for Dispatch {
    fn take(state: &AppState, now: SystemTime) -> (Vec<Dispatch>, Option<SystemTime>) {
        state.tasks().take_due(now)
    }

    fn changed(state: &AppState) -> tokio::sync::futures::Notified<'_> {
        state.tasks().changed()
    }

    fn outgoing(&self) -> Result<Outgoing, String> {
        outgoing(self)
    }

    fn finished(&self, state: &AppState, outcome: &Outcome) {
        let after = state.tasks().finished(self, outcome, SystemTime::now());
        match outcome {
            Outcome::Answered(status) => tracing::info!(
                task = %self.task.name,
                attempt = self.retries + 1,
                status,
                after = ?after,
                "cloud tasks dispatch"
            ),
            Outcome::NoAnswer(e) => tracing::info!(
                task = %self.task.name,
                attempt = self.retries + 1,
                error = %e,
                after = ?after,
                "cloud tasks dispatch failed"
            ),
        }
        if after == After::GivenUp {
            tracing::info!(task = %self.task.name, "cloud tasks gave the task up: its queue's retries are spent");
        }
    }
}

/// The request Cloud Tasks makes for `dispatch`.
fn outgoing(dispatch: &Dispatch) -> Result<Outgoing, String> {
    let task = &dispatch.task;
    let Some(pb::task::MessageType::HttpRequest(http)) = &task.message_type else {
        return Err("the task has no HTTP request".into());
    };
    let method = pb::HttpMethod::try_from(http.http_method)
        .map_or(axum::http::Method::POST, |m| method_of(m.as_str_name()));
    let eta = dispatch
        .eta
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut google = vec![
        ("x-cloudtasks-queuename", id_of(&dispatch.queue).to_owned()),
        ("x-cloudtasks-taskname", id_of(&task.name).to_owned()),
        ("x-cloudtasks-taskretrycount", dispatch.retries.to_string()),
        (
            "x-cloudtasks-taskexecutioncount",
            dispatch.executions.to_string(),
        ),
        (
            "x-cloudtasks-tasketa",
            format!("{}.{:06}", eta.as_secs(), eta.subsec_micros()),
        ),
    ];
    if let Some(status) = dispatch.previous_response {
        google.push(("x-cloudtasks-taskpreviousresponse", status.to_string()));
    }
    if let Some(reason) = &dispatch.retry_reason {
        google.push(("x-cloudtasks-taskretryreason", reason.clone()));
    }
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
        url: http.url.clone(),
        method,
        headers: headers_of(&http.headers, &http.body, USER_AGENT, google),
        body: http.body.clone().into(),
        label: format!(
            "Cloud Tasks queue {} task {}{}, attempt {}",
            id_of(&dispatch.queue),
            id_of(&task.name),
            as_whom(token.as_ref()),
            dispatch.retries + 1
        ),
        token,
        deadline: task.dispatch_deadline.map_or(
            crate::google::tasks::DEFAULT_DEADLINE,
            crate::broker::duration,
        ),
        deadline_name: "dispatch deadline",
        unanswered: "the attempt has failed and the task is retried as its queue says",
    })
}
