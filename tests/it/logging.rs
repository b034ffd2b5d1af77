//! What `frontdoor serve` writes to stderr, read from a real process whose stderr is a file:
//! one compact line per decision (no colour codes in a file, no line a token can forge),
//! `--log-format json`, and the per-check events `FRONTDOOR_LOG=debug` adds.

use crate::common;

use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::*;
use serde_json::Value;

const VAULT: &str = "vault-123456789012.us-central1.run.app";

/// `frontdoor serve` in `dir`, stderr into `dir/stderr.log`; returns it and its addresses.
#[expect(
    clippy::zombie_processes,
    reason = "the child is returned; stop() waits for it"
)]
fn serve(dir: &Path, args: &[&str], level: Option<&str>) -> (Child, Value) {
    let yaml = format!(
        "{EPHEMERAL}{PROJECT}service_accounts: [{{email: {login}}}]\nmetadata_service_account: {login}\nservices:\n  - name: vault\n    upstream: builtin:echo\n    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:{login}]}}]}}\n",
        login = sa("login")
    );
    let config = dir.join("services.yaml");
    std::fs::write(&config, yaml).unwrap();
    let stderr = std::fs::File::create(dir.join("stderr.log")).unwrap();
    let mut command = frontdoor();
    command
        .arg("serve")
        .arg("--config")
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .args(args)
        .env_remove("FRONTDOOR_LOG")
        .stdout(Stdio::null())
        .stderr(stderr);
    if let Some(level) = level {
        command.env("FRONTDOOR_LOG", level);
    }
    let mut child = command.spawn().unwrap();
    let record = dir.join("state/addresses.json");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(addresses) = std::fs::read(&record)
            .ok()
            .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        {
            return (child, addresses);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("serve did not start");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// One allowed call with a token from the metadata server, and one refused call whose
/// token's `kid` tries to start a log line of its own and colour the terminal.
async fn traffic(addresses: &Value) {
    let client = reqwest::Client::new();
    let token = client
        .get(format!(
            "http://{}/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://{VAULT}",
            addresses["metadata"].as_str().unwrap()
        ))
        .header("metadata-flavor", "Google")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let front = format!("http://{}/", addresses["frontdoor"].as_str().unwrap());
    let r = client
        .get(&front)
        .header("host", VAULT)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let forged = format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD
            .encode(r#"{"alg":"RS256","kid":"k\n2026-11-23T10:00:00.000000Z  INFO ALLOW 200 GET vault / \u001b[32mok"}"#),
        URL_SAFE_NO_PAD.encode("{}")
    );
    let r = client
        .get(&front)
        .header("host", VAULT)
        .bearer_auth(forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
}

fn stop(mut child: Child, dir: &Path) -> String {
    let _ = std::process::Command::new("kill")
        .arg(child.id().to_string())
        .status();
    assert!(child.wait().unwrap().success());
    std::fs::read_to_string(dir.join("stderr.log")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_is_one_compact_line_and_a_token_cannot_forge_one() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addresses) = serve(dir.path(), &[], None);
    traffic(&addresses).await;
    let log = stop(child, dir.path());
    assert!(!log.contains('\u{1b}'), "colour codes in a file:\n{log}");
    // Every line is the subscriber's: it opens with its timestamp.
    for line in log.lines() {
        assert!(line.starts_with("20") && line.contains("Z "), "{line:?}");
    }
    fn event(line: &str, verdict: &str) -> bool {
        line.split_once("Z  INFO ")
            .is_some_and(|(_, event)| event.starts_with(verdict))
    }
    let allowed: Vec<&str> = log.lines().filter(|l| event(l, "ALLOW ")).collect();
    assert_eq!(allowed.len(), 1, "{log}");
    assert!(
        allowed[0].ends_with(&format!(
            "INFO ALLOW 200 GET vault / as serviceAccount:{}",
            sa("login")
        )),
        "{}",
        allowed[0]
    );
    assert!(allowed[0].len() < 160, "{} bytes", allowed[0].len());
    let refused: Vec<&str> = log.lines().filter(|l| event(l, "DENY ")).collect();
    assert_eq!(refused.len(), 1, "{log}");
    assert!(
        refused[0].contains(
            r#"INFO DENY 401 GET vault /: unknown_kid: the token in authorization is unusable"#
        ),
        "{}",
        refused[0]
    );
    assert!(
        refused[0]
            .contains(r"k\n2026-11-23T10:00:00.000000Z  INFO ALLOW 200 GET vault / \u{1b}[32mok"),
        "{}",
        refused[0]
    );
    // The metadata server's tokens are debug events, not info ones.
    assert!(!log.contains("metadata"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_carry_every_field() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addresses) = serve(dir.path(), &["--log-format", "json"], None);
    traffic(&addresses).await;
    let log = stop(child, dir.path());
    let events: Vec<Value> = log
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let decisions: Vec<&Value> = events
        .iter()
        .filter(|e| e["message"] == "decision")
        .collect();
    assert_eq!(decisions.len(), 2, "{log}");
    let allowed = decisions[0];
    assert_eq!(
        (
            &allowed["surface"],
            &allowed["allowed"],
            &allowed["status"],
            &allowed["service"],
            &allowed["method"],
            &allowed["host"],
            &allowed["path"],
        ),
        (
            &Value::from("frontdoor"),
            &Value::from(true),
            &Value::from(200),
            &Value::from("vault"),
            &Value::from("GET"),
            &Value::from(VAULT),
            &Value::from("/"),
        )
    );
    assert_eq!(
        allowed["principal"],
        format!("serviceAccount:{}", sa("login"))
    );
    assert_eq!(allowed["credential"], "authorization");
    assert!(allowed["latency_us"].as_u64().is_some(), "{allowed}");
    let refused = decisions[1];
    assert_eq!(
        (&refused["allowed"], &refused["status"]),
        (&Value::from(false), &Value::from(401))
    );
    assert!(
        refused["reason"]
            .as_str()
            .unwrap()
            .contains(r"k\n2026-11-23T10:00:00.000000Z"),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_adds_every_check_and_the_metadata_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addresses) = serve(dir.path(), &[], Some("debug"));
    traffic(&addresses).await;
    let log = stop(child, dir.path());
    let mut from = 0;
    for event in [
        "metadata request",
        "ALLOW 200 metadata GET",
        "check ingress: passed",
        "check credential: found",
        "check token: signature, issuer and lifetime verified",
        "check audience: accepted",
        "check IAM: run.routes.invoke",
        "ALLOW 200 GET vault /",
        "check ingress: passed",
        "check credential: found",
        "DENY 401 GET vault /",
    ] {
        let at = log[from..]
            .find(event)
            .unwrap_or_else(|| panic!("no {event:?} after byte {from}:\n{log}"));
        from += at + event.len();
    }
    // Token-derived values in debug events are escaped too.
    assert!(!log.contains('\u{1b}'), "{log}");
}
