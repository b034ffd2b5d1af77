//! The dispatcher's side of the queues: what is due now within each queue's state, rate
//! and concurrency, and what an attempt's end does to its task (done, retried after the
//! backoff, or given up).

use std::time::{Duration, SystemTime};

use googleapis_tonic_google_cloud_tasks_v2::google::cloud::tasks::v2 as pb;
use pb::queue::State;

use super::{Entry, LAST_SECOND, Store, TaskQueues, duration_of, id_of, time_of, timestamp};

/// One attempt handed to the dispatcher: the task as it stood, and what Google's
/// `X-CloudTasks-*` headers say of its past.
#[derive(Debug, Clone)]
pub(crate) struct Dispatch {
    pub(crate) queue: String,
    pub(crate) task: pb::Task,
    /// Attempts before this one (`X-CloudTasks-TaskRetryCount`).
    pub(crate) retries: i32,
    /// Answers before this one that were not a 5xx (`X-CloudTasks-TaskExecutionCount`).
    pub(crate) executions: i32,
    /// The last attempt's status, if it had one (`X-CloudTasks-TaskPreviousResponse`).
    pub(crate) previous_response: Option<u16>,
    /// Why the last attempt is retried (`X-CloudTasks-TaskRetryReason`).
    pub(crate) retry_reason: Option<String>,
    /// When this attempt was due (`X-CloudTasks-TaskETA`).
    pub(crate) eta: SystemTime,
    /// Which dispatch of the task this is, so a late report of an earlier one is ignored.
    generation: u64,
    /// Which queue of this name it came from: one deleted and made again is another.
    queue_id: u64,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    /// The handler answered with this status.
    Answered(u16),
    /// No answer: the deadline passed, or the request could not be sent.
    NoAnswer(String),
}

/// What happened to a task after an attempt's report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum After {
    Done,
    RetryAt(SystemTime),
    GivenUp,
    /// The task was deleted, purged or run again meanwhile.
    Gone,
}

/// The wait before retry `n` (the first retry is 1): `min_backoff` doubled `n - 1` times
/// up to `max_doublings`, then grown by the last doubled step each time; at most
/// `max_backoff`. Google's example (10 s, 300 s, 3 doublings): 10, 20, 40, 80, 160, 240,
/// 300, 300 s.
pub(crate) fn backoff(retry: &pb::RetryConfig, n: i32) -> Duration {
    let min = duration_of(retry.min_backoff);
    let max = duration_of(retry.max_backoff);
    let doublings = u32::try_from(retry.max_doublings.max(0))
        .unwrap_or(0)
        .min(30);
    let n = u32::try_from(n.max(1)).unwrap_or(1);
    let wait = if n - 1 <= doublings {
        min.saturating_mul(1 << (n - 1))
    } else {
        let step = min.saturating_mul(1 << doublings);
        step.saturating_mul(n - doublings)
    };
    // A floor, so that a zero backoff against a target that fails at once is no busy loop.
    wait.min(max.max(min)).max(MIN_RETRY_WAIT)
}

/// The least wait before a retry, whatever the backoff says.
const MIN_RETRY_WAIT: Duration = Duration::from_millis(100);

impl TaskQueues {
    /// The attempts due by `now` that the queues' states, rates and concurrency allow,
    /// marked out; and when the next one may be due.
    pub(crate) fn take_due(&self, now: SystemTime) -> (Vec<Dispatch>, Option<SystemTime>) {
        let mut store = self.store();
        let Store {
            queues,
            next_dispatch,
            ..
        } = &mut *store;
        let mut out = Vec::new();
        let mut next: Option<SystemTime> = None;
        let mut soonest = |t: SystemTime| next = Some(next.map_or(t, |n| n.min(t)));
        for (name, held) in queues.iter_mut() {
            // Tasks run now by `RunTask` go whatever the queue's state and limits.
            for id in std::mem::take(&mut held.forced) {
                if let Some(entry) = held.tasks.get_mut(&id)
                    && entry.out.is_none()
                {
                    held.due.remove(&(entry.due, id.clone()));
                    *next_dispatch += 1;
                    out.push(entry.hand_out(name, held.id, *next_dispatch, now));
                    held.running += 1;
                }
            }
            if held.queue.state != State::Running as i32 {
                continue;
            }
            let rate = held.queue.rate_limits.unwrap_or_default();
            let elapsed = now
                .duration_since(held.counted)
                .unwrap_or_default()
                .as_secs_f64();
            held.tokens = (held.tokens + elapsed * rate.max_dispatches_per_second)
                .min(f64::from(rate.max_burst_size.max(1)));
            held.counted = now;
            let concurrent = usize::try_from(rate.max_concurrent_dispatches.max(1)).unwrap_or(1);
            while let Some((due, id)) = held.due.first().cloned() {
                if due > now {
                    soonest(due);
                    break;
                }
                if held.running >= concurrent {
                    // A finished attempt wakes the dispatcher.
                    break;
                }
                if held.tokens < 1.0 {
                    let wait = (1.0 - held.tokens) / rate.max_dispatches_per_second.max(1e-9);
                    soonest(now + Duration::from_secs_f64(wait.min(3600.0)));
                    break;
                }
                held.due.pop_first();
                let Some(entry) = held.tasks.get_mut(&id) else {
                    continue;
                };
                held.tokens -= 1.0;
                held.running += 1;
                *next_dispatch += 1;
                out.push(entry.hand_out(name, held.id, *next_dispatch, now));
            }
        }
        (out, next)
    }

    /// The end of an attempt: a 2xx deletes the task; anything else schedules the retry
    /// the queue's config allows, or gives the task up.
    pub(crate) fn finished(
        &self,
        dispatch: &Dispatch,
        outcome: &Outcome,
        now: SystemTime,
    ) -> After {
        let mut store = self.store();
        let Some(held) = store
            .queues
            .get_mut(&dispatch.queue)
            .filter(|h| h.id == dispatch.queue_id)
        else {
            return After::Gone;
        };
        let id = id_of(&dispatch.task.name);
        let Some(entry) = held.tasks.get_mut(id) else {
            held.running = held.running.saturating_sub(1);
            drop(store);
            self.wake();
            return After::Gone;
        };
        if entry.out != Some(dispatch.generation) {
            held.running = held.running.saturating_sub(1);
            drop(store);
            self.wake();
            return After::Gone;
        }
        held.running = held.running.saturating_sub(1);
        entry.out = None;
        let retry = held.queue.retry_config.unwrap_or_default();
        let attempt = pb::Attempt {
            schedule_time: Some(timestamp(dispatch.eta)),
            dispatch_time: entry
                .task
                .last_attempt
                .as_ref()
                .and_then(|a| a.dispatch_time),
            response_time: matches!(outcome, Outcome::Answered(_)).then(|| timestamp(now)),
            response_status: Some(status_of(outcome)),
        };
        entry.task.last_attempt = Some(attempt.clone());
        if entry.task.dispatch_count == 1 {
            entry.task.first_attempt = Some(attempt);
        }
        let after = match outcome {
            Outcome::Answered(status) if (200..300).contains(status) => After::Done,
            _ => {
                if let Outcome::Answered(status) = outcome {
                    entry.task.response_count += 1;
                    if *status < 500 {
                        entry.executions += 1;
                    }
                    entry.previous_response = Some(*status);
                    entry.retry_reason = Some(format!("HTTP status code {status}"));
                } else {
                    entry.previous_response = None;
                    entry.retry_reason = Some("no response within the dispatch deadline".into());
                }
                let attempts = entry.task.dispatch_count;
                let attempts_spent = retry.max_attempts != -1 && attempts >= retry.max_attempts;
                let limit = duration_of(retry.max_retry_duration);
                let age = entry
                    .first_attempt
                    .and_then(|f| now.duration_since(f).ok())
                    .unwrap_or_default();
                let time_spent = limit.is_zero() || age >= limit;
                if attempts_spent && time_spent {
                    After::GivenUp
                } else {
                    let at = now
                        .checked_add(backoff(&retry, attempts))
                        .unwrap_or(now)
                        .min(time_of(prost_types::Timestamp {
                            seconds: LAST_SECOND,
                            nanos: 0,
                        }));
                    entry.due = at;
                    entry.task.schedule_time = Some(timestamp(at));
                    held.due.insert((at, id.to_owned()));
                    After::RetryAt(at)
                }
            }
        };
        if let Outcome::Answered(status) = outcome
            && (200..300).contains(status)
        {
            entry.task.response_count += 1;
        }
        if matches!(after, After::Done | After::GivenUp) {
            let queue = dispatch.queue.clone();
            store.remove_task(&queue, id, now);
        }
        drop(store);
        self.wake();
        after
    }
}

/// An attempt's outcome as `Attempt.response_status` gives it: the HTTP status as the
/// gRPC code Google maps it to, with the status in the message.
fn status_of(outcome: &Outcome) -> googleapis_tonic_google_cloud_tasks_v2::google::rpc::Status {
    let (code, message) = status_code(outcome);
    googleapis_tonic_google_cloud_tasks_v2::google::rpc::Status {
        code,
        message,
        details: Vec::new(),
    }
}

/// An outcome's gRPC code, as Google maps an HTTP status to one, and its message.
pub(crate) fn status_code(outcome: &Outcome) -> (i32, String) {
    let (code, message) = match outcome {
        Outcome::Answered(status) => {
            let code = match status {
                200..=299 => tonic::Code::Ok,
                400 => tonic::Code::InvalidArgument,
                401 => tonic::Code::Unauthenticated,
                403 => tonic::Code::PermissionDenied,
                404 => tonic::Code::NotFound,
                409 => tonic::Code::Aborted,
                429 => tonic::Code::ResourceExhausted,
                499 => tonic::Code::Cancelled,
                501 => tonic::Code::Unimplemented,
                503 => tonic::Code::Unavailable,
                504 => tonic::Code::DeadlineExceeded,
                400..=499 => tonic::Code::FailedPrecondition,
                _ => tonic::Code::Internal,
            };
            (code, format!("HTTP status code {status}"))
        }
        Outcome::NoAnswer(why) => (tonic::Code::Unavailable, why.clone()),
    };
    (code as i32, message)
}

impl Entry {
    fn hand_out(
        &mut self,
        queue: &str,
        queue_id: u64,
        generation: u64,
        now: SystemTime,
    ) -> Dispatch {
        let dispatch = Dispatch {
            queue: queue.to_owned(),
            retries: self.task.dispatch_count,
            executions: self.executions,
            previous_response: self.previous_response,
            retry_reason: self.retry_reason.clone(),
            eta: self.due,
            generation,
            queue_id,
            task: pb::Task::default(),
        };
        self.out = Some(generation);
        self.task.dispatch_count += 1;
        self.first_attempt.get_or_insert(now);
        self.task.last_attempt = Some(pb::Attempt {
            schedule_time: Some(timestamp(self.due)),
            dispatch_time: Some(timestamp(now)),
            response_time: None,
            response_status: None,
        });
        Dispatch {
            task: self.task.clone(),
            ..dispatch
        }
    }
}
