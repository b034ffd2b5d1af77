//! Cloud Tasks' queues and their tasks (issue 30), held as Google's own messages: what
//! the API creates, what the file declares, when each task is due, and how each dispatch
//! ended. The dispatcher (`managed::tasks`) takes what is due and reports back; the API
//! (`google::tasks`) checks who may ask and what a request may say, and calls in here.
//!
//! Google's rules kept here: a task runs at its `scheduleTime`, is retried after a failed
//! attempt with the queue's backoff (it doubles `max_doublings` times from `min_backoff`,
//! then grows by that last step, never past `max_backoff`) until both `max_attempts` and
//! `max_retry_duration` are spent, and is deleted when it succeeds or gives up. A task's
//! own name cannot be used again for an hour after it ran or was deleted. A paused queue
//! keeps its tasks and dispatches none; a queue dispatches no faster than its rate and
//! no more at once than its `max_concurrent_dispatches`.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use googleapis_tonic_google_cloud_tasks_v2::google::cloud::tasks::v2 as pb;
use pb::queue::State;

use crate::broker::Page;

mod dispatch;
mod tasks;
#[cfg(test)]
mod tests;

pub(crate) use dispatch::{After, Dispatch, Outcome, backoff, status_code};

/// The most bytes of tasks held across every queue; past it a create is refused (Google
/// holds without end; a test machine's memory does not).
pub(crate) const MAX_HELD_BYTES: usize = 512 * 1024 * 1024;
/// What one held task costs besides its own encoding: its entry and name in the maps.
const TASK_OVERHEAD: usize = 192;
/// How long a task's own name stays taken after it ran or was deleted: Google's "about an
/// hour".
pub(crate) const NAME_REUSE_AFTER: Duration = Duration::from_secs(3600);
/// Names remembered as taken at most; past it the oldest is forgotten early. A name is at
/// most about 700 bytes (its project, location, queue and task ids are bounded), so this
/// holds at most about 35 MB.
const MAX_TOMBSTONES: usize = 50_000;
/// The last second a timestamp here may name: 9999-12-31T23:59:59Z, as Google's do.
pub(crate) const LAST_SECOND: i64 = 253_402_300_799;
/// How many queues one project may have (Google's default quota is 1,000).
pub(crate) const MAX_QUEUES: usize = 1000;

/// Google's defaults for what a created queue leaves unset.
pub(crate) const DEFAULT_RATE: f64 = 500.0;
pub(crate) const DEFAULT_CONCURRENT: i32 = 1000;
pub(crate) const DEFAULT_MAX_ATTEMPTS: i32 = 100;
pub(crate) const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(100);
pub(crate) const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(3600);
pub(crate) const DEFAULT_MAX_DOUBLINGS: i32 = 16;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    ResourceExhausted(String),
}

struct Entry {
    task: pb::Task,
    due: SystemTime,
    /// The dispatch out now, if one is.
    out: Option<u64>,
    /// Whether the creator named it (only then is the name kept from reuse).
    named: bool,
    bytes: usize,
    executions: i32,
    previous_response: Option<u16>,
    retry_reason: Option<String>,
    first_attempt: Option<SystemTime>,
}

struct Held {
    /// Unique among every queue this store has held, so that a report from a deleted
    /// queue's dispatch never counts against a new queue of the same name.
    id: u64,
    queue: pb::Queue,
    /// The file's declaration, if services.yaml declares it (else the API made it): the
    /// queue takes it again only when the file changes it, so an API change to a
    /// declared queue lasts until then.
    declared: Option<pb::Queue>,
    tasks: BTreeMap<String, Entry>,
    /// The tasks not out, by when they are due.
    due: BTreeSet<(SystemTime, String)>,
    running: usize,
    /// The rate's token bucket: tokens, and when they were last counted.
    tokens: f64,
    counted: SystemTime,
    /// Tasks `RunTask` asked for, to go at the next look whatever the queue's state.
    forced: Vec<String>,
}

#[derive(Default)]
struct Store {
    queues: BTreeMap<String, Held>,
    /// Task names kept from reuse, until when, oldest first.
    tombstones: VecDeque<(Arc<str>, SystemTime)>,
    taken: HashMap<Arc<str>, SystemTime>,
    bytes: usize,
    count: usize,
    next_id: u64,
    next_dispatch: u64,
    next_queue: u64,
}

/// What the store holds, for the dashboard and `status`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Holding {
    pub(crate) queues: usize,
    pub(crate) tasks: usize,
    pub(crate) bytes: usize,
}

pub(crate) struct TaskQueues {
    store: Mutex<Store>,
    changed: tokio::sync::Notify,
    /// Counts the changes of what the queues are (not of their tasks), for what keeps the
    /// API's queues in the state directory.
    revision: std::sync::atomic::AtomicU64,
}

impl Default for TaskQueues {
    fn default() -> Self {
        TaskQueues::new()
    }
}

pub(crate) fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    let d = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// The time `t` names, within 1970 to 9999 (the API refuses others before they get here).
pub(crate) fn time_of(t: prost_types::Timestamp) -> SystemTime {
    let seconds = u64::try_from(t.seconds.clamp(0, LAST_SECOND)).unwrap_or(0);
    let nanos = u32::try_from(t.nanos.clamp(0, 999_999_999)).unwrap_or(0);
    SystemTime::UNIX_EPOCH + Duration::new(seconds, nanos)
}

fn duration_of(d: Option<prost_types::Duration>) -> Duration {
    d.map(crate::broker::duration).unwrap_or_default()
}

pub(crate) fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// `projects/P/locations/L/queues/Q` of a task's name.
pub(crate) fn queue_of(task: &str) -> &str {
    task.rsplit_once("/tasks/").map_or(task, |(q, _)| q)
}

/// The last segment of a name: a queue's or a task's id.
pub(crate) fn id_of(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

/// The queue with Google's defaults for what it leaves unset, and the burst size Google
/// derives from its rate.
pub(crate) fn with_defaults(mut queue: pb::Queue) -> pb::Queue {
    let rate = queue.rate_limits.get_or_insert_with(Default::default);
    if rate.max_dispatches_per_second <= 0.0 {
        rate.max_dispatches_per_second = DEFAULT_RATE;
    }
    if rate.max_concurrent_dispatches <= 0 {
        rate.max_concurrent_dispatches = DEFAULT_CONCURRENT;
    }
    rate.max_burst_size = burst(rate.max_dispatches_per_second);
    let retry = queue.retry_config.get_or_insert_with(Default::default);
    if retry.max_attempts == 0 {
        retry.max_attempts = DEFAULT_MAX_ATTEMPTS;
    }
    if retry.min_backoff.is_none() {
        retry.min_backoff = Some(proto_duration(DEFAULT_MIN_BACKOFF));
    }
    if retry.max_backoff.is_none() {
        retry.max_backoff = Some(proto_duration(DEFAULT_MAX_BACKOFF));
    }
    if retry.max_doublings == 0 {
        retry.max_doublings = DEFAULT_MAX_DOUBLINGS;
    }
    if queue.state == State::Unspecified as i32 {
        queue.state = State::Running as i32;
    }
    queue
}

/// The bucket a rate refills: a second's worth, at least one task and at most 100 (the
/// size Google gives its default queue). Google derives its own from the rate by a rule
/// it does not publish; this one is ours.
fn burst(rate: f64) -> i32 {
    rate.ceil().clamp(1.0, 100.0) as i32
}

impl TaskQueues {
    pub(crate) fn new() -> TaskQueues {
        TaskQueues {
            store: Mutex::new(Store {
                // Ids look like Google's, a long number, and differ between runs.
                next_id: fastrand::u64(1_000_000_000_000_000_000..9_000_000_000_000_000_000),
                ..Store::default()
            }),
            changed: tokio::sync::Notify::new(),
            revision: std::sync::atomic::AtomicU64::new(0),
        }
    }

    fn redefined(&self) {
        self.revision
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times what the queues are has changed.
    pub(crate) fn revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The queues the API made (not the file), as they stand.
    pub(crate) fn made_by_api(&self) -> Vec<pb::Queue> {
        self.store()
            .queues
            .values()
            .filter(|h| h.declared.is_none())
            .map(|h| h.queue.clone())
            .collect()
    }

    /// Puts back queues the API made before a restart, each in its state (their tasks are
    /// not kept); a name already held (the file's now) is left as it is.
    pub(crate) fn restore(&self, queues: Vec<pb::Queue>) -> Vec<(String, String)> {
        let mut refused = Vec::new();
        for queue in queues {
            let name = queue.name.clone();
            let state = queue.state;
            match self.create_queue(queue) {
                Ok(_) if state == State::Paused as i32 => {
                    let _ = self.set_state(&name, State::Paused);
                }
                Ok(_) => {}
                // The file declares it now: the file's stands, as it would have had the
                // file declared it first.
                Err(Error::AlreadyExists(_)) => refused.push((
                    name,
                    "services.yaml declares it now, and the file's stands; the API's is dropped"
                        .to_owned(),
                )),
                Err(e) => refused.push((name, format!("{e}; it is dropped"))),
            }
        }
        refused
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wakes the dispatcher (a task or a queue changed).
    fn wake(&self) {
        self.changed.notify_waiters();
    }

    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// The queues services.yaml declares, in force: a declared queue gets the file's
    /// settings and keeps its tasks; one the file no longer declares goes, with its tasks;
    /// a queue the API made stays the API's.
    pub(crate) fn declare(&self, queues: &[pb::Queue]) {
        let mut store = self.store();
        let gone: Vec<String> = store
            .queues
            .iter()
            .filter(|(name, held)| {
                held.declared.is_some() && !queues.iter().any(|q| &q.name == *name)
            })
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            store.remove_queue(&name);
        }
        for queue in queues {
            match store.queues.get_mut(&queue.name) {
                Some(held) if held.declared.as_ref().is_some_and(|d| d != queue) => {
                    let state = held.queue.state;
                    let purge_time = held.queue.purge_time;
                    held.queue = pb::Queue {
                        state,
                        purge_time,
                        ..with_defaults(queue.clone())
                    };
                    held.declared = Some(queue.clone());
                }
                // The API's, declared as it is (folded): the file's from now on.
                Some(held) if held.declared.is_none() => {
                    let plain = |q: pb::Queue| pb::Queue {
                        state: 0,
                        purge_time: None,
                        ..with_defaults(q)
                    };
                    if plain(held.queue.clone()) == plain(queue.clone()) {
                        held.declared = Some(queue.clone());
                    }
                }
                Some(_) => {}
                None => {
                    store.next_queue += 1;
                    let held = Held::new(
                        store.next_queue,
                        with_defaults(queue.clone()),
                        Some(queue.clone()),
                    );
                    store.queues.insert(queue.name.clone(), held);
                }
            }
        }
        drop(store);
        self.redefined();
        self.wake();
    }

    pub(crate) fn create_queue(&self, queue: pb::Queue) -> Result<pb::Queue, Error> {
        let mut store = self.store();
        if store.queues.contains_key(&queue.name) {
            return Err(Error::AlreadyExists(format!(
                "Queue {} already exists.",
                queue.name
            )));
        }
        if store.queues.len() >= MAX_QUEUES {
            return Err(Error::ResourceExhausted(format!(
                "frontdoor holds {MAX_QUEUES} queues, the most a project may have by Google's quota: delete one first"
            )));
        }
        // What is output only is the store's to say.
        let queue = with_defaults(pb::Queue {
            state: State::Unspecified as i32,
            purge_time: None,
            ..queue
        });
        store.next_queue += 1;
        let held = Held::new(store.next_queue, queue.clone(), None);
        store.queues.insert(queue.name.clone(), held);
        drop(store);
        self.redefined();
        Ok(queue)
    }

    pub(crate) fn queue(&self, name: &str) -> Result<pb::Queue, Error> {
        Ok(self.store().held(name)?.queue.clone())
    }

    /// A page of the queues under `parent` (`projects/P/locations/L`).
    pub(crate) fn queues(&self, parent: &str, page: Page<'_>) -> (Vec<pb::Queue>, String) {
        let store = self.store();
        let prefix = format!("{parent}/queues/");
        let start = page.start(&prefix);
        page.take(
            store
                .queues
                .range(start..)
                .take_while(|(n, _)| n.starts_with(&prefix))
                .map(|(n, h)| (n.as_str(), h.queue.clone())),
        )
    }

    /// Changes queue `name` by `f` (which checks the result).
    pub(crate) fn update_queue(
        &self,
        name: &str,
        f: impl FnOnce(&mut pb::Queue) -> Result<(), Error>,
    ) -> Result<pb::Queue, Error> {
        let mut store = self.store();
        let held = store.held_mut(name)?;
        let mut queue = held.queue.clone();
        f(&mut queue)?;
        held.queue = with_defaults(queue);
        let queue = held.queue.clone();
        drop(store);
        self.redefined();
        self.wake();
        Ok(queue)
    }

    pub(crate) fn delete_queue(&self, name: &str) -> Result<(), Error> {
        let mut store = self.store();
        store.held(name)?;
        store.remove_queue(name);
        drop(store);
        self.redefined();
        Ok(())
    }

    /// Pauses or resumes queue `name`.
    pub(crate) fn set_state(&self, name: &str, state: State) -> Result<pb::Queue, Error> {
        let mut store = self.store();
        let held = store.held_mut(name)?;
        held.queue.state = state as i32;
        let queue = held.queue.clone();
        drop(store);
        self.redefined();
        self.wake();
        Ok(queue)
    }

    /// Deletes every task of queue `name`; their names stay taken as a deletion's do.
    pub(crate) fn purge(&self, name: &str, now: SystemTime) -> Result<pb::Queue, Error> {
        let mut store = self.store();
        let held = store.held_mut(name)?;
        held.queue.purge_time = Some(timestamp(now));
        let queue = held.queue.clone();
        let tasks: Vec<String> = held.tasks.keys().cloned().collect();
        for id in tasks {
            store.remove_task(name, &id, now);
        }
        Ok(queue)
    }

    pub(crate) fn held(&self) -> Holding {
        let store = self.store();
        Holding {
            queues: store.queues.len(),
            tasks: store.count,
            bytes: store.bytes,
        }
    }
}

impl Held {
    fn new(id: u64, queue: pb::Queue, declared: Option<pb::Queue>) -> Held {
        let tokens = f64::from(queue.rate_limits.unwrap_or_default().max_burst_size.max(1));
        Held {
            id,
            queue,
            declared,
            tasks: BTreeMap::new(),
            due: BTreeSet::new(),
            running: 0,
            tokens,
            counted: SystemTime::now(),
            forced: Vec::new(),
        }
    }
}

impl Store {
    fn held(&self, name: &str) -> Result<&Held, Error> {
        self.queues
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("Queue {name} does not exist.")))
    }

    fn held_mut(&mut self, name: &str) -> Result<&mut Held, Error> {
        self.queues
            .get_mut(name)
            .ok_or_else(|| Error::NotFound(format!("Queue {name} does not exist.")))
    }

    fn entry(&self, name: &str) -> Result<&Entry, Error> {
        self.held(queue_of(name))?
            .tasks
            .get(id_of(name))
            .ok_or_else(|| missing(name))
    }

    fn remove_queue(&mut self, name: &str) {
        if let Some(held) = self.queues.remove(name) {
            for entry in held.tasks.values() {
                self.bytes = self.bytes.saturating_sub(entry.bytes);
                self.count = self.count.saturating_sub(1);
            }
        }
    }

    /// Takes task `id` out of queue `queue`; a named task's name stays taken for
    /// [`NAME_REUSE_AFTER`].
    fn remove_task(&mut self, queue: &str, id: &str, now: SystemTime) {
        let Some(held) = self.queues.get_mut(queue) else {
            return;
        };
        let Some(entry) = held.tasks.remove(id) else {
            return;
        };
        held.due.remove(&(entry.due, id.to_owned()));
        self.bytes = self.bytes.saturating_sub(entry.bytes);
        self.count = self.count.saturating_sub(1);
        if entry.named {
            let until = now + NAME_REUSE_AFTER;
            let name: Arc<str> = Arc::from(entry.task.name);
            self.taken.insert(name.clone(), until);
            self.tombstones.push_back((name, until));
            while self.tombstones.len() > MAX_TOMBSTONES {
                if let Some((name, _)) = self.tombstones.pop_front() {
                    self.taken.remove(&name);
                }
            }
        }
    }

    fn forget_tombstones(&mut self, now: SystemTime) {
        while let Some((name, until)) = self.tombstones.front() {
            if *until > now {
                break;
            }
            // A name taken again later has a later entry; only this one's time goes.
            if self.taken.get(name.as_ref()) == Some(until) {
                self.taken.remove(name.as_ref());
            }
            self.tombstones.pop_front();
        }
    }
}

fn missing(name: &str) -> Error {
    Error::NotFound(format!(
        "Task {name} does not exist: it was never created, or it has run, given up, or been deleted."
    ))
}
