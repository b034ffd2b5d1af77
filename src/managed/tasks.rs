//! Cloud Tasks' dispatches: each task due in a running queue is sent to its URL with its
//! method, headers and body, Google's `X-CloudTasks-*` headers, and the token its
//! `oidcToken` or `oauthToken` asks for, within its dispatch deadline. A 2xx ends the task;
//! anything else, or no answer in time, is retried as its queue's config says
//! (`taskqueue`), and given up when that is spent.

use std::time::{Duration, SystemTime};

use axum::http::{HeaderName, HeaderValue, Method, header};
use googleapis_tonic_google_cloud_tasks_v2::google::cloud::tasks::v2 as pb;
use pb::http_request::AuthorizationHeader;

use super::{Outgoing, Token};
use crate::state::{AppState, Live};
use crate::taskqueue::{After, Dispatch, Outcome, id_of};

/// Google's user agent for Cloud Tasks' HTTP targets.
const USER_AGENT: &str = "Google-Cloud-Tasks";

/// Runs the dispatches until the process ends.
pub(super) async fn run(live: Live) {
    let frontdoor = crate::frontdoor::app(live.clone(), None);
    loop {
        let state = live.get();
        let queues = state.tasks().clone();
        let changed = queues.changed();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        let now = SystemTime::now();
        let (due, next) = queues.take_due(now);
        for dispatch in due {
            let state = state.clone();
            let frontdoor = frontdoor.clone();
            tokio::spawn(async move {
                // Reported however the dispatch ends, a panic included.
                let mut report = Report {
                    state: state.clone(),
                    dispatch: Some(dispatch.clone()),
                    outcome: Outcome::NoAnswer("the dispatch ended without an answer".into()),
                };
                let outcome = match outgoing(&dispatch) {
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

/// A dispatch's report to its queue, made when it is dropped.
struct Report {
    state: AppState,
    dispatch: Option<Dispatch>,
    outcome: Outcome,
}

impl Drop for Report {
    fn drop(&mut self) {
        let Some(dispatch) = self.dispatch.take() else {
            return;
        };
        let after = self
            .state
            .tasks()
            .finished(&dispatch, &self.outcome, SystemTime::now());
        let task = &dispatch.task.name;
        match (&self.outcome, &after) {
            (Outcome::Answered(status), _) => tracing::info!(
                task = %task,
                attempt = dispatch.retries + 1,
                status,
                after = ?after,
                "cloud tasks dispatch"
            ),
            (Outcome::NoAnswer(e), _) => tracing::info!(
                task = %task,
                attempt = dispatch.retries + 1,
                error = %e,
                after = ?after,
                "cloud tasks dispatch failed"
            ),
        }
        if after == After::GivenUp {
            tracing::info!(task = %task, "cloud tasks gave the task up: its queue's retries are spent");
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
    for (name, value) in google {
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
        url: http.url.clone(),
        method,
        headers,
        body: http.body.clone().into(),
        label: format!(
            "Cloud Tasks queue {} task {}{}, attempt {}",
            id_of(&dispatch.queue),
            id_of(&task.name),
            r#as,
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
