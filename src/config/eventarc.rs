//! `eventarc:` in services.yaml: triggers for `google.cloud.pubsub.topic.v1.messagePublished`
//! on a declared topic, each delivering to a Cloud Run service (and path) as a service
//! account. As on Google, a trigger with a Pub/Sub transport is a push subscription on its
//! topic that Eventarc manages (named `eventarc-REGION-TRIGGER-sub-000` here); the push
//! loop sends each message as a CloudEvent in binary content mode (`managed`), through the
//! front door with the account's ID token. Other event sources are not emulated.

use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use pb::push_config::{AuthenticationMethod, OidcToken};
use serde::Deserialize;

use super::pubsub::Pubsub;
use super::{At, ConfigError, Project, Service, ServiceAccount};

/// The label Eventarc's subscriptions carry here, whose value is the trigger's name: how
/// the push loop knows to send a CloudEvent.
pub const TRIGGER_LABEL: &str = "goog-eventarc-trigger";
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
        super::pubsub::check_id(&t.name, "trigger").map_err(|r| at.err(path("name"), r))?;
        if t.name.len() > 63 {
            return Err(at.err(path("name"), "a trigger name has at most 63 characters"));
        }
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
        if !run_path.starts_with('/') || run_path.contains(['?', '#', ' ']) {
            return Err(at.err(
                path("destination_run_path"),
                format!("`{run_path}` is not a path: it starts with / and has no query"),
            ));
        }
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
        let name = format!(
            "projects/{}/subscriptions/eventarc-{}-{}-sub-000",
            project.id, project.region, t.name
        );
        if pubsub.subscriptions.iter().any(|s| s.name == name) {
            return Err(at.err(
                path("name"),
                format!(
                    "trigger `{}`'s subscription {name} is declared under pubsub too",
                    t.name
                ),
            ));
        }
        pubsub.subscriptions.push(pb::Subscription {
            name,
            topic,
            push_config: Some(pb::PushConfig {
                push_endpoint: format!("{}{run_path}", service.url),
                authentication_method: Some(AuthenticationMethod::OidcToken(OidcToken {
                    service_account_email: account.email.clone(),
                    // The service's URL: an audience with a path is refused (SPEC §12).
                    audience: service.url.clone(),
                })),
                ..pb::PushConfig::default()
            }),
            ack_deadline_seconds: 10,
            labels: [(TRIGGER_LABEL.to_owned(), t.name.clone())].into(),
            ..pb::Subscription::default()
        });
    }
    Ok(pubsub)
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
        assert_eq!(push.push_endpoint, format!("{url}/events"));
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
                "not a path",
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
