//! The Google-managed callers the graph draws, read from what frontdoor holds: each push
//! subscription (an Eventarc trigger's too), each Cloud Scheduler job, and each queue's
//! tasks by the account they call as. Each is a caller node with a push edge to the
//! service its URL names; whether its account may invoke is the account's own edge.

use googleapis_tonic_google_cloud_scheduler_v1::google::cloud::scheduler::v1 as scheduler;
use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pubsub;

use super::graph::{Kind, Managed};
use crate::config::Config;
use crate::state::AppState;

/// Callers of one queue, drawn at most: a queue's tasks are many, their callers few.
const MAX_TASK_CALLERS: usize = 200;

/// Every managed caller `state` holds.
pub(crate) fn of_state(state: &AppState) -> Vec<Managed> {
    let config = state.config();
    let mut out = of_subscriptions(config, &state.pubsub().push_subscriptions());
    out.extend(state.scheduler().every().iter().filter_map(of_job));
    out.extend(
        state
            .tasks()
            .callers(MAX_TASK_CALLERS)
            .into_iter()
            .map(|(queue, url, account)| of_tasks(&queue, url, account.as_deref())),
    );
    out
}

fn as_whom(account: Option<&str>) -> String {
    account.map_or_else(|| "without a token".to_owned(), |a| format!("as {a}"))
}

/// An id of `name` (`projects/P/…/ID`): its id alone in this project, else all of it, so
/// that another project's resource of the same id is another caller.
fn short_id(config: &Config, name: &str) -> String {
    match name.strip_prefix(&format!("projects/{}/", config.project.id)) {
        Some(_) => name.rsplit('/').next().unwrap_or_default().to_owned(),
        None => name.to_owned(),
    }
}

pub(crate) fn of_subscriptions(config: &Config, all: &[pubsub::Subscription]) -> Vec<Managed> {
    all.iter()
        .filter_map(|subscription| {
            let push = subscription.push_config.as_ref()?;
            let account = push.authentication_method.as_ref().map(|m| match m {
                pubsub::push_config::AuthenticationMethod::OidcToken(o) => {
                    o.service_account_email.as_str()
                }
            });
            let id = short_id(config, &subscription.name);
            let short = subscription.name.rsplit('/').next().unwrap_or_default();
            let label = match subscription
                .labels
                .get(crate::config::eventarc::TRIGGER_LABEL)
            {
                Some(trigger) => format!("Eventarc trigger: {trigger}, {}", as_whom(account)),
                None => format!("Pub/Sub push: {short}, {}", as_whom(account)),
            };
            Some(Managed {
                id: format!("subscription:{id}"),
                kind: Kind::Subscription,
                label,
                url: push.push_endpoint.clone(),
                on: "subscription",
            })
        })
        .collect()
}

pub(crate) fn of_job(job: &scheduler::Job) -> Option<Managed> {
    use scheduler::http_target::AuthorizationHeader;
    let Some(scheduler::job::Target::HttpTarget(http)) = &job.target else {
        return None;
    };
    let account = match &http.authorization_header {
        Some(AuthorizationHeader::OidcToken(o)) => Some(o.service_account_email.as_str()),
        Some(AuthorizationHeader::OauthToken(o)) => Some(o.service_account_email.as_str()),
        None => None,
    };
    let id = job.name.rsplit('/').next().unwrap_or_default();
    Some(Managed {
        id: format!("job:{}", job.name),
        kind: Kind::Job,
        label: format!("Cloud Scheduler job: {id}, {}", as_whom(account)),
        url: http.uri.clone(),
        on: "job",
    })
}

pub(crate) fn of_tasks(queue: &str, url: String, account: Option<&str>) -> Managed {
    let id = queue.rsplit('/').next().unwrap_or_default();
    Managed {
        id: format!("queue:{queue}:{}", account.unwrap_or("-")),
        kind: Kind::Queue,
        label: format!("Cloud Tasks queue: {id}, {}", as_whom(account)),
        url,
        on: "queue",
    }
}
