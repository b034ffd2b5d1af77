//! Cloud Tasks' REST resources in proto3's JSON form, to and from the generated messages
//! the store keeps (the crate has no serde support). Fields frontdoor does not model are
//! ignored on input, as a client's newer fields would be.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use googleapis_tonic_google_cloud_tasks_v2::google::cloud::tasks::v2 as pb;
use pb::http_request::AuthorizationHeader;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::google::errors::ApiError;
use crate::google::protojson::{duration_in, duration_out, timestamp_in, timestamp_out};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct QueueIn {
    name: Option<String>,
    #[serde(alias = "rate_limits")]
    rate_limits: Option<RateLimitsIn>,
    #[serde(alias = "retry_config")]
    retry_config: Option<RetryIn>,
    #[serde(alias = "app_engine_routing_override")]
    app_engine_routing_override: Option<Value>,
    #[serde(alias = "stackdriver_logging_config")]
    stackdriver_logging_config: Option<LoggingIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RateLimitsIn {
    #[serde(alias = "max_dispatches_per_second")]
    max_dispatches_per_second: Option<f64>,
    #[serde(alias = "max_concurrent_dispatches")]
    max_concurrent_dispatches: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RetryIn {
    #[serde(alias = "max_attempts")]
    max_attempts: Option<i32>,
    #[serde(alias = "max_retry_duration")]
    max_retry_duration: Option<String>,
    #[serde(alias = "min_backoff")]
    min_backoff: Option<String>,
    #[serde(alias = "max_backoff")]
    max_backoff: Option<String>,
    #[serde(alias = "max_doublings")]
    max_doublings: Option<i32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct LoggingIn {
    #[serde(alias = "sampling_ratio")]
    sampling_ratio: f64,
}

impl QueueIn {
    /// The queue, named `name` when the body does not name it (a `PATCH`'s path).
    pub(super) fn into_queue(self, name: Option<&str>) -> Result<pb::Queue, ApiError> {
        if self.app_engine_routing_override.is_some() {
            return Err(ApiError::InvalidArgument(
                "App Engine queues are not emulated: frontdoor's queues dispatch HTTP targets (appEngineRoutingOverride is not taken)".into(),
            ));
        }
        let rate_limits = self.rate_limits.map(|r| pb::RateLimits {
            max_dispatches_per_second: r.max_dispatches_per_second.unwrap_or_default(),
            max_concurrent_dispatches: r.max_concurrent_dispatches.unwrap_or_default(),
            max_burst_size: 0,
        });
        let duration =
            |field: &str, d: Option<String>| d.map(|d| duration_in(field, &d)).transpose();
        let retry_config = match self.retry_config {
            Some(r) => Some(pb::RetryConfig {
                max_attempts: r.max_attempts.unwrap_or_default(),
                max_retry_duration: duration("retryConfig.maxRetryDuration", r.max_retry_duration)?,
                min_backoff: duration("retryConfig.minBackoff", r.min_backoff)?,
                max_backoff: duration("retryConfig.maxBackoff", r.max_backoff)?,
                max_doublings: r.max_doublings.unwrap_or_default(),
            }),
            None => None,
        };
        Ok(pb::Queue {
            name: name.map(str::to_owned).or(self.name).unwrap_or_default(),
            rate_limits,
            retry_config,
            stackdriver_logging_config: self.stackdriver_logging_config.map(|l| {
                pb::StackdriverLoggingConfig {
                    sampling_ratio: l.sampling_ratio,
                }
            }),
            ..pb::Queue::default()
        })
    }
}

pub(super) fn queue_out(q: &pb::Queue) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(q.name));
    if let Some(rate) = &q.rate_limits {
        out.insert(
            "rateLimits".into(),
            json!({
                "maxDispatchesPerSecond": rate.max_dispatches_per_second,
                "maxBurstSize": rate.max_burst_size,
                "maxConcurrentDispatches": rate.max_concurrent_dispatches,
            }),
        );
    }
    if let Some(retry) = &q.retry_config {
        let mut r = Map::new();
        r.insert("maxAttempts".into(), json!(retry.max_attempts));
        for (key, d) in [
            ("maxRetryDuration", retry.max_retry_duration),
            ("minBackoff", retry.min_backoff),
            ("maxBackoff", retry.max_backoff),
        ] {
            if let Some(d) = d.filter(|d| *d != prost_types::Duration::default()) {
                r.insert(key.into(), json!(duration_out(d)));
            }
        }
        r.insert("maxDoublings".into(), json!(retry.max_doublings));
        out.insert("retryConfig".into(), Value::Object(r));
    }
    let state = pb::queue::State::try_from(q.state).unwrap_or(pb::queue::State::Unspecified);
    out.insert("state".into(), json!(state.as_str_name()));
    if let Some(t) = q.purge_time {
        out.insert("purgeTime".into(), json!(timestamp_out(t)));
    }
    if let Some(l) = &q.stackdriver_logging_config {
        out.insert(
            "stackdriverLoggingConfig".into(),
            json!({"samplingRatio": l.sampling_ratio}),
        );
    }
    Value::Object(out)
}

/// `CreateTaskRequest` as REST sends it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct CreateTaskIn {
    pub(super) task: Option<TaskIn>,
    #[serde(alias = "response_view")]
    pub(super) response_view: Option<String>,
}

/// `RunTaskRequest`'s body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct RunTaskIn {
    #[serde(alias = "response_view")]
    pub(super) response_view: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct TaskIn {
    name: Option<String>,
    #[serde(alias = "http_request")]
    http_request: Option<HttpRequestIn>,
    #[serde(alias = "app_engine_http_request")]
    app_engine_http_request: Option<Value>,
    #[serde(alias = "schedule_time")]
    schedule_time: Option<String>,
    #[serde(alias = "dispatch_deadline")]
    dispatch_deadline: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct HttpRequestIn {
    url: String,
    #[serde(alias = "http_method")]
    http_method: Option<String>,
    headers: HashMap<String, String>,
    body: Option<String>,
    #[serde(alias = "oidc_token")]
    oidc_token: Option<OidcIn>,
    #[serde(alias = "oauth_token")]
    oauth_token: Option<OauthIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct OidcIn {
    #[serde(alias = "service_account_email")]
    service_account_email: String,
    audience: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct OauthIn {
    #[serde(alias = "service_account_email")]
    service_account_email: String,
    scope: String,
}

/// A view's name (`BASIC`, `FULL`) as the enum's number; unknown is refused.
pub(super) fn view_in(view: Option<&str>) -> Result<i32, ApiError> {
    match view {
        None => Ok(0),
        Some(v) => pb::task::View::from_str_name(v)
            .map(|v| v as i32)
            .ok_or_else(|| {
                ApiError::InvalidArgument(format!(
                    "Invalid value at 'response_view' (type.googleapis.com/google.cloud.tasks.v2.Task.View): `{}`",
                    v.chars().take(40).collect::<String>()
                ))
            }),
    }
}

impl TaskIn {
    pub(super) fn into_task(self) -> Result<pb::Task, ApiError> {
        let bad = ApiError::InvalidArgument;
        let message_type = match (self.http_request, self.app_engine_http_request) {
            (Some(_), Some(_)) => {
                return Err(bad(
                    "A task has one of httpRequest and appEngineHttpRequest, not both".into(),
                ));
            }
            (_, Some(_)) => {
                return Err(bad(
                    "App Engine tasks are not emulated: give the task an httpRequest (an HTTP target)"
                        .into(),
                ));
            }
            (None, None) => None,
            (Some(http), None) => {
                let http_method = match http.http_method.as_deref() {
                    None => 0,
                    Some(m) => pb::HttpMethod::from_str_name(m).map(|m| m as i32).ok_or_else(
                        || {
                            bad(format!(
                                "Invalid value at 'task.http_request.http_method' (type.googleapis.com/google.cloud.tasks.v2.HttpMethod): `{}`",
                                m.chars().take(40).collect::<String>()
                            ))
                        },
                    )?,
                };
                let body = match http.body {
                    None => Vec::new(),
                    Some(b) => STANDARD.decode(b.as_bytes()).map_err(|e| {
                        bad(format!(
                            "Invalid value at 'task.http_request.body' (TYPE_BYTES), Base64 decoding failed: {e}"
                        ))
                    })?,
                };
                let authorization_header = match (http.oidc_token, http.oauth_token) {
                    (Some(_), Some(_)) => {
                        return Err(bad(
                            "An httpRequest has one of oidcToken and oauthToken, not both".into(),
                        ));
                    }
                    (Some(o), None) => Some(AuthorizationHeader::OidcToken(pb::OidcToken {
                        service_account_email: o.service_account_email,
                        audience: o.audience,
                    })),
                    (None, Some(o)) => Some(AuthorizationHeader::OauthToken(pb::OAuthToken {
                        service_account_email: o.service_account_email,
                        scope: o.scope,
                    })),
                    (None, None) => None,
                };
                Some(pb::task::MessageType::HttpRequest(pb::HttpRequest {
                    url: http.url,
                    http_method,
                    headers: http.headers,
                    body,
                    authorization_header,
                }))
            }
        };
        Ok(pb::Task {
            name: self.name.unwrap_or_default(),
            message_type,
            schedule_time: self
                .schedule_time
                .as_deref()
                .map(|t| timestamp_in("task.schedule_time", t))
                .transpose()?,
            dispatch_deadline: self
                .dispatch_deadline
                .as_deref()
                .map(|d| duration_in("task.dispatch_deadline", d))
                .transpose()?,
            ..pb::Task::default()
        })
    }
}

fn attempt_out(a: &pb::Attempt) -> Value {
    let mut out = Map::new();
    for (key, t) in [
        ("scheduleTime", a.schedule_time),
        ("dispatchTime", a.dispatch_time),
        ("responseTime", a.response_time),
    ] {
        if let Some(t) = t {
            out.insert(key.into(), json!(timestamp_out(t)));
        }
    }
    if let Some(s) = &a.response_status {
        out.insert(
            "responseStatus".into(),
            json!({"code": s.code, "message": s.message}),
        );
    }
    Value::Object(out)
}

pub(super) fn task_out(t: &pb::Task) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(t.name));
    if let Some(pb::task::MessageType::HttpRequest(http)) = &t.message_type {
        let mut h = Map::new();
        h.insert("url".into(), json!(http.url));
        let method = pb::HttpMethod::try_from(http.http_method).unwrap_or(pb::HttpMethod::Post);
        h.insert("httpMethod".into(), json!(method.as_str_name()));
        if !http.headers.is_empty() {
            h.insert("headers".into(), json!(http.headers));
        }
        if !http.body.is_empty() {
            h.insert("body".into(), json!(STANDARD.encode(&http.body)));
        }
        match &http.authorization_header {
            Some(AuthorizationHeader::OidcToken(o)) => {
                let mut token = json!({"serviceAccountEmail": o.service_account_email});
                if !o.audience.is_empty() {
                    token["audience"] = json!(o.audience);
                }
                h.insert("oidcToken".into(), token);
            }
            Some(AuthorizationHeader::OauthToken(o)) => {
                let mut token = json!({"serviceAccountEmail": o.service_account_email});
                if !o.scope.is_empty() {
                    token["scope"] = json!(o.scope);
                }
                h.insert("oauthToken".into(), token);
            }
            None => {}
        }
        out.insert("httpRequest".into(), Value::Object(h));
    }
    for (key, time) in [
        ("scheduleTime", t.schedule_time),
        ("createTime", t.create_time),
    ] {
        if let Some(time) = time {
            out.insert(key.into(), json!(timestamp_out(time)));
        }
    }
    if let Some(d) = t.dispatch_deadline {
        out.insert("dispatchDeadline".into(), json!(duration_out(d)));
    }
    if t.dispatch_count > 0 {
        out.insert("dispatchCount".into(), json!(t.dispatch_count));
    }
    if t.response_count > 0 {
        out.insert("responseCount".into(), json!(t.response_count));
    }
    if let Some(a) = &t.first_attempt {
        out.insert("firstAttempt".into(), attempt_out(a));
    }
    if let Some(a) = &t.last_attempt {
        out.insert("lastAttempt".into(), attempt_out(a));
    }
    let view = pb::task::View::try_from(t.view).unwrap_or(pb::task::View::Basic);
    out.insert("view".into(), json!(view.as_str_name()));
    Value::Object(out)
}
