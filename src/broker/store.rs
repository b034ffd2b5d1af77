//! What the broker holds, behind its one lock: the topics, the subscriptions with their
//! messages and leases, the declared resources and the policies, and the bytes held; and
//! what changes it under that lock: a publish, and the expiry of leases, with the
//! dead-lettering of a message handed out too often.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::{
    Backoff, DEFAULT_RETENTION, DELETED_TOPIC, ENTRY_OVERHEAD, Error, duration, message_bytes, pb,
    split,
};

#[derive(Default)]
pub(super) struct Store {
    pub(super) topics: BTreeMap<String, pb::Topic>,
    pub(super) subscriptions: BTreeMap<String, Held>,
    /// What the configuration made (`pubsub:`), by name, with a subscription's settings as
    /// last declared: what the next configuration stops declaring is deleted, and what it
    /// declares differently is changed; what the API made is never touched.
    pub(super) declared: HashMap<String, Option<pb::Subscription>>,
    /// The IAM policies set on topics and subscriptions (`setIamPolicy`), by name: each
    /// goes with its resource.
    pub(super) policies: HashMap<String, crate::iam::Policy>,
    /// The last message id and delivery number given out.
    pub(super) next_message: u64,
    pub(super) next_delivery: u64,
    pub(super) held_bytes: usize,
}

/// A subscription and what it holds.
pub(super) struct Held {
    pub(super) subscription: pb::Subscription,
    pub(super) entries: BTreeMap<u64, Entry>,
}

impl Held {
    /// Drops the messages older than the subscription's retention (`messageRetentionDuration`,
    /// 7 days by default) that are not out on a lease; the bytes they held.
    pub(super) fn drop_past_retention(&mut self, now: Instant) -> usize {
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

pub(super) struct Entry {
    pub(super) message: Arc<pb::PubsubMessage>,
    pub(super) bytes: usize,
    /// When it was published: it is dropped unacknowledged once the subscription's
    /// retention has passed.
    pub(super) published: Instant,
    /// How many times it has been handed out.
    pub(super) attempts: i32,
    /// Not to be handed out before this (a backoff after a nack or a lapsed lease).
    pub(super) not_before: Option<Instant>,
    pub(super) lease: Option<Lease>,
}

#[derive(Clone, Copy)]
pub(super) struct Lease {
    pub(super) delivery: u64,
    pub(super) until: Instant,
}

impl Store {
    /// Removes topic `name`, if it is here; as on Google, its subscriptions stay, detached
    /// from any topic.
    pub(super) fn remove_topic(&mut self, name: &str) -> bool {
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
    pub(super) fn remove_subscription(&mut self, name: &str) -> bool {
        let Some(held) = self.subscriptions.remove(name) else {
            return false;
        };
        self.policies.remove(name);
        self.held_bytes -= held.entries.values().map(|e| e.bytes).sum::<usize>();
        true
    }

    pub(super) fn publish(
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
    pub(super) fn expire(
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
