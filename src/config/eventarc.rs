//! `eventarc:` in services.yaml: triggers for `google.cloud.pubsub.topic.v1.messagePublished`
//! on a declared topic, each delivering to a Cloud Run service (and path) as a service
//! account. As on Google, a trigger with a Pub/Sub transport is a push subscription on its
//! topic that Eventarc manages (named `eventarc-REGION-TRIGGER-sub-000` here), whose
//! endpoint asks for CloudEvents (`?__GCP_CloudEventsMode=CUSTOM_PUBSUB_…`), retried from 10 s
//! to 600 s and keeping a message 24 hours, as Eventarc's are; the push loop sends each
//! message as a CloudEvent in binary content mode (`managed`), through the front door with
//! the account's ID token. Other event sources are not emulated.

use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use pb::push_config::{AuthenticationMethod, OidcToken};
use serde::Deserialize;

use super::pubsub::Pubsub;
use super::{At, ConfigError, Project, Service, ServiceAccount};

/// The label Eventarc's subscriptions carry here, whose value is the trigger's name: what
/// the decisions and the graph call the caller.
pub const TRIGGER_LABEL: &str = "goog-eventarc-trigger";
/// The label that gives the trigger's location (a region, or `global`).
pub const LOCATION_LABEL: &str = "goog-eventarc-location";
/// The query parameter on a push endpoint that asks for the message as a CloudEvent, as
/// Eventarc (and Cloud Functions) set it; its value names the topic.
pub const CLOUDEVENTS_MODE: &str = "__GCP_CloudEventsMode";
/// The one event type emulated.
pub const MESSAGE_PUBLISHED: &str = "google.cloud.pubsub.topic.v1.messagePublished";

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawEventarc {
    #[serde(default)]
    pub(crate) triggers: Vec<RawTrigger>,
}

/// A trigger, its fields named as `gcloud eventarc triggers create`'s flags.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawTrigger {
    pub(crate) name: String,
    /// `google.cloud.pubsub.topic.v1.messagePublished`, the only one emulated (and the
    /// default).
    pub(crate) event_type: Option<String>,
    /// The declared topic whose messages fire it (`--transport-topic`).
    pub(crate) topic: String,
    /// The Cloud Run service it calls (`--destination-run-service`).
    pub(crate) destination_run_service: String,
    /// The path on it (`--destination-run-path`), `/` by default.
    pub(crate) destination_run_path: Option<String>,
    /// The account whose ID token each delivery carries (`--service-account`).
    pub(crate) service_account: String,
}

/// `pubsub` with a push subscription for each trigger.
pub(super) fn resolve(
    raw: &RawEventarc,
    mut pubsub: Pubsub,
    project: &Project,
    accounts: &[ServiceAccount],
    services: &[Service],
    at: &At<'_>,
) -> Result<Pubsub, ConfigError> {
    let mut names: Vec<&str> = Vec::new();
    for (i, t) in raw.triggers.iter().enumerate() {
        let path = |field: &str| format!("eventarc.triggers[{i}].{field}");
        check_trigger_id(&t.name).map_err(|why| at.err(path("name"), why))?;
        if names.contains(&t.name.as_str()) {
            return Err(at.err(
                path("name"),
                format!("trigger `{}` is declared twice", t.name),
            ));
        }
        names.push(&t.name);
        if let Some(kind) = &t.event_type
            && kind != MESSAGE_PUBLISHED
        {
            return Err(at.err(
                path("event_type"),
                format!(
                    "`{kind}`: frontdoor emulates Eventarc's Pub/Sub trigger only ({MESSAGE_PUBLISHED}); other event sources are not emulated"
                ),
            ));
        }
        let topic = format!("projects/{}/topics/{}", project.id, t.topic);
        if !pubsub.topics.iter().any(|x| x.name == topic) {
            let known = pubsub
                .topics
                .iter()
                .map(|x| x.name.rsplit('/').next().unwrap_or_default());
            return Err(at.err(
                path("topic"),
                format!(
                    "`{}` is not a topic declared under pubsub.topics{}",
                    t.topic,
                    crate::suggest::did_you_mean(&t.topic, known)
                ),
            ));
        }
        let service = services
            .iter()
            .find(|s| s.name == t.destination_run_service)
            .ok_or_else(|| {
                let known = services.iter().map(|s| s.name.as_str());
                at.err(
                    path("destination_run_service"),
                    format!(
                        "`{}` is not a declared service{}",
                        t.destination_run_service,
                        crate::suggest::did_you_mean(&t.destination_run_service, known)
                    ),
                )
            })?;
        let run_path = t.destination_run_path.as_deref().unwrap_or("/");
        check_run_path(&service.url, run_path)
            .map_err(|why| at.err(path("destination_run_path"), why))?;
        let account = accounts
            .iter()
            .find(|a| a.email.eq_ignore_ascii_case(&t.service_account))
            .ok_or_else(|| {
                let known = accounts.iter().map(|a| a.email.as_str());
                at.err(
                    path("service_account"),
                    format!(
                        "`{}` is not declared under service_accounts{}",
                        t.service_account,
                        crate::suggest::did_you_mean(&t.service_account, known)
                    ),
                )
            })?;
        let made = subscription(
            &project.id,
            &project.region,
            &t.name,
            &topic,
            &format!("{}{run_path}", service.url),
            &service.url,
            &account.email,
        );
        if pubsub.subscriptions.iter().any(|s| s.name == made.name) {
            return Err(at.err(
                path("name"),
                format!(
                    "trigger `{}`'s subscription {} is declared under pubsub too",
                    t.name, made.name
                ),
            ));
        }
        pubsub.subscriptions.push(made);
    }
    Ok(pubsub)
}

/// Eventarc's rule for a trigger's id.
pub(crate) fn check_trigger_id(id: &str) -> Result<(), String> {
    let valid = id.len() <= 63
        && id.starts_with(|c: char| c.is_ascii_lowercase())
        && !id.ends_with('-')
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{}`: a trigger name has at most 63 lowercase letters, digits and hyphens, starts with a letter and does not end with a hyphen",
            id.chars().take(100).collect::<String>()
        ))
    }
}

/// A path on the service at `service_url` that a URL keeps as written: what the service
/// receives is what was asked for.
pub(crate) fn check_run_path(service_url: &str, run_path: &str) -> Result<(), String> {
    let kept = url::Url::parse(&format!("{service_url}{run_path}"))
        .is_ok_and(|u| u.path() == run_path && u.query().is_none() && u.fragment().is_none());
    if run_path.starts_with('/') && kept {
        Ok(())
    } else {
        Err(format!(
            "`{}` is not a plain path: it starts with /, has no query or fragment, and nothing a URL would rewrite (spaces, `..`, backslashes, non-ASCII)",
            run_path.chars().take(100).collect::<String>()
        ))
    }
}

/// The name of trigger `trigger`'s subscription in `location`, as Eventarc names it.
pub(crate) fn subscription_name(project: &str, location: &str, trigger: &str) -> String {
    format!("projects/{project}/subscriptions/eventarc-{location}-{trigger}-sub-000")
}

/// Trigger `trigger`'s push subscription on `topic`: to `endpoint` (the service's URL and
/// path) as CloudEvents, with `email`'s ID token for `audience` (the service's URL: an
/// audience with a path is refused, SPEC §12), labelled with the trigger and its location.
pub(crate) fn subscription(
    project: &str,
    location: &str,
    trigger: &str,
    topic: &str,
    endpoint: &str,
    audience: &str,
    email: &str,
) -> pb::Subscription {
    let mode: String =
        url::form_urlencoded::byte_serialize(format!("CUSTOM_PUBSUB_{topic}").as_bytes()).collect();
    let seconds = |s: i64| prost_types::Duration {
        seconds: s,
        nanos: 0,
    };
    pb::Subscription {
        name: subscription_name(project, location, trigger),
        topic: topic.to_owned(),
        push_config: Some(pb::PushConfig {
            push_endpoint: format!("{endpoint}?{CLOUDEVENTS_MODE}={mode}"),
            authentication_method: Some(AuthenticationMethod::OidcToken(OidcToken {
                service_account_email: email.to_owned(),
                audience: audience.to_owned(),
            })),
            ..pb::PushConfig::default()
        }),
        ack_deadline_seconds: 10,
        labels: [
            (TRIGGER_LABEL.to_owned(), trigger.to_owned()),
            (LOCATION_LABEL.to_owned(), location.to_owned()),
        ]
        .into(),
        retry_policy: Some(pb::RetryPolicy {
            minimum_backoff: Some(seconds(10)),
            maximum_backoff: Some(seconds(600)),
        }),
        message_retention_duration: Some(seconds(86_400)),
        ..pb::Subscription::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;
    use std::path::Path;

    const BASE: &str = r#"
project: {id: demo-project, number: "123456789012", region: us-central1}
service_accounts: [{email: events@demo-project.iam.gserviceaccount.com}]
services:
  - name: receiver
    upstream: builtin:echo
pubsub:
  topics: [{name: orders}]
"#;

    fn with(trigger: &str) -> String {
        format!("{BASE}eventarc:\n  triggers:\n    - {trigger}\n")
    }

    const GOOD: &str = "{name: on-order, topic: orders, destination_run_service: receiver, destination_run_path: /events, service_account: events@demo-project.iam.gserviceaccount.com}";

    /// A trigger is a push subscription on its topic, to the service's URL and path, with
    /// the account's token for the service's URL, labelled with the trigger's name.
    #[test]
    fn a_trigger_is_a_labelled_push_subscription_on_its_topic() {
        let config = parse(&with(GOOD), Path::new("services.yaml")).unwrap();
        let s = &config.pubsub.subscriptions[0];
        assert_eq!(
            s.name,
            "projects/demo-project/subscriptions/eventarc-us-central1-on-order-sub-000"
        );
        assert_eq!(s.topic, "projects/demo-project/topics/orders");
        assert_eq!(s.labels[TRIGGER_LABEL], "on-order");
        let push = s.push_config.as_ref().unwrap();
        let url = "https://receiver-123456789012.us-central1.run.app";
        assert_eq!(
            push.push_endpoint,
            format!(
                "{url}/events?__GCP_CloudEventsMode=CUSTOM_PUBSUB_projects%2Fdemo-project%2Ftopics%2Forders"
            )
        );
        assert_eq!(
            s.retry_policy
                .as_ref()
                .and_then(|r| r.maximum_backoff)
                .map(|d| d.seconds),
            Some(600)
        );
        let Some(AuthenticationMethod::OidcToken(oidc)) = &push.authentication_method else {
            panic!("no token: {push:?}");
        };
        assert_eq!(
            (oidc.service_account_email.as_str(), oidc.audience.as_str()),
            ("events@demo-project.iam.gserviceaccount.com", url)
        );
    }

    #[test]
    fn each_mistake_names_its_field() {
        let cases = [
            (
                GOOD.replace("topic: orders", "topic: order"),
                "eventarc.triggers[0].topic",
                "did you mean `orders`",
            ),
            (
                GOOD.replace("service: receiver", "service: reciever"),
                "eventarc.triggers[0].destination_run_service",
                "did you mean `receiver`",
            ),
            (
                GOOD.replace("account: events@", "account: nobody@"),
                "eventarc.triggers[0].service_account",
                "not declared",
            ),
            (
                GOOD.replace("/events", "events?x=1"),
                "eventarc.triggers[0].destination_run_path",
                "not a plain path",
            ),
            (
                GOOD.replace("/events", "/a/../events"),
                "eventarc.triggers[0].destination_run_path",
                "not a plain path",
            ),
            (
                GOOD.replace("on-order", "On.Order"),
                "eventarc.triggers[0].name",
                "lowercase letters",
            ),
            (
                GOOD.replace(
                    "{name: on-order,",
                    "{name: on-order, event_type: google.cloud.storage.object.v1.finalized,",
                ),
                "eventarc.triggers[0].event_type",
                "Pub/Sub trigger only",
            ),
        ];
        for (trigger, field, reason) in cases {
            let text = with(&trigger);
            let e = parse(&text, Path::new("services.yaml"))
                .expect_err(&text)
                .to_string();
            assert!(e.contains(field) && e.contains(reason), "{e}");
        }
        let twice = format!("{}    - {GOOD}\n", with(GOOD));
        let e = parse(&twice, Path::new("services.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("declared twice"), "{e}");
    }
}
