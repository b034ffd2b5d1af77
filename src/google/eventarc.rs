//! Eventarc's API (`eventarc.googleapis.com`, v1, REST: what `gcloud eventarc triggers`
//! calls), for the one kind of trigger frontdoor emulates: Pub/Sub's
//! `messagePublished` to a Cloud Run service, as a service account. A trigger made here is
//! what one declared under `eventarc.triggers` is, a push subscription Eventarc manages
//! (`crate::config::eventarc`), made through the broker as Pub/Sub's API makes one, so
//! that it is delivered, persisted and listed as any other; the trigger is read back from
//! it. A trigger without a transport topic gets one of its own, deleted with it, as Google
//! does. Changing a trigger's methods answer a long-running operation that is done at
//! once, which gcloud then reads (`operations.get`). Who may call is decided as for
//! Pub/Sub (`emulated`); gRPC is not served (gcloud speaks REST).

mod json;
mod rest;

use std::time::SystemTime;

use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use serde_json::Value;

pub(crate) use rest::routes as rest_routes;

use super::emulated::{Api, Checked, Who};
use super::errors::ApiError;
use super::pubsub::names;
use crate::broker::{self, Page};
use crate::config::eventarc::{self as declared, MESSAGE_PUBLISHED, TRIGGER_LABEL};
use crate::decisions::Explanation;
use crate::iam;
use crate::state::AppState;
use crate::triggers::MAX_OPERATIONS;
use json::{TriggerIn, operation};

/// Whether a request path is one of Eventarc's resources.
pub(crate) fn is_path(path: &str) -> bool {
    path.starts_with("/v1/projects/")
        && matches!(path.split('/').nth(6), Some("triggers" | "operations"))
}

fn shown(text: &str) -> String {
    text.chars().take(100).collect()
}

/// `projects/P/locations/L`: its project and location, checked.
fn parse_parent(parent: &str) -> Result<(&str, &str), ApiError> {
    let invalid = || {
        ApiError::InvalidArgument(format!(
            "Invalid resource field value in the request: `{}` is not projects/PROJECT/locations/LOCATION",
            shown(parent)
        ))
    };
    let mut parts = parent.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("projects"), Some(project), Some("locations"), Some(location), None)
            if !project.is_empty()
                && (location == "global" || crate::config::region_is_valid(location)) =>
        {
            Ok((project, location))
        }
        _ => Err(invalid()),
    }
}

/// `projects/P/locations/L/KIND/ID`: its parent and id, checked.
fn parse_name<'n>(name: &'n str, kind: &str) -> Result<(&'n str, &'n str), ApiError> {
    let invalid = || {
        ApiError::InvalidArgument(format!(
            "Invalid resource field value in the request: `{}` is not projects/PROJECT/locations/LOCATION/{kind}/ID",
            shown(name)
        ))
    };
    let (parent, id) = name.rsplit_once(&format!("/{kind}/")).ok_or_else(invalid)?;
    parse_parent(parent)?;
    if id.is_empty() || id.contains('/') {
        return Err(invalid());
    }
    Ok((parent, id))
}

/// One call of the API.
pub(crate) struct Call(Checked);

impl Api for Call {
    fn new(state: AppState, who: Who) -> Call {
        Call(Checked::new(state, who))
    }

    fn finish(&mut self, failed: bool) -> Explanation {
        self.0.finish(failed)
    }
}

impl Call {
    fn allow(&mut self, permission: &'static str, name: &str) -> Result<(), ApiError> {
        self.0.allow_in_project(permission, name, "Eventarc's")
    }

    /// The subscription of trigger `name`, if there is one.
    fn subscription(&self, name: &str) -> Result<pb::Subscription, ApiError> {
        let (parent, id) = parse_name(name, "triggers")?;
        let (project, location) = parse_parent(parent)?;
        let not_found = || ApiError::NotFound(format!("Resource '{}' was not found", shown(name)));
        let made = self
            .0
            .state
            .pubsub()
            .subscription(&declared::subscription_name(project, location, id))
            .map_err(|_| not_found())?;
        if made.labels.get(TRIGGER_LABEL).map(String::as_str) != Some(id) {
            return Err(not_found());
        }
        Ok(made)
    }

    /// The trigger `subscription` is, if it is one's.
    fn trigger_out(&self, subscription: &pb::Subscription) -> Option<Value> {
        let created = self.0.state.triggers().created(&subscription.name);
        json::trigger_out(subscription, self.0.state.config(), created)
    }

    /// `operation` kept for `operations.get`, under a new name in `parent`.
    fn operation(&self, parent: &str, verb: &str, trigger: &Value) -> Value {
        let name = format!(
            "{parent}/operations/operation-{}-{:016x}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
            fastrand::u64(..)
        );
        let op = operation(&name, verb, trigger);
        self.0.state.triggers().keep_operation(name, op.clone());
        op
    }

    /// `CreateTrigger`: checks what the trigger asks for, makes its subscription (and its
    /// topic, when it names none), and answers the operation.
    pub(crate) fn create_trigger(
        &mut self,
        parent: &str,
        id: &str,
        trigger: TriggerIn,
    ) -> Result<Value, ApiError> {
        let (project, location) = parse_parent(parent)?;
        if id.is_empty() {
            return Err(ApiError::InvalidArgument(
                "triggerId is required: the trigger's name (gcloud gives it)".to_owned(),
            ));
        }
        declared::check_trigger_id(id).map_err(ApiError::InvalidArgument)?;
        let name = format!("{parent}/triggers/{id}");
        self.allow(iam::TRIGGERS_CREATE, &name)?;
        let config = self.0.state.config().clone();
        check_filters(&trigger)?;
        let run = match trigger.destination {
            Some(declared_destination) => match declared_destination.cloud_run {
                Some(run) => run,
                None => return Err(other_destination(declared_destination.other.keys())),
            },
            None => {
                return Err(ApiError::InvalidArgument(
                    "The trigger has no destination: frontdoor delivers to a Cloud Run service (--destination-run-service)".to_owned(),
                ));
            }
        };
        // proto3's empty string is unset: the defaults, as Google takes them.
        let region = run
            .region
            .as_deref()
            .filter(|r| !r.is_empty())
            .unwrap_or(location);
        let service = config.services.iter().find(|s| s.name == run.service);
        let service = match service {
            Some(s) if region == config.project.region => s,
            _ => {
                let known = config.services.iter().map(|s| s.name.as_str());
                return Err(ApiError::InvalidArgument(format!(
                    "Invalid destination: Cloud Run service `{}` does not exist in region `{}` of project {}; frontdoor's services are in {}{}",
                    shown(&run.service),
                    shown(region),
                    config.project.id,
                    config.project.region,
                    crate::suggest::did_you_mean(&run.service, known)
                )));
            }
        };
        let path = run.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
        declared::check_run_path(&service.url, path)
            .map_err(|why| ApiError::InvalidArgument(format!("destination.cloudRun.path {why}")))?;
        if trigger.service_account.is_empty() {
            return Err(ApiError::InvalidArgument(
                "The trigger names no service account (--service-account): frontdoor delivers each event with that account's ID token, and has no Compute Engine default account to fall back on".to_owned(),
            ));
        }
        self.0
            .allow_account(&trigger.service_account, "named by the trigger")?;
        let email = config
            .service_account(&trigger.service_account)
            .map(|a| a.email.clone())
            .unwrap_or_default();
        check_labels(&trigger.labels)?;
        // What the broker takes as checked: a project id a subscription's name may have.
        names::parse(
            &declared::subscription_name(project, location, id),
            names::Kind::Subscription,
        )?;
        let broker = self.0.state.pubsub();
        let named = trigger
            .transport
            .and_then(|t| t.pubsub)
            .and_then(|p| p.topic);
        let (topic, own_topic) = match named.filter(|t| !t.is_empty()) {
            Some(topic) => {
                let ours = format!("projects/{project}/topics/");
                if !topic.starts_with(&ours) {
                    return Err(ApiError::InvalidArgument(format!(
                        "transport.pubsub.topic `{}` is not a topic of project {project} (projects/{project}/topics/TOPIC)",
                        shown(&topic)
                    )));
                }
                broker.topic(&topic).map_err(|_| {
                    ApiError::NotFound(format!(
                        "Topic `{}` was not found: create it first (gcloud pubsub topics create)",
                        shown(&topic)
                    ))
                })?;
                (topic, false)
            }
            None => (self.own_topic(project, location, id)?, true),
        };
        let mut subscription = declared::subscription(
            project,
            location,
            id,
            &topic,
            &format!("{}{path}", service.url),
            &service.url,
            &email,
        );
        subscription.labels.extend(trigger.labels);
        let made = match broker.create_subscription(subscription) {
            Ok(made) => made,
            Err(e) => {
                if own_topic {
                    let _ = broker.delete_topic(&topic);
                }
                return Err(match e {
                    broker::Error::AlreadyExists(_) => {
                        ApiError::AlreadyExists(format!("Resource '{name}' already exists"))
                    }
                    e => e.into(),
                });
            }
        };
        let broker = self.0.state.pubsub();
        self.0
            .state
            .triggers()
            .made(&made.name, SystemTime::now(), |n| {
                broker.subscription(n).is_ok()
            });
        let out = self.trigger_out(&made).ok_or_else(|| {
            ApiError::Internal(format!("trigger {name}'s subscription reads back as none"))
        })?;
        Ok(self.operation(parent, "create", &out))
    }

    /// A topic of the trigger's own, named after it with three digits as Google names it
    /// (and labelled with it, so that deleting the trigger deletes it).
    fn own_topic(&self, project: &str, location: &str, id: &str) -> Result<String, ApiError> {
        let broker = self.0.state.pubsub();
        let mut tries = 0;
        loop {
            let name = format!(
                "projects/{project}/topics/eventarc-{location}-{id}-{:03}",
                fastrand::u16(..1000)
            );
            names::parse(&name, names::Kind::Topic)?;
            let topic = pb::Topic {
                name,
                labels: [(TRIGGER_LABEL.to_owned(), id.to_owned())].into(),
                ..pb::Topic::default()
            };
            match broker.create_topic(topic) {
                Ok(made) => return Ok(made.name),
                // Another trigger's of the same name in another project, say: another
                // three digits.
                Err(broker::Error::AlreadyExists(_)) if tries < 10 => tries += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }

    pub(crate) fn get_trigger(&mut self, name: &str) -> Result<Value, ApiError> {
        parse_name(name, "triggers")?;
        self.allow(iam::TRIGGERS_GET, name)?;
        let made = self.subscription(name)?;
        self.trigger_out(&made)
            .ok_or_else(|| ApiError::NotFound(format!("Resource '{}' was not found", shown(name))))
    }

    pub(crate) fn list_triggers(
        &mut self,
        parent: &str,
        page: Page<'_>,
    ) -> Result<(Vec<Value>, String), ApiError> {
        // `-` is every location, as gcloud lists without --location.
        let every = parent.strip_suffix("/locations/-");
        match every {
            Some(project) => parse_parent(&format!("{project}/locations/global"))?,
            None => parse_parent(parent)?,
        };
        self.allow(iam::TRIGGERS_LIST, parent)?;
        let prefix = match every {
            Some(project) => format!("{project}/locations/"),
            None => format!("{parent}/triggers/"),
        };
        let mut triggers: Vec<(String, Value)> = self
            .0
            .state
            .pubsub()
            .labelled_subscriptions(TRIGGER_LABEL)
            .iter()
            .filter_map(|s| self.trigger_out(s))
            .filter_map(|t| {
                let name = t["name"].as_str()?.to_owned();
                (name.starts_with(&prefix) && name.contains("/triggers/")).then_some((name, t))
            })
            .collect();
        triggers.sort_by(|a, b| a.0.cmp(&b.0));
        let start = page.start("");
        Ok(page.take(
            triggers
                .iter()
                .filter(|(n, _)| page.token.is_empty() || *n >= start)
                .map(|(n, t)| (n.as_str(), t.clone())),
        ))
    }

    /// `DeleteTrigger`: its subscription, and its topic if it made one.
    pub(crate) fn delete_trigger(&mut self, name: &str) -> Result<Value, ApiError> {
        let (parent, id) = parse_name(name, "triggers")?;
        self.allow(iam::TRIGGERS_DELETE, name)?;
        let made = self.subscription(name)?;
        let out = self.trigger_out(&made).ok_or_else(|| {
            ApiError::NotFound(format!("Resource '{}' was not found", shown(name)))
        })?;
        let broker = self.0.state.pubsub();
        broker.delete_subscription(&made.name)?;
        self.0.state.triggers().deleted(&made.name);
        // Its own: named and labelled as this trigger's (a topic given with
        // --transport-topic is the user's, whatever its name).
        let (project, location) = parse_parent(parent)?;
        let own_topic = made.topic.starts_with(&format!(
            "projects/{project}/topics/eventarc-{location}-{id}-"
        )) && broker
            .topic(&made.topic)
            .is_ok_and(|t| t.labels.get(TRIGGER_LABEL).map(String::as_str) == Some(id));
        if own_topic {
            let _ = broker.delete_topic(&made.topic);
        }
        Ok(self.operation(parent, "delete", &out))
    }

    pub(crate) fn get_operation(&mut self, name: &str) -> Result<Value, ApiError> {
        parse_name(name, "operations")?;
        self.allow(iam::EVENTARC_OPERATIONS_GET, name)?;
        self.0.state.triggers().operation(name).ok_or_else(|| {
            ApiError::NotFound(format!(
                "Operation '{}' was not found (frontdoor keeps its last {MAX_OPERATIONS})",
                shown(name)
            ))
        })
    }
}

/// The one event frontdoor emulates, and nothing else to match.
fn check_filters(trigger: &TriggerIn) -> Result<(), ApiError> {
    if !trigger.channel.is_empty() {
        return Err(ApiError::InvalidArgument(
            "frontdoor does not emulate Eventarc channels (third-party events); a trigger takes Pub/Sub's messagePublished".to_owned(),
        ));
    }
    let only_type = trigger.event_filters.len() == 1
        && trigger.event_filters[0].attribute == "type"
        && trigger.event_filters[0].operator.is_empty();
    let kind = trigger
        .event_filters
        .iter()
        .find(|f| f.attribute == "type")
        .map(|f| f.value.as_str());
    match kind {
        Some(MESSAGE_PUBLISHED) if only_type => Ok(()),
        Some(MESSAGE_PUBLISHED) => Err(ApiError::InvalidArgument(format!(
            "A {MESSAGE_PUBLISHED} trigger matches on its type alone (--event-filters type=…)"
        ))),
        Some(other) => Err(ApiError::InvalidArgument(format!(
            "The event type `{}` is not emulated: frontdoor's Eventarc delivers {MESSAGE_PUBLISHED} (Pub/Sub) only",
            shown(other)
        ))),
        None => Err(ApiError::InvalidArgument(format!(
            "The trigger has no event filter on `type`: give --event-filters type={MESSAGE_PUBLISHED}"
        ))),
    }
}

fn other_destination<'a>(fields: impl Iterator<Item = &'a String>) -> ApiError {
    let named: Vec<&str> = fields.map(String::as_str).collect();
    ApiError::InvalidArgument(format!(
        "frontdoor delivers to Cloud Run services only (destination.cloudRun); not {}",
        if named.is_empty() {
            "an empty destination".to_owned()
        } else {
            shown(&named.join(", "))
        }
    ))
}

/// Labels as Google allows them: at most 64, keys and values of lowercase letters,
/// digits, `-` and `_` (a key starting with a letter), 63 characters each; `goog-` keys
/// are Google's.
fn check_labels(labels: &std::collections::BTreeMap<String, String>) -> Result<(), ApiError> {
    let plain = |s: &str| {
        s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
    };
    // Pub/Sub's 64, less the two the trigger's subscription carries.
    if labels.len() > 62 {
        return Err(ApiError::InvalidArgument(
            "A trigger has at most 62 labels here (its subscription carries two more, and Pub/Sub allows 64)".to_owned(),
        ));
    }
    for (key, value) in labels {
        if key.starts_with("goog-")
            || !key.starts_with(|c: char| c.is_ascii_lowercase())
            || !plain(key)
            || !plain(value)
        {
            return Err(ApiError::InvalidArgument(format!(
                "Label `{}={}`: keys start with a lowercase letter, keys and values have at most 63 lowercase letters, digits, - and _, and goog- keys are Google's",
                shown(key),
                shown(value)
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_anything_is_looked_up() {
        assert_eq!(
            parse_parent("projects/p/locations/us-central1").unwrap(),
            ("p", "us-central1")
        );
        assert!(parse_parent("projects/p/locations/global").is_ok());
        for bad in [
            "projects/p",
            "projects//locations/us-central1",
            "projects/p/locations/Mars",
            "projects/p/locations/us-central1/x",
        ] {
            assert!(parse_parent(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_name("projects/p/locations/us-central1/triggers/t", "triggers").unwrap(),
            ("projects/p/locations/us-central1", "t")
        );
        for bad in [
            "projects/p/locations/us-central1/triggers/",
            "projects/p/locations/us-central1/triggers/a/b",
            "projects/p/locations/us-central1/jobs/t",
        ] {
            assert!(parse_name(bad, "triggers").is_err(), "{bad}");
        }
    }

    #[test]
    fn only_pubsubs_event_type_is_taken() {
        let with = |filters: Value| -> TriggerIn {
            serde_json::from_value(serde_json::json!({ "eventFilters": filters })).unwrap()
        };
        let ok = with(serde_json::json!([{"attribute": "type", "value": MESSAGE_PUBLISHED}]));
        assert!(check_filters(&ok).is_ok());
        for (filters, says) in [
            (
                serde_json::json!([{"attribute": "type", "value": "google.cloud.storage.object.v1.finalized"}]),
                "not emulated",
            ),
            (serde_json::json!([]), "no event filter"),
            (
                serde_json::json!([{"attribute": "type", "value": MESSAGE_PUBLISHED}, {"attribute": "bucket", "value": "b"}]),
                "type alone",
            ),
        ] {
            let e = check_filters(&with(filters)).unwrap_err();
            assert!(e.message().contains(says), "{e:?}");
        }
    }

    #[test]
    fn labels_are_googles_shape() {
        let labels = |k: &str, v: &str| [(k.to_owned(), v.to_owned())].into();
        assert!(check_labels(&labels("team", "orders_1")).is_ok());
        for (k, v) in [("Team", "x"), ("goog-x", "y"), ("1a", "b"), ("a", "B")] {
            assert!(check_labels(&labels(k, v)).is_err(), "{k}={v}");
        }
    }
}
