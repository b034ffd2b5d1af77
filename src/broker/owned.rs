//! Who owns each topic and subscription: the configuration file (`pubsub:` in
//! services.yaml, [`Broker::declare`]) or the API. What the API made, and what it changed of
//! a declared subscription, outlives a restart: [`Broker::made_by_api`] is what the state
//! directory keeps (`google::pubsub::persist` writes it into the Admin APIs' layer) and
//! [`Broker::restore`] puts it back.
//!
//! The rule: the file owns what it made, and takes back (deletes) only that when it stops
//! declaring a name. A name the API made first stays the API's, unless the file comes to
//! declare it exactly as it is (as `frontdoor fold` writes it): then the file owns it.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;

use super::store::Held;
use super::{Broker, DELETED_TOPIC, pb};

/// What the API made or changed: the topics it made, and the subscriptions it made or
/// changed since the file declared them, each as it stands; and for each declared one it
/// changed, the declaration it changed (by name), so that a restart can tell whether the
/// file has changed it since.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct MadeByApi {
    pub(crate) topics: Vec<pb::Topic>,
    pub(crate) subscriptions: Vec<pb::Subscription>,
    pub(crate) changed_from: BTreeMap<String, pb::Subscription>,
    /// The IAM policies set on topics and subscriptions, whoever made them.
    pub(crate) policies: BTreeMap<String, crate::iam::Policy>,
}

impl Broker {
    /// Makes the store hold what `pubsub` (a configuration) declares: its backoff divisor;
    /// each topic and subscription, made if missing; a subscription the file made and now
    /// declares differently, its settings replaced (its messages kept); and what the file
    /// made and no longer declares, deleted. A name the API made first is left as the API
    /// made it, unless the file declares it exactly so; and what the API changed of a
    /// declared subscription stands until the file changes it again.
    pub(crate) fn declare(&self, pubsub: &crate::config::pubsub::Pubsub) {
        self.set_backoff_divisor(pubsub.backoff_divisor);
        let mut guard = self.store();
        let store = &mut *guard;
        let wanted: HashSet<&str> = pubsub
            .topics
            .iter()
            .map(|t| t.name.as_str())
            .chain(pubsub.subscriptions.iter().map(|s| s.name.as_str()))
            .collect();
        let gone: Vec<String> = store
            .declared
            .keys()
            .filter(|name| !wanted.contains(name.as_str()))
            .cloned()
            .collect();
        for name in gone {
            store.declared.remove(&name);
            // A name is a topic's or a subscription's: one of these finds nothing.
            store.remove_subscription(&name);
            store.remove_topic(&name);
        }
        for topic in &pubsub.topics {
            match store.topics.get(&topic.name) {
                None => {
                    store.topics.insert(topic.name.clone(), topic.clone());
                    store.declared.insert(topic.name.clone(), None);
                }
                // The API's, declared as it is (folded): the file's from now on.
                Some(held) if held == topic => {
                    store.declared.insert(topic.name.clone(), None);
                }
                Some(_) => {}
            }
        }
        for subscription in &pubsub.subscriptions {
            let name = &subscription.name;
            let ours = store.declared.get(name).cloned();
            match (store.subscriptions.get_mut(name), ours) {
                (None, _) => {
                    let held = Held {
                        subscription: subscription.clone(),
                        entries: BTreeMap::new(),
                    };
                    store.subscriptions.insert(name.clone(), held);
                    store
                        .declared
                        .insert(name.clone(), Some(subscription.clone()));
                }
                // Declared differently since: the file's settings win.
                (Some(held), Some(Some(before))) if before != *subscription => {
                    held.subscription = subscription.clone();
                    store
                        .declared
                        .insert(name.clone(), Some(subscription.clone()));
                }
                // The API's, declared exactly as it is: adopted, messages and all.
                (Some(held), None) if held.subscription == *subscription => {
                    store
                        .declared
                        .insert(name.clone(), Some(subscription.clone()));
                }
                // As declared before (what the API changed stands), or the API's own.
                (Some(_), _) => {}
            }
        }
        drop(guard);
        self.redefined();
        self.changed.notify_waiters();
    }

    /// What the API made or changed, for the state directory to keep.
    pub(crate) fn made_by_api(&self) -> MadeByApi {
        let store = self.store();
        let changed_from = store
            .subscriptions
            .values()
            .filter_map(|h| match store.declared.get(&h.subscription.name) {
                Some(Some(declared)) if *declared != h.subscription => {
                    Some((h.subscription.name.clone(), declared.clone()))
                }
                _ => None,
            })
            .collect();
        MadeByApi {
            changed_from,
            policies: store
                .policies
                .iter()
                .map(|(name, policy)| (name.clone(), policy.clone()))
                .collect(),
            topics: store
                .topics
                .values()
                .filter(|t| !store.declared.contains_key(&t.name))
                .cloned()
                .collect(),
            subscriptions: store
                .subscriptions
                .values()
                .map(|h| &h.subscription)
                .filter(|s| match store.declared.get(&s.name) {
                    None => true,
                    Some(declared) => declared.as_ref() != Some(*s),
                })
                .cloned()
                .collect(),
        }
    }

    /// Puts back what the API made or changed before a restart, once the file's
    /// declarations are in (and before anything else happens), with the rules that hold
    /// while frontdoor runs:
    /// - a topic or subscription the API made comes back; if the file now declares the
    ///   same name differently, the API's stays the API's (it was there first), and the
    ///   file's does not take it over; a subscription whose topic is gone is detached;
    /// - a declared subscription the API changed takes the API's settings only if the file
    ///   still declares it as it did when the API changed it: a file edited since wins, and
    ///   a name it no longer declares is gone.
    ///
    /// Messages are not kept across restarts.
    pub(crate) fn restore(&self, made: MadeByApi) {
        let mut guard = self.store();
        let store = &mut *guard;
        for topic in made.topics {
            if store.declared.contains_key(&topic.name)
                && store.topics.get(&topic.name) != Some(&topic)
            {
                store.declared.remove(&topic.name);
            }
            store.topics.insert(topic.name.clone(), topic);
        }
        for mut subscription in made.subscriptions {
            let name = subscription.name.clone();
            match made.changed_from.get(&name) {
                Some(from) => match store.declared.get(&name) {
                    Some(Some(now)) if now == from => {}
                    _ => continue,
                },
                None => {
                    if store.declared.contains_key(&name)
                        && store
                            .subscriptions
                            .get(&name)
                            .is_some_and(|h| h.subscription != subscription)
                    {
                        store.declared.remove(&name);
                    }
                }
            }
            if !store.topics.contains_key(&subscription.topic) {
                DELETED_TOPIC.clone_into(&mut subscription.topic);
            }
            let held = Held {
                subscription,
                entries: BTreeMap::new(),
            };
            store.subscriptions.insert(name, held);
        }
        for (name, policy) in made.policies {
            if store.topics.contains_key(&name) || store.subscriptions.contains_key(&name) {
                store.policies.insert(name, policy);
            }
        }
        drop(guard);
        self.redefined();
        self.changed.notify_waiters();
    }

    /// Counts a change of what the store holds (not of its messages) and wakes whoever
    /// keeps it ([`Broker::next_definition`]).
    pub(super) fn redefined(&self) {
        self.revision.fetch_add(1, Ordering::Relaxed);
        self.redefined.notify_waiters();
    }

    /// How many times the topics and subscriptions have changed.
    pub(crate) fn revision(&self) -> u64 {
        self.revision.load(Ordering::Relaxed)
    }

    /// Resolves at the next change of the topics and subscriptions; armed (`enable`)
    /// before [`Broker::revision`] is read, it misses none.
    pub(crate) fn next_definition(&self) -> tokio::sync::futures::Notified<'_> {
        self.redefined.notified()
    }
}
