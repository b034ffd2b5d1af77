//! The foundation end to end: the issuer's published keys, the CLI, and tokens checked by a
//! verifier frontdoor did not write.

use crate::common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::Value;

const ACCOUNTS: &str = "service_accounts: [{email: login@demo-project.iam.gserviceaccount.com}]\nusers: [alice@example.com]\n";

async fn get_json(url: &str) -> (reqwest::header::HeaderMap, Value) {
    let r = reqwest::get(url).await.unwrap();
    assert_eq!(r.status(), 200, "{url}");
    let headers = r.headers().clone();
    (headers, r.json().await.unwrap())
}

#[tokio::test]
async fn the_issuer_publishes_the_same_two_keys_in_both_forms() {
    let emu = Emulator::start(&format!("{PROJECT}{ACCOUNTS}")).await;
    let (h3, jwks) = get_json(&emu.google("/oauth2/v3/certs")).await;
    let (h1, pems) = get_json(&emu.google("/oauth2/v1/certs")).await;
    for h in [&h3, &h1] {
        assert_eq!(
            h["cache-control"],
            "public, max-age=3600, must-revalidate, no-transform"
        );
        assert_eq!(h["content-type"], "application/json");
    }
    let mut from_jwks: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    let mut from_pems: Vec<&str> = pems
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(from_jwks.len(), 2);
    from_jwks.sort();
    from_pems.sort();
    assert_eq!(from_jwks, from_pems);
    for k in jwks["keys"].as_array().unwrap() {
        assert_eq!(
            (k["kty"].as_str(), k["alg"].as_str(), k["use"].as_str()),
            (Some("RSA"), Some("RS256"), Some("sig"))
        );
    }

    let (_, discovery) = get_json(&emu.google("/.well-known/openid-configuration")).await;
    assert_eq!(discovery["issuer"], "https://accounts.google.com");
    assert_eq!(discovery["jwks_uri"], emu.google("/oauth2/v3/certs"));
    assert_eq!(
        discovery["id_token_signing_alg_values_supported"],
        serde_json::json!(["RS256"])
    );
    emu.stop().await;
}

fn write_config(dir: &std::path::Path, yaml: &str) -> std::path::PathBuf {
    let file = dir.join("services.yaml");
    std::fs::write(&file, yaml).unwrap();
    file
}

/// `frontdoor token` signs with the state directory's keys, and a running server publishes
/// them: PyJWT (against the JWKS) and `cryptography` (against the PEM certificate) agree.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "left to scripts/test: runs Python's google-auth as the verifier"]
async fn cli_tokens_verify_with_an_independent_verifier() {
    let emu = Emulator::start(&format!("{PROJECT}{ACCOUNTS}")).await;
    let file = write_config(emu.dir.path(), &format!("{PROJECT}{ACCOUNTS}"));
    let token = succeed(
        frontdoor()
            .args([
                "token",
                "--impersonate-service-account",
                "login@demo-project.iam.gserviceaccount.com",
                "--audiences",
                "https://x",
            ])
            .arg("--config")
            .arg(&file),
    );
    let token = token.trim_end();
    let claims: Value = serde_json::from_str(&run_python(
        "verify_token.py",
        &[&emu.google(""), token, "https://x"],
        &[],
    ))
    .unwrap();
    assert_eq!(
        claims["email"],
        "login@demo-project.iam.gserviceaccount.com"
    );
    assert_eq!(
        claims["sub"],
        emu.config
            .service_account("login@demo-project.iam.gserviceaccount.com")
            .unwrap()
            .unique_id
    );
    assert_eq!(claims["aud"], "https://x");

    // The wrong audience is refused by the same verifier: the check can fail.
    let refused = std::process::Command::new(python())
        .arg(repo().join("tests/clients/python/verify_token.py"))
        .args([&emu.google(""), token, "https://y"])
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("InvalidAudienceError"));

    let out = frontdoor()
        .args(["token", "--user", "alice@example.com"])
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    let user_token = String::from_utf8(out.stdout).unwrap();
    let claims: Value = serde_json::from_str(&run_python(
        "verify_token.py",
        &[
            &emu.google(""),
            user_token.trim_end(),
            "32555940559.apps.googleusercontent.com",
        ],
        &[],
    ))
    .unwrap();
    assert_eq!(claims["email"], "alice@example.com");
    emu.stop().await;
}

#[test]
fn cli_token_refuses_undeclared_identities() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(dir.path(), &format!("{PROJECT}{ACCOUNTS}"));
    state_dir_with_test_keys(&dir.path().join(".frontdoor"));
    for (flag, who, msg) in [
        (
            "--impersonate-service-account",
            "ghost@demo-project.iam.gserviceaccount.com",
            "service account `ghost@demo-project.iam.gserviceaccount.com` is not declared",
        ),
        (
            "--user",
            "mallory@example.com",
            "user `mallory@example.com` is not declared under `users:`",
        ),
    ] {
        let err = fails(
            frontdoor()
                .args(["token", flag, who])
                .arg("--config")
                .arg(&file),
        );
        assert!(err.contains(msg), "{err}");
    }
}

#[test]
fn cli_check_enforces_the_custom_audience_limit_at_32768() {
    let dir = tempfile::tempdir().unwrap();
    let config = |n: usize| {
        format!(
            "{PROJECT}services:\n  - name: api\n    upstream: builtin:echo\n    custom_audiences: [\"{}\"]\n",
            "a".repeat(n - 4)
        )
    };
    let file = write_config(dir.path(), &config(32_768));
    let out = frontdoor()
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("https://api-123456789012.us-central1.run.app")
    );

    let file = write_config(dir.path(), &config(32_769));
    let err = fails(frontdoor().arg("check").arg("--config").arg(&file));
    assert!(err.contains("services[0].custom_audiences"), "{err}");
    assert!(err.contains("over Cloud Run's limit of 32768"), "{err}");
}

/// Keys made on first start are reused on the next; the banner names every listener.
#[test]
fn serve_reuses_its_keys_across_restarts_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let yaml =
        format!("{EPHEMERAL}{PROJECT}services:\n  - name: api\n    upstream: builtin:echo\n");
    let file = write_config(dir.path(), &yaml);
    let mut kids = Vec::new();
    for _ in 0..2 {
        let (mut child, lines) = spawn_serve(dir.path(), &file, |l| l.starts_with("    upstream"));
        let banner = lines.concat();
        assert!(
            banner.contains("google APIs  http://127.0.0.1:"),
            "{banner}"
        );
        assert!(
            banner.contains("https://api-123456789012.us-central1.run.app"),
            "{banner}"
        );
        let keys = banner
            .split(", keys ")
            .nth(1)
            .unwrap()
            .split(')')
            .next()
            .unwrap()
            .to_owned();
        kids.push(keys);
        let addresses: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.path().join("state/addresses.json")).unwrap(),
        )
        .unwrap();
        assert!(
            addresses["google"]
                .as_str()
                .unwrap()
                .starts_with("127.0.0.1:")
        );
        stop(&mut child);
    }
    assert_eq!(kids[0], kids[1]);
    assert_eq!(kids[0].len(), 40 + 2 + 40);
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(dir.path().join("state/signing/current.pem"))
            .unwrap()
            .permissions(),
    );
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn serve_names_the_listener_it_cannot_bind() {
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let yaml = format!(
        "listen: {{frontdoor: 127.0.0.1:0, google: 127.0.0.1:{port}, metadata: 127.0.0.1:0}}\n{PROJECT}"
    );
    let file = write_config(dir.path(), &yaml);
    state_dir_with_test_keys(&dir.path().join("state"));
    let err = fails(
        frontdoor()
            .arg("serve")
            .arg("--config")
            .arg(&file)
            .arg("--state-dir")
            .arg(dir.path().join("state")),
    );
    assert!(
        err.contains(&format!(
            "cannot listen on 127.0.0.1:{port} for the google APIs listener"
        )),
        "{err}"
    );
}

/// `--bind-all` says loudly which listeners other machines can reach, metadata first.
#[test]
fn bind_all_warns_of_every_exposed_listener_metadata_first() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = format!(
        "listen: {{frontdoor: 127.0.0.1:0, google: 0.0.0.0:0, metadata: 0.0.0.0:0}}\n{PROJECT}services:\n  - name: api\n    upstream: builtin:echo\n"
    );
    let file = write_config(dir.path(), &yaml);
    state_dir_with_test_keys(&dir.path().join("state"));
    let mut child = frontdoor()
        .arg("serve")
        .arg("--bind-all")
        .arg("--config")
        .arg(&file)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = BufReader::new(child.stderr.take().unwrap());
    let warning: Vec<String> = err
        .lines()
        .map_while(Result::ok)
        .skip_while(|l| !l.starts_with("WARNING: --bind-all"))
        .take(3)
        .collect();
    // The reader of stderr is gone now: the server must carry on and stop cleanly, losing
    // its log lines (it once panicked on the first one it could not write).
    // Stopped once it serves (its record is written after its signal handlers are in).
    let record = dir.path().join("state/addresses.json");
    wait_for_file(&record, Duration::from_secs(30));
    stop(&mut child);
    assert_eq!(warning.len(), 3, "{warning:?}");
    assert!(
        warning[1].contains(
            "listen.metadata: a metadata server: it hands this project's ID and access tokens"
        ),
        "{warning:?}"
    );
    assert!(warning[2].contains("listen.google"), "{warning:?}");
}

/// `frontdoor token --as` is checked as IAM Credentials checks `generateIdToken`: a caller
/// with Token Creator on the account gets its token, one without is refused with IAM's
/// reason; without `--as`, the minting is an administrator's, and stderr says so.
#[test]
fn the_cli_checks_who_impersonates_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        &format!(
            "{PROJECT}service_accounts:
  - email: ci{SA}
  - email: cart{SA}
  - email: login{SA}
    iam_policy: {{bindings: [{{role: roles/iam.serviceAccountTokenCreator, members: [serviceAccount:ci{SA}]}}]}}
"
        ),
    );
    let token = |caller: Option<&str>| {
        let mut cmd = frontdoor();
        cmd.args(["token", "--impersonate-service-account", &sa("login")])
            .arg("--config")
            .arg(&file);
        if let Some(caller) = caller {
            cmd.args(["--as", caller]);
        }
        cmd
    };
    let minted = succeed(&mut token(Some(&format!("serviceAccount:{}", sa("ci")))));
    let claims = frontdoor::tokens::peek_claims(minted.trim()).unwrap();
    assert_eq!(claims["email"], sa("login"), "{claims:?}");
    let refused = fails(&mut token(Some(&format!("serviceAccount:{}", sa("cart")))));
    assert!(
        refused
            .contains("PERMISSION_DENIED: Permission 'iam.serviceAccounts.getOpenIdToken' denied")
            && refused.contains("roles/iam.serviceAccountTokenCreator")
            && refused.contains(&format!("serviceAccount:{}", sa("ci"))),
        "{refused}"
    );
    let refused = fails(&mut token(Some("group:ops@example.com")));
    assert!(
        refused.contains("serviceAccount:EMAIL or user:EMAIL"),
        "{refused}"
    );
    let output = token(None).output().unwrap();
    assert!(output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("no IAM check was made"), "{said}");
}

/// `frontdoor keys create` keeps Google's limit of ten keys an account, and says how many
/// it holds: a script that makes a key each run finds out, rather than piling them up.
#[test]
fn the_cli_makes_at_most_googles_ten_keys_an_account() {
    let dir = tempfile::tempdir().unwrap();
    let file = write_config(
        dir.path(),
        &format!("{PROJECT}service_accounts:\n  - email: ci{SA}\n"),
    );
    let create = |n: usize| {
        let mut cmd = frontdoor();
        cmd.args(["keys", "create"])
            .arg(dir.path().join(format!("key-{n}.json")))
            .args(["--iam-account", &sa("ci")])
            .arg("--config")
            .arg(&file);
        cmd
    };
    // An administrator's shortcut, which stderr says each time.
    let first = bounded_output(&mut create(0));
    assert!(
        String::from_utf8_lossy(&first.stderr)
            .contains("with no IAM check (no server runs from this state directory, so no decision was logged)"),
        "{first:?}"
    );
    std::fs::remove_file(dir.path().join("key-0.json")).unwrap();
    // With --as, the member is judged as the IAM API judges it, offline too.
    let refused = fails(create(0).args(["--as", &format!("serviceAccount:{}", sa("ci"))]));
    assert!(
        refused.contains("PERMISSION_DENIED: Permission 'iam.serviceAccountKeys.create' denied"),
        "{refused}"
    );
    assert!(!dir.path().join("key-0.json").exists());
    let deleted = String::from_utf8_lossy(&first.stdout)
        .split(['[', ']'])
        .nth(1)
        .unwrap()
        .to_owned();
    succeed(
        frontdoor()
            .args(["keys", "delete", &deleted])
            .arg("--config")
            .arg(&file),
    );
    for n in 1..=10 {
        let said = succeed(&mut create(n));
        assert!(
            said.contains(&format!("{} now has {n} of Google's 10 keys", sa("ci"))),
            "{said}"
        );
    }
    let refused = fails(&mut create(11));
    assert!(
        refused.contains("FAILED_PRECONDITION") && refused.contains("frontdoor keys delete"),
        "{refused}"
    );
    assert!(!dir.path().join("key-11.json").exists());
}

/// The help lists the commands in the order a first session uses them, each with an
/// example, and says what is serve's (the log's format) under serve alone.
#[test]
fn help_lists_commands_in_a_learners_order_each_with_an_example() {
    let help = succeed(frontdoor().arg("--help"));
    let order = [
        "check",
        "serve",
        "exec",
        "decisions",
        "explain",
        "token",
        "env",
        "status",
        "keys",
        "fold",
        "credentials",
        "external-token",
    ];
    let listed: Vec<&str> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .collect();
    assert_eq!(listed, order, "{help}");
    for command in order {
        let own = succeed(frontdoor().args([command, "--help"]));
        let example = own
            .lines()
            .find(|l| l.starts_with("Example: ") || l.starts_with("See: docs/"))
            .unwrap_or_else(|| panic!("{command}: no example:\n{own}"));
        assert!(
            example.starts_with(&format!("Example: frontdoor {command}"))
                || example.starts_with("Example: eval \"$(frontdoor env")
                || example.starts_with("See: docs/"),
            "{command}: {example}"
        );
        assert_eq!(
            own.contains("--log-format"),
            command == "serve",
            "{command}:\n{own}"
        );
    }
}
