//! `frontdoor fold` for the Cloud Tasks queues and Cloud Scheduler jobs the APIs made:
//! each written as an entry of `tasks.queues` or `scheduler.jobs`, its fields named as
//! gcloud's flags, and kept only if the file then resolves it to exactly what the API
//! holds; what the file cannot say (a paused state, an OAuth token, a body that is not
//! text) stays in the layer, with the reason.

use std::path::Path;

use googleapis_tonic_google_cloud_scheduler_v1::google::cloud::scheduler::v1 as jobs;
use googleapis_tonic_google_cloud_tasks_v2::google::cloud::tasks::v2 as tasks;
use yaml_edit::{Mapping, YamlValue};

use super::pubsub::{id, trial};
use crate::config::layer::Layer;
use crate::config::parse_layered;

/// `d` as the file's durations are written (`0.1s`, `300s`).
fn duration(d: prost_types::Duration) -> YamlValue {
    let text = if d.nanos == 0 {
        format!("{}s", d.seconds)
    } else {
        let fraction = format!("{:09}", d.nanos);
        format!("{}.{}s", d.seconds, fraction.trim_end_matches('0'))
    };
    YamlValue::from(text.as_str())
}

/// The location's entry when it is not the project's region (the file's default).
fn location_of(name: &str, region: &str) -> Option<YamlValue> {
    let location = name.split('/').nth(3)?;
    (location != region).then(|| YamlValue::from(location))
}

/// An entry named `name` appended to `list` under `section` of the file (each made whole
/// when missing, so that it is written in block style), with `fields` in their order.
fn append(root: &Mapping, section: &str, list: &str, name: &str, fields: Vec<(&str, YamlValue)>) {
    let entry = YamlValue::Mapping([("name".to_owned(), YamlValue::from(name))].into());
    let items = |entry| YamlValue::Sequence(vec![entry]);
    match root.get_mapping(section) {
        None => root.set(
            section,
            YamlValue::Mapping([(list.to_owned(), items(entry))].into()),
        ),
        Some(m) => match m.get_sequence(list) {
            Some(seq) => seq.push(entry),
            None => m.set(list, items(entry)),
        },
    }
    // The item just pushed: another of the same name (in another location) may be before.
    let Some(added) = root
        .get_mapping(section)
        .and_then(|m| m.get_sequence(list))
        .and_then(|seq| seq.values().last())
        .and_then(|item| item.as_mapping().cloned())
    else {
        return;
    };
    for (key, value) in fields {
        added.set(key, value);
    }
}

/// Whether `got` is `before` with `want` added, and nothing else changed.
fn one_more<T: PartialEq>(before: &[T], got: &[T], want: &T) -> bool {
    got.len() == before.len() + 1 && got.contains(want) && before.iter().all(|x| got.contains(x))
}

/// `text` with `queue` declared under `tasks.queues`; or why it cannot be.
pub(super) fn fold_queue(
    text: &str,
    file: &Path,
    rest: &Layer,
    region: &str,
    queue: &tasks::Queue,
) -> Result<String, String> {
    if queue.state == tasks::queue::State::Paused as i32 {
        return Err("it is paused, which tasks.queues has no field for".to_owned());
    }
    if queue.stackdriver_logging_config.is_some() {
        return Err("it has a logging config, which tasks.queues has no field for".to_owned());
    }
    let mut entry = Vec::new();
    let mut set = |key: &'static str, value: YamlValue| entry.push((key, value));
    if let Some(location) = location_of(&queue.name, region) {
        set("location", location);
    }
    if let Some(retry) = &queue.retry_config {
        set("max_attempts", YamlValue::from(retry.max_attempts));
        for (key, d) in [
            ("min_backoff", retry.min_backoff),
            ("max_backoff", retry.max_backoff),
            ("max_retry_duration", retry.max_retry_duration),
        ] {
            if let Some(d) = d {
                set(key, duration(d));
            }
        }
        set("max_doublings", YamlValue::from(retry.max_doublings));
    }
    if let Some(rate) = &queue.rate_limits {
        set(
            "max_dispatches_per_second",
            YamlValue::from(rate.max_dispatches_per_second),
        );
        set(
            "max_concurrent_dispatches",
            YamlValue::from(rate.max_concurrent_dispatches),
        );
    }
    let before = parse_layered(text, file, rest)
        .map_err(|e| format!("the file is refused: {}", e.for_callers()))?;
    let (new, got) = trial(text, file, rest, |root| {
        append(root, "tasks", "queues", id(&queue.name), entry);
    })?;
    // What the API holds has every field filled in, as the entry writes them all.
    let want = tasks::Queue {
        state: 0,
        ..queue.clone()
    };
    if one_more(&before.tasks.queues, &got.tasks.queues, &want) {
        Ok(new)
    } else {
        Err("the file would resolve it differently".to_owned())
    }
}

/// `text` with `job` declared under `scheduler.jobs`; or why it cannot be.
pub(super) fn fold_job(
    text: &str,
    file: &Path,
    rest: &Layer,
    region: &str,
    job: &jobs::Job,
) -> Result<String, String> {
    use jobs::http_target::AuthorizationHeader;
    if job.state == jobs::job::State::Paused as i32 {
        return Err("it is paused, which scheduler.jobs has no field for".to_owned());
    }
    let Some(jobs::job::Target::HttpTarget(http)) = &job.target else {
        return Err("it has no HTTP target".to_owned());
    };
    let mut entry = Vec::new();
    let mut set = |key: &'static str, value: YamlValue| entry.push((key, value));
    if let Some(location) = location_of(&job.name, region) {
        set("location", location);
    }
    if !job.description.is_empty() {
        set("description", YamlValue::from(job.description.as_str()));
    }
    set("schedule", YamlValue::from(job.schedule.as_str()));
    if !job.time_zone.is_empty() {
        set("time_zone", YamlValue::from(job.time_zone.as_str()));
    }
    set("uri", YamlValue::from(http.uri.as_str()));
    let method = jobs::HttpMethod::try_from(http.http_method).map_or("POST", |m| m.as_str_name());
    set("http_method", YamlValue::from(method));
    if !http.headers.is_empty() {
        let headers = http
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), YamlValue::from(v.as_str())))
            .collect();
        set("headers", YamlValue::Mapping(headers));
    }
    if !http.body.is_empty() {
        let body = std::str::from_utf8(&http.body)
            .map_err(|_| "its body is not text, and message_body is".to_owned())?;
        set("message_body", YamlValue::from(body));
    }
    match &http.authorization_header {
        Some(AuthorizationHeader::OidcToken(o)) => {
            set(
                "oidc_service_account_email",
                YamlValue::from(o.service_account_email.as_str()),
            );
            if !o.audience.is_empty() {
                set("oidc_token_audience", YamlValue::from(o.audience.as_str()));
            }
        }
        Some(AuthorizationHeader::OauthToken(_)) => {
            return Err(
                "it sends an OAuth token, which scheduler.jobs has no field for".to_owned(),
            );
        }
        None => {}
    }
    if let Some(d) = job.attempt_deadline {
        set("attempt_deadline", duration(d));
    }
    if let Some(retry) = &job.retry_config {
        set("max_retry_attempts", YamlValue::from(retry.retry_count));
        for (key, d) in [
            ("max_retry_duration", retry.max_retry_duration),
            ("min_backoff", retry.min_backoff_duration),
            ("max_backoff", retry.max_backoff_duration),
        ] {
            if let Some(d) = d {
                set(key, duration(d));
            }
        }
        set("max_doublings", YamlValue::from(retry.max_doublings));
    }
    let before = parse_layered(text, file, rest)
        .map_err(|e| format!("the file is refused: {}", e.for_callers()))?;
    let (new, got) = trial(text, file, rest, |root| {
        append(root, "scheduler", "jobs", id(&job.name), entry);
    })?;
    let want = jobs::Job {
        state: 0,
        ..job.clone()
    };
    if one_more(&before.scheduler.jobs, &got.scheduler.jobs, &want) {
        Ok(new)
    } else {
        Err("the file would resolve it differently".to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const FILE: &str = r#"# The team's file.
project: {id: demo-project, number: "123456789012", region: us-central1}
service_accounts:
  - email: login@demo-project.iam.gserviceaccount.com
services:
  - name: user-profiles
    upstream: builtin:echo
"#;

    fn seconds(seconds: i64, nanos: i32) -> Option<prost_types::Duration> {
        Some(prost_types::Duration { seconds, nanos })
    }

    #[test]
    fn a_queue_and_a_job_the_api_made_are_declared_as_they_are() {
        let path = Path::new("services.yaml");
        // As the layer gives them back: every field filled in.
        let queue = tasks::Queue {
            name: "projects/demo-project/locations/europe-west1/queues/mail".into(),
            rate_limits: Some(tasks::RateLimits {
                max_dispatches_per_second: 500.0,
                max_burst_size: 0,
                max_concurrent_dispatches: 1000,
            }),
            retry_config: Some(tasks::RetryConfig {
                max_attempts: 3,
                min_backoff: seconds(0, 100_000_000),
                max_backoff: seconds(3600, 0),
                max_doublings: 16,
                max_retry_duration: seconds(0, 0),
            }),
            ..tasks::Queue::default()
        };
        let new = fold_queue(FILE, path, &Layer::default(), "us-central1", &queue).unwrap();
        assert!(
            new.contains("    - name: mail\n      location: europe-west1\n"),
            "{new}"
        );
        assert!(new.contains("      min_backoff: 0.1s\n"), "{new}");
        let job = jobs::Job {
            name: "projects/demo-project/locations/us-central1/jobs/nightly".into(),
            schedule: "0 3 * * *".into(),
            time_zone: "Europe/Paris".into(),
            attempt_deadline: seconds(180, 0),
            retry_config: Some(jobs::RetryConfig {
                retry_count: 1,
                max_retry_duration: seconds(0, 0),
                min_backoff_duration: seconds(5, 0),
                max_backoff_duration: seconds(3600, 0),
                max_doublings: 5,
            }),
            target: Some(jobs::job::Target::HttpTarget(jobs::HttpTarget {
                uri: "https://user-profiles-123456789012.us-central1.run.app/cleanup".into(),
                http_method: jobs::HttpMethod::Post as i32,
                headers: [("Content-Type".to_owned(), "application/json".to_owned())].into(),
                body: b"{\"days\": 1}".to_vec(),
                authorization_header: Some(jobs::http_target::AuthorizationHeader::OidcToken(
                    jobs::OidcToken {
                        service_account_email: "login@demo-project.iam.gserviceaccount.com".into(),
                        audience: String::new(),
                    },
                )),
            })),
            ..jobs::Job::default()
        };
        let new = fold_job(&new, path, &Layer::default(), "us-central1", &job).unwrap();
        let got = parse(&new, path).unwrap();
        assert_eq!(got.tasks.queues.len(), 1, "{new}");
        assert_eq!(got.scheduler.jobs.len(), 1, "{new}");
        assert!(new.starts_with("# The team's file.\n"), "{new}");
    }

    /// A queue of the same id in another location is another entry: the fields go on the
    /// one appended.
    #[test]
    fn the_same_id_in_another_location_is_another_entry() {
        let path = Path::new("services.yaml");
        let file = format!("{FILE}tasks:\n  queues:\n    - name: mail\n      max_attempts: 9\n");
        let queue = tasks::Queue {
            name: "projects/demo-project/locations/europe-west1/queues/mail".into(),
            rate_limits: Some(tasks::RateLimits {
                max_dispatches_per_second: 500.0,
                max_burst_size: 0,
                max_concurrent_dispatches: 1000,
            }),
            retry_config: Some(tasks::RetryConfig {
                max_attempts: 3,
                min_backoff: seconds(0, 0),
                max_backoff: seconds(3600, 0),
                max_doublings: 16,
                max_retry_duration: seconds(0, 0),
            }),
            ..tasks::Queue::default()
        };
        let new = fold_queue(&file, path, &Layer::default(), "us-central1", &queue).unwrap();
        let got = parse(&new, path).unwrap();
        assert_eq!(got.tasks.queues.len(), 2, "{new}");
        assert!(got.tasks.queues.contains(&queue), "{new}");
        assert_eq!(
            got.tasks.queues[0]
                .retry_config
                .as_ref()
                .map(|r| r.max_attempts),
            Some(9),
            "the file's own entry is untouched: {new}"
        );
    }

    #[test]
    fn what_the_file_cannot_say_is_kept_with_why() {
        let path = Path::new("services.yaml");
        let rest = Layer::default();
        let paused = tasks::Queue {
            name: "projects/demo-project/locations/us-central1/queues/mail".into(),
            state: tasks::queue::State::Paused as i32,
            ..tasks::Queue::default()
        };
        let why = fold_queue(FILE, path, &rest, "us-central1", &paused).unwrap_err();
        assert!(why.contains("paused"), "{why}");
        let oauth = jobs::Job {
            name: "projects/demo-project/locations/us-central1/jobs/j".into(),
            schedule: "* * * * *".into(),
            target: Some(jobs::job::Target::HttpTarget(jobs::HttpTarget {
                uri: "https://example.com/".into(),
                authorization_header: Some(jobs::http_target::AuthorizationHeader::OauthToken(
                    jobs::OAuthToken {
                        service_account_email: "login@demo-project.iam.gserviceaccount.com".into(),
                        scope: String::new(),
                    },
                )),
                ..jobs::HttpTarget::default()
            })),
            ..jobs::Job::default()
        };
        let why = fold_job(FILE, path, &rest, "us-central1", &oauth).unwrap_err();
        assert!(why.contains("OAuth"), "{why}");
    }
}
