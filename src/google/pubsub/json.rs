//! Pub/Sub's REST resources in proto3's JSON form (camelCase names, bytes in base64,
//! durations as `"10s"`, timestamps in RFC 3339), to and from the generated messages the
//! store keeps. The generated crate has no serde support, so the mapping is written out
//! here for the fields frontdoor models; others are ignored on input, as a client's
//! newer fields would be.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use pb::push_config::{AuthenticationMethod, NoWrapper, OidcToken, PubsubWrapper, Wrapper};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::google::errors::ApiError;
use crate::google::protojson::duration_in;
pub(crate) use crate::google::protojson::{duration_out, timestamp_out};

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct TopicIn {
    #[serde(alias = "message_retention_duration")]
    message_retention_duration: Option<String>,
    labels: HashMap<String, String>,
}

impl TopicIn {
    pub(super) fn into_topic(self, name: String) -> Result<pb::Topic, ApiError> {
        Ok(pb::Topic {
            name,
            labels: self.labels,
            message_retention_duration: self
                .message_retention_duration
                .as_deref()
                .map(|d| duration_in("messageRetentionDuration", d))
                .transpose()?,
            ..pb::Topic::default()
        })
    }
}

pub(super) fn topic_out(topic: &pb::Topic) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(topic.name));
    if !topic.labels.is_empty() {
        out.insert("labels".into(), json!(topic.labels));
    }
    if let Some(d) = topic.message_retention_duration {
        out.insert("messageRetentionDuration".into(), json!(duration_out(d)));
    }
    Value::Object(out)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct SubscriptionIn {
    name: Option<String>,
    topic: Option<String>,
    #[serde(alias = "push_config")]
    push_config: Option<PushConfigIn>,
    #[serde(alias = "ack_deadline_seconds")]
    ack_deadline_seconds: Option<i32>,
    #[serde(alias = "retain_acked_messages")]
    retain_acked_messages: bool,
    #[serde(alias = "message_retention_duration")]
    message_retention_duration: Option<String>,
    labels: HashMap<String, String>,
    #[serde(alias = "enable_message_ordering")]
    enable_message_ordering: bool,
    filter: String,
    #[serde(alias = "dead_letter_policy")]
    dead_letter_policy: Option<DeadLetterIn>,
    #[serde(alias = "retry_policy")]
    retry_policy: Option<RetryIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct PushConfigIn {
    #[serde(alias = "push_endpoint")]
    push_endpoint: String,
    attributes: HashMap<String, String>,
    #[serde(alias = "oidc_token")]
    oidc_token: Option<OidcIn>,
    #[serde(alias = "no_wrapper")]
    no_wrapper: Option<NoWrapperIn>,
    #[serde(alias = "pubsub_wrapper")]
    pubsub_wrapper: Option<Value>,
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
struct NoWrapperIn {
    #[serde(alias = "write_metadata")]
    write_metadata: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct DeadLetterIn {
    #[serde(alias = "dead_letter_topic")]
    dead_letter_topic: String,
    #[serde(alias = "max_delivery_attempts")]
    max_delivery_attempts: i32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
struct RetryIn {
    #[serde(alias = "minimum_backoff")]
    minimum_backoff: Option<String>,
    #[serde(alias = "maximum_backoff")]
    maximum_backoff: Option<String>,
}

impl SubscriptionIn {
    /// The subscription named `name` (the path's), its topic as `topic_in` would name a
    /// short id: Google's REST takes only the full name.
    pub(super) fn into_subscription(self, name: String) -> Result<pb::Subscription, ApiError> {
        Ok(pb::Subscription {
            name,
            topic: self.topic.unwrap_or_default(),
            push_config: self.push_config.map(PushConfigIn::into_push).transpose()?,
            ack_deadline_seconds: self.ack_deadline_seconds.unwrap_or(0),
            retain_acked_messages: self.retain_acked_messages,
            message_retention_duration: self
                .message_retention_duration
                .as_deref()
                .map(|d| duration_in("messageRetentionDuration", d))
                .transpose()?,
            labels: self.labels,
            enable_message_ordering: self.enable_message_ordering,
            filter: self.filter,
            dead_letter_policy: self.dead_letter_policy.map(|d| pb::DeadLetterPolicy {
                dead_letter_topic: d.dead_letter_topic,
                max_delivery_attempts: d.max_delivery_attempts,
            }),
            retry_policy: self
                .retry_policy
                .map(|r| -> Result<_, ApiError> {
                    Ok(pb::RetryPolicy {
                        minimum_backoff: r
                            .minimum_backoff
                            .as_deref()
                            .map(|d| duration_in("retryPolicy.minimumBackoff", d))
                            .transpose()?,
                        maximum_backoff: r
                            .maximum_backoff
                            .as_deref()
                            .map(|d| duration_in("retryPolicy.maximumBackoff", d))
                            .transpose()?,
                    })
                })
                .transpose()?,
            ..pb::Subscription::default()
        })
    }

    /// The name a PATCH's body gives, if any.
    pub(super) fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

impl PushConfigIn {
    pub(super) fn into_push(self) -> Result<pb::PushConfig, ApiError> {
        Ok(pb::PushConfig {
            push_endpoint: self.push_endpoint,
            attributes: self.attributes,
            authentication_method: self.oidc_token.map(|o| {
                AuthenticationMethod::OidcToken(OidcToken {
                    service_account_email: o.service_account_email,
                    audience: o.audience,
                })
            }),
            wrapper: match (self.no_wrapper, self.pubsub_wrapper) {
                (Some(n), _) => Some(Wrapper::NoWrapper(NoWrapper {
                    write_metadata: n.write_metadata,
                })),
                (None, Some(_)) => Some(Wrapper::PubsubWrapper(PubsubWrapper {})),
                (None, None) => None,
            },
        })
    }
}

pub(super) fn subscription_out(s: &pb::Subscription) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!(s.name));
    out.insert("topic".into(), json!(s.topic));
    let push = s.push_config.as_ref().map_or_else(|| json!({}), push_out);
    out.insert("pushConfig".into(), push);
    out.insert("ackDeadlineSeconds".into(), json!(s.ack_deadline_seconds));
    if s.retain_acked_messages {
        out.insert("retainAckedMessages".into(), json!(true));
    }
    let retention = s
        .message_retention_duration
        .unwrap_or(prost_types::Duration {
            seconds: 7 * 86_400,
            nanos: 0,
        });
    out.insert(
        "messageRetentionDuration".into(),
        json!(duration_out(retention)),
    );
    if !s.labels.is_empty() {
        out.insert("labels".into(), json!(s.labels));
    }
    if s.enable_message_ordering {
        out.insert("enableMessageOrdering".into(), json!(true));
    }
    if !s.filter.is_empty() {
        out.insert("filter".into(), json!(s.filter));
    }
    if let Some(d) = &s.dead_letter_policy {
        out.insert(
            "deadLetterPolicy".into(),
            json!({"deadLetterTopic": d.dead_letter_topic, "maxDeliveryAttempts": d.max_delivery_attempts}),
        );
    }
    if let Some(r) = &s.retry_policy {
        let mut retry = Map::new();
        if let Some(d) = r.minimum_backoff {
            retry.insert("minimumBackoff".into(), json!(duration_out(d)));
        }
        if let Some(d) = r.maximum_backoff {
            retry.insert("maximumBackoff".into(), json!(duration_out(d)));
        }
        out.insert("retryPolicy".into(), Value::Object(retry));
    }
    if s.detached {
        out.insert("detached".into(), json!(true));
    }
    out.insert("state".into(), json!("ACTIVE"));
    Value::Object(out)
}

fn push_out(p: &pb::PushConfig) -> Value {
    let mut out = Map::new();
    if p.push_endpoint.is_empty() {
        return Value::Object(out);
    }
    out.insert("pushEndpoint".into(), json!(p.push_endpoint));
    if !p.attributes.is_empty() {
        out.insert("attributes".into(), json!(p.attributes));
    }
    if let Some(AuthenticationMethod::OidcToken(o)) = &p.authentication_method {
        let mut oidc = Map::new();
        oidc.insert("serviceAccountEmail".into(), json!(o.service_account_email));
        if !o.audience.is_empty() {
            oidc.insert("audience".into(), json!(o.audience));
        }
        out.insert("oidcToken".into(), Value::Object(oidc));
    }
    match &p.wrapper {
        Some(Wrapper::NoWrapper(n)) => {
            out.insert(
                "noWrapper".into(),
                json!({"writeMetadata": n.write_metadata}),
            );
        }
        Some(Wrapper::PubsubWrapper(_)) => {
            out.insert("pubsubWrapper".into(), json!({}));
        }
        None => {}
    }
    Value::Object(out)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub(super) struct MessageIn {
    data: Option<String>,
    attributes: HashMap<String, String>,
    #[serde(alias = "ordering_key")]
    ordering_key: String,
}

impl MessageIn {
    pub(super) fn into_message(self, index: usize) -> Result<pb::PubsubMessage, ApiError> {
        let data = match self.data {
            Some(d) => STANDARD
                .decode(&d)
                .or_else(|_| URL_SAFE.decode(&d))
                .map_err(|_| {
                    ApiError::InvalidArgument(format!(
                        "Invalid value at 'messages[{index}].data' (TYPE_BYTES), Base64 decoding failed: the data is sent in base64"
                    ))
                })?,
            None => Vec::new(),
        };
        Ok(pb::PubsubMessage {
            data,
            attributes: self.attributes,
            ordering_key: self.ordering_key,
            ..pb::PubsubMessage::default()
        })
    }
}

/// A message as a pull or a push envelope gives it.
pub(crate) fn message_out(m: &pb::PubsubMessage) -> Value {
    let mut out = Map::new();
    out.insert("data".into(), json!(STANDARD.encode(&m.data)));
    if !m.attributes.is_empty() {
        out.insert("attributes".into(), json!(m.attributes));
    }
    out.insert("messageId".into(), json!(m.message_id));
    let time = m.publish_time.map(timestamp_out).unwrap_or_default();
    out.insert("publishTime".into(), json!(time));
    if !m.ordering_key.is_empty() {
        out.insert("orderingKey".into(), json!(m.ordering_key));
    }
    Value::Object(out)
}

pub(super) fn received_out(r: &pb::ReceivedMessage) -> Value {
    let mut out = Map::new();
    out.insert("ackId".into(), json!(r.ack_id));
    if let Some(m) = &r.message {
        out.insert("message".into(), message_out(m));
    }
    if r.delivery_attempt > 0 {
        out.insert("deliveryAttempt".into(), json!(r.delivery_attempt));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_timestamps_read_and_write_as_proto3_json() {
        let d = duration_in("f", "1.5s").unwrap();
        assert_eq!((d.seconds, d.nanos), (1, 500_000_000));
        assert_eq!(duration_out(d), "1.5s");
        assert_eq!(
            duration_out(prost_types::Duration {
                seconds: 600,
                nanos: 0
            }),
            "600s"
        );
        for bad in ["10", "s", "-1s", "1e400s", "NaNs"] {
            assert!(duration_in("f", bad).is_err(), "{bad}");
        }
        let t = prost_types::Timestamp {
            seconds: 0,
            nanos: 5,
        };
        assert_eq!(timestamp_out(t), "1970-01-01T00:00:00.000000005Z");
    }

    #[test]
    fn a_subscription_round_trips_with_its_push_config() {
        let body = json!({
            "topic": "projects/p/topics/t",
            "pushConfig": {"pushEndpoint": "https://r.run.app/push",
                           "oidcToken": {"serviceAccountEmail": "a@p.iam.gserviceaccount.com", "audience": "x"},
                           "noWrapper": {"writeMetadata": true}},
            "ackDeadlineSeconds": 20,
            "deadLetterPolicy": {"deadLetterTopic": "projects/p/topics/d", "maxDeliveryAttempts": 5},
            "retryPolicy": {"minimumBackoff": "1s", "maximumBackoff": "2s"},
        });
        let parsed: SubscriptionIn = serde_json::from_value(body).unwrap();
        let s = parsed
            .into_subscription("projects/p/subscriptions/s".into())
            .unwrap();
        let out = subscription_out(&s);
        assert_eq!(out["pushConfig"]["oidcToken"]["audience"], "x");
        assert_eq!(out["pushConfig"]["noWrapper"]["writeMetadata"], true);
        assert_eq!(out["retryPolicy"]["maximumBackoff"], "2s");
        assert_eq!(out["deadLetterPolicy"]["maxDeliveryAttempts"], 5);
        assert_eq!(out["ackDeadlineSeconds"], 20);
    }

    #[test]
    fn message_data_is_base64_and_bad_base64_is_refused() {
        let m: MessageIn =
            serde_json::from_value(json!({"data": "aGk=", "attributes": {"k": "v"}})).unwrap();
        let m = m.into_message(0).unwrap();
        assert_eq!(m.data, b"hi");
        let bad: MessageIn = serde_json::from_value(json!({"data": "not base64!"})).unwrap();
        assert!(bad.into_message(3).is_err());
    }
}
