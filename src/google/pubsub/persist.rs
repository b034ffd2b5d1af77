//! What Pub/Sub's API makes outlives a restart, as the Admin APIs' changes do: the topics
//! it made and the subscriptions it made or changed are written into the layer in the
//! state directory (`config::layer`, its `pubsub` part), each as Google's REST API shows
//! it; `restore` puts them back when frontdoor starts, and `frontdoor fold` writes them
//! into `pubsub:` in services.yaml. Messages are not kept: like Google's emulator,
//! frontdoor starts with none.
//!
//! The broker counts each change of its topics and subscriptions; `keep` waits for one,
//! lets a burst settle, and writes the whole of what the API made, under the same lock as
//! the Admin APIs' changes, so neither loses the other's edit. Nothing resolves from it, so
//! the layer watcher finds the configuration unchanged and makes no new generation.

use std::collections::BTreeMap;
use std::time::Duration;

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
    let without = |mut v: Value, keys: &[&str]| {
        if let Value::Object(map) = &mut v {
            for key in keys {
                map.remove(*key);
            }
        }
        v
    };
    PubsubChanges {
        topics: made
            .topics
            .iter()
            .map(|t| (t.name.clone(), without(topic_out(t), &["name"])))
            .collect(),
        subscriptions: made
            .subscriptions
            .iter()
            .map(|s| {
                let mut v = without(subscription_out(s), &["name", "state"]);
                // Written out only when it was set: the default is not a change.
                if s.message_retention_duration.is_none()
                    && let Value::Object(map) = &mut v
                {
                    map.remove("messageRetentionDuration");
                }
                (s.name.clone(), v)
            })
            .collect(),
    }
}

/// What the layer keeps, read back as the API would take it; and, by name, what could not
/// be (said once, and kept in the layer as it is).
pub(crate) fn decode(changes: &PubsubChanges) -> (MadeByApi, BTreeMap<String, String>) {
    let mut made = MadeByApi::default();
    let mut unreadable = BTreeMap::new();
    for (name, value) in &changes.topics {
        let topic = serde_json::from_value::<TopicIn>(value.clone())
            .map_err(|e| e.to_string())
            .and_then(|t| {
                super::names::parse(name, super::names::Kind::Topic).map_err(said)?;
                t.into_topic(name.clone()).map_err(said)
            });
        match topic {
            Ok(topic) => made.topics.push(topic),
            Err(why) => drop(unreadable.insert(name.clone(), why)),
        }
    }
    for (name, value) in &changes.subscriptions {
        let subscription = serde_json::from_value::<SubscriptionIn>(value.clone())
            .map_err(|e| e.to_string())
            .and_then(|s| {
                super::names::parse(name, super::names::Kind::Subscription).map_err(said)?;
                let mut s = s.into_subscription(name.clone()).map_err(said)?;
                super::names::check_subscription(&mut s).map_err(said)?;
                Ok(s)
            });
        match subscription {
            Ok(s) => made.subscriptions.push(s),
            Err(why) => drop(unreadable.insert(name.clone(), why)),
        }
    }
    (made, unreadable)
}

fn said(e: crate::google::errors::ApiError) -> String {
    e.message().to_owned()
}

/// Puts back what the API made before this start; the entries of the layer that could not
/// be read, to be kept as they are.
pub(crate) fn restore(state: &AppState) -> PubsubChanges {
    let layer = match Layer::read(state.state_dir().path()) {
        Ok(layer) => layer,
        // Said when the configuration was loaded: it could not start without it.
        Err(_) => return PubsubChanges::default(),
    };
    let (made, unreadable) = decode(&layer.pubsub);
    let mut kept = PubsubChanges::default();
    for (name, why) in unreadable {
        tracing::warn!(
            name,
            reason = why,
            file = crate::config::layer::FILE,
            "a Pub/Sub resource kept in the state directory cannot be read back; it is left there, unused"
        );
        if let Some(v) = layer.pubsub.topics.get(&name) {
            kept.topics.insert(name.clone(), v.clone());
        }
        if let Some(v) = layer.pubsub.subscriptions.get(&name) {
            kept.subscriptions.insert(name, v.clone());
        }
    }
    state.pubsub().restore(made);
    kept
}

/// Writes what the API made into the layer each time it changes, for as long as
/// frontdoor runs; `unreadable` (from [`restore`]) is kept beside it while no resource of
/// the same name exists.
pub(crate) async fn keep(live: Live, unreadable: PubsubChanges) {
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
        if let Err(why) = write(&live.get(), &unreadable).await {
            tracing::warn!(
                reason = why,
                "Pub/Sub's topics and subscriptions were not kept"
            );
        }
        written = Some(revision);
    }
}

/// Writes what the API made into the layer now, if the layer says otherwise.
pub(crate) async fn write(state: &AppState, unreadable: &PubsubChanges) -> Result<(), String> {
    let mut pubsub = encode(&state.pubsub().made_by_api());
    for (name, v) in &unreadable.topics {
        pubsub
            .topics
            .entry(name.clone())
            .or_insert_with(|| v.clone());
    }
    for (name, v) in &unreadable.subscriptions {
        pubsub
            .subscriptions
            .entry(name.clone())
            .or_insert_with(|| v.clone());
    }
    let _serial = state.changes().begin().await;
    let dir = state.state_dir().clone();
    tokio::task::spawn_blocking(move || {
        let mut layer = Layer::read(dir.path()).map_err(|e| e.to_string())?;
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
