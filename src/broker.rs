//! Pub/Sub's broker: the topics, subscriptions and undelivered messages behind both of its
//! transports (`google::pubsub`, gRPC and REST) and behind the push deliveries
//! (`managed`): one store, in memory, bounded in bytes. It knows nothing of HTTP or IAM;
//! its names arrive checked.
//!
//! A subscription holds each message published after it was made until it is acknowledged.
//! A message handed out (to a pull, a streaming pull or a push) is leased until its ack
//! deadline; one not acknowledged by then, or nacked, is handed out again after the
//! subscription's backoff, or sent to its dead-letter topic once it has been handed out
//! `maxDeliveryAttempts` times. With message ordering on, a key's next message waits until
//! the one before it is acknowledged.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;

mod leases;
mod owned;
mod store;

pub(crate) use owned::MadeByApi;
use store::{Held, Lease, Store};

/// The topic a subscription names once its topic is deleted.
pub(crate) const DELETED_TOPIC: &str = "_deleted-topic_";

/// What the broker refuses; the API renders each as Google's error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    #[error("Resource not found (resource={short}). No {kind} `{0}` exists.", short = short(.0), kind = kind(.0))]
    NotFound(String),
    #[error("Resource already exists in the project (resource={short}).", short = short(.0))]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    ResourceExhausted(String),
}

fn kind(name: &str) -> &'static str {
    if name.contains("/subscriptions/") {
        "subscription"
    } else {
        "topic"
    }
}

/// `projects/P/KIND/ID` → (`P`, `ID`).
pub(crate) fn split(name: &str) -> (&str, &str) {
    let rest = name.strip_prefix("projects/").unwrap_or(name);
    let (project, rest) = rest.split_once('/').unwrap_or(("", rest));
    let id = rest.split_once('/').map_or(rest, |(_, id)| id);
    (project, id)
}

/// The id alone, as Google's messages give it.
pub(crate) fn short(name: &str) -> &str {
    split(name).1
}

pub(crate) fn duration(d: prost_types::Duration) -> Duration {
    Duration::new(
        u64::try_from(d.seconds).unwrap_or(0),
        u32::try_from(d.nanos).unwrap_or(0),
    )
}

/// What every subscription's undelivered messages may take, in bytes, before a publish is
/// refused: 100,000 messages of 1 KiB are a small part of it; a test suite that publishes
/// without consuming finds out here, not from the kernel.
pub(crate) const MAX_HELD_BYTES: usize = 512 * 1024 * 1024;
/// What one message in a subscription costs besides its data and attributes (its entry,
/// lease and ids), counted against [`MAX_HELD_BYTES`].
const ENTRY_OVERHEAD: usize = 160;
/// How long a subscription keeps a message nobody acknowledges, when it names no
/// `messageRetentionDuration`: Google's default, 7 days.
pub(crate) const DEFAULT_RETENTION: Duration = Duration::from_secs(7 * 86_400);
/// Google's ack deadline when a subscription names none, and its bounds.
pub(crate) const DEFAULT_ACK_DEADLINE: i32 = 10;
/// The most one pull hands out in bytes (at least one message, whatever its size): Google's
/// clients refuse a response much over 20 MB.
const MAX_PULL_BYTES: usize = 10 * 1024 * 1024;
/// What the IAM policies on topics and subscriptions may take together, roughly in bytes
/// as the layer keeps them: well inside what frontdoor reads back of it.
const MAX_POLICY_BYTES: usize = 2 * 1024 * 1024;
/// Google's quotas on topics and on subscriptions, per project; one store holds every
/// project's, so these bound it.
pub(crate) const MAX_TOPICS: usize = 10_000;
pub(crate) const MAX_SUBSCRIPTIONS: usize = 10_000;

/// The store with the means to wait for it: streaming pulls and the push deliveries wait
/// on [`Broker::changed`] rather than polling.
pub(crate) struct Broker {
    store: Mutex<Store>,
    changed: tokio::sync::Notify,
    /// What the undelivered messages may take, in bytes: [`MAX_HELD_BYTES`].
    limit: usize,
    /// Every backoff is divided by this (`pubsub.backoff_divisor`), so that a test of
    /// retries need not wait Google's ten seconds.
    divisor: AtomicU32,
    /// Counts the changes of what topics and subscriptions there are and their settings
    /// (`owned`), which wake `redefined`.
    revision: AtomicU64,
    redefined: tokio::sync::Notify,
}

/// A message handed out: its ack id, the message and the attempt it is.
#[derive(Debug, Clone)]
pub(crate) struct Handed {
    pub(crate) ack_id: String,
    pub(crate) message: Arc<pb::PubsubMessage>,
    pub(crate) attempt: i32,
}

/// How much the subscriptions hold, for the status page and the bench.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Holding {
    pub(crate) topics: usize,
    pub(crate) subscriptions: usize,
    pub(crate) undelivered: usize,
    pub(crate) bytes: usize,
    pub(crate) limit_bytes: usize,
}

impl Broker {
    pub(crate) fn new() -> Broker {
        Broker {
            store: Mutex::new(Store::default()),
            changed: tokio::sync::Notify::new(),
            divisor: AtomicU32::new(1),
            limit: MAX_HELD_BYTES,
            revision: AtomicU64::new(0),
            redefined: tokio::sync::Notify::new(),
        }
    }

    /// The configuration's `pubsub.backoff_divisor`, set by each generation.
    pub(crate) fn set_backoff_divisor(&self, divisor: u32) {
        self.divisor.store(divisor.max(1), Ordering::Relaxed);
    }

    fn divisor(&self) -> u32 {
        self.divisor.load(Ordering::Relaxed)
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        // A panic while holding the lock leaves maps that are still consistent: go on.
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Resolves when something may have become deliverable; callers arm it (`enable`)
    /// before they look, and wait on it with a timeout, since a lease running out wakes
    /// nobody.
    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    pub(crate) fn held(&self) -> Holding {
        let store = self.store();
        Holding {
            topics: store.topics.len(),
            subscriptions: store.subscriptions.len(),
            undelivered: store.subscriptions.values().map(|h| h.entries.len()).sum(),
            bytes: store.held_bytes,
            limit_bytes: self.limit,
        }
    }

    pub(crate) fn create_topic(&self, topic: pb::Topic) -> Result<pb::Topic, Error> {
        let mut store = self.store();
        if store.topics.len() >= MAX_TOPICS {
            return Err(Error::ResourceExhausted(format!(
                "frontdoor holds {MAX_TOPICS} topics, Google's quota for a project: delete some first"
            )));
        }
        if store.topics.contains_key(&topic.name) {
            return Err(Error::AlreadyExists(topic.name.clone()));
        }
        store.topics.insert(topic.name.clone(), topic.clone());
        drop(store);
        self.redefined();
        Ok(topic)
    }

    pub(crate) fn topic(&self, name: &str) -> Result<pb::Topic, Error> {
        self.store()
            .topics
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    /// Topics under `project` (`projects/P`), after `after` (a page token: the last name
    /// given), at most `size`; and the next page's token.
    pub(crate) fn topics(&self, project: &str, page: Page<'_>) -> (Vec<pb::Topic>, String) {
        let store = self.store();
        let prefix = format!("{project}/topics/");
        page.take(
            store
                .topics
                .range(page.start(&prefix)..)
                .take_while(|(name, _)| name.starts_with(&prefix))
                .map(|(name, topic)| (name.as_str(), topic.clone())),
        )
    }

    pub(crate) fn delete_topic(&self, name: &str) -> Result<(), Error> {
        let mut store = self.store();
        if !store.remove_topic(name) {
            return Err(Error::NotFound(name.to_owned()));
        }
        drop(store);
        self.redefined();
        self.changed.notify_waiters();
        Ok(())
    }

    /// The IAM policy set on topic or subscription `name` (empty if none was).
    pub(crate) fn policy(&self, name: &str) -> Result<crate::iam::Policy, Error> {
        let store = self.store();
        if !store.topics.contains_key(name) && !store.subscriptions.contains_key(name) {
            return Err(Error::NotFound(name.to_owned()));
        }
        Ok(store.policies.get(name).cloned().unwrap_or_default())
    }

    /// Sets the IAM policy of topic or subscription `name`, if `current` still holds of
    /// the one it has (the caller's etag check); the policy set.
    pub(crate) fn set_policy<E: From<Error>>(
        &self,
        name: &str,
        policy: crate::iam::Policy,
        current: impl FnOnce(&crate::iam::Policy) -> Result<(), E>,
    ) -> Result<crate::iam::Policy, E> {
        let mut store = self.store();
        if !store.topics.contains_key(name) && !store.subscriptions.contains_key(name) {
            return Err(Error::NotFound(name.to_owned()).into());
        }
        current(
            store
                .policies
                .get(name)
                .unwrap_or(&crate::iam::Policy::default()),
        )?;
        // Bounded, so that what is kept of them fits the layer frontdoor reads back.
        let others: usize = store
            .policies
            .iter()
            .filter(|(n, _)| n.as_str() != name)
            .map(|(_, p)| policy_weight(p))
            .sum();
        if others + policy_weight(&policy) > MAX_POLICY_BYTES {
            return Err(Error::ResourceExhausted(format!(
                "the IAM policies on topics and subscriptions would take more than {MAX_POLICY_BYTES} bytes, all of them together: bind groups rather than many members"
            ))
            .into());
        }
        if policy.bindings.is_empty() {
            store.policies.remove(name);
        } else {
            store.policies.insert(name.to_owned(), policy.clone());
        }
        drop(store);
        self.redefined();
        Ok(policy)
    }

    /// The names of the subscriptions to `topic`.
    pub(crate) fn topic_subscriptions(&self, topic: &str) -> Result<Vec<String>, Error> {
        let store = self.store();
        if !store.topics.contains_key(topic) {
            return Err(Error::NotFound(topic.to_owned()));
        }
        Ok(store
            .subscriptions
            .values()
            .filter(|h| h.subscription.topic == topic)
            .map(|h| h.subscription.name.clone())
            .collect())
    }

    /// Gives each message its id and publish time and a place in every subscription of
    /// `topic`; refused whole if the store would hold more than [`MAX_HELD_BYTES`].
    pub(crate) fn publish(
        &self,
        topic: &str,
        messages: Vec<pb::PubsubMessage>,
    ) -> Result<Vec<String>, Error> {
        let mut store = self.store();
        if !store.topics.contains_key(topic) {
            return Err(Error::NotFound(topic.to_owned()));
        }
        let ids = store.publish(topic, messages, self.limit)?;
        drop(store);
        self.changed.notify_waiters();
        Ok(ids)
    }

    pub(crate) fn create_subscription(
        &self,
        subscription: pb::Subscription,
    ) -> Result<pb::Subscription, Error> {
        let mut store = self.store();
        if store.subscriptions.len() >= MAX_SUBSCRIPTIONS {
            return Err(Error::ResourceExhausted(format!(
                "frontdoor holds {MAX_SUBSCRIPTIONS} subscriptions, Google's quota for a project: delete some first"
            )));
        }
        if store.subscriptions.contains_key(&subscription.name) {
            return Err(Error::AlreadyExists(subscription.name.clone()));
        }
        if !store.topics.contains_key(&subscription.topic) {
            return Err(Error::NotFound(subscription.topic.clone()));
        }
        let held = Held {
            subscription: subscription.clone(),
            entries: BTreeMap::new(),
        };
        store.subscriptions.insert(subscription.name.clone(), held);
        drop(store);
        self.redefined();
        self.changed.notify_waiters();
        Ok(subscription)
    }

    pub(crate) fn subscription(&self, name: &str) -> Result<pb::Subscription, Error> {
        self.store()
            .subscriptions
            .get(name)
            .map(|h| h.subscription.clone())
            .ok_or_else(|| Error::NotFound(name.to_owned()))
    }

    pub(crate) fn subscriptions(
        &self,
        project: &str,
        page: Page<'_>,
    ) -> (Vec<pb::Subscription>, String) {
        let store = self.store();
        let prefix = format!("{project}/subscriptions/");
        page.take(
            store
                .subscriptions
                .range(page.start(&prefix)..)
                .take_while(|(name, _)| name.starts_with(&prefix))
                .map(|(name, held)| (name.as_str(), held.subscription.clone())),
        )
    }

    /// Every subscription labelled `label` (Eventarc's, say), in name order.
    pub(crate) fn labelled_subscriptions(&self, label: &str) -> Vec<pb::Subscription> {
        self.store()
            .subscriptions
            .values()
            .filter(|h| h.subscription.labels.contains_key(label))
            .map(|h| h.subscription.clone())
            .collect()
    }

    /// Every push subscription's name, for the deliveries.
    pub(crate) fn push_subscriptions(&self) -> Vec<pb::Subscription> {
        self.store()
            .subscriptions
            .values()
            .filter(|h| {
                h.subscription
                    .push_config
                    .as_ref()
                    .is_some_and(|p| !p.push_endpoint.is_empty())
            })
            .map(|h| h.subscription.clone())
            .collect()
    }

    /// Replaces the subscription's settings with `updated` (whose name and topic it keeps).
    pub(crate) fn update_subscription<E: From<Error>>(
        &self,
        name: &str,
        update: impl FnOnce(&mut pb::Subscription) -> Result<(), E>,
    ) -> Result<pb::Subscription, E> {
        let mut store = self.store();
        let held = store
            .subscriptions
            .get_mut(name)
            .ok_or_else(|| Error::NotFound(name.to_owned()))?;
        let mut subscription = held.subscription.clone();
        update(&mut subscription)?;
        held.subscription = subscription.clone();
        drop(store);
        self.redefined();
        self.changed.notify_waiters();
        Ok(subscription)
    }

    pub(crate) fn delete_subscription(&self, name: &str) -> Result<(), Error> {
        let mut store = self.store();
        if !store.remove_subscription(name) {
            return Err(Error::NotFound(name.to_owned()));
        }
        drop(store);
        self.redefined();
        // Its streaming pulls end.
        self.changed.notify_waiters();
        Ok(())
    }
}

/// About what `policy` takes in the layer: its roles and members, with their quoting.
fn policy_weight(policy: &crate::iam::Policy) -> usize {
    policy
        .bindings
        .iter()
        .map(|b| {
            32 + b
                .members
                .iter()
                .map(|m| 8 + m.to_string().len())
                .sum::<usize>()
        })
        .sum()
}

/// The bytes a message holds: its data, attributes and ordering key.
pub(crate) fn message_bytes(message: &pb::PubsubMessage) -> usize {
    message.data.len()
        + message.ordering_key.len()
        + message
            .attributes
            .iter()
            .map(|(k, v)| k.len() + v.len())
            .sum::<usize>()
}

/// How long a message waits before it is handed out again after attempt `n` failed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Backoff {
    min: Duration,
    max: Duration,
    divisor: u32,
}

impl Backoff {
    /// The subscription's retry policy; without one, Google redelivers a pulled message at
    /// once, and backs a push off from 100 ms to 60 s.
    pub(crate) fn of(subscription: &pb::Subscription, divisor: u32) -> Backoff {
        let push = subscription
            .push_config
            .as_ref()
            .is_some_and(|p| !p.push_endpoint.is_empty());
        let (min, max) = match &subscription.retry_policy {
            Some(policy) => (
                policy
                    .minimum_backoff
                    .map_or(Duration::from_secs(10), duration),
                policy
                    .maximum_backoff
                    .map_or(Duration::from_secs(600), duration),
            ),
            None if push => (Duration::from_millis(100), Duration::from_secs(60)),
            None => (Duration::ZERO, Duration::ZERO),
        };
        Backoff { min, max, divisor }
    }

    pub(crate) fn after(self, attempts: i32) -> Duration {
        let doublings = u32::try_from(attempts.saturating_sub(1).clamp(0, 16)).unwrap_or(0);
        let wait = self.min.saturating_mul(1 << doublings).min(self.max);
        wait / self.divisor
    }
}

/// A page of a list: at most `size` items after the name `token` gave.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Page<'a> {
    pub(crate) size: usize,
    pub(crate) token: &'a str,
}

impl Page<'_> {
    /// Google's default and largest page size.
    pub(crate) const MAX: usize = 1000;

    /// A request's page size (0 or less: the default) and token.
    pub(crate) fn of(size: i32, token: &str) -> Page<'_> {
        Page {
            size: usize::try_from(size).unwrap_or(0),
            token,
        }
    }

    pub(crate) fn start(&self, prefix: &str) -> String {
        if self.token.is_empty() {
            prefix.to_owned()
        } else {
            // Just after the last name of the page before.
            format!("{}\u{0}", self.token)
        }
    }

    pub(crate) fn take<'n, T>(self, items: impl Iterator<Item = (&'n str, T)>) -> (Vec<T>, String) {
        let size = if self.size == 0 {
            Page::MAX
        } else {
            self.size.min(Page::MAX)
        };
        let mut items = items.peekable();
        let mut page = Vec::new();
        let mut last = String::new();
        while page.len() < size {
            let Some((name, item)) = items.next() else {
                return (page, String::new());
            };
            last = name.to_owned();
            page.push(item);
        }
        let token = if items.peek().is_some() {
            last
        } else {
            String::new()
        };
        (page, token)
    }
}

#[cfg(test)]
mod tests;
