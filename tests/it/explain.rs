//! "Would this pass?" (issue 15, part 4): `POST /frontdoor/v1/explain` and `frontdoor
//! explain` judge a token for a service with the front door's own checks, sending nothing
//! to the service; their verdict is the front door's, case for case.

use crate::common;

use common::*;
use serde_json::{Value, json};

async fn explain(emu: &Emulator, ask: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(emu.google("/frontdoor/v1/explain"))
        .json(&ask)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_gives_the_front_doors_verdict_for_every_token() {
    let emu = Emulator::start(&three_services()).await;
    let aud = emu.url_of("user-profiles");
    let corpus = corpus::hostile(&emu, &aud, &emu.url_of("search"), &sa("login"));
    let mut cases: Vec<(&str, &str, String)> = corpus
        .cases
        .iter()
        .map(|(name, token)| (*name, "user-profiles", token.clone()))
        .collect();
    cases.push(("valid", "user-profiles", corpus.valid.clone()));
    cases.push((
        "no binding on search",
        "search",
        emu.sa_token(&sa("login"), &emu.url_of("search")),
    ));
    cases.push((
        "a user's token",
        "user-profiles",
        emu.user_token("alice@example.com", Some(&aud)),
    ));
    let before = emu.decisions().await.len();
    let mut explained = Vec::new();
    for (name, service, token) in &cases {
        let (status, verdict) = explain(&emu, json!({"service": service, "token": token})).await;
        assert_eq!(status, 200, "{name}: {verdict}");
        explained.push(verdict);
    }
    // Nothing reached a service, and nothing was recorded as a decision.
    assert_eq!(emu.decisions().await.len(), before);
    for ((name, service, token), verdict) in cases.iter().zip(&explained) {
        let (status, code) = front_door_verdict(&emu, service, token).await;
        assert_eq!(verdict["status"], status, "{name}: {verdict}");
        assert_eq!(verdict["allowed"], status == 200, "{name}: {verdict}");
        assert_eq!(
            verdict["code"].as_str().map(str::to_owned),
            code,
            "{name}: {verdict}"
        );
        // The signature is never shown: only the header and the claims.
        let shown = verdict["token"].to_string();
        if let Some(signature) = token.rsplit('.').next().filter(|s| s.len() > 20) {
            assert!(!shown.contains(signature), "{name}: {shown}");
        }
    }
    let valid = &explained[cases.len() - 3];
    assert_eq!(
        valid["principal"],
        format!("serviceAccount:{}", sa("login"))
    );
    assert_eq!(valid["token"]["claims"]["aud"], aud);
    assert_eq!(valid["token"]["header"]["alg"], "RS256");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_mints_when_asked_and_says_what_is_wrong_with_a_question() {
    let emu = Emulator::start(&three_services()).await;
    // Minted for an account: allowed where it is bound, the binding named where not.
    let out = emu.cli(&[
        "explain",
        "--service",
        "user-profiles",
        "--impersonate-service-account",
        &sa("login"),
    ]);
    assert!(
        out.starts_with(&format!(
            "ALLOW 200 user-profiles → serviceAccount:{}",
            sa("login")
        )) && out.contains("(a token minted for the question, sent nowhere)"),
        "{out}"
    );
    let out = emu.cli(&[
        "explain",
        "--service",
        "search",
        "--impersonate-service-account",
        &sa("login"),
    ]);
    assert!(
        out.starts_with("DENY  403 search") && out.contains("\n    no_invoker_binding: "),
        "{out}"
    );
    let json: Value = serde_json::from_str(&emu.cli(&[
        "explain",
        "--service",
        "user-profiles",
        "--impersonate-service-account",
        &sa("login"),
        "--audience",
        "https://elsewhere.example.com",
        "--json",
    ]))
    .unwrap();
    assert_eq!(json["code"], "audience_not_accepted", "{json}");
    assert_eq!(json["minted"], true);

    // Garbage gets a verdict, not an error page.
    for (paste, code) in [
        ("not a token at all", "not_bearer"),
        ("garbage", "not_a_jwt"),
        ("line\nbreak", "not_bearer"),
        ("a.b.c", "not_a_jwt"),
    ] {
        let (status, verdict) =
            explain(&emu, json!({"service": "user-profiles", "token": paste})).await;
        assert_eq!(status, 200, "{paste:?}: {verdict}");
        assert_eq!(verdict["status"], 401, "{paste:?}: {verdict}");
        assert_eq!(verdict["code"], code, "{paste:?}: {verdict}");
    }
    // A question that cannot be answered says why.
    let (status, out) = explain(&emu, json!({"service": "serch", "token": "x"})).await;
    assert_eq!(status, 404);
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("did you mean `search`?"),
        "{out}"
    );
    let (status, out) = explain(&emu, json!({"service": "search"})).await;
    assert_eq!(status, 400, "{out}");
    let (status, out) = explain(
        &emu,
        json!({"service": "search", "impersonate_service_account": sa("nobody")}),
    )
    .await;
    assert_eq!(status, 404, "{out}");
    let why = emu.cli_fails(&["explain", "--service", "nope", "--token", "x"]);
    assert!(why.contains("no service `nope`"), "{why}");
    emu.stop().await;
}
