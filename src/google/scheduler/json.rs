//! Cloud Scheduler's REST resources in proto3's JSON form, to and from the generated
//! messages the store keeps. Fields frontdoor does not model are ignored on input.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use googleapis_tonic_google_cloud_scheduler_v1::google::cloud::scheduler::v1 as pb;
use pb::http_target::AuthorizationHeader;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::google::errors::ApiError;
use crate::google::protojson::{duration_in, duration_out, timestamp_out};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct JobIn {
    name: Option<String>,
    description: String,
    schedule: String,
    #[serde(alias = "time_zone")]
    time_zone: String,
    #[serde(alias = "retry_config")]
    retry_config: Option<RetryIn>,
    #[serde(alias = "attempt_deadline")]
    attempt_deadline: Option<String>,
    #[serde(alias = "http_target")]
    http_target: Option<HttpTargetIn>,
    #[serde(alias = "pubsub_target")]
    pubsub_target: Option<Value>,
    #[serde(alias = "app_engine_http_target")]
    app_engine_http_target: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RetryIn {
    #[serde(alias = "retry_count")]
    retry_count: i32,
    #[serde(alias = "max_retry_duration")]
    max_retry_duration: Option<String>,
    #[serde(alias = "min_backoff_duration")]
    min_backoff_duration: Option<String>,
    #[serde(alias = "max_backoff_duration")]
    max_backoff_duration: Option<String>,
    #[serde(alias = "max_doublings")]
    max_doublings: i32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct HttpTargetIn {
    uri: String,
    #[serde(alias = "http_method")]
    http_method: Option<String>,
    headers: HashMap<String, String>,
    body: Option<String>,
    #[serde(alias = "oidc_token")]
    oidc_token: Option<TokenIn>,
    #[serde(alias = "oauth_token")]
    oauth_token: Option<TokenIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct TokenIn {
    #[serde(alias = "service_account_email")]
    service_account_email: String,
    audience: String,
    scope: String,
}

impl JobIn {
    /// The job, named `name` when the body does not name it (a `PATCH`'s path).
    pub(super) fn into_job(self, name: Option<&str>) -> Result<pb::Job, ApiError> {
        let bad = ApiError::InvalidArgument;
        if self.pubsub_target.is_some() || self.app_engine_http_target.is_some() {
            return Err(bad(
                "Pub/Sub and App Engine targets are not emulated: give the job an httpTarget"
                    .into(),
            ));
        }
        let d = |field: &str, v: Option<String>| v.map(|v| duration_in(field, &v)).transpose();
        let retry_config = match self.retry_config {
            Some(r) => Some(pb::RetryConfig {
                retry_count: r.retry_count,
                max_retry_duration: d("retryConfig.maxRetryDuration", r.max_retry_duration)?,
                min_backoff_duration: d("retryConfig.minBackoffDuration", r.min_backoff_duration)?,
                max_backoff_duration: d("retryConfig.maxBackoffDuration", r.max_backoff_duration)?,
                max_doublings: r.max_doublings,
            }),
            None => None,
        };
        let target = match self.http_target {
            None => None,
            Some(http) => {
                let http_method = match http.http_method.as_deref() {
                    None => 0,
                    Some(m) => pb::HttpMethod::from_str_name(m).map(|m| m as i32).ok_or_else(
                        || {
                            bad(format!(
                                "Invalid value at 'job.http_target.http_method' (type.googleapis.com/google.cloud.scheduler.v1.HttpMethod): `{}`",
                                m.chars().take(40).collect::<String>()
                            ))
                        },
                    )?,
                };
                let body = match http.body {
                    None => Vec::new(),
                    Some(b) => STANDARD.decode(b.as_bytes()).map_err(|e| {
                        bad(format!(
                            "Invalid value at 'job.http_target.body' (TYPE_BYTES), Base64 decoding failed: {e}"
                        ))
                    })?,
                };
                let authorization_header = match (http.oidc_token, http.oauth_token) {
                    (Some(_), Some(_)) => {
                        return Err(bad(
                            "An httpTarget has one of oidcToken and oauthToken, not both".into(),
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
                Some(pb::job::Target::HttpTarget(pb::HttpTarget {
                    uri: http.uri,
                    http_method,
                    headers: http.headers,
                    body,
                    authorization_header,
                }))
            }
        };
        Ok(pb::Job {
            name: name.map(str::to_owned).or(self.name).unwrap_or_default(),
            description: self.description,
            schedule: self.schedule,
            time_zone: self.time_zone,
            retry_config,
            attempt_deadline: d("job.attempt_deadline", self.attempt_deadline)?,
            target,
            ..pb::Job::default()
        })
    }
}

pub(super) fn job_out(j: &pb::Job) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(j.name));
    if !j.description.is_empty() {
        out.insert("description".into(), json!(j.description));
    }
    if let Some(pb::job::Target::HttpTarget(http)) = &j.target {
        let mut h = Map::new();
        h.insert("uri".into(), json!(http.uri));
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
        out.insert("httpTarget".into(), Value::Object(h));
    }
    out.insert("schedule".into(), json!(j.schedule));
    out.insert("timeZone".into(), json!(j.time_zone));
    for (key, t) in [
        ("userUpdateTime", j.user_update_time),
        ("scheduleTime", j.schedule_time),
        ("lastAttemptTime", j.last_attempt_time),
    ] {
        if let Some(t) = t {
            out.insert(key.into(), json!(timestamp_out(t)));
        }
    }
    let state = pb::job::State::try_from(j.state).unwrap_or(pb::job::State::Unspecified);
    out.insert("state".into(), json!(state.as_str_name()));
    if let Some(s) = &j.status
        && s.code != 0
    {
        out.insert(
            "status".into(),
            json!({"code": s.code, "message": s.message}),
        );
    } else if j.status.is_some() {
        out.insert("status".into(), json!({}));
    }
    if let Some(r) = &j.retry_config {
        let mut retry = Map::new();
        if r.retry_count != 0 {
            retry.insert("retryCount".into(), json!(r.retry_count));
        }
        for (key, d) in [
            ("maxRetryDuration", r.max_retry_duration),
            ("minBackoffDuration", r.min_backoff_duration),
            ("maxBackoffDuration", r.max_backoff_duration),
        ] {
            if let Some(d) = d {
                retry.insert(key.into(), json!(duration_out(d)));
            }
        }
        retry.insert("maxDoublings".into(), json!(r.max_doublings));
        out.insert("retryConfig".into(), Value::Object(retry));
    }
    if let Some(d) = j.attempt_deadline {
        out.insert("attemptDeadline".into(), json!(duration_out(d)));
    }
    Value::Object(out)
}
