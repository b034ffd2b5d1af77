//! Pub/Sub's resource names and limits, as Google checks them: `projects/P/topics/T` and
//! `projects/P/subscriptions/S`, the ids' syntax, a message's sizes, a subscription's
//! settings. Each refusal is Google's `INVALID_ARGUMENT` with its own words.

use std::time::Duration;

use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;

use crate::google::errors::ApiError;

/// Google's limits on what a publish carries.
pub(crate) const MAX_MESSAGE_BYTES: usize = 10 * 1024 * 1024;
pub(crate) const MAX_MESSAGES_PER_PUBLISH: usize = 1000;
pub(crate) const MAX_ATTRIBUTES: usize = 100;
pub(crate) const MAX_ATTRIBUTE_KEY_BYTES: usize = 256;
pub(crate) const MAX_ATTRIBUTE_VALUE_BYTES: usize = 1024;
pub(crate) const MAX_ORDERING_KEY_BYTES: usize = 1024;

/// What kind of resource a name is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Topic,
    Subscription,
}

impl Kind {
    fn collection(self) -> &'static str {
        match self {
            Kind::Topic => "topics",
            Kind::Subscription => "subscriptions",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Kind::Topic => "topic",
            Kind::Subscription => "subscription",
        }
    }
}

/// Which kind of resource `name` is, checked as such: what IAM's methods are asked about.
pub(crate) fn kind_of(name: &str) -> Result<Kind, ApiError> {
    let kind = if name.split('/').nth(2) == Some("subscriptions") {
        Kind::Subscription
    } else {
        Kind::Topic
    };
    parse(name, kind)?;
    Ok(kind)
}

impl Kind {
    /// The permissions to read and to set its IAM policy.
    pub(crate) fn permissions(self) -> (&'static str, &'static str) {
        match self {
            Kind::Topic => (
                crate::iam::TOPICS_GET_IAM_POLICY,
                crate::iam::TOPICS_SET_IAM_POLICY,
            ),
            Kind::Subscription => (
                crate::iam::SUBSCRIPTIONS_GET_IAM_POLICY,
                crate::iam::SUBSCRIPTIONS_SET_IAM_POLICY,
            ),
        }
    }
}

/// `name`, checked to be `projects/P/KIND/ID` with an id Google accepts; its project.
pub(crate) fn parse(name: &str, kind: Kind) -> Result<&str, ApiError> {
    let invalid = |why: &str| {
        let shown: String = name.chars().take(300).collect();
        ApiError::InvalidArgument(format!(
            "Invalid resource name given (name={shown}). Refer to https://cloud.google.com/pubsub/docs/pubsub-basics#resource_names for more information. ({why})"
        ))
    };
    let rest = name
        .strip_prefix("projects/")
        .ok_or_else(|| invalid("it must start with `projects/`"))?;
    let (project, rest) = rest.split_once('/').ok_or_else(|| {
        invalid("expected projects/PROJECT/topics/TOPIC or …/subscriptions/SUBSCRIPTION")
    })?;
    let id = rest
        .strip_prefix(kind.collection())
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| {
            invalid(&format!(
                "a {} is named projects/PROJECT/{}/ID",
                kind.noun(),
                kind.collection()
            ))
        })?;
    if project.is_empty()
        || !project
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b':')
    {
        return Err(invalid("the project id is malformed"));
    }
    crate::config::pubsub::check_id(id, kind.noun()).map_err(|why| invalid(&why))?;
    Ok(project)
}

/// `projects/P` for a list, checked.
pub(crate) fn project(name: &str) -> Result<&str, ApiError> {
    name.strip_prefix("projects/")
        .filter(|p| !p.is_empty() && !p.contains('/'))
        .ok_or_else(|| {
            ApiError::InvalidArgument(format!(
                "Invalid project name given (project={name}); expected projects/PROJECT"
            ))
        })
}

/// The messages of a publish, checked against Google's limits.
pub(crate) fn check_messages(messages: &[pb::PubsubMessage]) -> Result<(), ApiError> {
    let invalid = |m: String| Err(ApiError::InvalidArgument(m));
    if messages.is_empty() {
        return invalid("The request contains no messages: send at least one.".into());
    }
    if messages.len() > MAX_MESSAGES_PER_PUBLISH {
        return invalid(format!(
            "The value for message_count is too large. You passed {} in the request, but the maximum value is {MAX_MESSAGES_PER_PUBLISH}.",
            messages.len()
        ));
    }
    let total: usize = messages.iter().map(crate::broker::message_bytes).sum();
    if total > MAX_MESSAGE_BYTES {
        return invalid(format!(
            "The value for request_size is too large. You passed {total} in the request, but the maximum value is {MAX_MESSAGE_BYTES}."
        ));
    }
    for message in messages {
        if message.data.is_empty() && message.attributes.is_empty() {
            return invalid(
                "Some messages are empty: a message has data, or at least one attribute.".into(),
            );
        }
        if message.attributes.len() > MAX_ATTRIBUTES {
            return invalid(format!(
                "The value for attribute_count is too large. You passed {} in the request, but the maximum value is {MAX_ATTRIBUTES}.",
                message.attributes.len()
            ));
        }
        for (key, value) in &message.attributes {
            if key.is_empty() || key.len() > MAX_ATTRIBUTE_KEY_BYTES {
                return invalid(format!(
                    "The value for attribute_key_size is out of range: {} bytes; an attribute key has 1 to {MAX_ATTRIBUTE_KEY_BYTES}.",
                    key.len()
                ));
            }
            if key.starts_with("goog") {
                return invalid(format!(
                    "An attribute key may not start with `goog` (key={key})."
                ));
            }
            if value.len() > MAX_ATTRIBUTE_VALUE_BYTES {
                return invalid(format!(
                    "The value for attribute_value_size is too large. You passed {} in the request, but the maximum value is {MAX_ATTRIBUTE_VALUE_BYTES}.",
                    value.len()
                ));
            }
        }
        if message.ordering_key.len() > MAX_ORDERING_KEY_BYTES {
            return invalid(format!(
                "The value for ordering_key_size is too large. You passed {} in the request, but the maximum value is {MAX_ORDERING_KEY_BYTES}.",
                message.ordering_key.len()
            ));
        }
    }
    Ok(())
}

/// A subscription's settings, checked and given Google's defaults: the ack deadline (10
/// to 600 s), the dead-letter policy (5 to 100 attempts, a topic named), the retry
/// policy (0 to 600 s, minimum not above maximum), the push endpoint (an http or https
/// URL), the retention (10 minutes to 31 days).
pub(crate) fn check_subscription(s: &mut pb::Subscription) -> Result<(), ApiError> {
    let invalid = |m: String| Err(ApiError::InvalidArgument(m));
    // What frontdoor does not do is refused, never stored and ignored.
    let unsupported = [
        (!s.filter.is_empty(), "filter"),
        (
            s.enable_exactly_once_delivery,
            "enable_exactly_once_delivery",
        ),
        (s.bigquery_config.is_some(), "bigquery_config"),
        (s.cloud_storage_config.is_some(), "cloud_storage_config"),
        (s.bigtable_config.is_some(), "bigtable_config"),
        (!s.message_transforms.is_empty(), "message_transforms"),
    ];
    if let Some((_, field)) = unsupported.iter().find(|(set, _)| *set) {
        return invalid(format!(
            "frontdoor does not emulate a subscription's `{field}`: leave it unset (see docs/pubsub.md)"
        ));
    }
    check_labels(&s.labels)?;
    if s.ack_deadline_seconds == 0 {
        s.ack_deadline_seconds = crate::broker::DEFAULT_ACK_DEADLINE;
    }
    if !(10..=600).contains(&s.ack_deadline_seconds) {
        return invalid(format!(
            "Invalid ack deadline given: {}. The ack deadline must be between 10 and 600 seconds.",
            s.ack_deadline_seconds
        ));
    }
    if let Some(policy) = &mut s.dead_letter_policy {
        if policy.max_delivery_attempts == 0 {
            policy.max_delivery_attempts = 5;
        }
        if !(5..=100).contains(&policy.max_delivery_attempts) {
            return invalid(format!(
                "Invalid max_delivery_attempts given: {}. It must be between 5 and 100.",
                policy.max_delivery_attempts
            ));
        }
        parse(&policy.dead_letter_topic, Kind::Topic)?;
    }
    if let Some(policy) = &s.retry_policy {
        let limit = Duration::from_secs(600);
        let min = policy.minimum_backoff.map(crate::broker::duration);
        let max = policy.maximum_backoff.map(crate::broker::duration);
        if min.is_some_and(|d| d > limit) || max.is_some_and(|d| d > limit) {
            return invalid("A retry policy's backoffs are at most 600s.".into());
        }
        if let (Some(min), Some(max)) = (min, max)
            && min > max
        {
            return invalid(format!(
                "The retry policy's minimum_backoff ({}s) is greater than its maximum_backoff ({}s).",
                min.as_secs_f64(),
                max.as_secs_f64()
            ));
        }
    }
    if let Some(retention) = s.message_retention_duration.map(crate::broker::duration)
        && !(Duration::from_secs(600)..=Duration::from_secs(31 * 86_400)).contains(&retention)
    {
        return invalid(format!(
            "Invalid message_retention_duration: {}s; it must be between 10 minutes and 31 days.",
            retention.as_secs()
        ));
    }
    if let Some(push) = &s.push_config {
        check_push(push)?;
    }
    // Google's defaults said aloud are the defaults: stored as unset, so that what a client
    // sends and what the file declares compare equal (and `frontdoor fold` can write it).
    if s.message_retention_duration.map(crate::broker::duration)
        == Some(crate::broker::DEFAULT_RETENTION)
    {
        s.message_retention_duration = None;
    }
    if s.push_config
        .as_ref()
        .is_some_and(|p| p.push_endpoint.is_empty())
    {
        s.push_config = None;
    }
    Ok(())
}

/// Google's limits on labels: 64 of them, keys and values of at most 63 characters.
pub(crate) fn check_labels(
    labels: &std::collections::HashMap<String, String>,
) -> Result<(), ApiError> {
    if labels.len() > 64 {
        return Err(ApiError::InvalidArgument(format!(
            "{} labels given; a resource has at most 64",
            labels.len()
        )));
    }
    if let Some((k, _)) = labels
        .iter()
        .find(|(k, v)| k.is_empty() || k.len() > 63 || v.len() > 63)
    {
        return Err(ApiError::InvalidArgument(format!(
            "Invalid label `{}`: keys have 1 to 63 characters, values at most 63",
            k.chars().take(80).collect::<String>()
        )));
    }
    Ok(())
}

/// A push config: an empty endpoint makes the subscription a pull one; otherwise an
/// absolute http(s) URL, and an OIDC account that is an email.
pub(crate) fn check_push(push: &pb::PushConfig) -> Result<(), ApiError> {
    use pb::push_config::AuthenticationMethod;
    if push.push_endpoint.is_empty() {
        return Ok(());
    }
    if push.attributes.len() > 64 {
        return Err(ApiError::InvalidArgument(format!(
            "{} push attributes given; at most 64",
            push.attributes.len()
        )));
    }
    let url = url::Url::parse(&push.push_endpoint).map_err(|e| {
        ApiError::InvalidArgument(format!(
            "Invalid push_endpoint given (endpoint={}): {e}. It must be an absolute http or https URL.",
            push.push_endpoint.chars().take(300).collect::<String>()
        ))
    })?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ApiError::InvalidArgument(format!(
            "Invalid push_endpoint given (endpoint={}). It must be an absolute http or https URL.",
            push.push_endpoint.chars().take(300).collect::<String>()
        )));
    }
    if let Some(AuthenticationMethod::OidcToken(oidc)) = &push.authentication_method
        && !oidc.service_account_email.contains('@')
    {
        return Err(ApiError::InvalidArgument(format!(
            "Invalid service_account_email given in the push config's oidc_token: `{}` is not an email.",
            oidc.service_account_email
                .chars()
                .take(300)
                .collect::<String>()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_as_google_checks_them() {
        assert_eq!(parse("projects/p/topics/orders", Kind::Topic).unwrap(), "p");
        for bad in [
            "topics/orders",
            "projects/p/topics/or",
            "projects/p/topics/1orders",
            "projects/p/topics/goog-orders",
            "projects/p/topics/or ders",
            "projects/p/subscriptions/orders",
            "projects//topics/orders",
        ] {
            assert!(parse(bad, Kind::Topic).is_err(), "{bad}");
        }
    }

    #[test]
    fn messages_over_googles_limits_are_refused() {
        let ok = pb::PubsubMessage {
            data: b"x".to_vec(),
            ..Default::default()
        };
        assert!(check_messages(std::slice::from_ref(&ok)).is_ok());
        assert!(check_messages(&[]).is_err());
        assert!(check_messages(&[pb::PubsubMessage::default()]).is_err());
        let mut big = ok.clone();
        big.data = vec![0; MAX_MESSAGE_BYTES + 1];
        assert!(check_messages(&[big]).is_err());
        let mut long_value = ok.clone();
        long_value.attributes.insert("k".into(), "v".repeat(1025));
        assert!(check_messages(&[long_value]).is_err());
        let mut many = ok;
        for i in 0..=MAX_ATTRIBUTES {
            many.attributes.insert(format!("k{i}"), String::new());
        }
        assert!(check_messages(&[many]).is_err());
    }

    #[test]
    fn subscription_settings_get_defaults_and_bounds() {
        let mut s = pb::Subscription::default();
        check_subscription(&mut s).unwrap();
        assert_eq!(s.ack_deadline_seconds, 10);
        s.ack_deadline_seconds = 601;
        assert!(check_subscription(&mut s).is_err());
        s.ack_deadline_seconds = 10;
        s.dead_letter_policy = Some(pb::DeadLetterPolicy {
            dead_letter_topic: "projects/p/topics/dead".into(),
            max_delivery_attempts: 4,
        });
        assert!(check_subscription(&mut s).is_err());
        s.dead_letter_policy = None;
        s.push_config = Some(pb::PushConfig {
            push_endpoint: "not a url".into(),
            ..Default::default()
        });
        assert!(check_subscription(&mut s).is_err());
    }
}
