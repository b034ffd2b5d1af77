//! Property-based fuzzing (proptest: `cargo fuzz` needs a nightly compiler) of what reads
//! attacker-controlled input: the token verifier, the configuration loader, and the form
//! and JSON bodies of the google endpoints.
//!
//! Under `scripts/test` each target runs a few hundred cases. For a long run, give a time:
//!
//! ```sh
//! FRONTDOOR_FUZZ_SECS=600 cargo test --release --test it -- --nocapture fuzz::tokens
//! ```
//!
//! which repeats the target for that long and prints how many inputs it tried. A failure
//! prints the smallest input proptest could shrink it to.

use crate::common;

use std::path::Path;
use std::time::{Duration, Instant};

use axum::body::Body;
use common::*;
use frontdoor::keys::KeySet;
use frontdoor::tokens;
use proptest::prelude::*;
use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
use serde_json::json;

const NOW: i64 = 1_800_000_000;

/// Runs `property` over `strategy`: a few hundred cases, or for `FRONTDOOR_FUZZ_SECS`.
fn fuzz<S: Strategy>(
    name: &str,
    strategy: S,
    property: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    let budget = std::env::var("FRONTDOOR_FUZZ_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let cases = if budget.is_some() { 20_000 } else { 300 };
    let deadline = Instant::now() + Duration::from_secs(budget.unwrap_or(0));
    let mut total = 0u64;
    loop {
        let mut runner = TestRunner::new(RunnerConfig {
            cases,
            failure_persistence: None,
            ..RunnerConfig::default()
        });
        if let Err(e) = runner.run(&strategy, &property) {
            panic!("{name}: {e}");
        }
        total += u64::from(cases);
        if Instant::now() >= deadline {
            break;
        }
    }
    println!("fuzz {name}: {total} inputs, no failure");
}

/// A string edited at random: bytes replaced, inserted and removed, or cut.
fn mutated(seed: String) -> impl Strategy<Value = String> {
    let len = seed.len().max(1);
    proptest::collection::vec((0..len, any::<u8>(), 0u8..4), 1..8).prop_map(move |edits| {
        let mut bytes = seed.clone().into_bytes();
        for (at, byte, kind) in edits {
            let at = at.min(bytes.len());
            match kind {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if at < bytes.len() => {
                    bytes.remove(at);
                }
                _ => bytes.truncate(at),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn keys() -> KeySet {
    KeySet::new(vec![test_key("a"), test_key("b")])
}

fn genuine(keys: &KeySet) -> String {
    let claims = json!({
        "iss": "https://accounts.google.com",
        "aud": "https://search-123456789012.us-central1.run.app",
        "sub": "100000000000000000001",
        "email": sa("login"),
        "iat": NOW,
        "exp": NOW + 3600,
    });
    tokens::mint(keys, claims.as_object().unwrap())
}

/// Whatever the input, the verifier answers (never panics), and the one token it accepts is
/// the genuine one: no edit of a signed token still verifies.
#[test]
fn tokens() {
    let keys = keys();
    let token = genuine(&keys);
    assert!(tokens::verify(&keys, &token, "https://accounts.google.com", NOW).is_ok());
    let strategy = prop_oneof![
        4 => mutated(token.clone()),
        1 => "[a-zA-Z0-9_.=-]{0,400}",
        1 => any::<String>(),
    ];
    fuzz("tokens", strategy, |input| {
        let outcome = tokens::verify(&keys, &input, "https://accounts.google.com", NOW);
        prop_assert!(outcome.is_err() || input == token, "accepted {input:?}");
        if let Err(e) = outcome {
            prop_assert!(!e.to_string().is_empty());
        }
        Ok(())
    });
}

/// Whatever the text, the loader answers with a configuration or an error naming the file,
/// and never panics.
#[test]
fn configuration() {
    let default = std::fs::read_to_string(repo().join("services.yaml")).unwrap();
    let strategy = prop_oneof![
        4 => mutated(default.clone()),
        1 => "[ a-z:\\[\\]{}\n,&*!|>-]{0,300}",
        1 => any::<String>(),
    ];
    let file = Path::new("fuzzed.yaml");
    fuzz("configuration", strategy, |text| {
        if let Err(e) = frontdoor::config::parse(&text, file) {
            prop_assert!(e.to_string().starts_with("fuzzed.yaml: "), "{e}");
        }
        Ok(())
    });
}

/// The google endpoints' bodies: whatever arrives, the answer is a 2xx or a 4xx (a client's
/// mistake is never a 5xx) and never a panic.
#[test]
fn google_bodies() {
    let generation = generation(&format!(
        "{PROJECT}service_accounts: [{{email: {}}}, {{email: {}}}]\n",
        sa("login"),
        sa("search")
    ));
    let app = frontdoor::server::google_listener(generation.live.clone());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let login = sa("login");
    let paths = [
        "/token".to_owned(),
        "/v1/token".to_owned(),
        "/tokeninfo".to_owned(),
        format!("/v1/projects/-/serviceAccounts/{login}:generateIdToken"),
        format!("/v1/projects/-/serviceAccounts/{login}:generateAccessToken"),
        format!("/v1/projects/-/serviceAccounts/{login}:signJwt"),
        format!("/v1/projects/-/serviceAccounts/{login}:signBlob"),
    ];
    let form = "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=a.b.c&subject_token=x&subject_token_type=urn%3Aietf%3Aparams%3Aoauth%3Atoken-type%3Ajwt&audience=%2F%2Fiam.googleapis.com%2Fx&id_token=a.b.c".to_owned();
    let body = json!({
        "audience": "https://x", "includeEmail": true, "scope": ["a"], "lifetime": "3600s",
        "payload": "{\"sub\":\"x\"}", "bytesToSign": "aGk=", "delegates": [],
        "grantType": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subjectToken": "a.b.c", "subjectTokenType": "urn:ietf:params:oauth:token-type:jwt",
        "requestedTokenType": "urn:ietf:params:oauth:token-type:access_token"
    })
    .to_string();
    let strategy = (
        0..paths.len(),
        prop_oneof![
            Just("application/x-www-form-urlencoded"),
            Just("application/json"),
            Just("text/plain"),
        ],
        prop_oneof![
            Just(None),
            Just(Some("Bearer ya29.fuzz")),
            Just(Some("Bearer a.b.c")),
        ],
        prop_oneof![
            3 => mutated(form),
            3 => mutated(body),
            1 => any::<String>(),
        ],
    );
    fuzz(
        "google bodies",
        strategy,
        |(path, content_type, bearer, body)| {
            let mut request = axum::http::Request::post(&paths[path])
                .header("content-type", content_type)
                .header("host", "127.0.0.1:9999");
            if let Some(b) = bearer {
                request = request.header("authorization", b);
            }
            let request = request.body(Body::from(body.clone())).unwrap();
            let (status, _, answer) = runtime.block_on(oneshot(&app, request));
            prop_assert!(
                !status.is_server_error(),
                "{} {status} for {body:?}: {}",
                paths[path],
                answer
            );
            Ok(())
        },
    );
}
