//! What Pub/Sub's API makes outlives a restart, as the Admin APIs' changes do: the topics
//! it made and the subscriptions it made or changed are written into the layer in the
//! state directory (`config::layer`, its `pubsub` part), each as Google's REST API shows
//! it; `restore` puts them back when frontdoor starts, and `frontdoor fold` writes them
//! into `pubsub:` in services.yaml. Messages are not kept: like Google's emulator,
//! frontdoor starts with none.
//!
//! The broker counts each change of its topics and subscriptions; `keep` waits for one,
//! lets a burst settle, and writes the whole of what the API made, read under the same
//! lock as the Admin APIs' changes take, so neither writes over the other's. Nothing
//! resolves from it, so the layer watcher finds the configuration unchanged and makes no
//! new generation. The layer's `pubsub` part is frontdoor's to write while it runs: an
//! entry it cannot read back is kept as it is, but one edited by hand while frontdoor runs
//! is written over at the next change.

use std::collections::BTreeMap;
use std::time::Duration;

use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use serde_json::Value;

use super::json::{SubscriptionIn, TopicIn, subscription_out, topic_out};
use crate::broker::MadeByApi;
use crate::config::Layer;
use crate::config::layer::PubsubChanges;
use crate::state::{AppState, Live};

/// How long a burst of changes (a test suite making its topics) may go on before it is
/// written once.
const SETTLE: Duration = Duration::from_millis(50);

/// `made` as the layer keeps it.
pub(crate) fn encode(made: &MadeByApi) -> PubsubChanges {
    let subscription = |s: &pb::Subscription| {
        let mut v = subscription_out(s);
        if let Value::Object(map) = &mut v {
            map.remove("name");
            map.remove("state");
            // Written out only when it was set: the default is not a change.
            if s.message_retention_duration.is_none() {
                map.remove("messageRetentionDuration");
            }
        }
        v
    };
    PubsubChanges {
        topics: made
            .topics
            .iter()
            .map(|t| {
                let mut v = topic_out(t);
                if let Value::Object(map) = &mut v {
                    map.remove("name");
                }
                (t.name.clone(), v)
            })
            .collect(),
        subscriptions: made
            .subscriptions
            .iter()
            .map(|s| (s.name.clone(), subscription(s)))
            .collect(),
        changed_from: made
            .changed_from
            .iter()
            .map(|(name, s)| (name.clone(), subscription(s)))
            .collect(),
        policies: made
            .policies
            .iter()
            .map(|(name, p)| (name.clone(), p.into()))
            .collect(),
    }
}

/// What the layer keeps, read back as the API would take it.
#[derive(Debug, Default)]
pub(crate) struct Decoded {
    pub(crate) made: MadeByApi,
    /// By name, the topics and subscriptions that could not be read back, and why.
    pub(crate) unreadable: BTreeMap<String, String>,
    /// By name, the IAM policies that could not be, and why: apart, since a policy has
    /// its resource's name.
    pub(crate) unreadable_policies: BTreeMap<String, String>,
}

/// What the layer keeps, read back as the API would take it, and what could not be.
pub(crate) fn decode(changes: &PubsubChanges) -> Decoded {
    let mut made = MadeByApi::default();
    let mut unreadable = BTreeMap::new();
    let mut unreadable_policies = BTreeMap::new();
    for (name, value) in &changes.topics {
        match topic(name, value) {
            Ok(topic) => made.topics.push(topic),
            Err(why) => drop(unreadable.insert(name.clone(), why)),
        }
    }
    for (name, value) in &changes.subscriptions {
        let from = changes
            .changed_from
            .get(name)
            .map(|v| subscription(name, v))
            .transpose();
        match (subscription(name, value), from) {
            (Ok(s), Ok(from)) => {
                made.subscriptions.push(s);
                if let Some(from) = from {
                    made.changed_from.insert(name.clone(), from);
                }
            }
            (Err(why), _) | (_, Err(why)) => drop(unreadable.insert(name.clone(), why)),
        }
    }
    for (name, text) in &changes.policies {
        match crate::google::policy::resolved(text) {
            Ok(policy) => drop(made.policies.insert(name.clone(), policy)),
            Err(why) => drop(unreadable_policies.insert(name.clone(), why)),
        }
    }
    for name in changes.changed_from.keys() {
        if !changes.subscriptions.contains_key(name) {
            unreadable.insert(
                name.clone(),
                "a changed_from entry with no subscription beside it".to_owned(),
            );
        }
    }
    Decoded {
        made,
        unreadable,
        unreadable_policies,
    }
}

fn topic(name: &str, value: &Value) -> Result<pb::Topic, String> {
    let topic = serde_json::from_value::<TopicIn>(value.clone()).map_err(|e| e.to_string())?;
    super::names::parse(name, super::names::Kind::Topic).map_err(said)?;
    topic.into_topic(name.to_owned()).map_err(said)
}

fn subscription(name: &str, value: &Value) -> Result<pb::Subscription, String> {
    let s = serde_json::from_value::<SubscriptionIn>(value.clone()).map_err(|e| e.to_string())?;
    super::names::parse(name, super::names::Kind::Subscription).map_err(said)?;
    let mut s = s.into_subscription(name.to_owned()).map_err(said)?;
    super::names::check_subscription(&mut s).map_err(said)?;
    locate_trigger(&mut s);
    Ok(s)
}

/// An Eventarc trigger's subscription kept before triggers carried their location (a
/// label since then) gets it from its name, `eventarc-LOCATION-TRIGGER-sub-000`, so that
/// it compares equal to the file's declaration of it.
fn locate_trigger(s: &mut pb::Subscription) {
    use crate::config::eventarc::{LOCATION_LABEL, TRIGGER_LABEL};
    let Some(trigger) = s.labels.get(TRIGGER_LABEL) else {
        return;
    };
    if s.labels.contains_key(LOCATION_LABEL) {
        return;
    }
    let location = s
        .name
        .rsplit('/')
        .next()
        .and_then(|id| id.strip_prefix("eventarc-"))
        .and_then(|rest| rest.strip_suffix(&format!("-{trigger}-sub-000")))
        .map(str::to_owned);
    if let Some(location) = location {
        s.labels.insert(LOCATION_LABEL.to_owned(), location);
    }
}

fn said(e: crate::google::errors::ApiError) -> String {
    e.message().to_owned()
}

/// Puts back what the API made before this start (`broker::Broker::restore` says how the
/// file's declarations weigh against it); what cannot be read back is said, and left in
/// the layer.
pub(crate) fn restore(state: &AppState) {
    let layer = match Layer::read(state.state_dir().path()) {
        Ok(layer) => layer,
        // Said when the configuration was loaded: it could not start without it.
        Err(_) => return,
    };
    let Decoded {
        made,
        unreadable,
        unreadable_policies,
    } = decode(&layer.pubsub);
    let policies = unreadable_policies
        .into_iter()
        .map(|(name, why)| (name, format!("its IAM policy: {why}")));
    for (name, why) in unreadable.into_iter().chain(policies) {
        tracing::warn!(
            name,
            reason = why,
            file = crate::config::layer::FILE,
            "a Pub/Sub resource kept in the state directory cannot be read back; it is left there, unused"
        );
    }
    state.pubsub().restore(made);
}

/// Writes what the API made into the layer each time it changes, for as long as
/// frontdoor runs.
pub(crate) async fn keep(live: Live) {
    let mut written = None;
    loop {
        let broker = live.get().pubsub().clone();
        let next = broker.next_definition();
        tokio::pin!(next);
        next.as_mut().enable();
        if written == Some(broker.revision()) {
            next.await;
            tokio::time::sleep(SETTLE).await;
        }
        let revision = broker.revision();
        if let Err(why) = write(&live.get()).await {
            tracing::warn!(
                reason = why,
                "Pub/Sub's topics and subscriptions were not kept"
            );
        }
        written = Some(revision);
    }
}

/// Writes what the API made into the layer now, if the layer says otherwise. The entries
/// of the layer that cannot be read back stay, unless the API has made one of that name.
pub(crate) async fn write(state: &AppState) -> Result<(), String> {
    let _serial = state.changes().begin().await;
    // Taken under the lock: what is written is no older than any change before it.
    let mut pubsub = encode(&state.pubsub().made_by_api());
    let dir = state.state_dir().clone();
    tokio::task::spawn_blocking(move || {
        let mut layer = Layer::read(dir.path()).map_err(|e| e.to_string())?;
        let decoded = decode(&layer.pubsub);
        for name in decoded.unreadable_policies.keys() {
            if let Some(p) = layer.pubsub.policies.get(name)
                && !pubsub.policies.contains_key(name)
            {
                pubsub.policies.insert(name.clone(), p.clone());
            }
        }
        for name in decoded.unreadable.keys() {
            let kept = [
                (&layer.pubsub.topics, &mut pubsub.topics),
                (&layer.pubsub.subscriptions, &mut pubsub.subscriptions),
                (&layer.pubsub.changed_from, &mut pubsub.changed_from),
            ];
            for (old, new) in kept {
                if let Some(v) = old.get(name)
                    && !new.contains_key(name)
                {
                    new.insert(name.clone(), v.clone());
                }
            }
        }
        if layer.pubsub == pubsub {
            return Ok(());
        }
        layer.pubsub = pubsub;
        if layer.is_empty() {
            return match std::fs::remove_file(dir.path().join(crate::config::layer::FILE)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            };
        }
        let text = layer.to_json()?;
        dir.write_file(crate::config::layer::FILE, text.as_bytes())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::eventarc::{LOCATION_LABEL, TRIGGER_LABEL};

    #[test]
    fn a_trigger_kept_before_its_location_label_gets_it_from_its_name() {
        let kept = serde_json::json!({
            "topic": "projects/p1/topics/orders",
            "labels": {TRIGGER_LABEL: "on-order-2"},
        });
        let s = subscription(
            "projects/p1/subscriptions/eventarc-europe-west1-on-order-2-sub-000",
            &kept,
        )
        .unwrap();
        assert_eq!(s.labels[LOCATION_LABEL], "europe-west1");
        // Not a trigger's name: nothing is guessed.
        let s = subscription("projects/p1/subscriptions/orders-push", &kept).unwrap();
        assert!(!s.labels.contains_key(LOCATION_LABEL));
    }
}
