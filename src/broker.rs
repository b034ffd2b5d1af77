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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;

mod owned;
pub(crate) use owned::MadeByApi;

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

#[derive(Default)]
struct Store {
    topics: BTreeMap<String, pb::Topic>,
    subscriptions: BTreeMap<String, Held>,
    /// What the configuration made (`pubsub:`), by name, with a subscription's settings as
    /// last declared: what the next configuration stops declaring is deleted, and what it
    /// declares differently is changed; what the API made is never touched.
    declared: HashMap<String, Option<pb::Subscription>>,
    /// The IAM policies set on topics and subscriptions (`setIamPolicy`), by name: each
    /// goes with its resource.
    policies: HashMap<String, crate::iam::Policy>,
    /// The last message id and delivery number given out.
    next_message: u64,
    next_delivery: u64,
    held_bytes: usize,
}

/// A subscription and what it holds.
struct Held {
    subscription: pb::Subscription,
    entries: BTreeMap<u64, Entry>,
}

impl Held {
    /// Drops the messages older than the subscription's retention (`messageRetentionDuration`,
    /// 7 days by default) that are not out on a lease; the bytes they held.
    fn drop_past_retention(&mut self, now: Instant) -> usize {
        let retention = self
            .subscription
            .message_retention_duration
            .map_or(DEFAULT_RETENTION, duration);
        let mut bytes = 0;
        self.entries.retain(|_, e| {
            let keep = e.lease.is_some() || now.saturating_duration_since(e.published) < retention;
            if !keep {
                bytes += e.bytes;
            }
            keep
        });
        if bytes > 0 {
            tracing::debug!(
                subscription = self.subscription.name,
                bytes,
                "messages past the subscription's retention dropped"
            );
        }
        bytes
    }
}

struct Entry {
    message: Arc<pb::PubsubMessage>,
    bytes: usize,
    /// When it was published: it is dropped unacknowledged once the subscription's
    /// retention has passed.
    published: Instant,
    /// How many times it has been handed out.
    attempts: i32,
    /// Not to be handed out before this (a backoff after a nack or a lapsed lease).
    not_before: Option<Instant>,
    lease: Option<Lease>,
}

#[derive(Clone, Copy)]
struct Lease {
    delivery: u64,
    until: Instant,
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

    /// Hands out up to `max` messages of `subscription`, each leased for `lease`.
    pub(crate) fn pull(
        &self,
        subscription: &str,
        max: usize,
        lease: Option<Duration>,
    ) -> Result<Vec<Handed>, Error> {
        let now = Instant::now();
        let mut guard = self.store();
        if guard.expire(subscription, now, self.divisor(), self.limit)? {
            // The dead-letter topic's subscribers have something.
            self.changed.notify_waiters();
        }
        let store = &mut *guard;
        let held = store
            .subscriptions
            .get_mut(subscription)
            .ok_or_else(|| Error::NotFound(subscription.to_owned()))?;
        let lease = lease.unwrap_or_else(|| {
            Duration::from_secs(
                u64::try_from(
                    held.subscription
                        .ack_deadline_seconds
                        .max(DEFAULT_ACK_DEADLINE),
                )
                .unwrap_or(10),
            )
        });
        let ordered = held.subscription.enable_message_ordering;
        let mut waiting_keys: HashSet<String> = HashSet::new();
        let mut handed = Vec::new();
        let mut bytes = 0;
        for (seq, entry) in &mut held.entries {
            if handed.len() >= max || (bytes > 0 && bytes + entry.bytes > MAX_PULL_BYTES) {
                break;
            }
            let key = &entry.message.ordering_key;
            let keyed = ordered && !key.is_empty();
            let ready = entry.lease.is_none() && entry.not_before.is_none_or(|t| t <= now);
            if keyed && waiting_keys.contains(key) {
                continue;
            }
            if !ready {
                if keyed {
                    waiting_keys.insert(key.clone());
                }
                continue;
            }
            store.next_delivery += 1;
            entry.attempts += 1;
            entry.not_before = None;
            entry.lease = Some(Lease {
                delivery: store.next_delivery,
                until: now + lease,
            });
            if keyed {
                // One message of a key out at a time: the next waits for this one's ack.
                waiting_keys.insert(key.clone());
            }
            bytes += entry.bytes;
            handed.push(Handed {
                ack_id: ack_id(*seq, store.next_delivery),
                message: entry.message.clone(),
                attempt: entry.attempts,
            });
        }
        Ok(handed)
    }

    /// Acknowledges the messages of the ack ids that are still current; a stale one (its
    /// lease ran out and the message was handed out again) is ignored, as Google does.
    pub(crate) fn acknowledge(&self, subscription: &str, ack_ids: &[String]) -> Result<(), Error> {
        let parsed = parse_ack_ids(ack_ids)?;
        {
            let mut guard = self.store();
            let store = &mut *guard;
            let held = store
                .subscriptions
                .get_mut(subscription)
                .ok_or_else(|| Error::NotFound(subscription.to_owned()))?;
            for (seq, delivery) in parsed {
                let current = held
                    .entries
                    .get(&seq)
                    .and_then(|e| e.lease)
                    .is_some_and(|l| l.delivery == delivery);
                if current && let Some(entry) = held.entries.remove(&seq) {
                    store.held_bytes -= entry.bytes;
                }
            }
        }
        // An acknowledged ordered message lets the next of its key go.
        self.changed.notify_waiters();
        Ok(())
    }

    /// Sets the deadline of the ack ids' leases to `seconds` from now; 0 hands the
    /// messages back (a nack), to be delivered again after the subscription's backoff.
    pub(crate) fn modify_ack_deadline(
        &self,
        subscription: &str,
        ack_ids: &[String],
        seconds: i32,
    ) -> Result<(), Error> {
        if !(0..=600).contains(&seconds) {
            return Err(Error::InvalidArgument(format!(
                "Invalid ack deadline given: {seconds}. The ack deadline must be between 0 and 600 seconds."
            )));
        }
        let parsed = parse_ack_ids(ack_ids)?;
        let now = Instant::now();
        let mut store = self.store();
        let held = store
            .subscriptions
            .get_mut(subscription)
            .ok_or_else(|| Error::NotFound(subscription.to_owned()))?;
        let backoff = Backoff::of(&held.subscription, self.divisor());
        for (seq, delivery) in parsed {
            let Some(entry) = held.entries.get_mut(&seq) else {
                continue;
            };
            match &mut entry.lease {
                Some(lease) if lease.delivery == delivery => {
                    if seconds == 0 {
                        entry.lease = None;
                        entry.not_before = Some(now + backoff.after(entry.attempts));
                    } else {
                        lease.until = now + Duration::from_secs(seconds.unsigned_abs().into());
                    }
                }
                _ => {}
            }
        }
        drop(store);
        self.changed.notify_waiters();
        Ok(())
    }

    /// The push deliveries' end of a message: delivered (acknowledged), or failed (handed
    /// back with the backoff).
    pub(crate) fn pushed(&self, subscription: &str, ack_id: &str, delivered: bool) {
        let ids = [ack_id.to_owned()];
        let done = if delivered {
            self.acknowledge(subscription, &ids)
        } else {
            self.modify_ack_deadline(subscription, &ids, 0)
        };
        if let Err(e) = done {
            // The subscription went away while the push was out: nothing to keep.
            tracing::debug!(subscription, error = %e, "push outcome not recorded");
        }
    }

    /// The earliest moment something in `subscription` becomes deliverable of itself (a
    /// lease running out, a backoff ending), for a waiter's timeout.
    ///
    /// Only instants still to come count: a message due already was handed out by the
    /// pull before this, or waits for an ack (its key's earlier message, the puller's flow
    /// control), which wakes [`Broker::changed`].
    pub(crate) fn next_due(&self, subscription: &str) -> Option<Instant> {
        let now = Instant::now();
        let store = self.store();
        let held = store.subscriptions.get(subscription)?;
        held.entries
            .values()
            .filter_map(|e| e.lease.map(|l| l.until).or(e.not_before))
            .filter(|t| *t > now)
            .min()
    }

    /// Keeps of `ack_ids` those whose message is still out on that delivery, its lease
    /// running: what a streaming pull still has outstanding, whichever way the others
    /// were acknowledged (client libraries acknowledge by unary calls) or ran out.
    pub(crate) fn retain_outstanding(&self, subscription: &str, ack_ids: &mut HashSet<String>) {
        let now = Instant::now();
        let store = self.store();
        let Some(held) = store.subscriptions.get(subscription) else {
            ack_ids.clear();
            return;
        };
        ack_ids.retain(|id| {
            parse_ack_id(id).is_some_and(|(seq, delivery)| {
                held.entries
                    .get(&seq)
                    .and_then(|e| e.lease)
                    .is_some_and(|l| l.delivery == delivery && l.until > now)
            })
        });
    }
}

impl Store {
    /// Removes topic `name`, if it is here; as on Google, its subscriptions stay, detached
    /// from any topic.
    fn remove_topic(&mut self, name: &str) -> bool {
        if self.topics.remove(name).is_none() {
            return false;
        }
        self.policies.remove(name);
        for held in self.subscriptions.values_mut() {
            if held.subscription.topic == name {
                DELETED_TOPIC.clone_into(&mut held.subscription.topic);
            }
        }
        true
    }

    /// Removes subscription `name`, if it is here, and the bytes its messages held.
    fn remove_subscription(&mut self, name: &str) -> bool {
        let Some(held) = self.subscriptions.remove(name) else {
            return false;
        };
        self.policies.remove(name);
        self.held_bytes -= held.entries.values().map(|e| e.bytes).sum::<usize>();
        true
    }

    fn publish(
        &mut self,
        topic: &str,
        messages: Vec<pb::PubsubMessage>,
        limit: usize,
    ) -> Result<Vec<String>, Error> {
        let subscribers: Vec<String> = self
            .subscriptions
            .values()
            .filter(|h| h.subscription.topic == topic && !h.subscription.detached)
            .map(|h| h.subscription.name.clone())
            .collect();
        let cost: usize = messages
            .iter()
            .map(|m| (message_bytes(m) + ENTRY_OVERHEAD) * subscribers.len())
            .sum();
        if self.held_bytes + cost > limit {
            // What no subscription keeps any longer makes room first.
            let now = Instant::now();
            for held in self.subscriptions.values_mut() {
                self.held_bytes -= held.drop_past_retention(now);
            }
        }
        if self.held_bytes + cost > limit {
            return Err(Error::ResourceExhausted(format!(
                "frontdoor already holds {} bytes of undelivered messages, and its limit is {limit}: acknowledge messages (or delete subscriptions nobody reads) before publishing more",
                self.held_bytes
            )));
        }
        let published = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default();
        let publish_time = prost_types::Timestamp {
            seconds: i64::try_from(published.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(published.subsec_nanos()).unwrap_or(0),
        };
        let now = Instant::now();
        let mut ids = Vec::with_capacity(messages.len());
        for mut message in messages {
            self.next_message += 1;
            message.message_id = self.next_message.to_string();
            message.publish_time = Some(publish_time);
            ids.push(message.message_id.clone());
            let bytes = message_bytes(&message) + ENTRY_OVERHEAD;
            let message = Arc::new(message);
            for name in &subscribers {
                if let Some(held) = self.subscriptions.get_mut(name) {
                    held.entries.insert(
                        self.next_message,
                        Entry {
                            message: message.clone(),
                            bytes,
                            published: now,
                            attempts: 0,
                            not_before: None,
                            lease: None,
                        },
                    );
                    self.held_bytes += bytes;
                }
            }
        }
        Ok(ids)
    }

    /// Ends the leases of `subscription` that ran out, with the backoff; drops the messages
    /// older than its retention (`messageRetentionDuration`, 7 days by default) that are
    /// not out; sends the messages that have had their attempts to the dead-letter topic.
    /// Whether it dead-lettered anything.
    fn expire(
        &mut self,
        subscription: &str,
        now: Instant,
        divisor: u32,
        limit: usize,
    ) -> Result<bool, Error> {
        let held = self
            .subscriptions
            .get_mut(subscription)
            .ok_or_else(|| Error::NotFound(subscription.to_owned()))?;
        let backoff = Backoff::of(&held.subscription, divisor);
        for entry in held.entries.values_mut() {
            if entry.lease.is_some_and(|l| l.until <= now) {
                entry.lease = None;
                entry.not_before = Some(now + backoff.after(entry.attempts));
            }
        }
        self.held_bytes -= held.drop_past_retention(now);
        let Some(policy) = held.subscription.dead_letter_policy.clone() else {
            return Ok(false);
        };
        if policy.dead_letter_topic.is_empty() {
            return Ok(false);
        }
        let max = if policy.max_delivery_attempts == 0 {
            5
        } else {
            policy.max_delivery_attempts
        };
        let spent: Vec<u64> = held
            .entries
            .iter()
            .filter(|(_, e)| e.lease.is_none() && e.attempts >= max)
            .map(|(seq, _)| *seq)
            .collect();
        let mut dead = Vec::new();
        for seq in spent {
            if let Some(entry) = held.entries.remove(&seq) {
                self.held_bytes -= entry.bytes;
                dead.push(dead_lettered(&entry, subscription));
            }
        }
        let any = !dead.is_empty();
        if any && self.topics.contains_key(&policy.dead_letter_topic) {
            // A full store drops them, as a dead-letter topic without room would.
            if let Err(e) = self.publish(&policy.dead_letter_topic, dead, limit) {
                tracing::warn!(subscription, error = %e, "dead-lettered messages dropped");
            }
        }
        Ok(any)
    }
}

/// The copy of `entry`'s message sent to a dead-letter topic, with the attributes Google
/// adds to say where it came from.
fn dead_lettered(entry: &Entry, subscription: &str) -> pb::PubsubMessage {
    let mut message = pb::PubsubMessage::clone(&entry.message);
    let (project, short) = split(subscription);
    let attributes = [
        (
            "CloudPubSubDeadLetterSourceDeliveryCount",
            entry.attempts.to_string(),
        ),
        ("CloudPubSubDeadLetterSourceSubscription", short.to_owned()),
        (
            "CloudPubSubDeadLetterSourceSubscriptionProject",
            project.to_owned(),
        ),
    ];
    for (key, value) in attributes {
        message.attributes.insert(key.to_owned(), value);
    }
    message
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

fn ack_id(seq: u64, delivery: u64) -> String {
    format!("{seq}-{delivery}")
}

fn parse_ack_id(id: &str) -> Option<(u64, u64)> {
    id.split_once('-')
        .and_then(|(s, d)| Some((s.parse().ok()?, d.parse().ok()?)))
}

fn parse_ack_ids(ack_ids: &[String]) -> Result<Vec<(u64, u64)>, Error> {
    ack_ids
        .iter()
        .map(|id| {
            parse_ack_id(id).ok_or_else(|| {
                let shown: String = id.chars().take(64).collect();
                Error::InvalidArgument(format!(
                    "You have passed an invalid ack ID to the service (ack_id={shown})."
                ))
            })
        })
        .collect()
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
