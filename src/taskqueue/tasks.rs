//! The tasks of the queues: made (named or not, due when asked), listed, run now and
//! deleted, and the callers the waiting ones will call as.

use std::time::SystemTime;

use prost::Message as _;

use super::{
    Entry, Error, MAX_HELD_BYTES, Page, TASK_OVERHEAD, TaskQueues, id_of, missing, pb, queue_of,
    time_of, timestamp,
};

impl TaskQueues {
    /// Adds `task` (its name set when given, else made here) to queue `queue`, due at its
    /// `schedule_time` (set to `now` when unset or past).
    pub(crate) fn create_task(
        &self,
        queue: &str,
        mut task: pb::Task,
        now: SystemTime,
    ) -> Result<pb::Task, Error> {
        let mut store = self.store();
        store.held(queue)?;
        store.forget_tombstones(now);
        let named = !task.name.is_empty();
        if named {
            let id = id_of(&task.name);
            if store.queues[queue].tasks.contains_key(id) {
                return Err(Error::AlreadyExists(format!(
                    "Requested entity already exists: task {} is in the queue",
                    task.name
                )));
            }
            if let Some(until) = store.taken.get(task.name.as_str()) {
                let minutes = until
                    .duration_since(now)
                    .unwrap_or_default()
                    .as_secs()
                    .div_ceil(60);
                return Err(Error::AlreadyExists(format!(
                    "Requested entity already exists: a task named {} ran or was deleted within the hour, and Google keeps a task's name from reuse for about an hour (another {minutes} min here); name the new task differently, or leave its name to Cloud Tasks",
                    task.name
                )));
            }
        } else {
            // A creator may have named a task what the next id would be.
            loop {
                store.next_id += 1;
                let id = store.next_id.to_string();
                if !store.queues[queue].tasks.contains_key(&id) {
                    task.name = format!("{queue}/tasks/{id}");
                    break;
                }
            }
        }
        let due = task.schedule_time.map_or(now, time_of).max(now);
        task.schedule_time = Some(timestamp(due));
        task.create_time = Some(timestamp(now));
        task.dispatch_count = 0;
        task.response_count = 0;
        task.first_attempt = None;
        task.last_attempt = None;
        let bytes = task.encoded_len() + TASK_OVERHEAD;
        if store.bytes + bytes > MAX_HELD_BYTES {
            return Err(Error::ResourceExhausted(format!(
                "frontdoor holds {} tasks in {} bytes, its limit ({MAX_HELD_BYTES} bytes): let some run, or delete or purge them",
                store.count, store.bytes
            )));
        }
        store.bytes += bytes;
        store.count += 1;
        let id = id_of(&task.name).to_owned();
        let held = store.held_mut(queue)?;
        held.due.insert((due, id.clone()));
        held.tasks.insert(
            id,
            Entry {
                task: task.clone(),
                due,
                out: None,
                named,
                bytes,
                executions: 0,
                previous_response: None,
                retry_reason: None,
                first_attempt: None,
            },
        );
        drop(store);
        self.wake();
        Ok(task)
    }

    /// Whom the tasks held call, once each: their queue, URL and the account of their
    /// token, one per queue, URL origin and account, at most `max` of them (the queues'
    /// first). What the dashboard's graph draws; it reads every task.
    pub(crate) fn callers(&self, max: usize) -> Vec<(String, String, Option<String>)> {
        use pb::http_request::AuthorizationHeader;
        let store = self.store();
        let mut seen = std::collections::BTreeSet::new();
        let mut out = Vec::new();
        for (queue, held) in &store.queues {
            for entry in held.tasks.values() {
                if out.len() >= max {
                    return out;
                }
                let Some(pb::task::MessageType::HttpRequest(http)) = &entry.task.message_type
                else {
                    continue;
                };
                let account = match &http.authorization_header {
                    Some(AuthorizationHeader::OidcToken(o)) => Some(&o.service_account_email),
                    Some(AuthorizationHeader::OauthToken(o)) => Some(&o.service_account_email),
                    None => None,
                };
                let origin = url::Url::parse(&http.url)
                    .map(|u| u.origin().ascii_serialization())
                    .unwrap_or_default();
                if seen.insert((queue.as_str(), origin, account)) {
                    out.push((queue.clone(), http.url.clone(), account.cloned()));
                }
            }
        }
        out
    }

    pub(crate) fn task(&self, name: &str) -> Result<pb::Task, Error> {
        let store = self.store();
        Ok(store.entry(name)?.task.clone())
    }

    /// A page of queue `queue`'s tasks, by name.
    pub(crate) fn tasks(
        &self,
        queue: &str,
        page: Page<'_>,
    ) -> Result<(Vec<pb::Task>, String), Error> {
        let store = self.store();
        let held = store.held(queue)?;
        let start = if page.token.is_empty() {
            String::new()
        } else {
            format!("{}\u{0}", page.token)
        };
        Ok(page.take(
            held.tasks
                .range(start..)
                .map(|(id, e)| (id.as_str(), e.task.clone())),
        ))
    }

    pub(crate) fn delete_task(&self, name: &str, now: SystemTime) -> Result<(), Error> {
        let mut store = self.store();
        store.entry(name)?;
        store.remove_task(queue_of(name), id_of(name), now);
        Ok(())
    }

    /// `RunTask`: task `name` is due now, even in a paused queue, whatever its schedule
    /// (an attempt out now is let be; its report is then ignored).
    pub(crate) fn run_task(&self, name: &str, now: SystemTime) -> Result<pb::Task, Error> {
        let mut store = self.store();
        let held = store.held_mut(queue_of(name))?;
        let id = id_of(name);
        let entry = held.tasks.get_mut(id).ok_or_else(|| missing(name))?;
        held.due.remove(&(entry.due, id.to_owned()));
        entry.due = now;
        entry.out = None;
        entry.task.schedule_time = Some(timestamp(now));
        let task = entry.task.clone();
        if !held.forced.iter().any(|f| f == id) {
            held.forced.push(id.to_owned());
        }
        drop(store);
        self.wake();
        Ok(task)
    }
}
