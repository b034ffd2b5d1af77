//! Every way the seeds list for getting an ID token, driven through Google's own client
//! libraries and the documented recipes against frontdoor's token endpoints: a downloaded
//! service-account key, the blog recipe, workload identity federation, impersonation, and
//! the curl recipe with an STS token.

use crate::common;

use std::process::Command;

use common::*;
use serde_json::Value;

async fn status_of(url: &str, token: &str) -> u16 {
    reqwest::Client::new()
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// `credentials` in GOOGLE_APPLICATION_CREDENTIALS, an empty gcloud configuration, and no
/// metadata server. With `proxy`, also what `frontdoor env` sets (the key files name
/// Google's URLs, which reach frontdoor through its proxy).
fn env_with(
    emu: &Emulator,
    proxy: bool,
    home: &std::path::Path,
    credentials: &std::path::Path,
) -> Vec<(String, String)> {
    // The proxy and the CA of `frontdoor env`, not its metadata server: set below.
    let mut env: Vec<(String, String)> = if proxy {
        env_of(emu, None)
            .into_iter()
            .filter(|(k, _)| !k.starts_with("GCE_METADATA_"))
            .collect()
    } else {
        vec![]
    };
    env.extend([
        (
            "GOOGLE_APPLICATION_CREDENTIALS".into(),
            credentials.display().to_string(),
        ),
        (
            "CLOUDSDK_CONFIG".into(),
            home.join("gcloud").display().to_string(),
        ),
        ("HOME".into(), home.display().to_string()),
        // No metadata server here: a fallback to it must not find one.
        ("GCE_METADATA_HOST".into(), "127.0.0.1:9".into()),
        ("GCE_METADATA_IP".into(), "127.0.0.1:9".into()),
        ("GCE_METADATA_ROOT".into(), "127.0.0.1:9".into()),
    ]);
    env
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// `frontdoor keys create`, then google-auth with that key file: fetch_id_token, an access
/// token refresh, and the blog recipe of seed 003 — whose token the front door accepts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs Python's google-auth"]
async fn a_service_account_key_file_with_python_google_auth() {
    let emu = Emulator::start(&token_config()).await;
    let key = emu.dir.path().join("caller-key.json");
    let said = emu.cli(&[
        "keys",
        "create",
        key.to_str().unwrap(),
        "--iam-account",
        &sa("caller"),
    ]);
    assert!(said.starts_with("created key ["), "{said}");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&key).unwrap()).unwrap();
    assert_eq!(file["type"], "service_account");
    assert_eq!(file["token_uri"], "https://oauth2.googleapis.com/token");
    assert_eq!(file["universe_domain"], "googleapis.com");
    let listed = emu.cli(&["keys", "list", "--iam-account", &sa("caller")]);
    assert!(
        listed.contains(file["private_key_id"].as_str().unwrap()),
        "{listed}"
    );

    let home = tempfile::tempdir().unwrap();
    let env = env_with(&emu, true, home.path(), &key);
    let aud = emu.url_of("api");
    let out: Value = serde_json::from_str(&run_python(
        "token_clients.py",
        &["key-file", &aud],
        &borrowed(&env),
    ))
    .unwrap();
    assert_eq!(out["claims"]["email"], sa("caller"));
    assert_eq!(out["claims"]["aud"], aud);
    assert!(out["access_token"].as_str().unwrap().starts_with("ya29."));
    assert_eq!(out["project"], "demo-project");
    assert_eq!(
        status_of(&emu.service("api", "/"), out["id_token"].as_str().unwrap()).await,
        200
    );

    let out: Value = serde_json::from_str(&run_python(
        "token_clients.py",
        &["seed-recipe", &aud],
        &borrowed(&env),
    ))
    .unwrap();
    let token = out["id_token"].as_str().unwrap();
    assert_eq!(frontdoor::tokens::peek_claims(token).unwrap()["aud"], aud);
    assert_eq!(status_of(&emu.service("api", "/"), token).await, 200);

    // Once the key is deleted, the library's refresh fails with Google's error.
    emu.cli(&["keys", "delete", file["private_key_id"].as_str().unwrap()]);
    let refused = Command::new(python())
        .arg(repo().join("tests/clients/python/token_clients.py"))
        .args(["key-file", &aud])
        .envs(borrowed(&env))
        .output()
        .unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("Invalid JWT Signature."),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    emu.stop().await;
}

/// An external-account configuration written by frontdoor, a subject token from its
/// built-in issuer, and google-auth's identity_pool credentials: STS, then
/// generateAccessToken, then generateIdToken over REST.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs Python's google-auth"]
async fn workload_identity_federation_with_python_google_auth() {
    let emu = Emulator::start(&token_config()).await;
    let dir = emu.dir.path();
    let token_file = dir.join("subject.jwt");
    let config_file = dir.join("external-account.json");
    let aud = emu.url_of("api");
    let generate = emu.google(&format!(
        "/v1/projects/-/serviceAccounts/{}:generateIdToken",
        sa("target")
    ));
    let home = tempfile::tempdir().unwrap();
    emu.cli(&[
        "credentials",
        "external-account",
        config_file.to_str().unwrap(),
        "--provider",
        "ci-pool/ci",
        "--service-account",
        &sa("target"),
        "--token-file",
        token_file.to_str().unwrap(),
        // No proxy in this test: the file names the google listener itself.
        "--loopback-urls",
    ]);
    let written: Value =
        serde_json::from_str(&std::fs::read_to_string(&config_file).unwrap()).unwrap();
    assert_eq!(written["token_url"], emu.google("/v1/token"));
    assert_eq!(
        written["credential_source"]["file"],
        token_file.display().to_string()
    );

    for (repository, allowed) in [("good-repo", true), ("other-repo", false)] {
        let subject = emu.cli(&[
            "external-token",
            "--provider",
            "ci-pool/ci",
            "--subject",
            "repo:x",
            "--claim",
            &format!("repository={repository}"),
        ]);
        // Written exactly as printed: a token file Google's libraries read as is.
        assert!(
            !subject.ends_with('\n'),
            "external-token printed a trailing newline"
        );
        std::fs::write(&token_file, &subject).unwrap();
        let env = env_with(&emu, false, home.path(), &config_file);
        let run = &mut Command::new(python());
        run.arg(repo().join("tests/clients/python/token_clients.py"))
            .args(["identity-pool", &aud, &generate])
            .envs(borrowed(&env));
        let run = bounded_output(run);
        if allowed {
            assert!(
                run.status.success(),
                "{}",
                String::from_utf8_lossy(&run.stderr)
            );
            let out: Value = serde_json::from_slice(&run.stdout).unwrap();
            assert_eq!(out["claims"]["email"], sa("target"));
            assert_eq!(
                status_of(&emu.service("api", "/"), out["id_token"].as_str().unwrap()).await,
                200
            );
        } else {
            assert!(!run.status.success());
            let err = String::from_utf8_lossy(&run.stderr);
            assert!(
                err.contains("iam.serviceAccounts.getAccessToken")
                    && err.contains("PERMISSION_DENIED"),
                "{err}"
            );
        }
    }
    emu.stop().await;
}

/// Node's Impersonated client with its endpoint pointed at frontdoor; the source identity
/// comes from the default metadata listener (`caller`, the first account declared).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs Node's google-auth-library"]
async fn node_impersonated_fetch_id_token() {
    let emu = Emulator::start(&token_config()).await;
    let home = tempfile::tempdir().unwrap();
    let env = cloud_run_env(&emu.addresses.metadata.to_string(), home.path());
    let env = borrowed(&env);
    let aud = emu.url_of("api");
    let out: Value = serde_json::from_str(&run_node(
        "impersonated.js",
        &[&emu.google(""), &sa("target"), &aud],
        &env,
    ))
    .unwrap();
    let token = out["token"].as_str().unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        frontdoor::tokens::peek_claims(token).unwrap()["email"],
        sa("target")
    );
    assert_eq!(status_of(&emu.service("api", "/"), token).await, 200);

    // No Token Creator binding on loner: the library surfaces the 403.
    let out: Value = serde_json::from_str(&run_node(
        "impersonated.js",
        &[&emu.google(""), &sa("loner"), &aud],
        &env,
    ))
    .unwrap();
    assert_eq!(out["error"]["status"], 403, "{out}");
    assert!(
        out["error"]["message"]
            .as_str()
            .unwrap()
            .contains("iam.serviceAccounts.getOpenIdToken"),
        "{out}"
    );
    emu.stop().await;
}

/// Seed 001's curl recipe for generateIdToken with an STS token, as written (only the host
/// changed), after an STS exchange with curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs curl"]
async fn the_documented_curl_recipe_with_an_sts_token() {
    let emu = Emulator::start(&token_config()).await;
    let subject = emu.cli(&[
        "external-token",
        "--provider",
        "ci-pool/ci",
        "--subject",
        "repo:x",
        "--claim",
        "repository=good-repo",
    ]);
    let provider = emu.config.provider("ci-pool/ci").unwrap().resource.clone();
    let script = format!(
        r#"set -euo pipefail
STS_TOKEN=$(curl -s -f -X POST "{sts}" \
  --data-urlencode "grant_type=urn:ietf:params:oauth:grant-type:token-exchange" \
  --data-urlencode "audience={provider}" \
  --data-urlencode "subject_token={subject}" \
  --data-urlencode "subject_token_type=urn:ietf:params:oauth:token-type:jwt" \
  --data-urlencode "requested_token_type=urn:ietf:params:oauth:token-type:access_token" | jq -r .access_token)
ID_TOKEN=$(curl -0 -X POST {base}/v1/projects/-/serviceAccounts/{account}:generateIdToken \
  -H "Content-Type: text/json; charset=utf-8" \
  -H "Authorization: Bearer $STS_TOKEN" \
  -d @- <<EOF | jq -r .token
{{
  "audience": "{aud}"
}}
EOF
)
echo $ID_TOKEN
"#,
        sts = emu.google("/v1/token"),
        subject = subject.trim(),
        base = emu.google(""),
        account = sa("target"),
        aud = emu.url_of("api"),
    );
    // Only PATH from this process: a proxy variable here would take the recipe's loopback
    // requests elsewhere.
    let token = succeed(
        Command::new("bash")
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .arg("-c")
            .arg(&script),
    );
    let token = token.trim();
    // Without includeEmail the token has no email; its sub names the account.
    let claims =
        frontdoor::tokens::peek_claims(token).unwrap_or_else(|| panic!("not a token: {token}"));
    assert_eq!(
        claims["sub"],
        emu.config.service_account(&sa("target")).unwrap().unique_id
    );
    assert!(claims.get("email").is_none());
    assert_eq!(status_of(&emu.service("api", "/"), token).await, 200);
    emu.stop().await;
}
