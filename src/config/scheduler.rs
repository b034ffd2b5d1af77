//! `scheduler:` in services.yaml: the Cloud Scheduler jobs a test environment starts with,
//! each field named as `gcloud scheduler jobs create http`'s flags name it. And the rules
//! both the file and the API check a job by: a unix-cron schedule of five fields in an IANA
//! time zone ([`Schedule`]), Google's bounds on retries and the attempt deadline.

use std::time::{Duration, SystemTime};

use croner::Cron;
use croner::parser::{CronParser, Seconds};
use googleapis_tonic_google_cloud_scheduler_v1::google::cloud::scheduler::v1 as pb;
use pb::http_target::AuthorizationHeader;
use serde::Deserialize;

use super::{At, ConfigError, Project, ServiceAccount};

/// Cloud Scheduler as the file declares it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Scheduler {
    pub jobs: Vec<pb::Job>,
}

/// A job's schedule, parsed: when it next fires after a time.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    zone: jiff::tz::TimeZone,
}

impl Schedule {
    /// `schedule` (unix-cron, five fields) in `time_zone` (IANA; UTC when empty).
    pub fn parse(schedule: &str, time_zone: &str) -> Result<Schedule, String> {
        if schedule.len() > 500 {
            return Err("a schedule is at most 500 characters".into());
        }
        let fields: Vec<&str> = schedule.split_whitespace().collect();
        if fields.len() != 5 {
            return Err(format!(
                "schedule `{}` has {} fields; Cloud Scheduler takes unix-cron's five (minute hour day-of-month month day-of-week), such as `*/5 * * * *`",
                shown(schedule),
                fields.len()
            ));
        }
        // unix-cron has numbers, `*`, `,`, `-` and `/`, and names of months and weekdays;
        // not Quartz's `L`, `W`, `#` and `?`, nor `+` (which also make a pattern costly
        // to search when it never matches).
        let names = [
            "JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC",
            "SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT",
        ];
        for (i, field) in fields.iter().enumerate() {
            let mut rest = field.to_ascii_uppercase();
            if i >= 3 {
                for name in names {
                    rest = rest.replace(name, "0");
                }
            }
            if let Some(c) = rest
                .chars()
                .find(|c| !(c.is_ascii_digit() || "*,-/".contains(*c)))
            {
                return Err(format!(
                    "schedule `{}` is not unix-cron: `{c}` in `{field}` (unix-cron has numbers, *, commas, ranges and steps, and names of months and weekdays)",
                    shown(schedule)
                ));
            }
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(schedule)
            .map_err(|e| format!("schedule `{}` is not unix-cron: {e}", shown(schedule)))?;
        let zone = if time_zone.is_empty() {
            jiff::tz::TimeZone::UTC
        } else {
            jiff::tz::TimeZone::get(time_zone).map_err(|_| {
                format!(
                    "time zone `{}` is not in the tz database: name one such as Etc/UTC or America/New_York",
                    shown(time_zone)
                )
            })?
        };
        Ok(Schedule { cron, zone })
    }

    /// The first time it fires after `after`; none if it never does again.
    pub fn next_after(&self, after: SystemTime) -> Option<SystemTime> {
        let at = jiff::Timestamp::try_from(after).ok()?;
        let next = self
            .cron
            .find_next_occurrence(&at.to_zoned(self.zone.clone()), false)
            .ok()?;
        Some(SystemTime::from(next.timestamp()))
    }
}

fn shown(text: &str) -> String {
    text.chars().take(100).collect()
}

/// Google's bounds on a job's attempt deadline for an HTTP target, and its default.
pub const MIN_DEADLINE: Duration = Duration::from_secs(15);
pub const MAX_DEADLINE: Duration = Duration::from_secs(30 * 60);
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(180);
/// Google's most retries of one run.
const MAX_RETRY_COUNT: i32 = 5;
/// The longest backoff or retry duration taken: a year (Google states no bound).
const MAX_RETRY_SECONDS: i64 = 365 * 24 * 3600;

/// `projects/P/locations/L/jobs/J`, checked: a job id has 1 to 500 letters, digits,
/// hyphens and underscores.
pub fn check_job_name(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('/').collect();
    let ["projects", p, "locations", l, "jobs", j] = parts.as_slice() else {
        return Err(format!(
            "`{}` is not projects/PROJECT/locations/LOCATION/jobs/JOB_ID",
            shown(name)
        ));
    };
    super::tasks::check_parent(p, l, "Cloud Scheduler")?;
    if j.is_empty()
        || j.len() > 500
        || !j
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(format!(
            "job id `{}` is not 1 to 500 letters, digits, hyphens and underscores",
            shown(j)
        ));
    }
    Ok(())
}

/// `job`'s target as Google keeps it: POST when no method is given, and its own headers as
/// [`super::headers::keep_own`] keeps them (a header Cloud Scheduler sets itself, or
/// that would change how the front door reads the call, dropped; one that is not a
/// valid header refused).
pub fn sanitize(job: &mut pb::Job) -> Result<(), String> {
    if let Some(pb::job::Target::HttpTarget(http)) = &mut job.target {
        if http.http_method == pb::HttpMethod::Unspecified as i32 {
            http.http_method = pb::HttpMethod::Post as i32;
        }
        let token = http.authorization_header.is_some();
        super::headers::keep_own(&mut http.headers, token)
            .map_err(|why| format!("http_target.headers: {why}"))?;
    }
    Ok(())
}

/// A job as Google takes it: a schedule and time zone that parse, an HTTP target with an
/// http(s) URI and a body only with a method that carries one, retries and a deadline in
/// bounds. Pub/Sub and App Engine targets are not emulated.
pub fn check_job(job: &pb::Job) -> Result<Schedule, String> {
    let schedule = Schedule::parse(&job.schedule, &job.time_zone)?;
    let Some(pb::job::Target::HttpTarget(http)) = &job.target else {
        return Err(match job.target {
            Some(_) => {
                "Pub/Sub and App Engine targets are not emulated: give the job an http_target"
                    .into()
            }
            None => {
                "The job has no target: frontdoor's jobs are HTTP targets, each with a uri".into()
            }
        });
    };
    let url = url::Url::parse(&http.uri).map_err(|e| {
        format!(
            "http_target.uri `{}` is not an absolute URL: {e}",
            shown(&http.uri)
        )
    })?;
    if !["http", "https"].contains(&url.scheme()) || http.uri.len() > 2083 {
        return Err(format!(
            "http_target.uri `{}` must be an http or https URL of at most 2083 characters",
            shown(&http.uri)
        ));
    }
    let method = pb::HttpMethod::try_from(http.http_method).map_err(|_| {
        format!(
            "http_target.http_method {} is not an HTTP method",
            http.http_method
        )
    })?;
    if !http.body.is_empty()
        && !matches!(
            method,
            pb::HttpMethod::Post | pb::HttpMethod::Put | pb::HttpMethod::Patch
        )
    {
        return Err(format!(
            "A body is allowed only with POST, PUT or PATCH, not {}",
            method.as_str_name()
        ));
    }
    match &http.authorization_header {
        Some(AuthorizationHeader::OidcToken(o)) if o.service_account_email.is_empty() => {
            return Err("oidc_token.service_account_email is required".into());
        }
        Some(AuthorizationHeader::OauthToken(o)) if o.service_account_email.is_empty() => {
            return Err("oauth_token.service_account_email is required".into());
        }
        _ => {}
    }
    if let Some(d) = job.attempt_deadline {
        let ok = d.seconds >= 0
            && d.nanos >= 0
            && (MIN_DEADLINE..=MAX_DEADLINE).contains(&Duration::new(
                u64::try_from(d.seconds).unwrap_or(u64::MAX),
                0,
            ));
        if !ok {
            return Err("attempt_deadline is out of range: 15 seconds to 30 minutes".into());
        }
    }
    if let Some(retry) = &job.retry_config {
        if !(0..=MAX_RETRY_COUNT).contains(&retry.retry_count) {
            return Err(format!(
                "retry_config.retry_count {} is out of range: 0 to {MAX_RETRY_COUNT}",
                retry.retry_count
            ));
        }
        if !(0..=16).contains(&retry.max_doublings) {
            return Err(format!(
                "retry_config.max_doublings {} is out of range: 0 to 16",
                retry.max_doublings
            ));
        }
        for (field, d) in [
            ("min_backoff_duration", retry.min_backoff_duration),
            ("max_backoff_duration", retry.max_backoff_duration),
            ("max_retry_duration", retry.max_retry_duration),
        ] {
            if d.is_some_and(|d| d.seconds < 0 || d.nanos < 0 || d.seconds > MAX_RETRY_SECONDS) {
                return Err(format!(
                    "retry_config.{field} is out of range: 0 to {MAX_RETRY_SECONDS}s (a year)"
                ));
            }
        }
        // Unset, the backoffs are Google's 5 s and an hour.
        let min = retry
            .min_backoff_duration
            .map_or((5, 0), |d| (d.seconds, d.nanos));
        let max = retry
            .max_backoff_duration
            .map_or((3600, 0), |d| (d.seconds, d.nanos));
        if min > max {
            return Err(
                "retry_config.min_backoff_duration is more than max_backoff_duration (an hour when unset)"
                    .into(),
            );
        }
    }
    Ok(schedule)
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawScheduler {
    #[serde(default)]
    pub(crate) jobs: Vec<RawJob>,
}

/// A job, its fields named as `gcloud scheduler jobs create http`'s flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawJob {
    pub(crate) name: String,
    /// The job's region; the project's by default.
    pub(crate) location: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) schedule: String,
    pub(crate) time_zone: Option<String>,
    pub(crate) uri: String,
    pub(crate) http_method: Option<String>,
    #[serde(default)]
    pub(crate) headers: std::collections::HashMap<String, String>,
    pub(crate) message_body: Option<String>,
    pub(crate) oidc_service_account_email: Option<String>,
    pub(crate) oidc_token_audience: Option<String>,
    pub(crate) attempt_deadline: Option<String>,
    pub(crate) max_retry_attempts: Option<i32>,
    pub(crate) max_retry_duration: Option<String>,
    pub(crate) min_backoff: Option<String>,
    pub(crate) max_backoff: Option<String>,
    pub(crate) max_doublings: Option<i32>,
}

pub(super) fn resolve(
    raw: &RawScheduler,
    project: &Project,
    accounts: &[ServiceAccount],
    at: &At<'_>,
) -> Result<Scheduler, ConfigError> {
    let mut jobs: Vec<pb::Job> = Vec::new();
    for (i, j) in raw.jobs.iter().enumerate() {
        let path = |field: &str| format!("scheduler.jobs[{i}].{field}");
        let location = j.location.as_deref().unwrap_or(&project.region);
        let name = format!(
            "projects/{}/locations/{location}/jobs/{}",
            project.id, j.name
        );
        check_job_name(&name).map_err(|r| at.err(path("name"), r))?;
        if jobs.iter().any(|other| other.name == name) {
            return Err(at.err(
                path("name"),
                format!("job `{}` is declared twice in {location}", j.name),
            ));
        }
        let d = |field: &str, text: &Option<String>| -> Result<_, ConfigError> {
            text.as_deref()
                .map(|t| super::tasks::duration(t).map(super::tasks::proto))
                .transpose()
                .map_err(|r| at.err(path(field), r))
        };
        let http_method = match j.http_method.as_deref() {
            None => pb::HttpMethod::Post as i32,
            Some(m) => pb::HttpMethod::from_str_name(&m.to_ascii_uppercase())
                .map(|m| m as i32)
                .ok_or_else(|| {
                    at.err(path("http_method"), format!("`{m}` is not an HTTP method"))
                })?,
        };
        let authorization_header = match &j.oidc_service_account_email {
            Some(email) => {
                let account = accounts
                    .iter()
                    .find(|a| a.email.eq_ignore_ascii_case(email))
                    .ok_or_else(|| {
                        at.err(
                            path("oidc_service_account_email"),
                            format!("`{email}` is not declared under service_accounts"),
                        )
                    })?;
                Some(AuthorizationHeader::OidcToken(pb::OidcToken {
                    service_account_email: account.email.clone(),
                    audience: j.oidc_token_audience.clone().unwrap_or_default(),
                }))
            }
            None if j.oidc_token_audience.is_some() => {
                return Err(at.err(
                    path("oidc_token_audience"),
                    "is given without oidc_service_account_email",
                ));
            }
            None => None,
        };
        let mut job = pb::Job {
            name,
            description: j.description.clone().unwrap_or_default(),
            schedule: j.schedule.clone(),
            time_zone: j.time_zone.clone().unwrap_or_default(),
            attempt_deadline: d("attempt_deadline", &j.attempt_deadline)?,
            retry_config: Some(pb::RetryConfig {
                retry_count: j.max_retry_attempts.unwrap_or_default(),
                max_retry_duration: d("max_retry_duration", &j.max_retry_duration)?,
                min_backoff_duration: d("min_backoff", &j.min_backoff)?,
                max_backoff_duration: d("max_backoff", &j.max_backoff)?,
                max_doublings: j.max_doublings.unwrap_or(5),
            }),
            target: Some(pb::job::Target::HttpTarget(pb::HttpTarget {
                uri: j.uri.clone(),
                http_method,
                headers: j.headers.clone(),
                body: j.message_body.clone().unwrap_or_default().into_bytes(),
                authorization_header,
            })),
            ..pb::Job::default()
        };
        sanitize(&mut job)
            .and_then(|()| check_job(&job).map(drop))
            .map_err(|r| at.err(format!("scheduler.jobs[{i}]"), r))?;
        jobs.push(job);
    }
    Ok(Scheduler { jobs })
}

#[cfg(test)]
mod tests {
    use super::Schedule;
    use std::time::{Duration, SystemTime};

    #[test]
    fn schedules_fire_in_their_time_zone() {
        // 2026-12-06T12:00:00Z, a Sunday.
        let noon = SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_558_400);
        let every_minute = Schedule::parse("* * * * *", "").unwrap();
        assert_eq!(
            every_minute.next_after(noon),
            Some(noon + Duration::from_secs(60))
        );
        // 9:00 in New York is 14:00 UTC in December.
        // Names of months and weekdays are unix-cron's too.
        assert!(Schedule::parse("0 9 * JUL-AUG MON-FRI", "").is_ok());
        let nine = Schedule::parse("0 9 * * *", "America/New_York").unwrap();
        assert_eq!(
            nine.next_after(noon),
            Some(noon + Duration::from_secs(2 * 3600))
        );
        for (schedule, zone, says) in [
            ("* * * *", "", "five"),
            ("* * * * * *", "", "five"),
            ("61 * * * *", "", "not unix-cron"),
            ("every 5 minutes", "", "fields"),
            ("* * * * *", "Mars/Olympus", "tz database"),
            ("0 0 1 * +1#5", "", "not unix-cron"),
            ("0 0 L * *", "", "not unix-cron"),
            ("0 0 ? * MON", "", "not unix-cron"),
        ] {
            let e = Schedule::parse(schedule, zone).unwrap_err();
            assert!(e.contains(says), "{schedule} {zone}: {e}");
        }
    }
}
