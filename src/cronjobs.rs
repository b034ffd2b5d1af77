//! Cloud Scheduler's jobs (issue 30), held as Google's own messages: when each next fires
//! by its schedule and time zone, the run out now and its retries. The dispatcher
//! (`managed::scheduler`) takes what is due and reports back; the API
//! (`google::scheduler`) checks who may ask and calls in here.
//!
//! Google's rules kept here: an enabled job fires at each time its unix-cron schedule
//! names in its time zone; a failed attempt is retried with the job's backoff (as Cloud
//! Tasks': doubling `max_doublings` times from `min_backoff_duration`, then linear, never
//! past `max_backoff_duration`) until both `retry_count` and `max_retry_duration` are spent,
//! and the job then waits for its next time. A run still going when the next time comes
//! lets that time pass. `RunJob` fires it now, whatever its schedule.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use googleapis_tonic_google_cloud_scheduler_v1::google::cloud::scheduler::v1 as pb;
use pb::job::State;
use prost::Message as _;

use crate::broker::Page;
use crate::config::scheduler::Schedule;
use crate::taskqueue::{After, Outcome, timestamp};

/// How many jobs one project may have (Google's default quota is 5,000).
pub(crate) const MAX_JOBS: usize = 5000;
/// The most one job may take, and all of them together: Google states no size for a job;
/// frontdoor bounds what it holds.
pub(crate) const MAX_JOB_BYTES: usize = 1024 * 1024;
pub(crate) const MAX_HELD_BYTES: usize = 64 * 1024 * 1024;

/// Google's defaults for a job's retries.
const DEFAULT_MIN_BACKOFF: Duration = Duration::from_secs(5);
const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(3600);
const DEFAULT_MAX_DOUBLINGS: i32 = 5;

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

/// One attempt handed to the dispatcher.
#[derive(Debug, Clone)]
pub(crate) struct Fire {
    pub(crate) job: pb::Job,
    /// The time the schedule named for this run (`X-CloudScheduler-ScheduleTime`); now,
    /// for a `RunJob`.
    pub(crate) scheduled: SystemTime,
    /// Which attempt of the run this is, from 1.
    pub(crate) attempt: i32,
    /// Which run this is, so a late report of an earlier one is ignored.
    run: u64,
    job_id: u64,
}

struct Run {
    id: u64,
    /// Started by `RunJob`: it goes even while the job is paused.
    forced: bool,
    scheduled: SystemTime,
    first: SystemTime,
    attempt: i32,
    /// When the next attempt is due; none while one is out.
    due: Option<SystemTime>,
}

struct Held {
    id: u64,
    job: pb::Job,
    schedule: Schedule,
    /// The file's declaration, if services.yaml declares it.
    declared: Option<pb::Job>,
    next: Option<SystemTime>,
    run: Option<Run>,
    /// A `RunJob` that came while an attempt was out: it starts when that one ends, so
    /// that a job has at most one call out at once.
    rerun: bool,
    bytes: usize,
}

#[derive(Default)]
struct Store {
    jobs: BTreeMap<String, Held>,
    next_id: u64,
    /// The encoded bytes of every job held.
    bytes: usize,
}

/// What the store holds, for `status`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub(crate) struct Holding {
    pub(crate) jobs: usize,
    pub(crate) running: usize,
}

#[derive(Default)]
pub(crate) struct Jobs {
    store: Mutex<Store>,
    changed: tokio::sync::Notify,
    /// Counts the changes of what the jobs are (not of their runs), for what keeps the
    /// API's jobs in the state directory.
    revision: std::sync::atomic::AtomicU64,
}

/// The job with Google's defaults for what it leaves unset.
fn with_defaults(mut job: pb::Job) -> pb::Job {
    let retry = job.retry_config.get_or_insert_with(Default::default);
    let d = crate::taskqueue::proto_duration;
    retry.min_backoff_duration = retry.min_backoff_duration.or(Some(d(DEFAULT_MIN_BACKOFF)));
    retry.max_retry_duration = retry.max_retry_duration.or(Some(d(Duration::ZERO)));
    retry.max_backoff_duration = retry.max_backoff_duration.or(Some(d(DEFAULT_MAX_BACKOFF)));
    if retry.max_doublings == 0 {
        retry.max_doublings = DEFAULT_MAX_DOUBLINGS;
    }
    if job.time_zone.is_empty() {
        job.time_zone = "Etc/UTC".into();
    }
    job.attempt_deadline = job
        .attempt_deadline
        .or(Some(d(crate::config::scheduler::DEFAULT_DEADLINE)));
    if job.state == State::Unspecified as i32 {
        job.state = State::Enabled as i32;
    }
    job
}

/// The same backoff as Cloud Tasks', from a job's retry config.
fn backoff(retry: &pb::RetryConfig, n: i32) -> Duration {
    crate::taskqueue::backoff(
        &googleapis_tonic_google_cloud_tasks_v2::google::cloud::tasks::v2::RetryConfig {
            min_backoff: retry.min_backoff_duration,
            max_backoff: retry.max_backoff_duration,
            max_doublings: retry.max_doublings,
            ..Default::default()
        },
        n,
    )
}

impl Jobs {
    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn wake(&self) {
        self.changed.notify_waiters();
    }

    fn redefined(&self) {
        self.revision
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many times what the jobs are has changed.
    pub(crate) fn revision(&self) -> u64 {
        self.revision.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The jobs the API made (not the file), as they stand.
    pub(crate) fn made_by_api(&self) -> Vec<pb::Job> {
        self.store()
            .jobs
            .values()
            .filter(|h| h.declared.is_none())
            .map(|h| h.job.clone())
            .collect()
    }

    /// Puts back jobs the API made before a restart, each in its state; a name already
    /// held (the file's now) is left as it is. What fails the create's checks is said.
    pub(crate) fn restore(&self, jobs: Vec<pb::Job>, now: SystemTime) -> Vec<(String, String)> {
        let mut refused = Vec::new();
        for job in jobs {
            let name = job.name.clone();
            let state = job.state;
            match self.create(job, now) {
                Ok(_) if state == State::Paused as i32 => {
                    let _ = self.set_state(&name, State::Paused, now);
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

    pub(crate) fn changed(&self) -> tokio::sync::futures::Notified<'_> {
        self.changed.notified()
    }

    /// The jobs services.yaml declares, in force: a declared job takes the file's
    /// settings when the file changes them; one the file no longer declares goes; a job
    /// the API made stays the API's. A declared job that does not parse is left out (the
    /// configuration refuses it before it gets here).
    pub(crate) fn declare(&self, jobs: &[pb::Job], now: SystemTime) {
        let mut store = self.store();
        store
            .jobs
            .retain(|name, held| held.declared.is_none() || jobs.iter().any(|j| &j.name == name));
        for job in jobs {
            let Ok(schedule) = crate::config::scheduler::check_job(job) else {
                continue;
            };
            match store.jobs.get_mut(&job.name) {
                Some(held) if held.declared.as_ref().is_some_and(|d| d != job) => {
                    let state = held.job.state;
                    held.job = pb::Job {
                        state,
                        user_update_time: Some(timestamp(now)),
                        ..with_defaults(job.clone())
                    };
                    held.bytes = held.job.encoded_len();
                    held.next = schedule.next_after(now);
                    held.schedule = schedule;
                    held.declared = Some(job.clone());
                    held.job.schedule_time = held.next.map(timestamp);
                }
                // The API's, declared as it is (folded): the file's from now on.
                Some(held) if held.declared.is_none() => {
                    let plain = |j: pb::Job| pb::Job {
                        state: 0,
                        schedule_time: None,
                        user_update_time: None,
                        last_attempt_time: None,
                        status: None,
                        ..with_defaults(j)
                    };
                    if plain(held.job.clone()) == plain(job.clone()) {
                        held.declared = Some(job.clone());
                    }
                }
                Some(_) => {}
                None => {
                    store.next_id += 1;
                    let mut held = Held {
                        id: store.next_id,
                        job: with_defaults(pb::Job {
                            user_update_time: Some(timestamp(now)),
                            ..job.clone()
                        }),
                        next: schedule.next_after(now),
                        schedule,
                        declared: Some(job.clone()),
                        run: None,
                        rerun: false,
                        bytes: 0,
                    };
                    held.job.schedule_time = held.next.map(timestamp);
                    held.bytes = held.job.encoded_len();
                    store.jobs.insert(job.name.clone(), held);
                }
            }
        }
        store.bytes = store.jobs.values().map(|h| h.bytes).sum();
        drop(store);
        self.redefined();
        self.wake();
    }

    pub(crate) fn create(&self, job: pb::Job, now: SystemTime) -> Result<pb::Job, Error> {
        let schedule = crate::config::scheduler::check_job(&job).map_err(Error::InvalidArgument)?;
        let mut store = self.store();
        store.fits(&job, None)?;
        if store.jobs.contains_key(&job.name) {
            return Err(Error::AlreadyExists(format!(
                "Job {} already exists.",
                job.name
            )));
        }
        if store.jobs.len() >= MAX_JOBS {
            return Err(Error::ResourceExhausted(format!(
                "frontdoor holds {MAX_JOBS} jobs, the most a project may have by Google's quota: delete one first"
            )));
        }
        // What is output only is the store's to say.
        let mut job = with_defaults(pb::Job {
            state: State::Unspecified as i32,
            status: None,
            schedule_time: None,
            last_attempt_time: None,
            user_update_time: Some(timestamp(now)),
            ..job
        });
        let next = schedule.next_after(now);
        job.schedule_time = next.map(timestamp);
        store.next_id += 1;
        let bytes = job.encoded_len();
        let held = Held {
            id: store.next_id,
            job: job.clone(),
            schedule,
            declared: None,
            next,
            run: None,
            rerun: false,
            bytes,
        };
        store.bytes += bytes;
        store.jobs.insert(job.name.clone(), held);
        drop(store);
        self.redefined();
        self.wake();
        Ok(job)
    }

    pub(crate) fn get(&self, name: &str) -> Result<pb::Job, Error> {
        Ok(self.store().held(name)?.job.clone())
    }

    /// A page of the jobs under `parent` (`projects/P/locations/L`).
    pub(crate) fn list(&self, parent: &str, page: Page<'_>) -> (Vec<pb::Job>, String) {
        let store = self.store();
        let prefix = format!("{parent}/jobs/");
        let start = page.start(&prefix);
        page.take(
            store
                .jobs
                .range(start..)
                .take_while(|(n, _)| n.starts_with(&prefix))
                .map(|(n, h)| (n.as_str(), h.job.clone())),
        )
    }

    /// Changes job `name` by `f`; the result is checked as a create's is.
    pub(crate) fn update(
        &self,
        name: &str,
        now: SystemTime,
        f: impl FnOnce(&mut pb::Job),
    ) -> Result<pb::Job, Error> {
        let mut store = self.store();
        let mut job = store.held(name)?.job.clone();
        f(&mut job);
        store.fits(&job, Some(name))?;
        let held = store.held_mut(name)?;
        let schedule = crate::config::scheduler::check_job(&job).map_err(Error::InvalidArgument)?;
        job.user_update_time = Some(timestamp(now));
        let before = held.bytes;
        held.job = with_defaults(job);
        held.bytes = held.job.encoded_len();
        let after = held.bytes;
        held.next = schedule.next_after(now);
        held.schedule = schedule;
        held.job.schedule_time = held.next.map(timestamp);
        let job = held.job.clone();
        store.bytes = store.bytes - before + after;
        drop(store);
        self.redefined();
        self.wake();
        Ok(job)
    }

    pub(crate) fn delete(&self, name: &str) -> Result<(), Error> {
        let mut store = self.store();
        store.held(name)?;
        if let Some(held) = store.jobs.remove(name) {
            store.bytes = store.bytes.saturating_sub(held.bytes);
        }
        drop(store);
        self.redefined();
        Ok(())
    }

    /// Pauses or resumes job `name`; a resumed job fires next at its next time from now.
    pub(crate) fn set_state(
        &self,
        name: &str,
        state: State,
        now: SystemTime,
    ) -> Result<pb::Job, Error> {
        let mut store = self.store();
        let held = store.held_mut(name)?;
        held.job.state = state as i32;
        if state == State::Enabled {
            held.next = held.schedule.next_after(now);
            held.job.schedule_time = held.next.map(timestamp);
        }
        let job = held.job.clone();
        drop(store);
        self.redefined();
        self.wake();
        Ok(job)
    }

    /// `RunJob`: a run starts now, whatever the schedule or the job's state; while an
    /// attempt is out, as soon as it ends.
    pub(crate) fn run(&self, name: &str, now: SystemTime) -> Result<pb::Job, Error> {
        let mut store = self.store();
        store.next_id += 1;
        let id = store.next_id;
        let held = store.held_mut(name)?;
        if held.run.as_ref().is_some_and(|r| r.due.is_none()) {
            held.rerun = true;
        } else {
            held.run = Some(Run::forced(id, now));
        }
        let job = held.job.clone();
        drop(store);
        self.wake();
        Ok(job)
    }

    /// The attempts due by `now`, marked out; and when the next one may be due.
    pub(crate) fn take_due(&self, now: SystemTime) -> (Vec<Fire>, Option<SystemTime>) {
        let mut store = self.store();
        let Store { jobs, next_id, .. } = &mut *store;
        let mut out = Vec::new();
        let mut next: Option<SystemTime> = None;
        let mut soonest = |t: SystemTime| next = Some(next.map_or(t, |n| n.min(t)));
        for held in jobs.values_mut() {
            let enabled = held.job.state == State::Enabled as i32;
            // The schedule's time came: a run starts, unless one is still going.
            while enabled && let Some(at) = held.next.filter(|at| *at <= now) {
                if held.run.is_none() {
                    *next_id += 1;
                    held.run = Some(Run {
                        id: *next_id,
                        forced: false,
                        scheduled: at,
                        first: now,
                        attempt: 0,
                        due: Some(now),
                    });
                }
                held.next = held.schedule.next_after(now.max(at));
                held.job.schedule_time = held.next.map(timestamp);
            }
            if enabled && let Some(at) = held.next {
                soonest(at);
            }
            let Some(run) = &mut held.run else { continue };
            // A paused job's retries wait; a run `RunJob` started does not.
            if !enabled && !run.forced {
                continue;
            }
            match run.due {
                Some(due) if due <= now => {
                    run.due = None;
                    run.attempt = run.attempt.saturating_add(1);
                    held.job.last_attempt_time = Some(timestamp(now));
                    out.push(Fire {
                        job: held.job.clone(),
                        scheduled: run.scheduled,
                        attempt: run.attempt,
                        run: run.id,
                        job_id: held.id,
                    });
                }
                Some(due) => soonest(due),
                None => {}
            }
        }
        (out, next)
    }

    /// The end of an attempt: a 2xx ends the run; anything else schedules the retry the
    /// job's config allows, or ends the run until the next time.
    pub(crate) fn finished(&self, fire: &Fire, outcome: &Outcome, now: SystemTime) -> After {
        let mut store = self.store();
        let Some(held) = store
            .jobs
            .get_mut(&fire.job.name)
            .filter(|h| h.id == fire.job_id)
        else {
            return After::Gone;
        };
        let rerun = std::mem::take(&mut held.rerun);
        let Some(run) = held.run.as_mut().filter(|r| r.id == fire.run) else {
            held.rerun = rerun;
            return After::Gone;
        };
        let (code, message) = crate::taskqueue::status_code(outcome);
        held.job.status = Some(
            googleapis_tonic_google_cloud_scheduler_v1::google::rpc::Status {
                code,
                message,
                details: Vec::new(),
            },
        );
        let after = match outcome {
            Outcome::Answered(status) if (200..300).contains(status) => After::Done,
            _ => {
                let retry = held.job.retry_config.unwrap_or_default();
                let retries_spent = run.attempt > retry.retry_count;
                let limit = retry
                    .max_retry_duration
                    .map(crate::broker::duration)
                    .unwrap_or_default();
                let time_spent =
                    limit.is_zero() || now.duration_since(run.first).unwrap_or_default() >= limit;
                if retries_spent && time_spent {
                    After::GivenUp
                } else {
                    let at = now.checked_add(backoff(&retry, run.attempt)).unwrap_or(now);
                    run.due = Some(at);
                    After::RetryAt(at)
                }
            }
        };
        if rerun {
            store.next_id += 1;
            let id = store.next_id;
            if let Some(held) = store.jobs.get_mut(&fire.job.name) {
                held.run = Some(Run::forced(id, now));
            }
        } else if matches!(after, After::Done | After::GivenUp) {
            held.run = None;
        }
        drop(store);
        self.wake();
        after
    }

    /// Every job held, by name: what the dashboard's graph draws.
    pub(crate) fn every(&self) -> Vec<pb::Job> {
        self.store().jobs.values().map(|h| h.job.clone()).collect()
    }

    pub(crate) fn held(&self) -> Holding {
        let store = self.store();
        Holding {
            jobs: store.jobs.len(),
            running: store.jobs.values().filter(|h| h.run.is_some()).count(),
        }
    }
}

impl Run {
    fn forced(id: u64, now: SystemTime) -> Run {
        Run {
            id,
            forced: true,
            scheduled: now,
            first: now,
            attempt: 0,
            due: Some(now),
        }
    }
}

impl Store {
    /// Whether `job` fits in what frontdoor holds, in place of job `replacing`.
    fn fits(&self, job: &pb::Job, replacing: Option<&str>) -> Result<(), Error> {
        let size = job.encoded_len();
        if size > MAX_JOB_BYTES {
            return Err(Error::InvalidArgument(format!(
                "The job is {size} bytes; frontdoor holds jobs of at most {MAX_JOB_BYTES} bytes"
            )));
        }
        let replaced = replacing
            .and_then(|n| self.jobs.get(n))
            .map_or(0, |h| h.bytes);
        let held = self.bytes - replaced;
        if held + size > MAX_HELD_BYTES {
            return Err(Error::ResourceExhausted(format!(
                "frontdoor holds {held} bytes of jobs, and at most {MAX_HELD_BYTES}: delete some first"
            )));
        }
        Ok(())
    }

    fn held(&self, name: &str) -> Result<&Held, Error> {
        self.jobs
            .get(name)
            .ok_or_else(|| Error::NotFound(format!("Job {name} does not exist.")))
    }

    fn held_mut(&mut self, name: &str) -> Result<&mut Held, Error> {
        self.jobs
            .get_mut(name)
            .ok_or_else(|| Error::NotFound(format!("Job {name} does not exist.")))
    }
}

#[cfg(test)]
mod tests;
