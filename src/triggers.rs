//! What Eventarc's API keeps beside its triggers, which are the broker's subscriptions:
//! the operations of its calls, each as its JSON, for `operations.get`; and when each
//! trigger it made was made, for `createTime`, which no subscription holds. Both bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use serde_json::Value;

/// Operations kept for `operations.get`, the oldest forgotten first: gcloud reads each
/// once, right after the call that made it.
pub(crate) const MAX_OPERATIONS: usize = 1000;
/// Creation times kept, at most: as many as the broker holds subscriptions.
const MAX_CREATED: usize = crate::broker::MAX_SUBSCRIPTIONS;

#[derive(Default)]
pub(crate) struct Triggers {
    operations: Mutex<VecDeque<(String, Value)>>,
    created: Mutex<HashMap<String, SystemTime>>,
}

impl Triggers {
    pub(crate) fn keep_operation(&self, name: String, operation: Value) {
        let mut held = self.operations.lock().unwrap_or_else(|p| p.into_inner());
        if held.len() == MAX_OPERATIONS {
            held.pop_front();
        }
        held.push_back((name, operation));
    }

    pub(crate) fn operation(&self, name: &str) -> Option<Value> {
        let held = self.operations.lock().unwrap_or_else(|p| p.into_inner());
        held.iter().find(|(n, _)| n == name).map(|(_, o)| o.clone())
    }

    /// When the trigger whose subscription is `subscription` was made, if this frontdoor
    /// made it.
    pub(crate) fn created(&self, subscription: &str) -> Option<SystemTime> {
        let created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        created.get(subscription).copied()
    }

    /// Notes that `subscription`'s trigger was made `at`; when full, first forgets the
    /// triggers whose subscription is gone (deleted through Pub/Sub's API, say), as
    /// `held` says.
    pub(crate) fn made(&self, subscription: &str, at: SystemTime, held: impl Fn(&str) -> bool) {
        let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        if created.len() >= MAX_CREATED {
            created.retain(|name, _| held(name));
        }
        if created.len() < MAX_CREATED {
            created.insert(subscription.to_owned(), at);
        }
    }

    pub(crate) fn deleted(&self, subscription: &str) {
        let mut created = self.created.lock().unwrap_or_else(|p| p.into_inner());
        created.remove(subscription);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_and_times_are_bounded() {
        let t = Triggers::default();
        for i in 0..=MAX_OPERATIONS {
            t.keep_operation(format!("op-{i}"), Value::from(i));
        }
        assert_eq!(t.operation("op-0"), None, "the oldest is forgotten");
        assert_eq!(
            t.operation(&format!("op-{MAX_OPERATIONS}")),
            Some(Value::from(MAX_OPERATIONS))
        );
        let now = SystemTime::now();
        for i in 0..MAX_CREATED {
            t.made(&format!("s-{i}"), now, |_| true);
        }
        t.made("one-more", now, |_| true);
        assert_eq!(
            t.created("one-more"),
            None,
            "full, and every one still held"
        );
        t.made("one-more", now, |name| name != "s-0");
        assert_eq!(t.created("one-more"), Some(now));
        assert_eq!(t.created("s-0"), None);
        t.deleted("one-more");
        assert_eq!(t.created("one-more"), None);
    }
}
