//! The hostile-token corpus of the front-door issue: every one a 401 with
//! `WWW-Authenticate`, never a 5xx, never let through.

use crate::common;

use common::*;

/// The hostile-token corpus of the front-door issue: each is a 401, never a 5xx, never let
/// through.
#[tokio::test]
async fn hostile_tokens_get_401_and_never_pass() {
    let emu = Emulator::start(&three_services()).await;
    let aud = emu.url_of("user-profiles");
    let url = emu.service("user-profiles", "/");
    let corpus::Corpus {
        cases,
        valid,
        kid,
        stranger_kid,
        now,
    } = corpus::hostile(&emu, &aud, &emu.url_of("search"), &sa("login"));
    // Every token case in `authorization`, then the cases that live in the headers.
    let mut corpus: Vec<(&str, Vec<(&str, String)>)> = cases
        .into_iter()
        .map(|(name, token)| (name, vec![("authorization", bearer(&token))]))
        .collect();
    corpus.extend([
        (
            "two tokens in one header",
            vec![("authorization", format!("Bearer {valid} {valid}"))],
        ),
        (
            "two tokens, comma",
            vec![("authorization", format!("Bearer {valid},{valid}"))],
        ),
        (
            "the header twice",
            vec![
                ("authorization", bearer(&valid)),
                ("authorization", bearer(&valid)),
            ],
        ),
        (
            "x-serverless twice",
            vec![
                ("x-serverless-authorization", bearer(&valid)),
                ("x-serverless-authorization", bearer(&valid)),
            ],
        ),
        (
            "Basic scheme",
            vec![("authorization", "Basic dXNlcjpwYXNz".into())],
        ),
        ("empty bearer", vec![("authorization", "Bearer ".into())]),
    ]);
    // Each one's reason, by name: refused for its own flaw, not for some other one.
    let unusable = "the token in authorization is unusable: ";
    let unknown_kid = format!(
        "{unusable}the JWT's key id `{stranger_kid}` is not one of the issuer's published keys"
    );
    let bad_signature =
        format!("{unusable}the JWT's signature does not verify with the issuer's key `{kid}`");
    // The header spells the ellipsis after `ya29.` as three dots (the log keeps `…`).
    let access_token =
        format!("{unusable}an access token (ya29....) was sent where an ID token is needed");
    let expected: std::collections::HashMap<&str, String> = [
        (
            "alg none",
            format!("{unusable}the JWT is signed with `none`"),
        ),
        (
            "HS256 with the public key",
            format!("{unusable}the JWT is signed with `HS256`"),
        ),
        ("RS256 by a key not in the set", unknown_kid.clone()),
        ("known kid, other key's signature", bad_signature.clone()),
        (
            "expired",
            format!(
                "{unusable}the JWT expired at {} ({}), ",
                utc(now - 400),
                now - 400
            ),
        ),
        (
            "iat an hour ahead",
            format!(
                "{unusable}the JWT was issued at {} ({}), ",
                utc(now + 3600),
                now + 3600
            ),
        ),
        (
            "exp as a string",
            format!("{unusable}the JWT's `exp` claim is not an integer"),
        ),
        (
            "aud as an array",
            format!("{unusable}the JWT's `aud` claim is not a string"),
        ),
        (
            "missing aud",
            format!("{unusable}the JWT's `aud` claim is missing"),
        ),
        (
            "wrong iss",
            format!("{unusable}the JWT's issuer is `https://evil.example.com`"),
        ),
        (
            "token for another service",
            format!(
                "audience `{}` is not one of service `user-profiles`'s audiences",
                emu.url_of("search")
            ),
        ),
        (
            "audience with a path",
            "(an audience is the service's URL alone, with no path or query)".to_owned(),
        ),
        ("an access token", access_token.clone()),
        ("a ya29 string", access_token),
        (
            "two tokens in one header",
            "the authorization header is unusable: it holds more than one token".to_owned(),
        ),
        (
            "two tokens, comma",
            "the authorization header is unusable: it holds more than one token".to_owned(),
        ),
        (
            "the header twice",
            "the authorization header is given 2 times".to_owned(),
        ),
        (
            "x-serverless twice",
            "the x-serverless-authorization header is given 2 times".to_owned(),
        ),
        (
            "16 KiB of base64 garbage",
            format!("{unusable}the credential is not a JWT: it has 1 dot-separated segments"),
        ),
        (
            "header not base64",
            format!("{unusable}the JWT's header is not base64url"),
        ),
        (
            "payload JSON but not an object",
            format!("{unusable}the JWT's payload is not a JSON object"),
        ),
        ("jku/x5u pointing elsewhere", unknown_kid),
        ("signature stripped", bad_signature.clone()),
        ("redacted signature replayed", bad_signature),
        (
            "Basic scheme",
            "the scheme is `Basic`; Cloud Run expects `Bearer ID_TOKEN`".to_owned(),
        ),
        (
            "empty bearer",
            "the authorization header is unusable: expected `Bearer ID_TOKEN`".to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    // And its stable code, the start of X-Frontdoor-Reason and the decision's `code`.
    let codes: std::collections::HashMap<&str, &str> = [
        ("alg none", "alg_not_accepted"),
        ("HS256 with the public key", "alg_not_accepted"),
        ("RS256 by a key not in the set", "unknown_kid"),
        ("known kid, other key's signature", "bad_signature"),
        ("expired", "token_expired"),
        ("iat an hour ahead", "issued_in_future"),
        ("exp as a string", "bad_claim"),
        ("aud as an array", "bad_claim"),
        ("missing aud", "missing_claim"),
        ("wrong iss", "wrong_issuer"),
        ("token for another service", "audience_not_accepted"),
        ("audience with a path", "audience_not_accepted"),
        ("an access token", "access_token_sent"),
        ("a ya29 string", "access_token_sent"),
        ("two tokens in one header", "not_bearer"),
        ("two tokens, comma", "not_bearer"),
        ("the header twice", "header_repeated"),
        ("x-serverless twice", "header_repeated"),
        ("16 KiB of base64 garbage", "not_a_jwt"),
        ("header not base64", "not_a_jwt"),
        ("payload JSON but not an object", "not_a_jwt"),
        ("jku/x5u pointing elsewhere", "unknown_kid"),
        ("signature stripped", "bad_signature"),
        ("redacted signature replayed", "bad_signature"),
        ("Basic scheme", "not_bearer"),
        ("empty bearer", "not_bearer"),
    ]
    .into_iter()
    .collect();
    // And the check of the chain that refused it: the decision's last step, failed, every
    // step before it passed, the route first.
    let failed_at = |name: &str| match codes[name] {
        "alg_not_accepted" => "alg",
        "unknown_kid" => "kid",
        "bad_signature" => "signature",
        "token_expired" | "issued_in_future" => "lifetime",
        "bad_claim" if name.starts_with("exp") => "lifetime",
        "bad_claim" | "missing_claim" | "audience_not_accepted" => "audience",
        "wrong_issuer" => "issuer",
        "access_token_sent" | "not_a_jwt" => "format",
        "not_bearer" | "header_repeated" => "credential",
        other => panic!("{name}: no check for {other}"),
    };
    assert_eq!(expected.len(), corpus.len());
    assert_eq!(codes.len(), corpus.len());
    for (name, headers) in &corpus {
        let mut req = reqwest::Client::new().get(&url);
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 401, "{name}");
        assert!(r.headers().contains_key("www-authenticate"), "{name}");
        let header = r.headers()["x-frontdoor-reason"].to_str().unwrap();
        let (code, reason) = header.split_once(": ").unwrap();
        assert_eq!(code, codes[name], "{name}: {header}");
        let want = expected
            .get(name)
            .unwrap_or_else(|| panic!("no reason for {name}"));
        assert!(reason.contains(want.as_str()), "{name}: {reason}");
    }
    let decisions = emu.decisions().await;
    assert_eq!(decisions.len(), corpus.len());
    assert!(
        decisions
            .iter()
            .all(|d| d["allowed"] == false && d["status"] == 401)
    );
    // The log says the same, in the order sent.
    for (d, (name, _)) in decisions.iter().zip(&corpus) {
        let want = expected[name].replace("ya29....", "ya29.…");
        let reason = d["reason"].as_str().unwrap();
        assert!(reason.contains(&want), "{name}: {reason}");
        assert_eq!(d["code"], codes[name], "{name}");
        let steps = d["steps"].as_array().unwrap();
        let (last, before) = steps.split_last().unwrap();
        assert_eq!(last["check"], failed_at(name), "{name}: {steps:?}");
        assert_eq!(last["outcome"], "failed", "{name}");
        assert_eq!(before[0]["check"], "route", "{name}");
        assert!(
            before.iter().all(|s| s["outcome"] == "passed"),
            "{name}: {steps:?}"
        );
    }
    // The valid token itself still passes: the corpus failed for its flaws, not the setup.
    let (status, _, _) = get_with(&url, &[("authorization", &bearer(&valid))]).await;
    assert_eq!(status, 200);
    emu.stop().await;
}

/// A credential longer than any ID token is refused before it is decoded or remembered.
#[tokio::test]
async fn an_oversized_credential_is_a_401_naming_the_cap() {
    let emu = Emulator::start(&three_services()).await;
    let huge = format!("{}.{}.{}", "a".repeat(9000), "b".repeat(9000), "c");
    let r = reqwest::Client::new()
        .get(emu.service("user-profiles", "/"))
        .header("authorization", format!("Bearer {huge}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let reason = r.headers()["x-frontdoor-reason"].to_str().unwrap();
    assert!(
        reason.starts_with("token_too_large: ")
            && reason.contains("more than the 16384 frontdoor reads"),
        "{reason}"
    );
    emu.stop().await;
}

/// `t` as the reasons give a time: RFC 3339, UTC.
fn utc(t: i64) -> String {
    humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(t as u64),
    )
    .to_string()
}
