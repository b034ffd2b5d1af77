//! Cloud Scheduler (issue 30): HTTP jobs through gcloud, Google's Python library and REST,
//! each call made through the front door with an ID token its receiver verifies, with
//! Google's `X-CloudScheduler*` headers; `jobs run` fires now, and a job whose account may
//! not invoke its target is refused and retried as its retry config says.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

const WORKER: &str = "https://worker-123456789012.us-central1.run.app";
const JOBS: &str = "projects/demo-project/locations/us-central1/jobs";

/// `app` may run Cloud Scheduler and act as anyone; `reader` may only read. `tasker` may
/// invoke `worker`; `outsider` nothing. Without `records`, the worker is an echo service.
fn yaml(records: Option<&Path>) -> String {
    let worker = match records {
        Some(dir) => format!(
            "command: ['{}', '{}', '{}', '{WORKER}', 'tasker{SA}']",
            python().display(),
            repo().join("tests/services/task_receiver.py").display(),
            dir.join("worker.jsonl").display()
        ),
        None => "upstream: builtin:echo".to_owned(),
    };
    format!(
        r#"{PROJECT}service_accounts:
  - email: app{SA}
  - email: reader{SA}
  - email: tasker{SA}
  - email: outsider{SA}
iam_policy:
  bindings:
    - role: roles/cloudscheduler.admin
      members: [serviceAccount:app{SA}]
    - role: roles/iam.serviceAccountUser
      members: [serviceAccount:app{SA}]
    - role: roles/cloudscheduler.viewer
      members: [serviceAccount:reader{SA}]
services:
  - name: app
    service_account: app{SA}
    upstream: builtin:echo
  - name: reader
    service_account: reader{SA}
    upstream: builtin:echo
  - name: worker
    {worker}
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:tasker{SA}]}}]}}
"#
    )
}

/// The requests `file` has recorded on `path` once `done` holds of them (within 30 s).
fn recorded_until(file: &Path, path: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    recorded_lines(file, |l| l["path"] == path, done)
}

/// gcloud verbatim, then Google's Python library: a job run now reaches the private worker
/// with Google's headers and an identity its receiver verifies; a job for an account
/// without `run.invoker` is refused by the front door and retried; pause and resume; a
/// viewer refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs gcloud, and a worker on Python's google-auth"]
async fn gcloud_and_the_python_library_run_jobs_the_worker_receives_as_their_account() {
    let records = tempfile::tempdir().unwrap();
    let file = records.path().join("worker.jsonl");
    let emu = Emulator::start_ready(&yaml(Some(records.path()))).await;
    let shell = ClientShell::new(&emu, Some("app"));
    let gcloud = |args: &[&str]| succeed(shell.command("gcloud").args(args));
    gcloud(&[
        "scheduler",
        "jobs",
        "create",
        "http",
        "nightly",
        "--location=us-central1",
        "--schedule",
        "* * * * *",
        "--uri",
        &format!("{WORKER}/job"),
        "--oidc-service-account-email",
        &sa("tasker"),
        "--oidc-token-audience",
        WORKER,
        "--message-body=hello",
        "--headers=X-Job=1",
    ]);
    let described: Value = serde_json::from_str(&gcloud(&[
        "scheduler",
        "jobs",
        "describe",
        "nightly",
        "--location=us-central1",
        "--format=json",
    ]))
    .unwrap();
    assert_eq!(described["state"], "ENABLED", "{described:#}");
    assert_eq!(described["schedule"], "* * * * *");
    assert_eq!(described["timeZone"], "Etc/UTC");
    assert!(
        described["scheduleTime"].as_str().is_some(),
        "{described:#}"
    );
    // The dashboard's graph draws the job as a caller of the worker, as its account.
    let graph = reqwest::get(emu.google("/frontdoor/ui/graph"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let job = "job:projects/demo-project/locations/us-central1/jobs/nightly";
    assert!(
        graph.contains(&format!(
            r#"data-from="{job}" data-to="service:worker" data-on="job""#
        )) && graph.contains(&format!(
            "Cloud Scheduler job: nightly, as {}",
            sa("tasker")
        )),
        "{graph}"
    );

    gcloud(&[
        "scheduler",
        "jobs",
        "run",
        "nightly",
        "--location=us-central1",
    ]);
    let got = recorded_until(&file, "/job", |l| !l.is_empty());
    // The schedule may fire too (every minute); each call is the same job's.
    let call = &got[0];
    assert_eq!(call["status"], 204, "{call:#}");
    assert_eq!(call["method"], "POST");
    assert_eq!(call["body"], "hello");
    assert_eq!(call["claims"]["email"], sa("tasker"));
    assert_eq!(call["claims"]["aud"], WORKER);
    let headers = &call["headers"];
    assert_eq!(headers["x-cloudscheduler"], "true", "{headers:#}");
    assert_eq!(headers["x-cloudscheduler-jobname"], "nightly");
    assert!(
        headers["x-cloudscheduler-scheduletime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{headers:#}"
    );
    assert_eq!(headers["x-job"], "1");
    assert_eq!(headers["user-agent"], "Google-Cloud-Scheduler");

    // An update names the fields it changes; the job's token and body stay.
    gcloud(&[
        "scheduler",
        "jobs",
        "update",
        "http",
        "nightly",
        "--location=us-central1",
        &format!("--uri={WORKER}/moved"),
    ]);
    gcloud(&[
        "scheduler",
        "jobs",
        "run",
        "nightly",
        "--location=us-central1",
    ]);
    let moved = recorded_until(&file, "/moved", |l| !l.is_empty());
    assert_eq!(moved[0]["status"], 204, "{moved:#?}");
    assert_eq!(moved[0]["claims"]["email"], sa("tasker"));
    assert_eq!(moved[0]["body"], "hello");

    // Without run.invoker the front door refuses each attempt: the first and one retry.
    gcloud(&[
        "scheduler",
        "jobs",
        "create",
        "http",
        "refused",
        "--location=us-central1",
        "--schedule=0 3 1 1 *",
        &format!("--uri={WORKER}/job"),
        &format!("--oidc-service-account-email={}", sa("outsider")),
        &format!("--oidc-token-audience={WORKER}"),
        "--max-retry-attempts=1",
        "--min-backoff=1s",
    ]);
    gcloud(&[
        "scheduler",
        "jobs",
        "run",
        "refused",
        "--location=us-central1",
    ]);
    let start = Instant::now();
    let refused = loop {
        let found: Vec<Value> = emu
            .decisions()
            .await
            .into_iter()
            .filter(|d| {
                d["via"]
                    .as_str()
                    .is_some_and(|v| v.starts_with("Cloud Scheduler job refused,"))
            })
            .collect();
        if found.len() >= 2 {
            break found;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{found:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (n, d) in refused.iter().enumerate() {
        assert_eq!(d["status"], 403, "{d:#}");
        assert_eq!(d["code"], "no_invoker_binding");
        assert_eq!(d["principal"], format!("serviceAccount:{}", sa("outsider")));
        assert!(
            d["via"]
                .as_str()
                .unwrap()
                .ends_with(&format!("attempt {}", n + 1)),
            "{d:#}"
        );
    }
    let described: Value = serde_json::from_str(&gcloud(&[
        "scheduler",
        "jobs",
        "describe",
        "refused",
        "--location=us-central1",
        "--format=json",
    ]))
    .unwrap();
    assert_eq!(
        described["status"]["code"], 7,
        "PERMISSION_DENIED: {described:#}"
    );

    gcloud(&[
        "scheduler",
        "jobs",
        "pause",
        "refused",
        "--location=us-central1",
    ]);
    let state = |name: &str| {
        gcloud(&[
            "scheduler",
            "jobs",
            "describe",
            name,
            "--location=us-central1",
            "--format=value(state)",
        ])
        .trim()
        .to_owned()
    };
    assert_eq!(state("refused"), "PAUSED");
    gcloud(&[
        "scheduler",
        "jobs",
        "resume",
        "refused",
        "--location=us-central1",
    ]);
    assert_eq!(state("refused"), "ENABLED");
    gcloud(&[
        "scheduler",
        "jobs",
        "delete",
        "refused",
        "--location=us-central1",
    ]);

    // A viewer's gcloud is refused as Google refuses it.
    let viewer = ClientShell::new(&emu, Some("reader"));
    let denied = fails(viewer.command("gcloud").args([
        "scheduler",
        "jobs",
        "run",
        "nightly",
        "--location=us-central1",
    ]));
    assert!(denied.contains("cloudscheduler.jobs.run"), "{denied}");

    // Google's Python library, unmodified, through the proxy with app's credentials.
    let out = succeed(
        shell.command(python()).args([
            repo()
                .join("tests/clients/python/scheduler_client.py")
                .to_str()
                .unwrap(),
            "from-python",
            &format!("{WORKER}/python"),
            &sa("tasker"),
            WORKER,
        ]),
    );
    let said: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(said["job"], format!("{JOBS}/from-python"), "{said}");
    assert_eq!(said["state"], "ENABLED");
    let got = recorded_until(&file, "/python", |l| !l.is_empty());
    assert_eq!(got[0]["body"], "{\"from\": \"python\"}", "{got:#?}");
    assert_eq!(got[0]["claims"]["email"], sa("tasker"));
    assert_eq!(got[0]["headers"]["x-cloudscheduler-jobname"], "from-python");
    emu.stop().await;
}

/// A REST call on the google listener, without credentials or with `token`.
async fn rest(
    emu: &Emulator,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    google_json(emu, token, method, &format!("/v1/{path}"), body).await
}

/// A bad request: with which token, its method, path and body, and the status and the
/// words its answer must have.
type Case<'a> = (Option<&'a str>, &'a str, String, Value, u16, &'a str);

/// Bad requests, each with Google's status and a message that says what to change.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_jobs_get_googles_errors() {
    let emu = Emulator::start(&yaml(None)).await;
    let app = emu.access_token("app").await;
    let reader = emu.access_token("reader").await;
    let job = |name: &str, extra: Value| {
        let mut job = json!({
            "name": format!("{JOBS}/{name}"),
            "schedule": "* * * * *",
            "httpTarget": {"uri": format!("{WORKER}/job"), "oidcToken": {"serviceAccountEmail": sa("tasker"), "audience": WORKER}},
        });
        for (k, v) in extra.as_object().unwrap() {
            job[k] = v.clone();
        }
        job
    };
    let cases: Vec<Case<'_>> = vec![
        (
            Some(&app),
            "POST",
            JOBS.into(),
            job("a", json!({"schedule": "every 5 minutes"})),
            400,
            "five",
        ),
        (
            Some(&app),
            "POST",
            JOBS.into(),
            job("a", json!({"schedule": "* * * 13 *"})),
            400,
            "not unix-cron",
        ),
        (
            Some(&app),
            "POST",
            JOBS.into(),
            job("a", json!({"timeZone": "Mars/Olympus"})),
            400,
            "tz database",
        ),
        (
            Some(&app),
            "POST",
            JOBS.into(),
            job("a", json!({"httpTarget": null})),
            400,
            "no target",
        ),
        (
            Some(&app),
            "POST",
            JOBS.into(),
            job("a", json!({"pubsubTarget": {"topicName": "t"}})),
            400,
            "not emulated",
        ),
        (
            Some(&app),
            "POST",
            JOBS.into(),
            job("a", json!({"httpTarget": {"uri": "ftp://x/"}})),
            400,
            "http or https URL",
        ),
        (
            Some(&app),
            "POST",
            JOBS.into(),
            job("a", json!({"attemptDeadline": "5s"})),
            400,
            "15 seconds to 30 minutes",
        ),
        (
            Some(&app),
            "POST",
            JOBS.into(),
            job("a", json!({"retryConfig": {"retryCount": 6}})),
            400,
            "retry_count 6",
        ),
        (
            Some(&app),
            "POST",
            JOBS.into(),
            job("a", json!({"retryConfig": {"minBackoffDuration": "later"}})),
            400,
            "Illegal duration",
        ),
        (
            Some(&app),
            "POST",
            JOBS.into(),
            job("bad.id", json!({})),
            400,
            "job id",
        ),
        (
            Some(&app),
            "POST",
            JOBS.replace("us-central1", "mars"),
            job("a", json!({})),
            400,
            "not projects/PROJECT/locations/LOCATION",
        ),
        (
            Some(&app),
            "POST",
            JOBS.into(),
            job(
                "a",
                json!({"httpTarget": {"uri": WORKER, "oidcToken": {"serviceAccountEmail": "ghost@demo-project.iam.gserviceaccount.com"}}}),
            ),
            400,
            "not declared",
        ),
        (
            None,
            "POST",
            JOBS.into(),
            job(
                "a",
                json!({"httpTarget": {"uri": WORKER, "oidcToken": {"serviceAccountEmail": sa("outsider")}}}),
            ),
            403,
            "actAs",
        ),
        (
            Some(&reader),
            "POST",
            JOBS.into(),
            job("a", json!({})),
            403,
            "cloudscheduler.jobs.create",
        ),
        (
            Some(&app),
            "GET",
            format!("{JOBS}/nowhere"),
            Value::Null,
            404,
            "does not exist",
        ),
        (
            Some(&app),
            "POST",
            format!("{JOBS}/nowhere:run"),
            json!({}),
            404,
            "does not exist",
        ),
    ];
    for (token, method, path, body, status, says) in cases {
        let body = (!body.is_null()).then_some(body);
        let (got, answer) = rest(&emu, token, method, &path, body.clone()).await;
        assert_eq!(got, status, "{method} {path} {body:?}: {answer}");
        assert!(
            answer.to_string().contains(says),
            "{method} {path} {body:?}: {answer} lacks `{says}`"
        );
    }
    let (status, made) = rest(&emu, Some(&app), "POST", JOBS, Some(job("good", json!({})))).await;
    assert_eq!(status, 200, "{made}");
    let (status, twice) = rest(&emu, Some(&app), "POST", JOBS, Some(job("good", json!({})))).await;
    assert_eq!(status, 409, "{twice}");
    let (status, patched) = rest(
        &emu,
        Some(&app),
        "PATCH",
        &format!("{JOBS}/good?updateMask=schedule"),
        Some(json!({"schedule": "0 3 * * *"})),
    )
    .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["schedule"], "0 3 * * *");
    assert_eq!(
        patched["httpTarget"]["uri"],
        format!("{WORKER}/job"),
        "the rest kept"
    );
    let decisions = emu.decisions().await;
    let ours: Vec<&Value> = decisions
        .iter()
        .filter(|d| d["surface"] == "scheduler")
        .collect();
    assert!(ours.len() >= 18, "{ours:#?}");
    assert!(
        ours.iter()
            .any(|d| d["permission"] == "cloudscheduler.jobs.create"
                && d["allowed"] == false
                && d["principal"] == format!("serviceAccount:{}", sa("reader"))),
        "{ours:#?}"
    );
    emu.stop().await;
}

/// A job the API made outlives a restart, paused as it was left, with its schedule, target
/// and token; what its runs said does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_the_api_made_outlives_a_restart() {
    let emu = Emulator::start(&yaml(None)).await;
    let app = emu.access_token("app").await;
    let job = json!({
        "name": format!("{JOBS}/kept"),
        "schedule": "0 3 * * 1",
        "timeZone": "Europe/Paris",
        "httpTarget": {"uri": format!("{WORKER}/job"), "body": "aGk=", "oidcToken": {"serviceAccountEmail": sa("tasker"), "audience": WORKER}},
        "retryConfig": {"retryCount": 2},
    });
    let (status, made) = rest(
        &emu,
        Some(&app),
        "POST",
        "projects/demo-project/locations/us-central1/jobs",
        Some(job),
    )
    .await;
    assert_eq!(status, 200, "{made}");
    let (status, paused) = rest(
        &emu,
        Some(&app),
        "POST",
        &format!("{JOBS}/kept:pause"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{paused}");
    let emu = emu.restart().await;
    let app = emu.access_token("app").await;
    let (status, after) = rest(&emu, Some(&app), "GET", &format!("{JOBS}/kept"), None).await;
    assert_eq!(status, 200, "{after}");
    for field in [
        "schedule",
        "timeZone",
        "httpTarget",
        "retryConfig",
        "attemptDeadline",
        "state",
    ] {
        assert_eq!(after[field], paused[field], "{field}: {after:#} {paused:#}");
    }
    assert_eq!(after["state"], "PAUSED");

    // `frontdoor fold` leaves a paused job in the layer, saying why; resumed, the job goes
    // into services.yaml as its fields, and the file owns it from then on.
    let fold = || {
        succeed(
            frontdoor()
                .args(["fold", "--config"])
                .arg(emu.config_file())
                .arg("--state-dir")
                .arg(emu.state.state_dir().path()),
        )
    };
    let said = fold();
    assert!(
        said.contains(&format!("Cloud Scheduler job {JOBS}/kept: kept in changes.json (it is paused, which scheduler.jobs has no field for)")),
        "{said}"
    );
    let (status, _) = rest(
        &emu,
        Some(&app),
        "POST",
        &format!("{JOBS}/kept:resume"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let layer_file = emu.state.state_dir().path().join("changes.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !std::fs::read_to_string(&layer_file)
        .unwrap()
        .contains("ENABLED")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the resume is not kept"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let said = fold();
    assert!(
        said.contains(&format!(
            "Cloud Scheduler job {JOBS}/kept: → scheduler.jobs"
        )),
        "{said}"
    );
    let file = std::fs::read_to_string(emu.config_file()).unwrap();
    assert!(
        file.contains(
            "    - name: kept\n      schedule: '0 3 * * 1'\n      time_zone: Europe/Paris\n"
        ) && file.contains("      message_body: hi\n"),
        "{file}"
    );
    emu.wait_status("the folded file in force", |s| s["generation"] == 2)
        .await;
    // The file's now: an edit of its entry takes effect, and the layer holds it no more.
    let edited = file.replace(
        "      max_retry_attempts: 2\n",
        "      max_retry_attempts: 3\n",
    );
    assert_ne!(edited, file);
    std::fs::write(emu.config_file(), edited).unwrap();
    emu.wait_status("the edited file in force", |s| s["generation"] == 3)
        .await;
    let (status, folded) = rest(&emu, Some(&app), "GET", &format!("{JOBS}/kept"), None).await;
    assert_eq!(status, 200, "{folded}");
    assert_eq!(folded["retryConfig"]["retryCount"], 3, "{folded}");
    let layer = std::fs::read_to_string(&layer_file).unwrap_or_default();
    assert!(!layer.contains("jobs/kept"), "{layer}");
    emu.stop().await;
}
