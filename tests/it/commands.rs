//! Services frontdoor starts itself: Cloud Run's container contract, cold starts, restarts,
//! and every way a command can fail — none of them a hang or a crash.

use crate::common;

use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn app() -> String {
    repo().join("tests/services/app.py").display().to_string()
}

fn service(name: &str, command: &str, extra: &str) -> String {
    format!(
        "  - name: {name}\n    command: {command}\n    listen: 127.0.0.1:0\n    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [allUsers]}}]}}\n{extra}"
    )
}

async fn get(url: &str) -> (u16, String) {
    let r = reqwest::Client::new()
        .get(url)
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs python3 as the command"]
async fn a_command_gets_cloud_runs_contract_and_its_own_identity() {
    let yaml = format!(
        "{PROJECT}services:\n{}",
        service(
            "worker",
            &format!("[python3, \"{}\", serve]", app()),
            "    env: {EXTRA: from-config}\n"
        )
    );
    let emu = Emulator::start(&yaml).await;
    // Ask once it is ready (`/healthz` says so): a request that finds it ready must not
    // wait for a start.
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(emu.google("/healthz")).await.unwrap().status() != 200 {
        assert!(Instant::now() < deadline, "the command never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let (status, body) = get(&emu.service("worker", "/hello")).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 200, "{body}");
    let got: Value = serde_json::from_str(&body).unwrap();
    let env = &got["env"];
    assert_eq!(env["K_SERVICE"], "worker");
    assert_eq!(env["K_CONFIGURATION"], "worker");
    let revision = env["K_REVISION"].as_str().unwrap();
    assert!(
        revision.starts_with("worker-00001-") && revision.len() == "worker-00001-abc".len(),
        "{revision}"
    );
    assert_eq!(env["GOOGLE_CLOUD_PROJECT"], "demo-project");
    // gcloud inside a service finds its project and region as `frontdoor env` gives them.
    assert_eq!(env["CLOUDSDK_CORE_PROJECT"], "demo-project");
    assert_eq!(env["CLOUDSDK_RUN_REGION"], "us-central1");
    assert_eq!(env["EXTRA"], "from-config");
    let metadata = emu.metadata_of("worker");
    assert_eq!(env["GCE_METADATA_HOST"], metadata);
    assert_eq!(env["GCE_METADATA_IP"], metadata);
    assert_ne!(env["PORT"].as_str().unwrap(), "0");
    assert_eq!(got["path"], "/hello");
    let decision = emu.decisions().await.pop().unwrap();
    assert_eq!(decision["revision"], revision);
    assert!(
        decision["reason"]
            .as_str()
            .unwrap()
            .contains("proxied to command `python3"),
        "{decision}"
    );
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_that_cannot_start_are_a_500_with_the_reason() {
    let yaml = format!(
        "{PROJECT}services:\n{}{}{}",
        service("missing", "[/nonexistent/program]", ""),
        service("quitter", "[sh, -c, \"echo goodbye; exit 3\"]", ""),
        service("deaf", "[sleep, \"60\"]", "    start_timeout: 1s\n"),
    );
    let emu = Emulator::start(&yaml).await;
    for (name, words) in [
        ("missing", "cannot run `/nonexistent/program`: No such file"),
        ("quitter", "exited (exit status: 3) before listening"),
        ("deaf", "did not listen on port"),
    ] {
        let started = Instant::now();
        let (status, body) = get(&emu.service(name, "/")).await;
        assert_eq!(status, 500, "{name}: {body}");
        assert!(
            body.contains("the instance could not start"),
            "{name}: {body}"
        );
        assert!(body.contains(words), "{name}: {body}");
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{name} took {:?}",
            started.elapsed()
        );
        let reason = emu.decisions().await.pop().unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(reason.contains(words), "{reason}");
    }
    // The last output lines are quoted.
    let (_, body) = get(&emu.service("quitter", "/")).await;
    assert!(body.contains("goodbye"), "{body}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs python3 as the command"]
async fn an_exiting_command_is_restarted_and_a_noisy_one_keeps_serving() {
    let yaml = format!(
        "{PROJECT}services:\n{}{}",
        service("once", &format!("[python3, \"{}\", once]", app()), ""),
        service("noisy", &format!("[python3, \"{}\", noisy]", app()), ""),
    );
    let emu = Emulator::start(&yaml).await;
    let (status, first) = get(&emu.service("once", "/")).await;
    assert_eq!(status, 200);
    let first: Value = serde_json::from_str(&first).unwrap();
    // It exits after answering (waited for, not guessed); the next request waits for the
    // restart.
    let pid = first["pid"].as_u64().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while std::path::Path::new(&format!("/proc/{pid}")).exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "process {pid} did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, second) = get(&emu.service("once", "/")).await;
    assert_eq!(status, 200, "{second}");
    let second: Value = serde_json::from_str(&second).unwrap();
    assert_ne!(first["pid"], second["pid"], "a new process answered");

    for _ in 0..20 {
        let (status, _) = get(&emu.service("noisy", "/")).await;
        assert_eq!(status, 200);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs python3 as the command"]
async fn shutdown_stops_the_whole_process_group() {
    let dir = tempfile::tempdir().unwrap();
    let pids = dir.path().join("pids");
    // A shell that leaves a grandchild behind, then becomes the server. The paths are
    // quoted for sh: the checkout's may hold spaces.
    let command = format!(
        "[sh, -c, \"sleep 300 & echo $! > '{}'; exec python3 '{}' serve\"]",
        pids.display(),
        app()
    );
    let emu = Emulator::start(&format!(
        "{PROJECT}services:\n{}",
        service("tree", &command, "")
    ))
    .await;
    let (status, body) = get(&emu.service("tree", "/")).await;
    assert_eq!(status, 200);
    let server: Value = serde_json::from_str(&body).unwrap();
    let server_pid = server["pid"].as_i64().unwrap().to_string();
    let sleeper = std::fs::read_to_string(&pids).unwrap().trim().to_owned();
    let alive = |pid: &str| {
        std::process::Command::new("kill")
            .args(["-0", pid])
            .stderr(std::process::Stdio::null())
            .status()
            .unwrap()
            .success()
    };
    assert!(alive(&server_pid) && alive(&sleeper));
    emu.stop().await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while (alive(&server_pid) || alive(&sleeper)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(&server_pid), "the server outlived frontdoor");
    assert!(!alive(&sleeper), "the grandchild outlived frontdoor");
}

#[test]
fn command_configuration_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("services.yaml");
    for (entry, words) in [
        ("command: []", "services[0].command: the command is empty"),
        (
            "command: [x]\n    upstream: builtin:echo",
            "give either `upstream` or `command`",
        ),
        (
            "upstream: builtin:echo\n    env: {A: b}",
            "`env` applies only to a service with `command`",
        ),
        (
            "command: [x]\n    env: {\"A=B\": c}",
            "is not an environment variable name",
        ),
        (
            "command: [x]\n    start_timeout: forever",
            "services[0].start_timeout",
        ),
    ] {
        std::fs::write(
            &file,
            format!("{PROJECT}services:\n  - name: s\n    {entry}\n"),
        )
        .unwrap();
        let err = fails(frontdoor().arg("check").arg("--config").arg(&file));
        assert!(err.contains(words), "{entry}: {err}");
    }
}

/// Ingress `internal` lets in frontdoor's own services (SPEC §3: "requests from the
/// emulator's own service processes"), recognised by the kernel's socket tables, and keeps
/// everyone else out with Cloud Run's 404.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs python3 as the command"]
async fn internal_ingress_admits_frontdoors_own_services() {
    let yaml = format!(
        "{PROJECT}services:\n{}  - name: private\n    upstream: builtin:echo\n    listen: 127.0.0.1:0\n    ingress: internal\n    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [allUsers]}}]}}\n",
        service("relay", &format!("[python3, \"{}\", relay]", app()), ""),
    );
    let emu = Emulator::start(&yaml).await;
    let private = emu.service("private", "/");
    // From the test itself: not one of frontdoor's services.
    let (status, _) = get(&private).await;
    assert_eq!(status, 404);
    let reason = emu.decisions().await.pop().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains("only internal callers may reach it"),
        "{reason}"
    );

    // From the relay service's own process: internal.
    let relayed = format!(
        "{}?target={}",
        emu.service("relay", "/"),
        url::form_urlencoded::byte_serialize(private.as_bytes()).collect::<String>()
    );
    let (status, body) = get(&relayed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["status"],
        200,
        "{body}"
    );
    let decisions = emu.decisions().await;
    let to_private = decisions
        .iter()
        .rev()
        .find(|d| d["service"] == "private")
        .unwrap();
    assert_eq!(to_private["allowed"], true, "{to_private}");
    emu.stop().await;
}
