//! Cloud Scheduler (issue 30): HTTP-target jobs with unix-cron schedules in a time zone,
//! served in both of Google's transports on the google listener, gRPC (`grpc`) and
//! REST/JSON (`rest`), over one store (`crate::cronjobs`); `managed::scheduler` calls each
//! job's URI at its times as a Google-managed caller, with a token for the account its
//! `oidcToken` names. Who may call is decided as for Pub/Sub and Cloud Tasks (`emulated`).

mod grpc;
mod json;
mod kept;
mod rest;

use std::time::SystemTime;

use googleapis_tonic_google_cloud_scheduler_v1::google::cloud::scheduler::v1 as pb;
use pb::http_target::AuthorizationHeader;

pub(crate) use grpc::routes as grpc_routes;
pub(crate) use kept::{KEPT, read_back};
pub(crate) use rest::routes as rest_routes;

use super::emulated::{Api, Checked, Who};
use super::errors::ApiError;
use crate::broker::Page;
use crate::config::scheduler::check_job_name;
use crate::cronjobs::{self, Jobs};
use crate::decisions::Explanation;
use crate::iam;
use crate::state::AppState;

/// The fields an update mask may name, each with its own fields.
const MASKABLE: [&str; 6] = [
    "description",
    "schedule",
    "time_zone",
    "retry_config",
    "attempt_deadline",
    "http_target",
];

/// Whether mask path `path` names `field` or one of its fields.
fn field_of(path: &str, field: &str) -> bool {
    path == field || path.strip_prefix(field).is_some_and(|r| r.starts_with('.'))
}

/// `a.bC` as proto field paths write it: `a.b_c`.
fn snake(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// Sets in `job` what `mask` names from `update` (everything when it names nothing).
fn merge(job: &mut pb::Job, update: &pb::Job, mask: &[String]) {
    let named = |f: &str| mask.is_empty() || mask.iter().any(|m| field_of(m, f));
    // Exactly this field, or a message holding it.
    let whole = |f: &str| mask.is_empty() || mask.iter().any(|m| m == f || field_of(f, m));
    if named("description") {
        job.description = update.description.clone();
    }
    if named("schedule") {
        job.schedule = update.schedule.clone();
    }
    if named("time_zone") {
        job.time_zone = update.time_zone.clone();
    }
    if named("attempt_deadline") {
        job.attempt_deadline = update.attempt_deadline;
    }
    if named("retry_config") {
        let new = update.retry_config.unwrap_or_default();
        let retry = job.retry_config.get_or_insert_with(Default::default);
        if whole("retry_config.retry_count") {
            retry.retry_count = new.retry_count;
        }
        if whole("retry_config.max_retry_duration") {
            retry.max_retry_duration = new.max_retry_duration;
        }
        if whole("retry_config.min_backoff_duration") {
            retry.min_backoff_duration = new.min_backoff_duration;
        }
        if whole("retry_config.max_backoff_duration") {
            retry.max_backoff_duration = new.max_backoff_duration;
        }
        if whole("retry_config.max_doublings") {
            retry.max_doublings = new.max_doublings;
        }
    }
    if named("http_target") {
        let new = match &update.target {
            Some(pb::job::Target::HttpTarget(h)) => h.clone(),
            _ => pb::HttpTarget::default(),
        };
        if !matches!(job.target, Some(pb::job::Target::HttpTarget(_))) {
            job.target = Some(pb::job::Target::HttpTarget(pb::HttpTarget::default()));
        }
        let Some(pb::job::Target::HttpTarget(http)) = &mut job.target else {
            return;
        };
        if whole("http_target.uri") {
            http.uri = new.uri.clone();
        }
        if whole("http_target.http_method") {
            http.http_method = new.http_method;
        }
        if whole("http_target.headers") {
            http.headers = new.headers.clone();
        }
        if whole("http_target.body") {
            http.body = new.body.clone();
        }
        // A token is one of two: naming either sets the one the update has, or none.
        if whole("http_target.oidc_token")
            || whole("http_target.oauth_token")
            || mask.iter().any(|m| {
                m.starts_with("http_target.oidc_token.")
                    || m.starts_with("http_target.oauth_token.")
            })
        {
            http.authorization_header = new.authorization_header.clone();
        }
    }
}

/// Whether a request path is one of Cloud Scheduler's (its REST resources, its gRPC
/// methods).
pub(crate) fn is_path(path: &str) -> bool {
    path.starts_with("/google.cloud.scheduler.v1.")
        || (path.starts_with("/v1/projects/") && path.split('/').nth(6) == Some("jobs"))
}

fn shown(text: &str) -> String {
    text.chars().take(100).collect()
}

/// `projects/P/locations/L`, checked.
fn parse_parent(parent: &str) -> Result<(), ApiError> {
    let probe = format!("{parent}/jobs/probe");
    check_job_name(&probe).map_err(|why| {
        ApiError::InvalidArgument(format!(
            "Invalid resource field value in the request: `{}` is not projects/PROJECT/locations/LOCATION ({why})",
            shown(parent)
        ))
    })
}

fn parse_job(name: &str) -> Result<(), ApiError> {
    check_job_name(name).map_err(|why| {
        ApiError::InvalidArgument(format!(
            "Invalid resource field value in the request: {why}"
        ))
    })
}

impl From<cronjobs::Error> for ApiError {
    fn from(e: cronjobs::Error) -> ApiError {
        let message = e.to_string();
        match e {
            cronjobs::Error::NotFound(_) => ApiError::NotFound(message),
            cronjobs::Error::AlreadyExists(_) => ApiError::AlreadyExists(message),
            cronjobs::Error::InvalidArgument(_) => ApiError::InvalidArgument(message),
            cronjobs::Error::ResourceExhausted(_) => ApiError::ResourceExhausted(message),
        }
    }
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

impl Call {
    fn jobs(&self) -> &Jobs {
        self.0.state.scheduler()
    }

    fn allow(&mut self, permission: &'static str, name: &str) -> Result<(), ApiError> {
        self.0
            .allow_in_project(permission, name, "Cloud Scheduler's")
    }

    /// The job's account, if it names one: declared, and one the caller may act as.
    fn allow_account(&mut self, job: &pb::Job) -> Result<(), ApiError> {
        let Some(pb::job::Target::HttpTarget(http)) = &job.target else {
            return Ok(());
        };
        let email = match &http.authorization_header {
            Some(AuthorizationHeader::OidcToken(o)) => o.service_account_email.clone(),
            Some(AuthorizationHeader::OauthToken(o)) => o.service_account_email.clone(),
            None => return Ok(()),
        };
        self.0.allow_account(&email, "of the job's http_target")
    }

    pub(crate) fn create_job(&mut self, parent: &str, job: pb::Job) -> Result<pb::Job, ApiError> {
        parse_parent(parent)?;
        let mut job = job;
        if job.name.is_empty() {
            // Google names a job the caller leaves unnamed.
            job.name = format!("{parent}/jobs/{}", fastrand::u64(1_000_000_000..u64::MAX));
        }
        parse_job(&job.name)?;
        if !job.name.starts_with(&format!("{parent}/jobs/")) {
            return Err(ApiError::InvalidArgument(format!(
                "The job's name `{}` is not under the parent `{}`",
                shown(&job.name),
                shown(parent)
            )));
        }
        self.allow(iam::JOBS_CREATE, &job.name)?;
        crate::config::scheduler::sanitize(&mut job).map_err(ApiError::InvalidArgument)?;
        crate::config::scheduler::check_job(&job).map_err(ApiError::InvalidArgument)?;
        self.allow_account(&job)?;
        Ok(self.jobs().create(job, SystemTime::now())?)
    }

    pub(crate) fn get_job(&mut self, name: &str) -> Result<pb::Job, ApiError> {
        parse_job(name)?;
        self.allow(iam::JOBS_GET, name)?;
        Ok(self.jobs().get(name)?)
    }

    pub(crate) fn list_jobs(
        &mut self,
        parent: &str,
        page: Page<'_>,
    ) -> Result<(Vec<pb::Job>, String), ApiError> {
        parse_parent(parent)?;
        self.allow(iam::JOBS_LIST, parent)?;
        Ok(self.jobs().list(parent, page))
    }

    /// `UpdateJob` (`PATCH`): the fields `mask` names, from `update` (every field when
    /// the mask is empty), a message's own fields one by one (`http_target.uri`, as gcloud
    /// sends them), merged into the job as it stands.
    pub(crate) fn update_job(
        &mut self,
        update: pb::Job,
        mask: &[String],
    ) -> Result<pb::Job, ApiError> {
        let name = update.name.clone();
        parse_job(&name)?;
        self.allow(iam::JOBS_UPDATE, &name)?;
        let mask: Vec<String> = mask.iter().map(|m| snake(m)).collect();
        if let Some(other) = mask
            .iter()
            .find(|m| !MASKABLE.iter().any(|f| field_of(m, f)))
        {
            return Err(ApiError::InvalidArgument(format!(
                "`{}` in the update_mask is not a field frontdoor can update ({})",
                shown(other),
                MASKABLE.join(", ")
            )));
        }
        // Checked on a copy first, so that a refusal changes nothing; applied to the job as
        // it stands under the store's lock, so that a pause or an attempt's report that
        // lands between is kept.
        let mut merged = self.jobs().get(&name)?;
        merge(&mut merged, &update, &mask);
        crate::config::scheduler::sanitize(&mut merged).map_err(ApiError::InvalidArgument)?;
        crate::config::scheduler::check_job(&merged).map_err(ApiError::InvalidArgument)?;
        if mask.is_empty() || mask.iter().any(|m| m.starts_with("http_target")) {
            self.allow_account(&merged)?;
        }
        Ok(self.jobs().update(&name, SystemTime::now(), |job| {
            merge(job, &update, &mask);
            // Checked above on the same merge.
            let _ = crate::config::scheduler::sanitize(job);
        })?)
    }

    pub(crate) fn delete_job(&mut self, name: &str) -> Result<(), ApiError> {
        parse_job(name)?;
        self.allow(iam::JOBS_DELETE, name)?;
        Ok(self.jobs().delete(name)?)
    }

    pub(crate) fn pause_job(&mut self, name: &str) -> Result<pb::Job, ApiError> {
        parse_job(name)?;
        self.allow(iam::JOBS_PAUSE, name)?;
        Ok(self
            .jobs()
            .set_state(name, pb::job::State::Paused, SystemTime::now())?)
    }

    pub(crate) fn resume_job(&mut self, name: &str) -> Result<pb::Job, ApiError> {
        parse_job(name)?;
        self.allow(iam::JOBS_ENABLE, name)?;
        Ok(self
            .jobs()
            .set_state(name, pb::job::State::Enabled, SystemTime::now())?)
    }

    pub(crate) fn run_job(&mut self, name: &str) -> Result<pb::Job, ApiError> {
        parse_job(name)?;
        self.allow(iam::JOBS_RUN, name)?;
        let job = self.jobs().run(name, SystemTime::now())?;
        self.0
            .explanation
            .did(format!("ran job {} now", crate::taskqueue::id_of(name)));
        Ok(job)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn its_paths_are_its_rest_resources_and_grpc_methods() {
        let j = "/v1/projects/p/locations/us-central1/jobs";
        for path in [
            j,
            &format!("{j}/j:run"),
            "/google.cloud.scheduler.v1.CloudScheduler/RunJob",
        ] {
            assert!(super::is_path(path), "{path}");
        }
        for path in [
            "/v1/projects/p/locations/us-central1/services/s",
            "/v1/projects/p/topics/t",
        ] {
            assert!(!super::is_path(path), "{path}");
        }
    }
}
