//! The google listener's token endpoints (SPEC §6): the jwt-bearer grant and tokeninfo,
//! allowed and refused, each refusal with Google's error shape.

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::tokens::*;
use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn the_jwt_bearer_grant() {
    let s = Setup::new().await;
    let aud = s.emu.url_of("api");

    // target_audience → an ID token, and nothing else.
    let (status, body) = s
        .grant(&s.assertion(|c| c["target_audience"] = json!(aud)))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["id_token"]
    );
    let v = frontdoor::tokens::verify(
        s.emu.state.keys(),
        body["id_token"].as_str().unwrap(),
        "https://accounts.google.com",
        s.emu.state.now(),
    )
    .unwrap();
    assert_eq!(
        (v.aud.as_str(), v.email()),
        (aud.as_str(), Some(sa("caller").as_str()))
    );

    // scope → an access token, no id_token.
    let (status, body) = s
        .grant(
            &s.assertion(|c| c["scope"] = json!("https://www.googleapis.com/auth/cloud-platform")),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["access_token"].as_str().unwrap().starts_with("ya29."));
    assert!(body.get("id_token").is_none());
    assert_eq!(body["expires_in"], 3600);

    // All three audiences, and a missing kid (the account's keys are tried).
    for a in [
        "https://oauth2.googleapis.com/token",
        "https://www.googleapis.com/oauth2/v4/token",
        &s.emu.google("/oauth2/v4/token"),
    ] {
        let (status, body) = s
            .grant(&s.assertion(|c| {
                c["aud"] = json!(a);
                c["target_audience"] = json!("x");
            }))
            .await;
        assert_eq!(status, 200, "{a}: {body}");
    }
    let now = s.emu.state.now();
    let no_kid = jwt(
        json!({"alg": "RS256"}),
        json!({"iss": sa("caller"), "aud": "https://oauth2.googleapis.com/token", "iat": now, "exp": now + 60, "target_audience": "x"}),
        &s.key,
    );
    assert_eq!(s.grant(&no_kid).await.0, 200);
    s.emu.stop().await;
}

/// The endpoint's own URL is the address the request reached, not whatever `Host` the
/// caller sends: an assertion written for another server's token endpoint is refused even
/// when the request names that server in `Host`.
#[tokio::test]
async fn the_audience_is_this_endpoint_not_the_host_header() {
    let s = Setup::new().await;
    let port = s.emu.addresses.google.port();
    let grant_with_host = |host: String, aud: String| {
        let assertion = s.assertion(|c| {
            c["aud"] = json!(aud);
            c["target_audience"] = json!("x");
        });
        let url = s.emu.google("/token");
        async move {
            let r = reqwest::Client::new()
                .post(url)
                .header("host", host)
                .form(&[
                    ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                    ("assertion", assertion.as_str()),
                ])
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let elsewhere = "token.other.example:443".to_owned();
    let (status, body) =
        grant_with_host(elsewhere.clone(), format!("http://{elsewhere}/token")).await;
    assert_eq!(status, 400, "{body}");
    let description = body["error_description"].as_str().unwrap();
    assert!(
        description.starts_with(&format!(
            "Invalid JWT: Failed audience check. The right audience is {}",
            s.emu.google("/token")
        )),
        "{description}"
    );
    // Another port on a loopback name is another server too.
    let other_port = format!("localhost:{}", port.wrapping_add(1));
    let (status, _) =
        grant_with_host(other_port.clone(), format!("http://{other_port}/token")).await;
    assert_eq!(status, 400);
    // A loopback name for this very listener is this endpoint.
    let alias = format!("localhost:{port}");
    let (status, body) = grant_with_host(alias.clone(), format!("http://{alias}/token")).await;
    assert_eq!(status, 200, "{body}");
    s.emu.stop().await;
}

#[tokio::test]
async fn bad_assertions_get_invalid_grant_with_googles_descriptions() {
    let s = Setup::new().await;
    let stranger = test_key("c");
    let now = s.emu.state.now();
    let signature = "Invalid JWT Signature.";
    let lifetime = "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.";
    let good = json!({"iss": sa("caller"), "aud": s.emu.google("/token"), "iat": now, "exp": now + 3600, "target_audience": "x"});
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "signed by another key",
            jwt(
                json!({"alg": "RS256", "kid": s.key.kid()}),
                good.clone(),
                &stranger,
            ),
            signature,
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                URL_SAFE_NO_PAD.encode(json!({"alg": "none"}).to_string()),
                URL_SAFE_NO_PAD.encode(good.to_string())
            ),
            signature,
        ),
        (
            "expired",
            s.assertion(|c| {
                c["iat"] = json!(now - 7200);
                c["exp"] = json!(now - 3600);
            }),
            lifetime,
        ),
        (
            "lifetime over an hour",
            s.assertion(|c| c["exp"] = json!(now + 3601)),
            lifetime,
        ),
        (
            "unknown account",
            s.assertion(|c| c["iss"] = json!(sa("ghost"))),
            "Invalid grant: account not found",
        ),
        (
            "wrong audience",
            s.assertion(|c| c["aud"] = json!("https://example.com/token")),
            "Invalid JWT: Failed audience check.",
        ),
        ("not a JWT", "nope".into(), "not a JWT"),
        // The checks every frontdoor verifier shares (tokens::jws); assertions used to
        // skip these two.
        (
            "a critical header extension",
            jwt(
                json!({"alg": "RS256", "kid": s.key.kid(), "crit": ["exp"]}),
                good.clone(),
                &s.key,
            ),
            signature,
        ),
        (
            "not valid for an hour yet (nbf)",
            s.assertion(|c| c["nbf"] = json!(now + 3600)),
            lifetime,
        ),
    ];
    for (name, assertion, description) in cases {
        let (status, body) = s.grant(&assertion).await;
        assert_eq!(status, 400, "{name}");
        assert_eq!(body["error"], "invalid_grant", "{name}");
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains(description),
            "{name}: {body}"
        );
    }
    // The account is named in any case, as Google's emails are matched (the shared verifier
    // once compared the issuer exactly and called this a lifetime error).
    let upper = s.assertion(|c| {
        c["iss"] = json!(sa("caller").to_ascii_uppercase());
        c["target_audience"] = json!("x");
    });
    let (status, body) = s.grant(&upper).await;
    assert_eq!(status, 200, "{body}");
    // A deleted key's assertions are refused.
    let valid = s.assertion(|c| c["target_audience"] = json!("x"));
    assert_eq!(s.grant(&valid).await.0, 200);
    assert_eq!(
        s.emu
            .state
            .state_dir()
            .delete_account_key(s.key.kid())
            .unwrap(),
        Some(sa("caller"))
    );
    let (status, body) = s.grant(&valid).await;
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some(signature))
    );

    let (status, body) = post_form(&s.emu.google("/token"), &[("grant_type", "password")]).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let (status, body) = post_form(
        &s.emu.google("/token"),
        &[("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    s.emu.stop().await;
}

#[tokio::test]
async fn tokeninfo_for_id_and_access_tokens() {
    let s = Setup::new().await;
    let id = s.emu.sa_token(&sa("caller"), "https://x");
    for url in [
        s.emu.google(&format!("/tokeninfo?id_token={id}")),
        s.emu.google(&format!("/oauth2/v3/tokeninfo?id_token={id}")),
    ] {
        let body: Value = reqwest::get(&url).await.unwrap().json().await.unwrap();
        assert!(
            body.as_object().unwrap().values().all(Value::is_string),
            "{body}"
        );
        assert_eq!(body["email"], sa("caller"));
        assert_eq!(body["email_verified"], "true");
        assert_eq!(body["aud"], "https://x");
        assert_eq!(body["alg"], "RS256");
    }
    let access = s.caller_access_token().await;
    let (status, body) = post_form(&s.emu.google("/tokeninfo"), &[("access_token", &access)]).await;
    assert_eq!(status, 200);
    assert_eq!(body["email"], sa("caller"));
    assert_eq!(
        body["scope"],
        "https://www.googleapis.com/auth/cloud-platform"
    );
    assert!(body["expires_in"].is_string());
    for bad in ["id_token=garbage", "access_token=ya29.unknown", ""] {
        let r = reqwest::get(s.emu.google(&format!("/tokeninfo?{bad}")))
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
        assert_eq!(
            r.json::<Value>().await.unwrap(),
            json!({"error": "invalid_token", "error_description": "Invalid Value"})
        );
    }
    s.emu.stop().await;
}
