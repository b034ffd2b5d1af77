//! `pubsub:` in services.yaml: the backoff divisor, and the topics and subscriptions a test
//! environment starts with, named as gcloud's flags name them (`push_endpoint`,
//! `push_service_account`, `push_audience`, `dead_letter_topic`, `max_delivery_attempts`,
//! `min_retry_delay`, `max_retry_delay`). Resolved here into Google's own messages, which
//! the broker holds as the API made them; checked as the API checks them, each mistake a
//! configuration error naming its field.

use std::time::Duration;

use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use pb::push_config::{AuthenticationMethod, NoWrapper, OidcToken, Wrapper};

use super::raw::RawPubsub;
use super::{At, ConfigError, ServiceAccount};

/// Pub/Sub as the file declares it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pubsub {
    /// Every backoff is divided by this; 1 (Google's timings) by default.
    pub backoff_divisor: u32,
    pub topics: Vec<pb::Topic>,
    pub subscriptions: Vec<pb::Subscription>,
}

/// Google's rule for a topic or subscription id: 3 to 255 characters, a letter first,
/// then letters, digits and `-_.~+%`, not starting with `goog`. `noun` names it.
pub(crate) fn check_id(id: &str, noun: &str) -> Result<(), String> {
    if !(3..=255).contains(&id.len()) {
        return Err(format!("a {noun} id has 3 to 255 characters"));
    }
    if !id.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!("a {noun} id starts with a letter"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-_.~+%".contains(*c)))
    {
        return Err(format!(
            "a {noun} id has letters, digits and - _ . ~ + % only, not `{c}`"
        ));
    }
    if id.to_ascii_lowercase().starts_with("goog") {
        return Err(format!("a {noun} id may not start with `goog`"));
    }
    Ok(())
}

pub(super) fn resolve(
    raw: &RawPubsub,
    project: &str,
    accounts: &[ServiceAccount],
    services: &[super::Service],
    at: &At<'_>,
) -> Result<Pubsub, ConfigError> {
    let backoff_divisor = match raw.backoff_divisor {
        None => 1,
        Some(d) if (1..=1_000_000).contains(&d) => d,
        Some(d) => {
            return Err(at.err(
                "pubsub.backoff_divisor",
                format!("{d} is out of range: 1 (Google's backoffs) to 1000000"),
            ));
        }
    };
    let topic_name = |id: &str| format!("projects/{project}/topics/{id}");
    let mut topics: Vec<pb::Topic> = Vec::new();
    for (i, topic) in raw.topics.iter().enumerate() {
        check_id(&topic.name, "topic")
            .map_err(|r| at.err(format!("pubsub.topics[{i}].name"), r))?;
        let name = topic_name(&topic.name);
        if topics.iter().any(|t| t.name == name) {
            return Err(at.err(
                format!("pubsub.topics[{i}].name"),
                format!("topic `{}` is declared twice", topic.name),
            ));
        }
        topics.push(pb::Topic {
            name,
            ..pb::Topic::default()
        });
    }
    let mut subscriptions: Vec<pb::Subscription> = Vec::new();
    for (i, topic) in raw.topics.iter().enumerate() {
        for (j, s) in topic.subscriptions.iter().enumerate() {
            let path = |field: &str| format!("pubsub.topics[{i}].subscriptions[{j}].{field}");
            check_id(&s.name, "subscription").map_err(|r| at.err(path("name"), r))?;
            let name = format!("projects/{project}/subscriptions/{}", s.name);
            if subscriptions.iter().any(|x| x.name == name) {
                return Err(at.err(
                    path("name"),
                    format!("subscription `{}` is declared twice", s.name),
                ));
            }
            let ack_deadline_seconds = s.ack_deadline_seconds.unwrap_or(10);
            if !(10..=600).contains(&ack_deadline_seconds) {
                return Err(at.err(
                    path("ack_deadline_seconds"),
                    format!("{ack_deadline_seconds} is out of range: 10 to 600"),
                ));
            }
            let push_config = match &s.push_endpoint {
                None => {
                    if s.push_service_account.is_some()
                        || s.push_audience.is_some()
                        || s.push_no_wrapper
                        || s.push_write_metadata
                    {
                        return Err(at.err(
                            path("push_endpoint"),
                            "a push account, audience or wrapper needs a push_endpoint",
                        ));
                    }
                    None
                }
                Some(endpoint) => {
                    let url = url::Url::parse(endpoint).map_err(|e| {
                        at.err(
                            path("push_endpoint"),
                            format!("`{endpoint}` is no URL: {e}"),
                        )
                    })?;
                    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
                        return Err(at.err(
                            path("push_endpoint"),
                            format!("`{endpoint}` is not an http or https URL"),
                        ));
                    }
                    // What the push loop can reach: the front door (a run.app URL, a tag
                    // URL, a custom domain), or plain http on this machine.
                    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
                    let cloud_run = host.ends_with(".run.app")
                        || services
                            .iter()
                            .any(|svc| svc.hosts().iter().any(|h| h.eq_ignore_ascii_case(&host)));
                    let local = url.scheme() == "http"
                        && (host == "localhost"
                            || host
                                .trim_matches(['[', ']'])
                                .parse::<std::net::IpAddr>()
                                .is_ok_and(|ip| ip.is_loopback()));
                    if !cloud_run && !local {
                        return Err(at.err(
                            path("push_endpoint"),
                            format!(
                                "`{endpoint}` is neither a Cloud Run URL (run.app, a tag URL, a custom domain) nor plain http on this machine: frontdoor pushes nowhere else"
                            ),
                        ));
                    }
                    // The front door refuses an audience with a path (SPEC §12).
                    if cloud_run
                        && s.push_service_account.is_some()
                        && s.push_audience.is_none()
                        && !matches!(url.path(), "" | "/")
                    {
                        return Err(at.err(
                            path("push_audience"),
                            format!(
                                "with no push_audience the token's audience is the endpoint, path and all, which Cloud Run refuses: set push_audience to the service's URL (https://{host})"
                            ),
                        ));
                    }
                    let oidc = match &s.push_service_account {
                        None => None,
                        Some(email) => {
                            let account = accounts
                                .iter()
                                .find(|a| a.email.eq_ignore_ascii_case(email))
                                .ok_or_else(|| {
                                    let known = accounts.iter().map(|a| a.email.as_str());
                                    at.err(
                                        path("push_service_account"),
                                        format!(
                                            "`{email}` is not declared under service_accounts{}",
                                            crate::suggest::did_you_mean(email, known)
                                        ),
                                    )
                                })?;
                            Some(AuthenticationMethod::OidcToken(OidcToken {
                                service_account_email: account.email.clone(),
                                audience: s.push_audience.clone().unwrap_or_default(),
                            }))
                        }
                    };
                    Some(pb::PushConfig {
                        push_endpoint: endpoint.clone(),
                        authentication_method: oidc,
                        wrapper: s.push_no_wrapper.then_some(Wrapper::NoWrapper(NoWrapper {
                            write_metadata: s.push_write_metadata,
                        })),
                        ..pb::PushConfig::default()
                    })
                }
            };
            let dead_letter_policy = match (&s.dead_letter_topic, s.max_delivery_attempts) {
                (None, None) => None,
                (None, Some(_)) => {
                    return Err(at.err(path("max_delivery_attempts"), "needs a dead_letter_topic"));
                }
                (Some(dead), attempts) => {
                    let dead = topic_name(dead);
                    if dead == topic_name(&topic.name) {
                        return Err(at.err(
                            path("dead_letter_topic"),
                            "is the subscription's own topic: its spent messages would come back to it",
                        ));
                    }
                    if !topics.iter().any(|t| t.name == dead) {
                        return Err(at.err(
                            path("dead_letter_topic"),
                            format!("`{dead}` is not a topic declared here"),
                        ));
                    }
                    let attempts = attempts.unwrap_or(5);
                    if !(5..=100).contains(&attempts) {
                        return Err(at.err(
                            path("max_delivery_attempts"),
                            format!("{attempts} is out of range: 5 to 100"),
                        ));
                    }
                    Some(pb::DeadLetterPolicy {
                        dead_letter_topic: dead,
                        max_delivery_attempts: attempts,
                    })
                }
            };
            let delay = |field: &str, text: &Option<String>| -> Result<_, ConfigError> {
                let Some(text) = text else { return Ok(None) };
                let d = humantime::parse_duration(text).map_err(|e| {
                    at.err(
                        path(field),
                        format!("`{text}` is no duration (say 10s): {e}"),
                    )
                })?;
                if d > Duration::from_secs(600) {
                    return Err(at.err(path(field), format!("`{text}` is over 600s")));
                }
                Ok(Some(d))
            };
            let min = delay("min_retry_delay", &s.min_retry_delay)?;
            let max = delay("max_retry_delay", &s.max_retry_delay)?;
            if let (Some(min), Some(max)) = (min, max)
                && min > max
            {
                return Err(at.err(path("min_retry_delay"), "is over max_retry_delay"));
            }
            let as_proto = |d: Duration| prost_types::Duration {
                seconds: i64::try_from(d.as_secs()).unwrap_or(600),
                nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
            };
            // Google's defaults for the one not given (10s and 600s), the minimum kept
            // under a smaller maximum.
            let retry_policy = (min.is_some() || max.is_some()).then(|| {
                let max = max.unwrap_or(Duration::from_secs(600));
                let min = min.unwrap_or(Duration::from_secs(10)).min(max);
                pb::RetryPolicy {
                    minimum_backoff: Some(as_proto(min)),
                    maximum_backoff: Some(as_proto(max)),
                }
            });
            subscriptions.push(pb::Subscription {
                name,
                topic: topic_name(&topic.name),
                push_config,
                ack_deadline_seconds,
                enable_message_ordering: s.enable_message_ordering,
                dead_letter_policy,
                retry_policy,
                ..pb::Subscription::default()
            });
        }
    }
    Ok(Pubsub {
        backoff_divisor,
        topics,
        subscriptions,
    })
}
