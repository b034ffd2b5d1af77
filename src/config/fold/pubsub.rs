//! `frontdoor fold` for Pub/Sub: the topics the API made and the subscriptions it made or
//! changed, written into `pubsub:` in services.yaml one at a time. Each is kept only if the
//! file then resolves it to exactly what the API holds; what the file cannot say (labels,
//! a message retention, another project's resource) stays in the layer, with the reason.

use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use pb::push_config::{AuthenticationMethod, Wrapper};
use yaml_edit::{Document, Mapping, YamlValue};

use crate::config::layer::{Layer, PubsubChanges};
use crate::config::{Config, parse_layered};

/// What Pub/Sub's API made, read back from the layer's JSON by the API's own reader (the
/// command line calls `google::pubsub::persist::decode`), and by name what could not be.
#[derive(Debug, Clone, Default)]
pub struct Made {
    pub topics: Vec<pb::Topic>,
    pub subscriptions: Vec<pb::Subscription>,
    /// For a declared subscription the API changed, the declaration it changed.
    pub changed_from: BTreeMap<String, pb::Subscription>,
    pub unreadable: BTreeMap<String, String>,
}

/// The file's new text, what stays in the layer, a line per resource, and what was
/// folded (for the final check).
pub(super) struct Folded {
    pub(super) text: String,
    pub(super) kept: PubsubChanges,
    pub(super) report: Vec<String>,
    pub(super) topics: Vec<pb::Topic>,
    pub(super) subscriptions: Vec<pb::Subscription>,
}

/// The subscription fields `pubsub:` has, in the order they are written.
const FIELDS: [&str; 11] = [
    "push_endpoint",
    "push_service_account",
    "push_audience",
    "push_no_wrapper",
    "push_write_metadata",
    "ack_deadline_seconds",
    "enable_message_ordering",
    "dead_letter_topic",
    "max_delivery_attempts",
    "min_retry_delay",
    "max_retry_delay",
];

/// Folds `made` (read from `layer`) into `text`; `rest` is the rest of the layer, which
/// the file is resolved with.
pub(super) fn fold(
    mut text: String,
    file: &Path,
    rest: &Layer,
    want: &crate::config::pubsub::Pubsub,
    project: &str,
    layer: &PubsubChanges,
    made: &Made,
) -> Folded {
    let mut kept = PubsubChanges::default();
    let mut report = Vec::new();
    let mut topics = Vec::new();
    let mut subscriptions = Vec::new();
    let file_name = super::super::layer::FILE;
    // The file has no field for a topic's or subscription's policy.
    kept.policies = layer.policies.clone();
    for name in layer.policies.keys() {
        report.push(format!(
            "Pub/Sub {name}: IAM policy kept in {file_name} (services.yaml has no field for a topic's or subscription's policy)"
        ));
    }
    for (name, why) in &made.unreadable {
        report.push(format!(
            "Pub/Sub {name}: kept in {file_name} (it cannot be read back: {why})"
        ));
    }
    // What cannot be read back stays as it is.
    let unreadable = |map: &BTreeMap<String, serde_json::Value>| {
        map.iter()
            .filter(|(n, _)| made.unreadable.contains_key(*n))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect::<Vec<_>>()
    };
    kept.topics.extend(unreadable(&layer.topics));
    kept.subscriptions.extend(unreadable(&layer.subscriptions));
    kept.changed_from.extend(unreadable(&layer.changed_from));

    let ours = |name: &str| {
        let (p, _) = name
            .strip_prefix("projects/")
            .and_then(|n| n.split_once('/'))
            .unwrap_or(("", ""));
        if p == project {
            Ok(())
        } else {
            Err(format!(
                "it is in project {p}, and the file declares project {project}'s only"
            ))
        }
    };
    for topic in &made.topics {
        let id = id(&topic.name);
        let outcome = ours(&topic.name)
            .and_then(|()| {
                trial(&text, file, rest, |root| {
                    let entry =
                        YamlValue::Mapping([("name".to_owned(), YamlValue::from(id))].into());
                    // Made whole when missing: an empty mapping would be written `{}`, in flow
                    // style, and so would everything added to it.
                    let topics = |entry| YamlValue::Sequence(vec![entry]);
                    match root.get_mapping("pubsub") {
                        None => root.set(
                            "pubsub",
                            YamlValue::Mapping([("topics".to_owned(), topics(entry))].into()),
                        ),
                        Some(pubsub) => match pubsub.get_sequence("topics") {
                            Some(seq) => seq.push(entry),
                            None => pubsub.set("topics", topics(entry)),
                        },
                    }
                })
            })
            .and_then(|(new, got)| {
                if got.pubsub.topics.contains(topic) {
                    Ok(new)
                } else {
                    Err(unsaid_topic(topic))
                }
            });
        match outcome {
            Ok(new) => {
                text = new;
                report.push(format!("Pub/Sub topic {}: → pubsub.topics", topic.name));
                topics.push(topic.clone());
            }
            Err(why) => {
                if let Some(v) = layer.topics.get(&topic.name) {
                    kept.topics.insert(topic.name.clone(), v.clone());
                }
                report.push(format!(
                    "Pub/Sub topic {}: kept in {file_name} ({why})",
                    topic.name
                ));
            }
        }
    }

    // What stays in the layer of a subscription that is not folded.
    let keep = |kept: &mut PubsubChanges, name: &str| {
        if let Some(v) = layer.subscriptions.get(name) {
            kept.subscriptions.insert(name.to_owned(), v.clone());
        }
        if let Some(v) = layer.changed_from.get(name) {
            kept.changed_from.insert(name.to_owned(), v.clone());
        }
    };
    for subscription in &made.subscriptions {
        // A trigger Eventarc's API made is declared under `eventarc.triggers`.
        if let Some(trigger) = subscription
            .labels
            .get(crate::config::eventarc::TRIGGER_LABEL)
            .filter(|_| !made.changed_from.contains_key(&subscription.name))
        {
            let outcome = ours(&subscription.name).and_then(|()| {
                super::eventarc::fold_trigger(&text, file, rest, subscription, trigger)
            });
            match outcome {
                Ok(new) => {
                    text = new;
                    report.push(format!("Eventarc trigger {trigger}: → eventarc.triggers"));
                    subscriptions.push(subscription.clone());
                }
                Err(why) => {
                    keep(&mut kept, &subscription.name);
                    report.push(format!(
                        "Eventarc trigger {trigger} (subscription {}): kept in {file_name} ({why})",
                        subscription.name
                    ));
                }
            }
            continue;
        }
        let topic_id = id(&subscription.topic);
        let id = id(&subscription.name);
        // A change the API made to a declaration the file has changed since is stale: the
        // next start drops it, and it is not written over the file's.
        let stale = made
            .changed_from
            .get(&subscription.name)
            .is_some_and(|from| !want.subscriptions.iter().any(|s| s == from));
        let trigger = subscription
            .labels
            .get(crate::config::eventarc::TRIGGER_LABEL)
            .filter(|_| made.changed_from.contains_key(&subscription.name));
        let outcome = ours(&subscription.name)
            .and_then(|()| match trigger {
                Some(trigger) => Err(format!(
                    "it is Eventarc trigger {trigger}'s subscription, which eventarc.triggers makes: the file has no place for a change to it"
                )),
                None => Ok(()),
            })
            .and_then(|()| {
                if stale {
                    Err("the file declares it differently since the API changed it; the next start keeps the file's".to_owned())
                } else {
                    Ok(())
                }
            })
            .and_then(|()| {
                trial(&text, file, rest, |root| {
                    let Some(entry) = root
                        .get_mapping("pubsub")
                        .and_then(|pubsub| find(&pubsub, "topics", topic_id))
                    else {
                        return;
                    };
                    let declared = find(&entry, "subscriptions", id);
                    let target = match declared {
                        Some(m) => {
                            for field in FIELDS {
                                m.remove(field);
                            }
                            m
                        }
                        None => {
                            let mut new = BTreeMap::new();
                            new.insert("name".to_owned(), YamlValue::from(id));
                            let new = YamlValue::Mapping(new);
                            match entry.get_sequence("subscriptions") {
                                Some(seq) => seq.push(new),
                                None => entry.set("subscriptions", YamlValue::Sequence(vec![new])),
                            }
                            match find(&entry, "subscriptions", id) {
                                Some(m) => m,
                                None => return,
                            }
                        }
                    };
                    for (key, value) in fields(subscription) {
                        target.set(key, value);
                    }
                })
            })
            .and_then(|(new, got)| {
                if got.pubsub.subscriptions.contains(subscription) {
                    Ok(new)
                } else if !got
                    .pubsub
                    .topics
                    .iter()
                    .any(|t| t.name == subscription.topic)
                {
                    Err(format!(
                        "its topic {} is not in the file",
                        subscription.topic
                    ))
                } else {
                    Err(unsaid_subscription(subscription))
                }
            });
        match outcome {
            Ok(new) => {
                text = new;
                report.push(format!(
                    "Pub/Sub subscription {}: → pubsub.topics[name: {topic_id}].subscriptions",
                    subscription.name
                ));
                subscriptions.push(subscription.clone());
            }
            Err(why) => {
                keep(&mut kept, &subscription.name);
                report.push(format!(
                    "Pub/Sub subscription {}: kept in {file_name} ({why})",
                    subscription.name
                ));
            }
        }
    }
    Folded {
        text,
        kept,
        report,
        topics,
        subscriptions,
    }
}

/// A resource's id: the last part of its name.
pub(super) fn id(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// `text` edited by `edit`, and the configuration it resolves to with `rest`; or why not.
pub(super) fn trial(
    text: &str,
    file: &Path,
    rest: &Layer,
    edit: impl FnOnce(&Mapping),
) -> Result<(String, Config), String> {
    let doc = Document::from_str(text).map_err(|e| format!("cannot edit the file: {e}"))?;
    let root = doc
        .as_mapping()
        .ok_or_else(|| "the file is not a mapping".to_owned())?;
    edit(&root);
    let new = doc.to_string();
    let got = parse_layered(&new, file, rest)
        .map_err(|e| format!("the file would refuse it: {}", e.for_callers()))?;
    Ok((new, got))
}

/// The item of the sequence `list` in `parent` whose `name` is `name`.
fn find(parent: &Mapping, list: &str, name: &str) -> Option<Mapping> {
    parent.get_sequence(list)?.values().find_map(|item| {
        let m = item.as_mapping()?.clone();
        let named = m.get("name")?.as_scalar()?.as_string() == name;
        named.then_some(m)
    })
}

/// The subscription's settings as `pubsub:` names them, in [`FIELDS`] order; what the file
/// has no field for is left out (and the trial then finds the difference).
fn fields(s: &pb::Subscription) -> Vec<(&'static str, YamlValue)> {
    let mut out = Vec::new();
    if let Some(push) = &s.push_config {
        out.push((
            "push_endpoint",
            YamlValue::from(push.push_endpoint.as_str()),
        ));
        if let Some(AuthenticationMethod::OidcToken(oidc)) = &push.authentication_method {
            out.push((
                "push_service_account",
                YamlValue::from(oidc.service_account_email.as_str()),
            ));
            if !oidc.audience.is_empty() {
                out.push(("push_audience", YamlValue::from(oidc.audience.as_str())));
            }
        }
        if let Some(Wrapper::NoWrapper(n)) = &push.wrapper {
            out.push(("push_no_wrapper", YamlValue::from(true)));
            if n.write_metadata {
                out.push(("push_write_metadata", YamlValue::from(true)));
            }
        }
    }
    if s.ack_deadline_seconds != 10 {
        out.push((
            "ack_deadline_seconds",
            YamlValue::from(i64::from(s.ack_deadline_seconds)),
        ));
    }
    if s.enable_message_ordering {
        out.push(("enable_message_ordering", YamlValue::from(true)));
    }
    if let Some(dead) = &s.dead_letter_policy {
        out.push((
            "dead_letter_topic",
            YamlValue::from(id(&dead.dead_letter_topic)),
        ));
        out.push((
            "max_delivery_attempts",
            YamlValue::from(i64::from(dead.max_delivery_attempts)),
        ));
    }
    if let Some(retry) = &s.retry_policy {
        let text = |d: prost_types::Duration| {
            let d = std::time::Duration::new(
                u64::try_from(d.seconds).unwrap_or(0),
                u32::try_from(d.nanos).unwrap_or(0),
            );
            YamlValue::from(humantime::format_duration(d).to_string().as_str())
        };
        if let Some(d) = retry.minimum_backoff {
            out.push(("min_retry_delay", text(d)));
        }
        if let Some(d) = retry.maximum_backoff {
            out.push(("max_retry_delay", text(d)));
        }
    }
    out
}

/// Why a topic the API made would not come back the same from the file.
fn unsaid_topic(t: &pb::Topic) -> String {
    let mut said = Vec::new();
    if !t.labels.is_empty() {
        said.push("labels");
    }
    if t.message_retention_duration.is_some() {
        said.push("a message retention");
    }
    unsaid(&said)
}

/// Why a subscription would not come back the same from the file.
fn unsaid_subscription(s: &pb::Subscription) -> String {
    let mut said = Vec::new();
    if !s.labels.is_empty() {
        said.push("labels");
    }
    if s.message_retention_duration.is_some() {
        said.push("a message retention");
    }
    if s.retain_acked_messages {
        said.push("retain_acked_messages");
    }
    if s.expiration_policy.is_some() {
        said.push("an expiration policy");
    }
    if s.detached {
        said.push("detached");
    }
    if s.push_config
        .as_ref()
        .is_some_and(|p| !p.attributes.is_empty())
    {
        said.push("push attributes");
    }
    if s.retry_policy
        .as_ref()
        .is_some_and(|r| r.minimum_backoff.is_none() || r.maximum_backoff.is_none())
    {
        said.push("a retry policy with one backoff of two");
    }
    unsaid(&said)
}

fn unsaid(said: &[&str]) -> String {
    if said.is_empty() {
        "the file would resolve it differently".to_owned()
    } else {
        format!(
            "it has {}, which services.yaml has no field for",
            said.join(", ")
        )
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
pubsub:
  topics:
    # Orders, as the shop publishes them.
    - name: orders
      subscriptions:
        - name: orders-pull
"#;
    const URL: &str = "https://user-profiles-123456789012.us-central1.run.app";

    fn topic(name: &str) -> pb::Topic {
        pb::Topic {
            name: name.into(),
            ..pb::Topic::default()
        }
    }

    /// What the API made and can be said in the file lands there, comments kept; the rest
    /// stays in the layer with its reason; the folded file declares exactly what the API
    /// held.
    #[test]
    fn what_the_file_can_say_is_folded_and_the_rest_kept_with_why() {
        let path = Path::new("services.yaml");
        let push = pb::Subscription {
            name: "projects/demo-project/subscriptions/signups-push".into(),
            topic: "projects/demo-project/topics/signups".into(),
            ack_deadline_seconds: 20,
            push_config: Some(pb::PushConfig {
                push_endpoint: format!("{URL}/events"),
                authentication_method: Some(AuthenticationMethod::OidcToken(
                    pb::push_config::OidcToken {
                        service_account_email: "login@demo-project.iam.gserviceaccount.com".into(),
                        audience: URL.into(),
                    },
                )),
                ..pb::PushConfig::default()
            }),
            retry_policy: Some(pb::RetryPolicy {
                minimum_backoff: Some(prost_types::Duration {
                    seconds: 1,
                    nanos: 500_000_000,
                }),
                maximum_backoff: Some(prost_types::Duration {
                    seconds: 60,
                    nanos: 0,
                }),
            }),
            ..pb::Subscription::default()
        };
        // The API changed a declared subscription.
        let changed = pb::Subscription {
            name: "projects/demo-project/subscriptions/orders-pull".into(),
            topic: "projects/demo-project/topics/orders".into(),
            ack_deadline_seconds: 60,
            enable_message_ordering: true,
            ..pb::Subscription::default()
        };
        let mut labelled = topic("projects/demo-project/topics/labelled");
        labelled.labels.insert("team".into(), "shop".into());
        let made = Made {
            topics: vec![
                topic("projects/demo-project/topics/signups"),
                labelled,
                topic("projects/elsewhere/topics/theirs"),
            ],
            subscriptions: vec![push.clone(), changed.clone()],
            changed_from: [(
                changed.name.clone(),
                parse(FILE, path).unwrap().pubsub.subscriptions[0].clone(),
            )]
            .into(),
            unreadable: [(
                "projects/demo-project/topics/bad".to_owned(),
                "no".to_owned(),
            )]
            .into(),
        };
        let mut layer = PubsubChanges::default();
        for name in [
            "projects/demo-project/topics/signups",
            "projects/demo-project/topics/labelled",
            "projects/elsewhere/topics/theirs",
            "projects/demo-project/topics/bad",
        ] {
            layer.topics.insert(name.into(), serde_json::json!({}));
        }
        let folded = fold(
            FILE.to_owned(),
            path,
            &Layer::default(),
            &parse(FILE, path).unwrap().pubsub,
            "demo-project",
            &layer,
            &made,
        );
        assert!(
            folded
                .text
                .contains("    # Orders, as the shop publishes them.\n"),
            "{}",
            folded.text
        );
        let got = parse(&folded.text, path).unwrap();
        assert!(got.pubsub.subscriptions.contains(&push), "{}", folded.text);
        assert!(
            got.pubsub.subscriptions.contains(&changed),
            "{}",
            folded.text
        );
        assert!(
            got.pubsub
                .topics
                .contains(&topic("projects/demo-project/topics/signups"))
        );
        let kept: Vec<&String> = folded.kept.topics.keys().collect();
        assert_eq!(
            kept,
            [
                "projects/demo-project/topics/bad",
                "projects/demo-project/topics/labelled",
                "projects/elsewhere/topics/theirs",
            ]
        );
        let report = folded.report.join("\n");
        assert!(
            report.contains("labels, which services.yaml has no field for"),
            "{report}"
        );
        assert!(report.contains("it is in project elsewhere"), "{report}");
        assert!(report.contains("cannot be read back: no"), "{report}");
        assert_eq!(folded.subscriptions.len(), 2);
    }

    /// A file with no `pubsub:` gains one, in block style.
    #[test]
    fn a_file_without_pubsub_gains_the_section() {
        let path = Path::new("services.yaml");
        let text = FILE.split("pubsub:").next().unwrap().to_owned();
        let made = Made {
            topics: vec![topic("projects/demo-project/topics/signups")],
            subscriptions: vec![pb::Subscription {
                name: "projects/demo-project/subscriptions/signups-pull".into(),
                topic: "projects/demo-project/topics/signups".into(),
                ack_deadline_seconds: 10,
                ..pb::Subscription::default()
            }],
            changed_from: BTreeMap::new(),
            unreadable: BTreeMap::new(),
        };
        let declared = parse(&text, path).unwrap().pubsub;
        let folded = fold(
            text,
            path,
            &Layer::default(),
            &declared,
            "demo-project",
            &PubsubChanges::default(),
            &made,
        );
        assert!(
            folded.report.iter().all(|l| l.contains('→')),
            "{:?}",
            folded.report
        );
        assert!(
            folded.text.ends_with("pubsub:\n  topics:\n    - name: signups\n      subscriptions:\n        - name: signups-pull\n"),
            "{}",
            folded.text
        );
        let got = parse(&folded.text, path).unwrap();
        assert_eq!(got.pubsub.subscriptions, made.subscriptions);
    }
}
