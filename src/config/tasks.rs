//! `tasks:` in services.yaml: the Cloud Tasks queues a test environment starts with, each
//! setting named as `gcloud tasks queues create`'s flags name it (`max_attempts`,
//! `min_backoff`, `max_backoff`, `max_doublings`, `max_retry_duration`,
//! `max_dispatches_per_second`, `max_concurrent_dispatches`). Resolved into Google's own
//! message, checked as the API checks it; what is left unset gets Google's defaults.

use googleapis_tonic_google_cloud_tasks_v2::google::cloud::tasks::v2 as pb;
use serde::Deserialize;

use super::{At, ConfigError, Project};

/// Google's most for a queue's rate and concurrency.
const MAX_RATE: f64 = 500.0;
const MAX_CONCURRENT: i32 = 5000;
/// The longest backoff or retry duration taken: a year. Google states no bound; one keeps
/// every retry's time a time a timestamp can say.
const MAX_RETRY_SECONDS: i64 = 365 * 24 * 3600;

fn shown(text: &str) -> String {
    text.chars().take(100).collect()
}

/// A resource's project (an id or a number) and location (a region) checked; `api`
/// names whose location it is.
pub(super) fn check_parent(project: &str, location: &str, api: &str) -> Result<(), String> {
    let number =
        !project.is_empty() && project.len() <= 19 && project.bytes().all(|b| b.is_ascii_digit());
    if !number && super::names::check_project_id(project).is_err() {
        return Err(format!(
            "`{}` is not a project id or number",
            shown(project)
        ));
    }
    if !super::region_is_valid(location) {
        return Err(format!(
            "`{}` is not a {api} location: a region such as us-central1",
            shown(location)
        ));
    }
    Ok(())
}

/// `projects/P/locations/L/queues/Q`, checked: a queue id has 1 to 100 letters, digits and
/// hyphens.
pub(crate) fn check_queue_name(name: &str) -> Result<(), String> {
    let parts: Vec<&str> = name.split('/').collect();
    let ["projects", p, "locations", l, "queues", q] = parts.as_slice() else {
        return Err(format!(
            "`{}` is not projects/PROJECT/locations/LOCATION/queues/QUEUE_ID",
            shown(name)
        ));
    };
    check_parent(p, l, "Cloud Tasks")?;
    if q.is_empty() || q.len() > 100 || !q.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(format!(
            "queue id `{}` is not 1 to 100 letters, digits and hyphens",
            shown(q)
        ));
    }
    Ok(())
}

/// A queue's settings as Google bounds them; what is unset gets Google's default later.
pub(crate) fn check_queue(queue: &pb::Queue) -> Result<(), String> {
    if queue.app_engine_routing_override.is_some() {
        return Err("App Engine queues are not emulated: frontdoor's queues dispatch HTTP targets (app_engine_routing_override is not taken)".into());
    }
    if let Some(rate) = &queue.rate_limits {
        let r = rate.max_dispatches_per_second;
        if !(r.is_finite() && (0.0..=MAX_RATE).contains(&r)) {
            return Err(format!(
                "rate_limits.max_dispatches_per_second {r} is out of range: more than 0, at most {MAX_RATE}"
            ));
        }
        if !(0..=MAX_CONCURRENT).contains(&rate.max_concurrent_dispatches) {
            return Err(format!(
                "rate_limits.max_concurrent_dispatches {} is out of range: 1 to {MAX_CONCURRENT}",
                rate.max_concurrent_dispatches
            ));
        }
    }
    if let Some(retry) = &queue.retry_config {
        if retry.max_attempts < -1 {
            return Err(format!(
                "retry_config.max_attempts {} is out of range: -1 (unlimited) or more",
                retry.max_attempts
            ));
        }
        if retry.max_doublings < 0 {
            return Err(format!(
                "retry_config.max_doublings {} is out of range: 0 or more",
                retry.max_doublings
            ));
        }
        let negative =
            |d: &Option<prost_types::Duration>| d.is_some_and(|d| d.seconds < 0 || d.nanos < 0);
        for (field, d) in [
            ("min_backoff", &retry.min_backoff),
            ("max_backoff", &retry.max_backoff),
            ("max_retry_duration", &retry.max_retry_duration),
        ] {
            if negative(d) {
                return Err(format!("retry_config.{field} is negative"));
            }
            if d.is_some_and(|d| d.seconds > MAX_RETRY_SECONDS) {
                return Err(format!(
                    "retry_config.{field} is more than frontdoor takes: at most {MAX_RETRY_SECONDS}s (a year)"
                ));
            }
        }
        if let (Some(min), Some(max)) = (retry.min_backoff, retry.max_backoff)
            && (min.seconds, min.nanos) > (max.seconds, max.nanos)
        {
            return Err("retry_config.min_backoff is more than max_backoff".into());
        }
    }
    Ok(())
}

/// Cloud Tasks as the file declares it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Tasks {
    pub queues: Vec<pb::Queue>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTasks {
    #[serde(default)]
    pub(crate) queues: Vec<RawQueue>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawQueue {
    pub(crate) name: String,
    /// The queue's region; the project's by default.
    pub(crate) location: Option<String>,
    pub(crate) max_attempts: Option<i32>,
    /// Durations as gcloud writes them: `0.1s`, `10s`, `5m`, `1h`.
    pub(crate) min_backoff: Option<String>,
    pub(crate) max_backoff: Option<String>,
    pub(crate) max_doublings: Option<i32>,
    pub(crate) max_retry_duration: Option<String>,
    pub(crate) max_dispatches_per_second: Option<f64>,
    pub(crate) max_concurrent_dispatches: Option<i32>,
}

pub(super) fn proto(d: std::time::Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// `text` as gcloud's duration flags take it: a number (a fraction allowed) and a unit,
/// `s`, `m`, `h` or `d`. (humantime reads no fractions, and `0.1s` is gcloud's own
/// example.)
pub(super) fn duration(text: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("`{text}` is no duration: a number and s, m, h or d (0.1s, 10s, 5m)");
    let unit = text.chars().last().ok_or_else(bad)?;
    let scale = match unit {
        's' => 1.0,
        'm' => 60.0,
        'h' => 3600.0,
        'd' => 86400.0,
        _ => return Err(bad()),
    };
    let n: f64 = text[..text.len() - 1].parse().map_err(|_| bad())?;
    let seconds = n * scale;
    if !seconds.is_finite() || !(0.0..=315_576_000_000.0).contains(&seconds) {
        return Err(bad());
    }
    Ok(std::time::Duration::from_secs_f64(seconds))
}

pub(super) fn resolve(
    raw: &RawTasks,
    project: &Project,
    at: &At<'_>,
) -> Result<Tasks, ConfigError> {
    let mut queues: Vec<pb::Queue> = Vec::new();
    for (i, q) in raw.queues.iter().enumerate() {
        let path = |field: &str| format!("tasks.queues[{i}].{field}");
        let location = q.location.as_deref().unwrap_or(&project.region);
        let name = format!(
            "projects/{}/locations/{location}/queues/{}",
            project.id, q.name
        );
        check_queue_name(&name).map_err(|r| at.err(path("name"), r))?;
        if queues.iter().any(|other| other.name == name) {
            return Err(at.err(
                path("name"),
                format!("queue `{}` is declared twice in {location}", q.name),
            ));
        }
        let d = |field: &str, text: &Option<String>| -> Result<_, ConfigError> {
            text.as_deref()
                .map(|t| duration(t).map(proto))
                .transpose()
                .map_err(|r| at.err(path(field), r))
        };
        let queue = pb::Queue {
            name,
            rate_limits: Some(pb::RateLimits {
                max_dispatches_per_second: q.max_dispatches_per_second.unwrap_or_default(),
                max_concurrent_dispatches: q.max_concurrent_dispatches.unwrap_or_default(),
                max_burst_size: 0,
            }),
            retry_config: Some(pb::RetryConfig {
                max_attempts: q.max_attempts.unwrap_or_default(),
                min_backoff: d("min_backoff", &q.min_backoff)?,
                max_backoff: d("max_backoff", &q.max_backoff)?,
                max_doublings: q.max_doublings.unwrap_or_default(),
                max_retry_duration: d("max_retry_duration", &q.max_retry_duration)?,
            }),
            ..pb::Queue::default()
        };
        if q.max_dispatches_per_second.is_some_and(|r| r <= 0.0) {
            return Err(at.err(path("max_dispatches_per_second"), "is more than 0"));
        }
        if q.max_concurrent_dispatches.is_some_and(|c| c <= 0) {
            return Err(at.err(path("max_concurrent_dispatches"), "is at least 1"));
        }
        if q.max_attempts == Some(0) {
            return Err(at.err(path("max_attempts"), "is -1 (unlimited) or at least 1"));
        }
        check_queue(&queue).map_err(|r| at.err(format!("tasks.queues[{i}]"), r))?;
        queues.push(queue);
    }
    Ok(Tasks { queues })
}

#[cfg(test)]
mod tests {
    use super::duration;
    use std::time::Duration;

    #[test]
    fn durations_read_as_gcloud_writes_them() {
        assert_eq!(duration("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(duration("1h"), Ok(Duration::from_secs(3600)));
        for bad in ["", "s", "10", "-1s", "1y", "nans", "infs"] {
            assert!(duration(bad).is_err(), "{bad}");
        }
    }
}
