//! `frontdoor fold` for the Eventarc triggers the API made: each is a push subscription
//! (`config::eventarc`), written back as the entry of `eventarc.triggers` that declares it,
//! and kept only if the file then resolves it to exactly the subscription the API holds.

use std::collections::BTreeMap;
use std::path::Path;

use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use pb::push_config::AuthenticationMethod;
use yaml_edit::YamlValue;

use super::pubsub::{id, trial};
use crate::config::layer::Layer;
use crate::config::parse_layered;

/// `text` with trigger `trigger` (whose subscription is `subscription`) declared under
/// `eventarc.triggers`; or why it cannot be.
pub(super) fn fold_trigger(
    text: &str,
    file: &Path,
    rest: &Layer,
    subscription: &pb::Subscription,
    trigger: &str,
) -> Result<String, String> {
    let now = parse_layered(text, file, rest)
        .map_err(|e| format!("the file is refused: {}", e.for_callers()))?;
    if !now
        .pubsub
        .topics
        .iter()
        .any(|t| t.name == subscription.topic)
    {
        return Err(format!(
            "its topic {} is not in the file; a topic Eventarc made for a trigger carries a label the file has no field for, so give the trigger a topic of the file's (--transport-topic)",
            subscription.topic
        ));
    }
    let push = subscription
        .push_config
        .as_ref()
        .ok_or_else(|| "it has no push endpoint".to_owned())?;
    let endpoint = url::Url::parse(&push.push_endpoint)
        .map_err(|e| format!("its endpoint cannot be read: {e}"))?;
    let origin = endpoint.origin().ascii_serialization();
    let service = now
        .services
        .iter()
        .find(|s| s.url == origin)
        .ok_or_else(|| format!("its endpoint {origin} is no service of the file's"))?;
    let Some(AuthenticationMethod::OidcToken(oidc)) = &push.authentication_method else {
        return Err("it sends no ID token".to_owned());
    };
    let mut entry = BTreeMap::new();
    entry.insert("name".to_owned(), YamlValue::from(trigger));
    entry.insert("topic".to_owned(), YamlValue::from(id(&subscription.topic)));
    entry.insert(
        "destination_run_service".to_owned(),
        YamlValue::from(service.name.as_str()),
    );
    if endpoint.path() != "/" {
        entry.insert(
            "destination_run_path".to_owned(),
            YamlValue::from(endpoint.path()),
        );
    }
    entry.insert(
        "service_account".to_owned(),
        YamlValue::from(oidc.service_account_email.as_str()),
    );
    let (new, got) = trial(text, file, rest, |root| {
        let entry = YamlValue::Mapping(entry);
        // Made whole when missing, so that it is written in block style.
        let triggers = |entry| YamlValue::Sequence(vec![entry]);
        match root.get_mapping("eventarc") {
            None => root.set(
                "eventarc",
                YamlValue::Mapping([("triggers".to_owned(), triggers(entry))].into()),
            ),
            Some(eventarc) => match eventarc.get_sequence("triggers") {
                Some(seq) => seq.push(entry),
                None => eventarc.set("triggers", triggers(entry)),
            },
        }
    })?;
    if got.pubsub.subscriptions.contains(subscription) {
        return Ok(new);
    }
    let location = subscription
        .labels
        .get(crate::config::eventarc::LOCATION_LABEL)
        .map_or("", String::as_str);
    if location != now.project.region {
        return Err(format!(
            "it is in location {location}, and the file's triggers are in the project's region, {}",
            now.project.region
        ));
    }
    if subscription
        .labels
        .keys()
        .any(|k| !k.starts_with("goog-eventarc-"))
    {
        return Err("it has labels, which eventarc.triggers has no field for".to_owned());
    }
    Err("the file would resolve it differently".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    const FILE: &str = r#"# The team's file.
project: {id: demo-project, number: "123456789012", region: us-central1}
service_accounts:
  - email: events@demo-project.iam.gserviceaccount.com
services:
  - name: receiver
    upstream: builtin:echo
pubsub:
  topics: [{name: orders}]
"#;
    const URL: &str = "https://receiver-123456789012.us-central1.run.app";

    fn made(location: &str, topic: &str) -> pb::Subscription {
        crate::config::eventarc::subscription(
            "demo-project",
            location,
            "on-order",
            &format!("projects/demo-project/topics/{topic}"),
            &format!("{URL}/events"),
            URL,
            "events@demo-project.iam.gserviceaccount.com",
        )
    }

    #[test]
    fn a_trigger_the_api_made_is_declared_as_it_is() {
        let path = Path::new("services.yaml");
        let subscription = made("us-central1", "orders");
        let new = fold_trigger(FILE, path, &Layer::default(), &subscription, "on-order").unwrap();
        assert!(
            new.ends_with("eventarc:\n  triggers:\n    - destination_run_path: /events\n      destination_run_service: receiver\n      name: on-order\n      service_account: events@demo-project.iam.gserviceaccount.com\n      topic: orders\n"),
            "{new}"
        );
        let got = parse(&new, path).unwrap();
        assert!(got.pubsub.subscriptions.contains(&subscription));
    }

    #[test]
    fn what_the_file_cannot_say_is_kept_with_why() {
        let path = Path::new("services.yaml");
        let rest = Layer::default();
        let elsewhere = made("europe-west1", "orders");
        let why = fold_trigger(FILE, path, &rest, &elsewhere, "on-order").unwrap_err();
        assert!(why.contains("in location europe-west1"), "{why}");
        let mut labelled = made("us-central1", "orders");
        labelled.labels.insert("team".into(), "shop".into());
        let why = fold_trigger(FILE, path, &rest, &labelled, "on-order").unwrap_err();
        assert!(why.contains("labels"), "{why}");
        let own_topic = made("us-central1", "eventarc-us-central1-on-order-123");
        let why = fold_trigger(FILE, path, &rest, &own_topic, "on-order").unwrap_err();
        assert!(why.contains("--transport-topic"), "{why}");
    }
}
