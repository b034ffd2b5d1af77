//! `frontdoor serve --ephemeral-ports --stop-on-stdin-close` (issue 32): two servers of one
//! configuration side by side, whatever ports it names; their records and `frontdoor env`
//! give the real ports; a reload keeps them; the end of stdin stops each cleanly. And the
//! test helpers under `helpers/` (Python, Go, Node, Java) run their own suites against this
//! build.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A configuration whose every listener is at a port held by `held`.
fn pinned(held: &[TcpListener]) -> String {
    let at = |i: usize| held[i].local_addr().unwrap();
    format!(
        "listen: {{frontdoor: '{}', google: '{}', metadata: '{}'}}\n{PROJECT}\
         services:\n  - {{name: api, upstream: 'builtin:echo', listen: '{}', metadata: '{}'}}\n",
        at(0),
        at(1),
        at(2),
        at(3),
        at(4)
    )
}

/// `serve` on `config` with its own state directory; returns once the banner is out.
fn serve(dir: &Path, config: &Path) -> Child {
    state_dir_with_test_keys(&dir.join("state"));
    let mut child = frontdoor()
        .args([
            "serve",
            "--ephemeral-ports",
            "--stop-on-stdin-close",
            "--config",
        ])
        .arg(config)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .env("XDG_STATE_HOME", dir.join("xdg"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let banner: Vec<String> = BufReader::new(child.stdout.take().unwrap())
        .lines()
        .map_while(Result::ok)
        .take_while(|l| !l.starts_with("services:"))
        .collect();
    assert!(
        banner.iter().any(|l| l.contains("front door")),
        "{banner:?}"
    );
    child
}

fn record(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("state/addresses.json")).unwrap())
        .unwrap()
}

fn ports(record: &serde_json::Value) -> Vec<String> {
    let api = &record["services"]["api"];
    [
        &record["frontdoor"],
        &record["google"],
        &record["metadata"],
        &api["listen"],
        &api["metadata"],
    ]
    .iter()
    .map(|v| v.as_str().unwrap().to_owned())
    .collect()
}

/// The status line of `GET /healthz` at `addr`, over a plain connection.
fn healthz(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    let request = format!("GET /healthz HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer.lines().next().unwrap_or_default().to_owned()
}

fn exits_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "still running after {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn two_servers_of_one_configuration_run_side_by_side_on_ports_the_os_picks() {
    // Every port the configuration names is taken, by this test.
    let held: Vec<TcpListener> = (0..6)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    let taken: Vec<String> = held
        .iter()
        .map(|l| l.local_addr().unwrap().to_string())
        .collect();
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("services.yaml");
    std::fs::write(&config, pinned(&held)).unwrap();
    let (a, b) = (root.path().join("a"), root.path().join("b"));
    let mut servers = [serve(&a, &config), serve(&b, &config)];

    let (first, second) = (ports(&record(&a)), ports(&record(&b)));
    for port in first.iter().chain(&second) {
        assert!(
            !taken.contains(port),
            "{port} is one the configuration names"
        );
    }
    assert!(
        first.iter().all(|p| !second.contains(p)),
        "{first:?} {second:?}"
    );
    // `env` gives the real ports, as JSON for programs; each server answers on its own.
    for (dir, ports) in [(&a, &first), (&b, &second)] {
        let env: serde_json::Value = serde_json::from_str(&succeed(
            frontdoor()
                .args(["env", "api", "--json", "--state-dir"])
                .arg(dir.join("state")),
        ))
        .unwrap();
        assert_eq!(env["GCE_METADATA_HOST"], ports[4].as_str(), "{env}");
        assert_eq!(env["K_SERVICE"], "api", "{env}");
        assert_eq!(healthz(&ports[1]), "HTTP/1.1 200 OK");
    }

    // A reload that leaves the listeners' configuration alone leaves them where they are,
    // and a new service's metadata server gets a port of its own too.
    std::fs::write(
        &config,
        format!(
            "{}  - {{name: extra, upstream: 'builtin:echo', metadata: '{}'}}\n",
            pinned(&held),
            taken[5]
        ),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let reloaded = loop {
        let now = record(&a);
        if now["services"].get("extra").is_some() {
            break now;
        }
        assert!(Instant::now() < deadline, "not reloaded: {now}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(ports(&reloaded), first);
    let extra = reloaded["services"]["extra"]["metadata"].as_str().unwrap();
    assert!(!taken.contains(&extra.to_owned()), "{extra}");

    // A third server on a state directory in use is refused before it binds anything.
    let refused = fails(
        frontdoor()
            .args(["serve", "--ephemeral-ports", "--config"])
            .arg(&config)
            .arg("--state-dir")
            .arg(a.join("state")),
    );
    assert!(
        refused.contains(&format!(
            "a frontdoor (process {}) already serves from the state directory",
            servers[0].id()
        )) && refused.contains("give this one its own --state-dir"),
        "{refused}"
    );

    // The end of stdin stops each, cleanly: its record removed.
    for (server, dir) in servers.iter_mut().zip([&a, &b]) {
        drop(server.stdin.take());
        assert!(exits_within(server, Duration::from_secs(15)).success());
        assert!(!dir.join("state/addresses.json").exists());
        // Found only through its state directory: the per-user note was never taken.
        assert!(!dir.join("xdg/frontdoor/servers").exists());
    }
}

#[test]
#[ignore = "left to scripts/test: runs the Python helper's pytest suite"]
fn the_python_helper_passes_its_own_suite_and_its_example() {
    let output = succeed(
        Command::new(python())
            .args([
                "-m",
                "pytest",
                "-q",
                "-p",
                "no:cacheprovider",
                "tests",
                "examples",
            ])
            .current_dir(repo().join("helpers/python"))
            .env("FRONTDOOR_BIN", env!("CARGO_BIN_EXE_frontdoor"))
            .env_remove("FRONTDOOR_STATE_DIR"),
    );
    // Every test ran and passed: none skipped, none missing.
    let summary = output.lines().last().unwrap_or_default();
    assert!(
        summary.starts_with("10 passed")
            && !["failed", "skipped", "error", "deselected"]
                .iter()
                .any(|w| summary.contains(w)),
        "{output}"
    );
}

#[test]
#[ignore = "left to scripts/test: runs the Go helper's tests with go test"]
fn the_go_helper_passes_its_own_tests_and_its_example() {
    let output = succeed(
        Command::new("go")
            .args(["test", "-count=1", "-v", "./..."])
            .current_dir(repo().join("helpers/go"))
            .env("FRONTDOOR_BIN", env!("CARGO_BIN_EXE_frontdoor"))
            .env_remove("FRONTDOOR_STATE_DIR"),
    );
    // Every test ran and passed: none skipped, none missing.
    let passed = output
        .lines()
        .filter(|l| l.starts_with("--- PASS: Test"))
        .count();
    assert_eq!(passed, 9, "{output}");
    assert!(
        !output.contains("--- SKIP") && !output.contains("--- FAIL"),
        "{output}"
    );
    assert!(
        output.contains("ok  \tfrontdoor.test/frontdoortest"),
        "{output}"
    );
}

#[test]
#[ignore = "left to scripts/test: runs the Node helper's tests with node --test"]
fn the_node_helper_passes_its_own_tests_and_its_example() {
    let output = succeed(
        Command::new("node")
            .args([
                "--test",
                "--test-reporter=tap",
                "test/lifecycle.test.js",
                "examples/two_services.test.js",
            ])
            .current_dir(repo().join("helpers/node"))
            .env("FRONTDOOR_BIN", env!("CARGO_BIN_EXE_frontdoor"))
            .env_remove("FRONTDOOR_STATE_DIR")
            .env_remove("NODE_TEST_CONTEXT"),
    );
    // Every test ran and passed: none skipped, none missing.
    for line in [
        "# tests 7",
        "# pass 7",
        "# fail 0",
        "# skipped 0",
        "# cancelled 0",
    ] {
        assert!(output.lines().any(|l| l == line), "{line}: {output}");
    }
}

#[test]
#[ignore = "left to scripts/test: runs the Java helper's tests with Maven"]
fn the_java_helper_passes_its_own_tests_and_its_example() {
    let dir = repo().join("helpers/java");
    let reports = dir.join("target/surefire-reports");
    let _ = std::fs::remove_dir_all(&reports);
    succeed(
        Command::new("mvn")
            .args(["-q", "-B", "test"])
            .current_dir(&dir)
            .env("FRONTDOOR_BIN", env!("CARGO_BIN_EXE_frontdoor"))
            .env_remove("FRONTDOOR_STATE_DIR"),
    );
    // Every test ran and passed: none skipped, none missing.
    for (class, count) in [("LifecycleTest", 5), ("TwoServicesTest", 2)] {
        let report =
            std::fs::read_to_string(reports.join(format!("frontdoor.testing.{class}.txt")))
                .unwrap();
        assert!(
            report.contains(&format!(
                "Tests run: {count}, Failures: 0, Errors: 0, Skipped: 0"
            )),
            "{report}"
        );
    }
}

/// The CI recipe in `helpers/ci` parses as a GitHub Actions workflow: triggers, jobs on a
/// runner, each step either an action at a pinned version or a script bash accepts, and
/// only the keys GitHub knows. No runner runs here, so this is as far as it can be checked.
#[test]
fn the_ci_recipe_is_a_well_formed_github_actions_workflow() {
    use serde_yaml_ng::Value;
    let text = std::fs::read_to_string(repo().join("helpers/ci/github-actions.yml")).unwrap();
    let workflow: Value = serde_yaml_ng::from_str(&text).unwrap();
    let keys = |v: &Value| -> Vec<String> {
        v.as_mapping()
            .unwrap()
            .keys()
            .map(|k| k.as_str().unwrap().to_owned())
            .collect()
    };
    assert!(workflow["name"].is_string());
    assert!(workflow["on"].is_mapping(), "no triggers");
    let jobs = workflow["jobs"].as_mapping().unwrap();
    assert!(!jobs.is_empty());
    for (name, job) in jobs {
        for key in keys(job) {
            assert!(
                [
                    "runs-on",
                    "timeout-minutes",
                    "env",
                    "steps",
                    "name",
                    "needs",
                    "if"
                ]
                .contains(&key.as_str()),
                "job {name:?}: unknown key {key}"
            );
        }
        assert!(job["runs-on"].is_string(), "job {name:?}: no runner");
        let steps = job["steps"].as_sequence().unwrap();
        assert!(steps.len() >= 3, "job {name:?}: {steps:?}");
        for step in steps {
            for key in keys(step) {
                assert!(
                    ["name", "id", "if", "uses", "with", "run", "env", "shell"]
                        .contains(&key.as_str()),
                    "unknown step key {key}"
                );
            }
            match (step.get("uses"), step.get("run")) {
                (Some(uses), None) => {
                    let uses = uses.as_str().unwrap();
                    let (action, version) = uses.split_once('@').unwrap();
                    assert!(action.contains('/') && !version.is_empty(), "{uses}");
                }
                (None, Some(run)) => {
                    // GitHub's expressions are replaced before the shell sees the script.
                    let script = run
                        .as_str()
                        .unwrap()
                        .replace("${{", "\"")
                        .replace("}}", "\"");
                    succeed(Command::new("bash").args(["-n", "-c", &script]));
                }
                _ => panic!("a step needs exactly one of uses and run: {step:?}"),
            }
        }
    }
    // What it installs is what this repository holds.
    assert!(text.contains("#subdirectory=helpers/python"));
    assert!(repo().join("helpers/python/pyproject.toml").is_file());
}
