//! Cloud Tasks (issue 30): queues and HTTP-target tasks, served in both of Google's
//! transports on the google listener, gRPC (`grpc`) and REST/JSON (`rest`), over one store
//! (`crate::taskqueue`); `managed::tasks` dispatches each task as a Google-managed caller,
//! with an ID token for the account its `oidcToken` names.
//!
//! Who may call is decided as for Pub/Sub (`emulated`): through the egress proxy
//! (`cloudtasks.googleapis.com`) or with a bearer token, the caller's roles on the
//! project; with no credentials on the google listener itself, nothing (as the community's
//! Cloud Tasks emulators). A task that names an account needs a caller who may act as it.

mod grpc;
mod json;
mod kept;
mod rest;

use std::time::{Duration, SystemTime};

use googleapis_tonic_google_cloud_tasks_v2::google::cloud::tasks::v2 as pb;
use pb::http_request::AuthorizationHeader;
use prost::Message as _;

pub(crate) use grpc::routes as grpc_routes;
pub(crate) use kept::{KEPT, read_back};
pub(crate) use rest::routes as rest_routes;

use super::emulated::{Api, Checked, Who};
use super::errors::ApiError;
use crate::broker::Page;
use crate::config::tasks::{check_queue, check_queue_name};
use crate::decisions::Explanation;
use crate::iam;
use crate::state::AppState;
use crate::taskqueue::{self, TaskQueues, id_of, queue_of};

/// Google's limit on a task: 1 MB, its body and headers included.
pub(crate) const MAX_TASK_BYTES: usize = 1024 * 1024;
/// A task may be scheduled at most this far ahead (Google's 30 days).
const MAX_SCHEDULE_AHEAD: Duration = Duration::from_secs(30 * 24 * 3600);
/// Google's bounds on a dispatch deadline, and its default.
const MIN_DEADLINE: Duration = Duration::from_secs(15);
const MAX_DEADLINE: Duration = Duration::from_secs(30 * 60);
pub(crate) const DEFAULT_DEADLINE: Duration = Duration::from_secs(600);

/// Whether a request path is one of Cloud Tasks' (its REST resources, its gRPC methods).
pub(crate) fn is_path(path: &str) -> bool {
    path.starts_with("/google.cloud.tasks.v2.")
        || (path.starts_with("/v2/projects/") && path.split('/').nth(6) == Some("queues"))
}

/// Google's rule for a location id: a region frontdoor knows the form of.
fn check_location(location: &str) -> Result<(), ApiError> {
    if crate::config::region_is_valid(location) {
        Ok(())
    } else {
        Err(ApiError::InvalidArgument(format!(
            "Location `{}` is not a Cloud Tasks location: a region such as us-central1",
            shown(location)
        )))
    }
}

fn shown(text: &str) -> String {
    text.chars().take(100).collect()
}

/// `projects/P/locations/L`, checked.
fn parse_parent(parent: &str) -> Result<(), ApiError> {
    let parts: Vec<&str> = parent.split('/').collect();
    match parts.as_slice() {
        ["projects", p, "locations", l] if !p.is_empty() => check_location(l),
        _ => Err(ApiError::InvalidArgument(format!(
            "Invalid resource field value in the request: `{}` is not projects/PROJECT/locations/LOCATION",
            shown(parent)
        ))),
    }
}

fn parse_queue(name: &str) -> Result<(), ApiError> {
    check_queue_name(name).map_err(|why| {
        ApiError::InvalidArgument(format!(
            "Invalid resource field value in the request: {why}"
        ))
    })
}

/// `QUEUE/tasks/T`, checked: a task id has 1 to 500 letters, digits, hyphens and
/// underscores.
fn parse_task(name: &str) -> Result<(), ApiError> {
    let bad = |why: String| {
        ApiError::InvalidArgument(format!(
            "Invalid resource field value in the request: {why}"
        ))
    };
    let Some((queue, id)) = name.rsplit_once("/tasks/") else {
        return Err(bad(format!(
            "`{}` is not projects/PROJECT/locations/LOCATION/queues/QUEUE_ID/tasks/TASK_ID",
            shown(name)
        )));
    };
    check_queue_name(queue).map_err(bad)?;
    if id.is_empty()
        || id.len() > 500
        || !id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(format!(
            "task id `{}` is not 1 to 500 letters, digits, hyphens and underscores",
            shown(id)
        )));
    }
    Ok(())
}

/// One call of the API.
pub(crate) struct Call(Checked);

impl Api for Call {
    fn new(state: AppState, who: Who) -> Call {
        Call(Checked::new(state, who))
    }

    fn finish(&mut self, failed: bool) -> Explanation {
        self.0.finish(failed)
    }
}

impl From<taskqueue::Error> for ApiError {
    fn from(e: taskqueue::Error) -> ApiError {
        let message = e.to_string();
        match e {
            taskqueue::Error::NotFound(_) => ApiError::NotFound(message),
            taskqueue::Error::AlreadyExists(_) => ApiError::AlreadyExists(message),
            taskqueue::Error::InvalidArgument(_) => ApiError::InvalidArgument(message),
            taskqueue::Error::ResourceExhausted(_) => ApiError::ResourceExhausted(message),
        }
    }
}

impl Call {
    fn queues(&self) -> &TaskQueues {
        self.0.state.tasks()
    }

    fn allow(&mut self, permission: &'static str, name: &str) -> Result<(), ApiError> {
        self.0.allow_in_project(permission, name, "Cloud Tasks'")
    }

    /// Whether the caller may see a task's body (`FULL`), else `BASIC`.
    fn view(&mut self, view: i32, name: &str) -> Result<bool, ApiError> {
        if view != pb::task::View::Full as i32 {
            return Ok(false);
        }
        let asked = self.0.explanation.clone();
        self.allow(iam::TASKS_FULL_VIEW, name)?;
        self.0.explanation = asked;
        Ok(true)
    }

    pub(crate) fn create_queue(
        &mut self,
        parent: &str,
        queue: pb::Queue,
    ) -> Result<pb::Queue, ApiError> {
        parse_parent(parent)?;
        parse_queue(&queue.name)?;
        if !queue.name.starts_with(&format!("{parent}/queues/")) {
            return Err(ApiError::InvalidArgument(format!(
                "The queue's name `{}` is not under the parent `{}`",
                shown(&queue.name),
                shown(parent)
            )));
        }
        check_queue(&queue).map_err(ApiError::InvalidArgument)?;
        self.allow(iam::QUEUES_CREATE, &queue.name)?;
        Ok(self.queues().create_queue(queue)?)
    }

    pub(crate) fn get_queue(&mut self, name: &str) -> Result<pb::Queue, ApiError> {
        parse_queue(name)?;
        self.allow(iam::QUEUES_GET, name)?;
        Ok(self.queues().queue(name)?)
    }

    pub(crate) fn list_queues(
        &mut self,
        parent: &str,
        page: Page<'_>,
    ) -> Result<(Vec<pb::Queue>, String), ApiError> {
        parse_parent(parent)?;
        self.allow(iam::QUEUES_LIST, parent)?;
        Ok(self.queues().queues(parent, page))
    }

    /// `UpdateQueue` (`PATCH`): the fields `mask` names, from `update`; a queue that does
    /// not exist is made, as Google's `PATCH` makes it.
    pub(crate) fn update_queue(
        &mut self,
        update: pb::Queue,
        mask: &[String],
    ) -> Result<pb::Queue, ApiError> {
        let name = update.name.clone();
        parse_queue(&name)?;
        check_queue(&update).map_err(ApiError::InvalidArgument)?;
        if self.queues().queue(&name).is_err() {
            self.allow(iam::QUEUES_CREATE, &name)?;
            return Ok(self.queues().create_queue(update)?);
        }
        self.allow(iam::QUEUES_UPDATE, &name)?;
        let refused = |why: String| taskqueue::Error::InvalidArgument(why);
        Ok(self.queues().update_queue(&name, |q| {
            let rate = q.rate_limits.get_or_insert_with(Default::default);
            let retry = q.retry_config.get_or_insert_with(Default::default);
            let new_rate = update.rate_limits.unwrap_or_default();
            let new_retry = update.retry_config.unwrap_or_default();
            let all = mask.is_empty();
            let named = |f: &str| all || mask.iter().any(|m| m == f || snake(m) == f);
            if named("rate_limits") || named("rate_limits.max_dispatches_per_second") {
                rate.max_dispatches_per_second = new_rate.max_dispatches_per_second;
            }
            if named("rate_limits") || named("rate_limits.max_concurrent_dispatches") {
                rate.max_concurrent_dispatches = new_rate.max_concurrent_dispatches;
            }
            if named("retry_config") || named("retry_config.max_attempts") {
                retry.max_attempts = new_retry.max_attempts;
            }
            if named("retry_config") || named("retry_config.max_retry_duration") {
                retry.max_retry_duration = new_retry.max_retry_duration;
            }
            if named("retry_config") || named("retry_config.min_backoff") {
                retry.min_backoff = new_retry.min_backoff;
            }
            if named("retry_config") || named("retry_config.max_backoff") {
                retry.max_backoff = new_retry.max_backoff;
            }
            if named("retry_config") || named("retry_config.max_doublings") {
                retry.max_doublings = new_retry.max_doublings;
            }
            if named("stackdriver_logging_config") {
                q.stackdriver_logging_config = update.stackdriver_logging_config;
            }
            if let Some(other) = mask.iter().find(|m| {
                let m = snake(m);
                !(m.starts_with("rate_limits")
                    || m.starts_with("retry_config")
                    || m.starts_with("stackdriver_logging_config"))
            }) {
                return Err(refused(format!(
                    "`{}` in the update_mask is not a field frontdoor can update (rate_limits, retry_config, stackdriver_logging_config and their fields)",
                    shown(other)
                )));
            }
            let q2 = taskqueue::with_defaults(q.clone());
            check_queue(&q2).map_err(refused)
        })?)
    }

    pub(crate) fn delete_queue(&mut self, name: &str) -> Result<(), ApiError> {
        parse_queue(name)?;
        self.allow(iam::QUEUES_DELETE, name)?;
        Ok(self.queues().delete_queue(name)?)
    }

    pub(crate) fn purge_queue(&mut self, name: &str) -> Result<pb::Queue, ApiError> {
        parse_queue(name)?;
        self.allow(iam::QUEUES_PURGE, name)?;
        Ok(self.queues().purge(name, SystemTime::now())?)
    }

    pub(crate) fn pause_queue(&mut self, name: &str) -> Result<pb::Queue, ApiError> {
        parse_queue(name)?;
        self.allow(iam::QUEUES_PAUSE, name)?;
        Ok(self.queues().set_state(name, pb::queue::State::Paused)?)
    }

    pub(crate) fn resume_queue(&mut self, name: &str) -> Result<pb::Queue, ApiError> {
        parse_queue(name)?;
        self.allow(iam::QUEUES_RESUME, name)?;
        Ok(self.queues().set_state(name, pb::queue::State::Running)?)
    }

    pub(crate) fn create_task(
        &mut self,
        queue: &str,
        mut task: pb::Task,
        view: i32,
    ) -> Result<pb::Task, ApiError> {
        parse_queue(queue)?;
        if !task.name.is_empty() {
            parse_task(&task.name)?;
            if queue_of(&task.name) != queue {
                return Err(ApiError::InvalidArgument(format!(
                    "The task's name `{}` is not in the queue `{queue}`",
                    shown(&task.name)
                )));
            }
        }
        self.allow(iam::TASKS_CREATE, queue)?;
        let full = self.view(view, queue)?;
        self.check_task(&mut task)?;
        if let Some(email) = task_account(&task) {
            let email = email.to_owned();
            self.0.allow_account(&email, "of the task's http_request")?;
        }
        let created = self.queues().create_task(queue, task, SystemTime::now())?;
        self.0
            .explanation
            .did(format!("queued task {}", id_of(&created.name)));
        Ok(shown_task(created, full))
    }

    /// A task as Google takes it: an HTTP target with a URL, a method that may carry its
    /// body, headers Cloud Tasks does not set itself, a deadline in bounds, a schedule
    /// within 30 days, all in at most 1 MB.
    fn check_task(&self, task: &mut pb::Task) -> Result<(), ApiError> {
        let bad = ApiError::InvalidArgument;
        let Some(pb::task::MessageType::HttpRequest(http)) = &mut task.message_type else {
            return Err(bad(match task.message_type {
                Some(_) => "App Engine tasks are not emulated: give the task an http_request (an HTTP target)".into(),
                None => "The task has no http_request: frontdoor's tasks are HTTP targets, each with a url".into(),
            }));
        };
        let url = url::Url::parse(&http.url).map_err(|e| {
            bad(format!(
                "HttpRequest.url `{}` is not an absolute URL: {e}",
                shown(&http.url)
            ))
        })?;
        if !["http", "https"].contains(&url.scheme()) || http.url.len() > 2083 {
            return Err(bad(format!(
                "HttpRequest.url `{}` must be an http or https URL of at most 2083 characters",
                shown(&http.url)
            )));
        }
        if http.http_method == pb::HttpMethod::Unspecified as i32 {
            http.http_method = pb::HttpMethod::Post as i32;
        }
        let method = pb::HttpMethod::try_from(http.http_method).map_err(|_| {
            bad(format!(
                "HttpRequest.http_method {} is not an HTTP method",
                http.http_method
            ))
        })?;
        if !http.body.is_empty()
            && !matches!(
                method,
                pb::HttpMethod::Post | pb::HttpMethod::Put | pb::HttpMethod::Patch
            )
        {
            return Err(bad(format!(
                "A body is allowed only with POST, PUT or PATCH, not {}",
                method.as_str_name()
            )));
        }
        let token = http.authorization_header.is_some();
        crate::config::headers::keep_own(&mut http.headers, token)
            .map_err(|why| bad(format!("HttpRequest.headers: {why}")))?;
        if let Some(AuthorizationHeader::OidcToken(oidc)) = &http.authorization_header
            && oidc.service_account_email.is_empty()
        {
            return Err(bad("oidc_token.service_account_email is required".into()));
        }
        if let Some(AuthorizationHeader::OauthToken(oauth)) = &http.authorization_header
            && oauth.service_account_email.is_empty()
        {
            return Err(bad("oauth_token.service_account_email is required".into()));
        }
        let deadline = task
            .dispatch_deadline
            .map_or(DEFAULT_DEADLINE, crate::broker::duration);
        if task
            .dispatch_deadline
            .is_some_and(|d| d.seconds < 0 || d.nanos < 0)
            || !(MIN_DEADLINE..=MAX_DEADLINE).contains(&deadline)
        {
            return Err(bad(format!(
                "Task.dispatch_deadline {:?} is out of range: 15 seconds to 30 minutes",
                deadline
            )));
        }
        task.dispatch_deadline = Some(taskqueue::proto_duration(deadline));
        if let Some(at) = task.schedule_time {
            if !(0..1_000_000_000).contains(&at.nanos)
                || !(0..=taskqueue::LAST_SECOND).contains(&at.seconds)
            {
                return Err(bad("Task.schedule_time is not a valid time".into()));
            }
            let ahead = taskqueue::time_of(at)
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            if ahead > MAX_SCHEDULE_AHEAD {
                return Err(bad(
                    "Task.schedule_time is more than 30 days ahead, the most Cloud Tasks takes"
                        .into(),
                ));
            }
        }
        let size = task.encoded_len();
        if size > MAX_TASK_BYTES {
            return Err(bad(format!(
                "Task size too large: the task is {size} bytes, more than Google's limit of {MAX_TASK_BYTES} bytes (1 MB), its body and headers included"
            )));
        }
        Ok(())
    }

    pub(crate) fn get_task(&mut self, name: &str, view: i32) -> Result<pb::Task, ApiError> {
        parse_task(name)?;
        self.allow(iam::TASKS_GET, name)?;
        let full = self.view(view, name)?;
        Ok(shown_task(self.queues().task(name)?, full))
    }

    pub(crate) fn list_tasks(
        &mut self,
        queue: &str,
        view: i32,
        page: Page<'_>,
    ) -> Result<(Vec<pb::Task>, String), ApiError> {
        parse_queue(queue)?;
        self.allow(iam::TASKS_LIST, queue)?;
        let full = self.view(view, queue)?;
        let (tasks, next) = self.queues().tasks(queue, page)?;
        Ok((
            tasks.into_iter().map(|t| shown_task(t, full)).collect(),
            next,
        ))
    }

    pub(crate) fn delete_task(&mut self, name: &str) -> Result<(), ApiError> {
        parse_task(name)?;
        self.allow(iam::TASKS_DELETE, name)?;
        Ok(self.queues().delete_task(name, SystemTime::now())?)
    }

    pub(crate) fn run_task(&mut self, name: &str, view: i32) -> Result<pb::Task, ApiError> {
        parse_task(name)?;
        self.allow(iam::TASKS_RUN, name)?;
        let full = self.view(view, name)?;
        let task = self.queues().run_task(name, SystemTime::now())?;
        self.0
            .explanation
            .did(format!("ran task {} now", id_of(name)));
        Ok(shown_task(task, full))
    }
}

/// `max_dispatches_per_second` and its kin from a mask's camelCase.
fn snake(field: &str) -> String {
    let mut out = String::with_capacity(field.len() + 4);
    for c in field.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// The account a task's token is for, if it names one.
pub(crate) fn task_account(task: &pb::Task) -> Option<&str> {
    let Some(pb::task::MessageType::HttpRequest(http)) = &task.message_type else {
        return None;
    };
    match &http.authorization_header {
        Some(AuthorizationHeader::OidcToken(o)) => Some(&o.service_account_email),
        Some(AuthorizationHeader::OauthToken(o)) => Some(&o.service_account_email),
        None => None,
    }
}

/// A task as a view shows it: `BASIC` leaves out the body, as Google's does.
fn shown_task(mut task: pb::Task, full: bool) -> pb::Task {
    task.view = if full {
        pb::task::View::Full as i32
    } else {
        pb::task::View::Basic as i32
    };
    if !full && let Some(pb::task::MessageType::HttpRequest(http)) = &mut task.message_type {
        http.body.clear();
    }
    task
}

#[cfg(test)]
mod tests {
    #[test]
    fn its_paths_are_its_rest_resources_and_grpc_methods() {
        let q = "/v2/projects/p/locations/us-central1/queues";
        for path in [
            q,
            &format!("{q}/q:pause"),
            &format!("{q}/q/tasks/t:run"),
            "/google.cloud.tasks.v2.CloudTasks/CreateTask",
        ] {
            assert!(super::is_path(path), "{path}");
        }
        for path in [
            "/v2/projects/p/locations/us-central1/services/s",
            "/v1/projects/p/topics/t",
        ] {
            assert!(!super::is_path(path), "{path}");
        }
    }
}
