//! The broker's leases: handing messages out (a pull, a streaming pull, a push), and what
//! their holders say back (an ack, a new deadline, a push's outcome), each by ack id.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use super::{Backoff, Broker, DEFAULT_ACK_DEADLINE, Error, Handed, Lease, MAX_PULL_BYTES};

impl Broker {
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
