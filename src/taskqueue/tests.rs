use super::*;

const QUEUE: &str = "projects/demo-project/locations/us-central1/queues/q";

fn queue(retry: pb::RetryConfig) -> pb::Queue {
    pb::Queue {
        name: QUEUE.into(),
        retry_config: Some(retry),
        ..pb::Queue::default()
    }
}

fn secs(s: f64) -> Option<prost_types::Duration> {
    Some(proto_duration(Duration::from_secs_f64(s)))
}

fn task(name: &str) -> pb::Task {
    pb::Task {
        name: if name.is_empty() {
            String::new()
        } else {
            format!("{QUEUE}/tasks/{name}")
        },
        ..pb::Task::default()
    }
}

fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
}

#[test]
fn backoff_doubles_then_grows_linearly_up_to_the_most() {
    let retry = pb::RetryConfig {
        min_backoff: secs(10.0),
        max_backoff: secs(300.0),
        max_doublings: 3,
        ..pb::RetryConfig::default()
    };
    let waits: Vec<u64> = (1..=8).map(|n| backoff(&retry, n).as_secs()).collect();
    assert_eq!(waits, [10, 20, 40, 80, 160, 240, 300, 300]);
}

#[test]
fn defaults_are_googles() {
    let q = with_defaults(pb::Queue::default());
    let rate = q.rate_limits.unwrap();
    assert_eq!(rate.max_dispatches_per_second, 500.0);
    assert_eq!(rate.max_concurrent_dispatches, 1000);
    assert_eq!(rate.max_burst_size, 100);
    let retry = q.retry_config.unwrap();
    assert_eq!(retry.max_attempts, 100);
    assert_eq!(retry.max_doublings, 16);
    assert_eq!(duration_of(retry.min_backoff), Duration::from_millis(100));
    assert_eq!(duration_of(retry.max_backoff), Duration::from_secs(3600));
    assert_eq!(q.state, State::Running as i32);
}

#[test]
fn a_named_task_keeps_its_name_from_reuse_for_an_hour() {
    let queues = TaskQueues::new();
    queues
        .create_queue(queue(pb::RetryConfig::default()))
        .unwrap();
    queues.create_task(QUEUE, task("once"), at(0)).unwrap();
    let twice = queues.create_task(QUEUE, task("once"), at(1)).unwrap_err();
    assert!(matches!(twice, Error::AlreadyExists(_)), "{twice}");
    queues
        .delete_task(&format!("{QUEUE}/tasks/once"), at(2))
        .unwrap();
    let again = queues.create_task(QUEUE, task("once"), at(3)).unwrap_err();
    assert!(again.to_string().contains("about an hour"), "{again}");
    queues
        .create_task(QUEUE, task("once"), at(2 + 3600))
        .unwrap();
    // Unnamed tasks get names of their own, never the same.
    let a = queues.create_task(QUEUE, task(""), at(0)).unwrap();
    let b = queues.create_task(QUEUE, task(""), at(0)).unwrap();
    assert_ne!(a.name, b.name);
    assert!(a.name.starts_with(&format!("{QUEUE}/tasks/")));
}

#[test]
fn a_failing_task_is_retried_with_backoff_then_given_up_after_max_attempts() {
    let queues = TaskQueues::new();
    queues
        .create_queue(queue(pb::RetryConfig {
            max_attempts: 3,
            min_backoff: secs(1.0),
            max_backoff: secs(10.0),
            max_doublings: 16,
            ..pb::RetryConfig::default()
        }))
        .unwrap();
    queues.create_task(QUEUE, task("t"), at(0)).unwrap();
    let mut now = at(0);
    let mut retries = Vec::new();
    loop {
        let (due, _) = queues.take_due(now);
        assert_eq!(due.len(), 1);
        retries.push(due[0].retries);
        match queues.finished(&due[0], &Outcome::Answered(403), now) {
            After::RetryAt(t) => {
                assert!(
                    queues.take_due(now).0.is_empty(),
                    "not due before its backoff"
                );
                now = t;
            }
            After::GivenUp => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(retries, [0, 1, 2]);
    assert_eq!(now, at(0) + Duration::from_secs(1 + 2));
    assert!(queues.task(&format!("{QUEUE}/tasks/t")).is_err());
    assert_eq!(queues.held().tasks, 0);
    assert_eq!(queues.held().bytes, 0);
}

#[test]
fn a_future_task_waits_and_a_paused_queue_holds_until_run_task() {
    let queues = TaskQueues::new();
    queues
        .create_queue(queue(pb::RetryConfig::default()))
        .unwrap();
    let mut later = task("later");
    later.schedule_time = Some(timestamp(at(60)));
    queues.create_task(QUEUE, later, at(0)).unwrap();
    let (due, next) = queues.take_due(at(1));
    assert!(due.is_empty());
    assert_eq!(next, Some(at(60)));
    queues.set_state(QUEUE, State::Paused).unwrap();
    assert!(queues.take_due(at(61)).0.is_empty());
    queues
        .run_task(&format!("{QUEUE}/tasks/later"), at(62))
        .unwrap();
    let (due, _) = queues.take_due(at(62));
    assert_eq!(due.len(), 1);
    assert_eq!(
        queues.finished(&due[0], &Outcome::Answered(200), at(62)),
        After::Done
    );
}

#[test]
fn concurrency_and_rate_limit_what_goes_out() {
    let queues = TaskQueues::new();
    let mut q = queue(pb::RetryConfig::default());
    q.rate_limits = Some(pb::RateLimits {
        max_dispatches_per_second: 2.0,
        max_concurrent_dispatches: 1,
        ..pb::RateLimits::default()
    });
    queues.create_queue(q).unwrap();
    for i in 0..3 {
        queues
            .create_task(QUEUE, task(&format!("t{i}")), at(0))
            .unwrap();
    }
    let (due, _) = queues.take_due(at(0));
    assert_eq!(due.len(), 1, "one at once");
    assert!(queues.take_due(at(0)).0.is_empty());
    queues.finished(&due[0], &Outcome::Answered(204), at(0));
    let (due, _) = queues.take_due(at(0));
    assert_eq!(due.len(), 1, "the bucket held two");
    queues.finished(&due[0], &Outcome::Answered(204), at(0));
    let (due, next) = queues.take_due(at(0));
    assert!(due.is_empty(), "the bucket is empty");
    assert!(next.is_some_and(|n| n > at(0) && n <= at(1)), "{next:?}");
}

#[test]
fn purge_and_delete_free_every_byte() {
    let queues = TaskQueues::new();
    queues
        .create_queue(queue(pb::RetryConfig::default()))
        .unwrap();
    for _ in 0..100 {
        queues.create_task(QUEUE, task(""), at(0)).unwrap();
    }
    assert_eq!(queues.held().tasks, 100);
    assert!(queues.held().bytes > 100 * TASK_OVERHEAD);
    queues.purge(QUEUE, at(1)).unwrap();
    assert_eq!(queues.held().tasks, 0);
    assert_eq!(queues.held().bytes, 0);
    queues.create_task(QUEUE, task("x"), at(0)).unwrap();
    queues.delete_queue(QUEUE).unwrap();
    assert_eq!(queues.held().bytes, 0);
}

#[test]
fn a_report_from_a_deleted_queue_never_counts_against_its_successor() {
    let queues = TaskQueues::new();
    let mut q = queue(pb::RetryConfig::default());
    q.rate_limits = Some(pb::RateLimits {
        max_concurrent_dispatches: 1,
        ..pb::RateLimits::default()
    });
    queues.create_queue(q.clone()).unwrap();
    queues.create_task(QUEUE, task("old"), at(0)).unwrap();
    let (old, _) = queues.take_due(at(0));
    assert_eq!(old.len(), 1);
    queues.delete_queue(QUEUE).unwrap();
    queues.create_queue(q).unwrap();
    queues.create_task(QUEUE, task("a"), at(0)).unwrap();
    queues.create_task(QUEUE, task("b"), at(0)).unwrap();
    let (due, _) = queues.take_due(at(0));
    assert_eq!(due.len(), 1);
    assert_eq!(
        queues.finished(&old[0], &Outcome::Answered(200), at(0)),
        After::Gone
    );
    assert!(
        queues.take_due(at(0)).0.is_empty(),
        "the new queue's one dispatch is still out"
    );
}

#[test]
fn an_unnamed_task_never_takes_a_named_ones_place() {
    let queues = TaskQueues::new();
    queues
        .create_queue(queue(pb::RetryConfig::default()))
        .unwrap();
    let first = queues.create_task(QUEUE, task(""), at(0)).unwrap();
    let next: u64 = id_of(&first.name).parse::<u64>().unwrap() + 1;
    queues
        .create_task(QUEUE, task(&next.to_string()), at(0))
        .unwrap();
    let third = queues.create_task(QUEUE, task(""), at(0)).unwrap();
    assert_ne!(id_of(&third.name), next.to_string());
    assert_eq!(queues.held().tasks, 3);
}

#[test]
fn an_api_change_to_a_declared_queue_lasts_until_the_file_changes_it() {
    let queues = TaskQueues::new();
    let declared = queue(pb::RetryConfig {
        max_attempts: 3,
        ..pb::RetryConfig::default()
    });
    queues.declare(std::slice::from_ref(&declared));
    queues
        .update_queue(QUEUE, |q| {
            q.retry_config.as_mut().unwrap().max_attempts = 7;
            Ok(())
        })
        .unwrap();
    queues.declare(std::slice::from_ref(&declared));
    let attempts = |q: pb::Queue| q.retry_config.unwrap().max_attempts;
    assert_eq!(attempts(queues.queue(QUEUE).unwrap()), 7);
    let changed = queue(pb::RetryConfig {
        max_attempts: 4,
        ..pb::RetryConfig::default()
    });
    queues.declare(std::slice::from_ref(&changed));
    assert_eq!(attempts(queues.queue(QUEUE).unwrap()), 4);
    queues.declare(&[]);
    assert!(queues.queue(QUEUE).is_err(), "no longer declared, so gone");
}
