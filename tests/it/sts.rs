//! STS and workload identity federation (SPEC §6): exchanges in both body shapes, the
//! federated principal's bindings, and bad subject tokens.

use crate::common;

use common::tokens::*;
use common::*;
use serde_json::{Value, json};

fn external(emu: &Emulator, f: impl Fn(&mut Value)) -> String {
    let now = emu.state.now();
    let provider = emu.config.provider("ci-pool/ci").unwrap();
    let mut claims = json!({"iss": "https://ci.example.com", "sub": "repo:good-repo", "aud": provider.allowed_audiences[0], "iat": now, "exp": now + 600, "repository": "good-repo"});
    f(&mut claims);
    jwt(
        json!({"alg": "RS256", "typ": "JWT"}),
        claims,
        &test_key("d"),
    )
}

fn provider_audience() -> String {
    format!("{POOL}/providers/ci")
}

#[tokio::test]
async fn sts_exchanges_and_federated_impersonation() {
    let s = Setup::new().await;
    let url = s.emu.google("/v1/token");
    let subject = external(&s.emu, |_| {});
    let form = [
        (
            "grant_type",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ),
        ("audience", provider_audience().leak() as &str),
        ("subject_token", subject.as_str()),
        ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        (
            "requested_token_type",
            "urn:ietf:params:oauth:token-type:access_token",
        ),
        ("scope", "https://www.googleapis.com/auth/cloud-platform"),
    ];
    let (status, body) = post_form(&url, &form).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["issued_token_type"],
        "urn:ietf:params:oauth:token-type:access_token"
    );
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    let sts = body["access_token"].as_str().unwrap().to_owned();

    // JSON with camelCase names works too.
    let r = reqwest::Client::new()
        .post(&url)
        .json(&json!({"grantType": form[0].1, "audience": provider_audience(), "subjectToken": subject, "subjectTokenType": form[3].1, "requestedTokenType": form[4].1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // The federated identity may impersonate target (bound by attribute.repository)…
    let aud = s.emu.url_of("api");
    let (status, body) = post_json(
        &s.iam(&sa("target"), "generateIdToken"),
        Some(&sts),
        &format!(r#"{{"audience": "{aud}"}}"#),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        call(&s.emu.service("api", "/"), body["token"].as_str().unwrap())
            .await
            .0,
        200
    );
    // …but the STS token itself is an access token: the front door refuses it.
    let (status, _, _) = call(&s.emu.service("api", "/"), &sts).await;
    assert_eq!(status, 401);

    // A subject whose attributes match no binding exchanges fine, then is denied.
    let other = external(&s.emu, |c| c["repository"] = json!("other-repo"));
    let (status, body) = post_form(
        &url,
        &[form[0], form[1], ("subject_token", other.as_str()), form[3]],
    )
    .await;
    assert_eq!(status, 200);
    let (status, reply) = post_json(
        &s.iam(&sa("target"), "generateAccessToken"),
        Some(body["access_token"].as_str().unwrap()),
        r#"{"scope": ["https://www.googleapis.com/auth/cloud-platform"]}"#,
    )
    .await;
    assert_eq!(
        (status, reply["error"]["status"].as_str()),
        (403, Some("PERMISSION_DENIED"))
    );
    s.emu.stop().await;
}

#[tokio::test]
async fn sts_bad_subject_tokens() {
    let s = Setup::new().await;
    let url = s.emu.google("/v1/token");
    let now = s.emu.state.now();
    let cases: Vec<(&str, String, String, &str, &str)> = vec![
        (
            "unknown issuer",
            external(&s.emu, |c| c["iss"] = json!("https://evil.example.com")),
            provider_audience(),
            "invalid_grant",
            "does not match the provider's issuer",
        ),
        (
            "wrong audience",
            external(&s.emu, |c| c["aud"] = json!("https://elsewhere")),
            provider_audience(),
            "invalid_grant",
            "is not one of the provider's allowed audiences",
        ),
        (
            "expired",
            external(&s.emu, |c| c["exp"] = json!(now - 1000)),
            provider_audience(),
            "invalid_grant",
            "The subject token is unusable: the JWT expired at",
        ),
        // The time rules of every other verifier (STS used to skip all but `exp`).
        (
            "issued in the future",
            external(&s.emu, |c| {
                c["iat"] = json!(now + 3600);
                c["exp"] = json!(now + 4000);
            }),
            provider_audience(),
            "invalid_grant",
            "The subject token is unusable: the JWT was issued at",
        ),
        (
            "not yet valid",
            external(&s.emu, |c| c["nbf"] = json!(now + 3600)),
            provider_audience(),
            "invalid_grant",
            "The subject token is unusable: the JWT is not valid before",
        ),
        (
            "lives longer than a day",
            // `iat` set here too: the helper's own clock may be a second past `now`.
            external(&s.emu, |c| {
                c["iat"] = json!(now);
                c["exp"] = json!(now + 2 * 86_400);
            }),
            provider_audience(),
            "invalid_grant",
            "the JWT claims a lifetime of 172800 s (`exp` - `iat`), more than the 86400 s",
        ),
        (
            "foreign signature",
            jwt(
                json!({"alg": "RS256"}),
                json!({"iss": "https://ci.example.com", "sub": "x", "aud": format!("https:{}", provider_audience()), "exp": now + 60}),
                &test_key("c"),
            ),
            provider_audience(),
            "invalid_grant",
            "does not verify with provider",
        ),
        (
            "no subject",
            external(&s.emu, |c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            provider_audience(),
            "invalid_grant",
            "The mapped google.subject (assertion.sub) is missing",
        ),
        (
            "unknown provider",
            external(&s.emu, |_| {}),
            format!("{POOL}/providers/nope"),
            "invalid_target",
            "is not a configured workload identity provider",
        ),
    ];
    for (name, token, audience, error, description) in cases {
        let (status, body) = post_form(
            &url,
            &[
                (
                    "grant_type",
                    "urn:ietf:params:oauth:grant-type:token-exchange",
                ),
                ("audience", &audience),
                ("subject_token", &token),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ],
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (400, Some(error)),
            "{name}: {body}"
        );
        assert!(
            body["error_description"]
                .as_str()
                .is_some_and(|d| d.contains(description)),
            "{name}: {body}"
        );
    }
    let (status, body) = post_form(
        &url,
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", &provider_audience()),
            ("subject_token", "x"),
            (
                "subject_token_type",
                "urn:ietf:params:oauth:token-type:saml2",
            ),
        ],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    s.emu.stop().await;
}
