//! Which running server the CLI talks to (issue 9): found from a subdirectory, through
//! FRONTDOOR_STATE_DIR, or as the last one started; a stopped or dead one is reported with
//! exit code 1 and the places looked, never used.

use crate::common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};

use common::*;

/// `frontdoor serve` in `dir` on ephemeral ports, its per-user note under `xdg`; returns
/// once the banner is out (the record is written before it).
fn serve(dir: &Path, xdg: &Path) -> Child {
    std::fs::write(
        dir.join("services.yaml"),
        format!("{EPHEMERAL}{PROJECT}services: [{{name: api, upstream: builtin:echo}}]\n"),
    )
    .unwrap();
    state_dir_with_test_keys(&dir.join(".frontdoor"));
    // Started with a low soft limit on open files, which serve raises to the hard one.
    let mut child = std::process::Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -Sn 256 && exec "$0" serve"#)
        .arg(env!("CARGO_BIN_EXE_frontdoor"))
        .env_remove("FRONTDOOR_STATE_DIR")
        .current_dir(dir)
        .env("XDG_STATE_HOME", xdg)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let banner: Vec<String> = lines
        .map_while(Result::ok)
        .take_while(|l| !l.starts_with("services:"))
        .collect();
    assert!(
        banner.iter().any(|l| l.contains("google APIs")),
        "{banner:?}"
    );
    child
}

fn interrupt(mut child: Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    assert!(child.wait().unwrap().success());
}

/// How many servers are noted under `xdg`.
fn notes(xdg: &Path) -> usize {
    std::fs::read_dir(xdg.join("frontdoor/servers")).map_or(0, |d| d.count())
}

/// Each server notes its own state directory: one stopping never hides another that runs,
/// and from elsewhere the newest running one is found.
#[test]
fn a_stopped_server_does_not_hide_another_that_runs() {
    let (a, b, xdg, elsewhere) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let env_from_elsewhere = || {
        succeed(
            frontdoor()
                .arg("env")
                .current_dir(elsewhere.path())
                .env_remove("FRONTDOOR_STATE_DIR")
                .env("XDG_STATE_HOME", xdg.path()),
        )
    };
    let metadata_of = |dir: &Path| {
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(".frontdoor/addresses.json")).unwrap(),
        )
        .unwrap();
        format!(
            "export GCE_METADATA_HOST={}",
            record["metadata"].as_str().unwrap()
        )
    };
    let first = serve(a.path(), xdg.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = serve(b.path(), xdg.path());
    assert_eq!(notes(xdg.path()), 2);
    // The newest running one, from anywhere.
    assert!(env_from_elsewhere().contains(&metadata_of(b.path())));
    // The second stops: the first is still found, as before the second started.
    interrupt(second);
    assert_eq!(notes(xdg.path()), 1);
    assert!(env_from_elsewhere().contains(&metadata_of(a.path())));
    interrupt(first);
    assert_eq!(notes(xdg.path()), 0);
}

#[test]
fn the_cli_finds_the_running_server_from_anywhere_and_reports_a_stopped_one() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), xdg.path());
    let record: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join(".frontdoor/addresses.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["pid"], server.id());
    // It raised its open-file limit (256 when started) to the hard one, for its
    // connection caps.
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.id())).unwrap();
    let files: Vec<&str> = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(files[3], files[4], "soft and hard: {files:?}");
    let metadata = record["metadata"].as_str().unwrap().to_owned();

    // From a directory below the configuration's: found by looking up.
    let below = dir.path().join("src/deeper");
    std::fs::create_dir_all(&below).unwrap();
    let status = succeed(
        frontdoor()
            .arg("status")
            .current_dir(&below)
            .env("XDG_STATE_HOME", xdg.path()),
    );
    assert!(status.contains("generation 1"), "{status}");

    // From anywhere else: the last server this user started.
    let env = succeed(
        frontdoor()
            .arg("env")
            .current_dir(elsewhere.path())
            .env("XDG_STATE_HOME", xdg.path()),
    );
    assert!(
        env.contains(&format!("export GCE_METADATA_HOST={metadata}")),
        "{env}"
    );
    // Or named by FRONTDOOR_STATE_DIR, with no note to go on.
    let env = succeed(
        frontdoor()
            .args(["env", "api"])
            .current_dir(elsewhere.path())
            .env("FRONTDOOR_STATE_DIR", dir.path().join(".frontdoor")),
    );
    assert!(env.contains("export K_SERVICE=api"), "{env}");

    // A clean stop removes the record and the note: nothing stale is left to find.
    interrupt(server);
    assert!(!dir.path().join(".frontdoor/addresses.json").exists());
    assert_eq!(notes(xdg.path()), 0);
    let why = fails(
        frontdoor()
            .arg("env")
            .current_dir(elsewhere.path())
            .env("XDG_STATE_HOME", xdg.path()),
    );
    assert!(why.contains("no running frontdoor found"), "{why}");
    // And `eval "$(frontdoor env)"` fails, saying so, rather than setting nothing quietly.
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_frontdoor"));
    let evaled = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!(
            "eval \"$('{}' env)\" && echo passed",
            bin.display()
        ))
        .current_dir(elsewhere.path())
        .env("XDG_STATE_HOME", xdg.path())
        .env_remove("FRONTDOOR_STATE_DIR")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&evaled.stderr);
    assert!(!evaled.status.success(), "{said}");
    assert!(evaled.stdout.is_empty(), "{said}");
    assert!(
        said.contains("frontdoor env: no running frontdoor found")
            && said.contains("nothing was set"),
        "{said}"
    );
    assert!(
        why.contains(&format!(
            "{}/.frontdoor and each directory above it",
            elsewhere.path().display()
        )) && why.contains("frontdoor/servers (no server noted there)"),
        "{why}"
    );
    let why = fails(
        frontdoor()
            .arg("decisions")
            .env("XDG_STATE_HOME", xdg.path())
            .current_dir(&below),
    );
    assert!(why.contains("no running frontdoor found"), "{why}");
}

#[test]
fn a_record_left_by_a_dead_server_is_reported_not_used() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join(".frontdoor");
    std::fs::create_dir_all(&state).unwrap();
    // A process that has exited, and a port nothing listens on.
    let mut gone = std::process::Command::new("true").spawn().unwrap();
    gone.wait().unwrap();
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let record = |pid: Option<u32>| {
        let pid = pid.map_or_else(String::new, |p| format!(r#""pid": {p},"#));
        format!(
            r#"{{{pid} "frontdoor": "{closed}", "google": "{closed}", "metadata": "{closed}", "services": {{}}}}"#
        )
    };
    std::fs::write(state.join("addresses.json"), record(Some(gone.id()))).unwrap();
    // Its own per-user state home: the shared one may note another test's live server,
    // which `env` would rightly fall back to.
    let home = dir.path().join("state-home");
    let why = fails(
        frontdoor()
            .arg("env")
            .env("XDG_STATE_HOME", &home)
            .current_dir(dir.path()),
    );
    assert!(
        why.contains("is not running")
            && why.contains(&format!("its process {} is gone", gone.id())),
        "{why}"
    );
    assert!(why.contains("addresses.json"), "{why}");

    // Without a pid (an older record), the closed port tells.
    std::fs::write(state.join("addresses.json"), record(None)).unwrap();
    let why = fails(
        frontdoor()
            .arg("decisions")
            .arg("--state-dir")
            .arg(&state)
            .env("XDG_STATE_HOME", &home)
            .current_dir(dir.path()),
    );
    assert!(
        why.contains(&format!("nothing answers at its google listener {closed}")),
        "{why}"
    );
}

/// `frontdoor exec SERVICE -- COMMAND` runs COMMAND with the service's variables, for it
/// alone, and exits as it does; a service the server does not run, or no command, is
/// refused before anything runs.
#[test]
fn exec_runs_one_command_as_the_service_with_its_exit_status() {
    let dir = tempfile::tempdir().unwrap();
    let xdg = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), xdg.path());
    let state = dir.path().join(".frontdoor");
    let record: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("addresses.json")).unwrap())
            .unwrap();
    let metadata = record["services"]["api"]["metadata"].as_str().unwrap();
    let ran = bounded_output(
        frontdoor()
            .args(["exec", "api", "--", "sh", "-c"])
            .arg(r#"echo "$K_SERVICE $GCE_METADATA_HOST $HTTPS_PROXY [$GOOGLE_APPLICATION_CREDENTIALS]"; exit 3"#)
            .env("FRONTDOOR_STATE_DIR", &state)
            // A key file in the shell would win over the metadata server: not passed on.
            .env("GOOGLE_APPLICATION_CREDENTIALS", "/elsewhere/key.json"),
    );
    assert_eq!(ran.status.code(), Some(3), "{ran:?}");
    assert_eq!(
        String::from_utf8_lossy(&ran.stdout),
        format!("api {metadata} http://{metadata} []\n")
    );
    let why = fails(
        frontdoor()
            .args(["exec", "apj", "--", "true"])
            .env("FRONTDOOR_STATE_DIR", &state),
    );
    assert!(
        why.contains("no service `apj`") && why.contains("did you mean `api`"),
        "{why}"
    );
    // As env(1): 127 for a command not found, 126 for one that cannot be run.
    let missing = bounded_output(
        frontdoor()
            .args(["exec", "api", "--", "/no/such/program"])
            .env("FRONTDOOR_STATE_DIR", &state),
    );
    assert_eq!(missing.status.code(), Some(127), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot run `/no/such/program`"));
    let not_a_program = bounded_output(
        frontdoor()
            .args(["exec", "api", "--"])
            .arg(dir.path())
            .env("FRONTDOOR_STATE_DIR", &state),
    );
    assert_eq!(not_a_program.status.code(), Some(126), "{not_a_program:?}");
    let usage = bounded_output(
        frontdoor()
            .args(["exec", "api"])
            .env("FRONTDOOR_STATE_DIR", &state),
    );
    assert_eq!(usage.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&usage.stderr).contains("<COMMAND>"));
    interrupt(server);
}

/// How many keys login's account holds.
fn login_keys(emu: &Emulator) -> usize {
    emu.state
        .state_dir()
        .account_keys(&sa("login"))
        .unwrap()
        .len()
}

/// Each decision's principal and whether it was allowed.
fn who_and_whether(decisions: &[serde_json::Value]) -> Vec<(String, bool)> {
    decisions
        .iter()
        .map(|d| {
            (
                d["principal"].as_str().unwrap_or("").to_owned(),
                d["allowed"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// `frontdoor token` asks the server running from its file's state directory: the caller
/// given with `--as` is judged as IAM Credentials judges it and the decision logged either
/// way, an administrator's minting is logged as that, and a live edit the server refused
/// (the file unreadable) does not stop it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_asks_the_running_server_which_judges_and_logs_it() {
    let config = format!(
        "{PROJECT}service_accounts:
  - email: ci{SA}
  - email: cart{SA}
  - email: login{SA}
    iam_policy: {{bindings: [{{role: roles/iam.serviceAccountTokenCreator, members: [serviceAccount:ci{SA}]}}, {{role: roles/iam.serviceAccountKeyAdmin, members: [serviceAccount:ci{SA}]}}]}}
services: [{{name: api, upstream: builtin:echo}}]
"
    );
    let emu = Emulator::start(&config).await;
    let token_as = |caller: &str| {
        vec![
            "token".to_owned(),
            "--impersonate-service-account".to_owned(),
            sa("login"),
            "--as".to_owned(),
            caller.to_owned(),
        ]
    };
    let strs = |v: &[String]| {
        v.iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\u{0}")
    };
    let run = |args: Vec<String>| {
        let joined = strs(&args);
        let args: Vec<&str> = joined.split('\u{0}').collect();
        bounded_output(
            frontdoor()
                .args(&args)
                .arg("--config")
                .arg(emu.config_file()),
        )
    };
    let ci = format!("serviceAccount:{}", sa("ci"));
    let cart = format!("serviceAccount:{}", sa("cart"));

    let minted = run(token_as(&ci));
    assert!(minted.status.success(), "{minted:?}");
    let claims =
        frontdoor::tokens::peek_claims(String::from_utf8_lossy(&minted.stdout).trim()).unwrap();
    assert_eq!(claims["email"], sa("login"), "{claims:?}");
    let refused = run(token_as(&cart));
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && refused.stdout.is_empty(),
        "{refused:?}"
    );
    assert!(
        said.contains("PERMISSION_DENIED: Permission 'iam.serviceAccounts.getOpenIdToken' denied")
            && said.contains("roles/iam.serviceAccountTokenCreator"),
        "{said}"
    );
    let admin = run(vec![
        "token".into(),
        "--impersonate-service-account".into(),
        sa("login"),
    ]);
    assert!(admin.status.success(), "{admin:?}");
    assert!(
        String::from_utf8_lossy(&admin.stderr).contains("no IAM check was made"),
        "{admin:?}"
    );

    // Each is one of IAM Credentials' decisions, the caller's or the administrator's.
    let logged: Vec<serde_json::Value> = emu
        .decisions()
        .await
        .into_iter()
        .filter(|d| d["surface"] == "iamcredentials")
        .collect();
    let seen = who_and_whether(&logged);
    assert_eq!(
        seen,
        [
            (ci.clone(), true),
            (cart.clone(), false),
            ("administrator".to_owned(), true)
        ],
        "{logged:?}"
    );
    assert_eq!(logged[1]["code"], "permission_denied", "{:?}", logged[1]);

    let key_file = emu.dir.path().join("login-key.json");
    let created = run(vec![
        "keys".into(),
        "create".into(),
        key_file.display().to_string(),
        "--iam-account".into(),
        sa("login"),
    ]);
    assert!(created.status.success(), "{created:?}");
    assert!(
        String::from_utf8_lossy(&created.stderr)
            .contains("no IAM check (the decision log says so)"),
        "{created:?}"
    );
    let key: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&key_file).unwrap()).unwrap();
    let kid = key["private_key_id"].as_str().unwrap().to_owned();
    assert_eq!(key["token_uri"], "https://oauth2.googleapis.com/token");

    // `keys create --as` is judged as the IAM API judges it: cart holds nothing on login,
    // ci its key admin role.
    let create_as = |caller: &str, file: &std::path::Path| {
        run(vec![
            "keys".into(),
            "create".into(),
            file.display().to_string(),
            "--iam-account".into(),
            sa("login"),
            "--as".into(),
            caller.into(),
            "--loopback-urls".into(),
        ])
    };
    let refused_file = emu.dir.path().join("cart-key.json");
    let refused = create_as(&cart, &refused_file);
    assert!(!refused.status.success(), "{refused:?}");
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("PERMISSION_DENIED: Permission 'iam.serviceAccountKeys.create' denied"),
        "{refused:?}"
    );
    assert!(!refused_file.exists());
    let ci_file = emu.dir.path().join("ci-key.json");
    let made = create_as(&ci, &ci_file);
    assert!(made.status.success(), "{made:?}");
    assert!(made.stderr.is_empty(), "{made:?}");
    let key: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&ci_file).unwrap()).unwrap();
    assert_eq!(
        key["token_uri"],
        format!("http://{}/token", emu.addresses.google),
        "{key}"
    );
    // A file that cannot be written is found out before a key is made; nothing is left
    // beside a file that was.
    let held = login_keys(&emu);
    let nowhere = create_as(&ci, &emu.dir.path().join("no-such-dir/key.json"));
    assert!(!nowhere.status.success(), "{nowhere:?}");
    assert_eq!(login_keys(&emu), held);
    let left: Vec<String> = std::fs::read_dir(emu.dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let logged: Vec<serde_json::Value> = emu
        .decisions()
        .await
        .into_iter()
        .filter(|d| d["surface"] == "admin" && d["path"] == "/frontdoor/v1/keys")
        .collect();
    assert_eq!(
        who_and_whether(&logged),
        [
            ("administrator".to_owned(), true),
            (cart.clone(), false),
            (ci.clone(), true)
        ]
    );

    // A live edit the server refuses leaves the file unreadable; the token still comes,
    // from the configuration in force, and the keys are still listed.
    emu.rewrite_config(&config.replace(
        "roles/iam.serviceAccountTokenCreator",
        "roles/iam.tokenCreatr",
    ));
    emu.wait_status("the edit to be refused", |s| {
        s["last_reload"]["ok"] == false
    })
    .await;
    let minted = run(token_as(&ci));
    assert!(minted.status.success(), "{minted:?}");
    let listed = run(vec![
        "keys".into(),
        "list".into(),
        "--iam-account".into(),
        sa("login"),
    ]);
    assert!(listed.status.success(), "{listed:?}");
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&kid)
            && String::from_utf8_lossy(&listed.stderr).contains("listed unchecked"),
        "{listed:?}"
    );

    // The endpoint hands a token back whole: to a caller on this machine alone, whatever
    // Host it names (a container reaching a listener bound with --bind-all, say).
    let app = frontdoor::server::google_listener(frontdoor::state::Live::new(emu.state.clone()));
    // So does the one that hands back a key.
    for (path, remote, status) in [
        ("/frontdoor/v1/token", "10.1.2.3:40000", 403),
        ("/frontdoor/v1/token", "127.0.0.1:40000", 200),
        ("/frontdoor/v1/keys", "10.1.2.3:40000", 403),
        ("/frontdoor/v1/keys", "127.0.0.1:40000", 200),
    ] {
        use tower::ServiceExt;
        let mut request = axum::http::Request::post(path)
            .header("host", "localhost")
            .header("content-type", "application/json")
            .body(axum::body::Body::from(format!(
                "{{\"service_account\": \"{}\"}}",
                sa("login")
            )))
            .unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(frontdoor::peer::Peer {
                remote: remote.parse().unwrap(),
                local: "127.0.0.1:8088".parse().unwrap(),
            }));
        let answer = app.clone().oneshot(request).await.unwrap();
        assert_eq!(answer.status().as_u16(), status, "{path} from {remote}");
    }
    emu.stop().await;
}

/// frontdoor's own endpoints that make or hand back something take JSON from this
/// machine's own pages and programs: a page on another site can make a browser post a
/// `text/plain` body to a loopback address without asking first, and it names the
/// address as its Host; such a request makes no key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_sites_page_cannot_post_to_frontdoors_own_endpoints() {
    let emu = Emulator::start(&format!(
        "{PROJECT}service_accounts: [{{email: login{SA}}}]\nservices: [{{name: api, upstream: builtin:echo}}]\n"
    ))
    .await;
    let client = reqwest::Client::new();
    let body = format!("{{\"service_account\": \"{}\"}}", sa("login"));
    let keys = emu.google("/frontdoor/v1/keys");
    let own = emu.google("");
    let post = |headers: &[(&str, &str)]| {
        let mut request = client.post(&keys).body(body.clone());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move {
            let r = request.send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    for (headers, status, said) in [
        (
            vec![("content-type", "text/plain")],
            415,
            "application/json",
        ),
        (vec![], 415, "application/json"),
        (
            vec![
                ("content-type", "application/json"),
                ("origin", "https://evil.example"),
            ],
            403,
            "not from a page at `https://evil.example`",
        ),
        (
            vec![
                ("content-type", "application/json"),
                ("sec-fetch-site", "cross-site"),
            ],
            403,
            "not from another site's page",
        ),
    ] {
        let (got, text) = post(&headers).await;
        assert_eq!(
            (got, text.contains(said)),
            (status, true),
            "{headers:?}: {text}"
        );
    }
    assert_eq!(login_keys(&emu), 0);
    // The page's own posts (its origin is the listener) and the CLI's (no origin) pass.
    let own_origin = own.as_str();
    let (got, text) = post(&[
        ("content-type", "application/json"),
        ("origin", own_origin),
        ("sec-fetch-site", "same-origin"),
    ])
    .await;
    assert_eq!(got, 200, "{text}");
    let (got, text) = post(&[("content-type", "application/json; charset=utf-8")]).await;
    assert_eq!(got, 200, "{text}");
    assert_eq!(login_keys(&emu), 2);
    emu.stop().await;
}
