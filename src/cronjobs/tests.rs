use super::*;

const JOB: &str = "projects/demo-project/locations/us-central1/jobs/j";

fn job(schedule: &str, retries: i32) -> pb::Job {
    pb::Job {
        name: JOB.into(),
        schedule: schedule.into(),
        retry_config: Some(pb::RetryConfig {
            retry_count: retries,
            min_backoff_duration: Some(crate::taskqueue::proto_duration(Duration::from_secs(1))),
            ..pb::RetryConfig::default()
        }),
        target: Some(pb::job::Target::HttpTarget(pb::HttpTarget {
            uri: "https://worker-123456789012.us-central1.run.app/".into(),
            ..pb::HttpTarget::default()
        })),
        ..pb::Job::default()
    }
}

/// 2026-12-06T12:00:00Z plus `s` seconds.
fn at(s: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_796_558_400 + s)
}

#[test]
fn a_job_fires_at_each_time_of_its_schedule_and_not_before() {
    let jobs = Jobs::default();
    let made = jobs.create(job("* * * * *", 0), at(10)).unwrap();
    assert_eq!(made.state, State::Enabled as i32);
    assert_eq!(made.time_zone, "Etc/UTC");
    let (due, next) = jobs.take_due(at(30));
    assert!(due.is_empty());
    assert_eq!(next, Some(at(60)));
    let (due, _) = jobs.take_due(at(60));
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].scheduled, at(60));
    assert_eq!(due[0].attempt, 1);
    assert_eq!(
        jobs.finished(&due[0], &Outcome::Answered(200), at(61)),
        After::Done
    );
    assert_eq!(jobs.get(JOB).unwrap().status.unwrap().code, 0);
}

#[test]
fn a_failed_run_is_retried_then_waits_for_its_next_time() {
    let jobs = Jobs::default();
    jobs.create(job("0 * * * *", 2), at(0)).unwrap();
    jobs.run(JOB, at(5)).unwrap();
    let mut now = at(5);
    let mut attempts = Vec::new();
    loop {
        let (due, _) = jobs.take_due(now);
        assert_eq!(due.len(), 1, "at {now:?}");
        attempts.push(due[0].attempt);
        match jobs.finished(&due[0], &Outcome::Answered(403), now) {
            After::RetryAt(t) => now = t,
            After::GivenUp => break,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(attempts, [1, 2, 3], "the first attempt and two retries");
    assert_eq!(now, at(5 + 1 + 2));
    assert!(jobs.take_due(now).0.is_empty());
    assert_eq!(
        jobs.get(JOB).unwrap().status.unwrap().code,
        tonic::Code::PermissionDenied as i32
    );
    // The hour comes: a new run.
    assert_eq!(jobs.take_due(at(3600)).0.len(), 1);
}

#[test]
fn a_paused_job_does_not_fire_until_resumed_or_run() {
    let jobs = Jobs::default();
    jobs.create(job("* * * * *", 0), at(0)).unwrap();
    jobs.set_state(JOB, State::Paused, at(1)).unwrap();
    assert!(jobs.take_due(at(120)).0.is_empty());
    jobs.run(JOB, at(121)).unwrap();
    assert_eq!(jobs.take_due(at(121)).0.len(), 1);
    let resumed = jobs.set_state(JOB, State::Enabled, at(122)).unwrap();
    assert_eq!(resumed.schedule_time, Some(timestamp(at(180))));
}

#[test]
fn a_report_from_a_deleted_job_is_ignored() {
    let jobs = Jobs::default();
    jobs.create(job("* * * * *", 0), at(0)).unwrap();
    jobs.run(JOB, at(1)).unwrap();
    let (due, _) = jobs.take_due(at(1));
    jobs.delete(JOB).unwrap();
    jobs.create(job("* * * * *", 0), at(2)).unwrap();
    assert_eq!(
        jobs.finished(&due[0], &Outcome::Answered(200), at(3)),
        After::Gone
    );
    assert!(jobs.get(JOB).unwrap().status.is_none());
}
