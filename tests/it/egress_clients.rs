//! Google's clients and the seeds' recipes, code unmodified, their environment only what
//! `eval "$(frontdoor env SERVICE)"` sets: every URL they use is Google's own (issue 12).

use crate::common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn yaml() -> String {
    format!(
        r#"{PROJECT}service_accounts:
  - email: login{SA}
    # signBlob as itself, which compute_engine.IDTokenCredentials does.
    iam_policy: {{bindings: [{{role: roles/iam.serviceAccountTokenCreator, members: [serviceAccount:login{SA}]}}]}}
  - email: invoker{SA}
    iam_policy:
      bindings:
        - role: roles/iam.serviceAccountTokenCreator
          members: [serviceAccount:login{SA}]
        - role: roles/iam.workloadIdentityUser
          members: ["principalSet:{FEDERATION_POOL}/attribute.repository/app"]
  - email: loner{SA}
services:
  - name: login
    service_account: login{SA}
    upstream: builtin:echo
  - name: vault
    upstream: builtin:echo
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:login{SA}, serviceAccount:invoker{SA}]}}]}}
  - name: closed
    upstream: builtin:echo
{CI_POOL}"#
    )
}

/// A key file for `login`, as `keys create` writes it.
fn login_key(emu: &Emulator) -> std::path::PathBuf {
    let key = emu.dir.path().join("login-key.json");
    emu.cli(&[
        "keys",
        "create",
        key.to_str().unwrap(),
        "--iam-account",
        &sa("login"),
    ]);
    key
}

/// A token from frontdoor's built-in issuer that the `ci-pool/ci` provider maps to
/// `repository=app`, which may act as `invoker`.
fn subject_token(emu: &Emulator) -> String {
    emu.cli(&[
        "external-token",
        "--provider",
        "ci-pool/ci",
        "--subject",
        "repo:app",
        "--claim",
        "repository=app",
    ])
}

/// `login` as it would run on Cloud Run after `eval "$(frontdoor env login)"`.
fn as_login(emu: &Emulator) -> ClientShell {
    ClientShell::new(emu, Some("login"))
}

/// The seeds' curl recipes as written, after `eval "$(frontdoor env login)"` in the same
/// shell: the metadata server at `metadata.google.internal` (seeds 001 and 002), and seed
/// 001's generateIdToken at `iamcredentials.googleapis.com` with an STS token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs curl"]
async fn the_seeds_curl_recipes_run_verbatim() {
    let emu = Emulator::start(&yaml()).await;
    let url = emu.url_of("vault");
    let subject = subject_token(&emu);
    // Placeholders filled in; each recipe's text otherwise as the seed gives it.
    let script = format!(
        r#"eval "$(frontdoor env --config '{config}' login)"
TOKEN=$(curl -s "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity?audience={url}" \
-H "Metadata-Flavor: Google")
curl -s -o /dev/null -w "%{{http_code}}\n" -H "Authorization: Bearer $TOKEN" {url}/
TOKEN=$(curl "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/identity?audience={url}" \
    --header "Metadata-Flavor: Google")
curl -s -o /dev/null -w "%{{http_code}}\n" -H "Authorization: Bearer $TOKEN" {url}/
curl -s "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token" \
    --header "Metadata-Flavor: Google" | jq -r '.access_token[:5]'
STS_TOKEN=$(curl -s https://sts.googleapis.com/v1/token \
  --data-urlencode grant_type=urn:ietf:params:oauth:grant-type:token-exchange \
  --data-urlencode audience={pool}/providers/ci \
  --data-urlencode subject_token='{subject}' \
  --data-urlencode subject_token_type=urn:ietf:params:oauth:token-type:jwt | jq -r .access_token)
ID_TOKEN=$(curl -0 -X POST https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{invoker}:generateIdToken \
  -H "Content-Type: text/json; charset=utf-8" \
  -H "Authorization: Bearer $STS_TOKEN" \
  -d @- <<EOF | jq -r .token
{{ "audience": "{url}" }}
EOF
)
curl -s -o /dev/null -w "%{{http_code}}\n" -H "Authorization: Bearer $ID_TOKEN" {url}/
"#,
        config = emu.config_file().display(),
        pool = FEDERATION_POOL,
        invoker = sa("invoker"),
    );
    let bin = Path::new(env!("CARGO_BIN_EXE_frontdoor")).parent().unwrap();
    let home = tempfile::tempdir().unwrap();
    let out = succeed(
        Command::new("bash")
            .env_clear()
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .env("HOME", home.path())
            .env("XDG_STATE_HOME", test_state_home())
            .args(["-e", "-o", "pipefail", "-c", &script]),
    );
    assert_eq!(
        out.lines().collect::<Vec<_>>(),
        ["200", "200", "ya29.", "200"],
        "{out}"
    );
    emu.stop().await;
}

/// Python's google-auth: an impersonated_service_account ADC file (its source a key file)
/// yields an ID token through `iamcredentials.googleapis.com`; compute_engine's
/// IDTokenCredentials at its defaults signs with signBlob and exchanges at
/// `www.googleapis.com/oauth2/v4/token`; an external-account file without impersonation
/// (as `create-cred-config` writes without --service-account) uses the STS token itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs Python's google-auth"]
async fn python_google_auth_reaches_googles_urls() {
    let emu = Emulator::start(&yaml()).await;
    let url = emu.url_of("vault");
    let login = as_login(&emu);
    let script = repo().join("tests/clients/python/egress_clients.py");
    let run = |args: &[&str], extra: &[(&str, &Path)]| -> Value {
        let out = succeed(
            login
                .command(python())
                .arg(&script)
                .args(args)
                .envs(extra.iter().copied()),
        );
        serde_json::from_str(&out).unwrap()
    };

    let key: Value =
        serde_json::from_str(&std::fs::read_to_string(login_key(&emu)).unwrap()).unwrap();
    let adc = emu.dir.path().join("impersonated.json");
    let file = serde_json::json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{}:generateAccessToken",
            sa("invoker")
        ),
        "source_credentials": key,
        "delegates": [],
    });
    std::fs::write(&adc, file.to_string()).unwrap();
    let out = run(
        &["impersonated", &url],
        &[("GOOGLE_APPLICATION_CREDENTIALS", &adc)],
    );
    assert_eq!(out["claims"]["email"], sa("invoker"), "{out}");
    assert_eq!(out["claims"]["aud"], url);
    assert_eq!(out["status"], 200);

    let out = run(&["compute-engine", &url], &[]);
    assert_eq!(out["claims"]["email"], sa("login"), "{out}");
    assert_eq!(out["claims"]["aud"], url);
    assert_eq!(out["status"], 200);

    let subject = emu.dir.path().join("subject.jwt");
    let token = subject_token(&emu);
    std::fs::write(&subject, token).unwrap();
    let creds = emu.dir.path().join("federated.json");
    let said = emu.cli(&[
        "credentials",
        "external-account",
        creds.to_str().unwrap(),
        "--provider",
        "ci-pool/ci",
        "--token-file",
        subject.to_str().unwrap(),
    ]);
    assert!(said.contains("the federated identity itself"), "{said}");
    let written: Value = serde_json::from_str(&std::fs::read_to_string(&creds).unwrap()).unwrap();
    assert_eq!(written["token_url"], "https://sts.googleapis.com/v1/token");
    assert!(written.get("service_account_impersonation_url").is_none());
    let out = run(
        &["federated", &url, &sa("invoker"), creds.to_str().unwrap()],
        &[],
    );
    assert_eq!(out["claims"]["email"], sa("invoker"), "{out}");
    assert_eq!(out["status"], 200);
    emu.stop().await;
}

/// Node's google-auth-library with a key file: getIdTokenClient(url) then
/// client.request({url}) at the run.app URL, and OAuth2Client.verifyIdToken with Google's
/// default certificates URL, which refuses a token whose signature was altered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs Node's google-auth-library"]
async fn node_google_auth_library_reaches_googles_urls() {
    let emu = Emulator::start(&yaml()).await;
    let url = emu.url_of("vault");
    let login = as_login(&emu);
    let key = login_key(&emu);
    let out = succeed(
        login
            .command("node")
            .arg(node_script("egress.js"))
            .arg(&url)
            .env("GOOGLE_APPLICATION_CREDENTIALS", &key),
    );
    let out: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["email"], sa("login"));
    let tampered = out["tampered"].as_str().unwrap_or_default();
    assert!(
        tampered.starts_with("refused: ") && tampered.contains("Invalid token signature"),
        "{out}"
    );
    emu.stop().await;
}

/// gcloud, with a fresh configuration and no endpoint override: activate a frontdoor key,
/// then print an ID token impersonating another account. The token opens the service at
/// its run.app URL; without the role to impersonate, gcloud reports Google's denial.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs gcloud"]
async fn gcloud_activates_a_key_and_impersonates() {
    let emu = Emulator::start(&yaml()).await;
    let url = emu.url_of("vault");
    let login = as_login(&emu);
    let key = login_key(&emu);
    let gcloud = |args: &[&str]| {
        let mut cmd = login.command("gcloud");
        cmd.args(args);
        cmd
    };
    let mut activate = gcloud(&[
        "auth",
        "activate-service-account",
        "--key-file",
        key.to_str().unwrap(),
    ]);
    let said = activate.output().unwrap();
    let stderr = String::from_utf8_lossy(&said.stderr);
    assert!(said.status.success(), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "Activated service account credentials for: [{}]",
            sa("login")
        )),
        "{stderr}"
    );
    let token = succeed(&mut gcloud(&[
        "auth",
        "print-identity-token",
        "--impersonate-service-account",
        &sa("invoker"),
        "--audiences",
        &url,
    ]));
    // gcloud asks without includeEmail: the account is named by its unique id alone, which
    // the front door resolves.
    let claims = frontdoor::tokens::peek_claims(token.trim()).unwrap();
    let invoker = emu.config.service_account(&sa("invoker")).unwrap();
    assert_eq!(claims["sub"], invoker.unique_id.as_str());
    assert!(claims.get("email").is_none());
    assert_eq!(claims["aud"], url);
    let status = succeed(login.command("curl").args([
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &format!("Authorization: Bearer {}", token.trim()),
        &url,
    ]));
    assert_eq!(status, "200");
    // An account login holds no role on.
    let refused = gcloud(&[
        "auth",
        "print-identity-token",
        "--impersonate-service-account",
        &sa("loner"),
        "--audiences",
        &url,
    ])
    .output()
    .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("PERMISSION_DENIED") && stderr.contains(&sa("loner")),
        "{stderr}"
    );
    emu.stop().await;
}

/// Java with nothing but JAVA_TOOL_OPTIONS: the proxy properties take it to the metadata
/// server by its real name and to the run.app URL, and the PKCS#12 trust store (the
/// system's roots and the CA) lets its TLS verify frontdoor's certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs Java's google-auth-library"]
async fn java_reaches_the_service_with_only_java_tool_options() {
    let emu = Emulator::start(&yaml()).await;
    let url = emu.url_of("vault");
    let login = as_login(&emu);
    let out = succeed(
        login
            .command("java")
            .arg(repo().join("tests/clients/java/Probe.java"))
            .arg(&url),
    );
    assert_eq!(out.lines().collect::<Vec<_>>(), ["403", "200"], "{out}");

    // Without the trust store, the same JVM refuses frontdoor's certificate.
    let options = login
        .env
        .iter()
        .find(|(k, _)| k == "JAVA_TOOL_OPTIONS")
        .unwrap()
        .1
        .clone();
    let untrusting: String = options
        .split(' ')
        .filter(|o| !o.starts_with("-Djavax.net.ssl"))
        .collect::<Vec<_>>()
        .join(" ");
    let refused = login
        .command("java")
        .env("JAVA_TOOL_OPTIONS", untrusting)
        .arg(repo().join("tests/clients/java/Probe.java"))
        .arg(&url)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("PKIX path building failed"), "{stderr}");
    emu.stop().await;
}
