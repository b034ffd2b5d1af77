//! IAM Credentials (SPEC §6): every method's permission proven by an allowed/denied pair,
//! delegation chains, and every bad input with its exact status and error shape.

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use common::tokens::*;
use common::*;
use serde_json::json;

#[tokio::test]
async fn iam_credentials_permissions_in_pairs() {
    let s = Setup::new().await;
    s.emu.install_system_key(&sa("target"), "f");
    let caller = s.caller_access_token().await;
    let aud = s.emu.url_of("api");
    let id_body = format!(r#"{{"audience": "{aud}", "includeEmail": "true"}}"#);

    // generateIdToken: allowed on target (Token Creator), denied on loner.
    let (status, body) = post_json(
        &s.iam(&sa("target"), "generateIdToken"),
        Some(&caller),
        &id_body,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap();
    let claims = frontdoor::tokens::peek_claims(token).unwrap();
    assert_eq!(
        (claims["email"].as_str(), claims["aud"].as_str()),
        (Some(sa("target").as_str()), Some(aud.as_str()))
    );
    let (status, _, _) = call(&s.emu.service("api", "/"), token).await;
    assert_eq!(status, 200, "the front door accepts the impersonated token");
    let (status, body) = post_json(
        &s.iam(&sa("loner"), "generateIdToken"),
        Some(&caller),
        &id_body,
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["status"], "PERMISSION_DENIED");
    assert_eq!(
        body["error"]["message"],
        "Permission 'iam.serviceAccounts.getOpenIdToken' denied on resource (or it may not exist)."
    );
    assert_eq!(
        body["error"]["details"][0]["reason"],
        "IAM_PERMISSION_DENIED"
    );

    // includeEmail false drops the email; a unique id and a %-encoded email both name the account.
    let unique = s
        .emu
        .config
        .service_account(&sa("target"))
        .unwrap()
        .unique_id
        .clone();
    let (status, body) = post_json(
        &s.iam(&unique, "generateIdToken"),
        Some(&caller),
        &format!(r#"{{"audience": "{aud}"}}"#),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        frontdoor::tokens::peek_claims(body["token"].as_str().unwrap())
            .unwrap()
            .get("email")
            .is_none()
    );
    let encoded = sa("target").replace('@', "%40");
    assert_eq!(
        post_json(&s.iam(&encoded, "generateIdToken"), Some(&caller), &id_body)
            .await
            .0,
        200
    );

    // OpenID Token Creator: ID tokens yes, access tokens no.
    assert_eq!(
        post_json(
            &s.iam(&sa("oidc-only"), "generateIdToken"),
            Some(&caller),
            &id_body
        )
        .await
        .0,
        200
    );
    let at_body =
        r#"{"scope": ["https://www.googleapis.com/auth/cloud-platform"], "lifetime": "3600s"}"#;
    let (status, body) = post_json(
        &s.iam(&sa("oidc-only"), "generateAccessToken"),
        Some(&caller),
        at_body,
    )
    .await;
    assert_eq!(
        (
            status,
            body["error"]["details"][0]["metadata"]["permission"].as_str()
        ),
        (403, Some("iam.serviceAccounts.getAccessToken"))
    );

    // generateAccessToken: expireTime without fractional seconds.
    let (status, body) = post_json(
        &s.iam(&sa("target"), "generateAccessToken"),
        Some(&caller),
        at_body,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let expire = body["expireTime"].as_str().unwrap();
    assert!(
        expire.len() == 20 && expire.ends_with('Z') && !expire.contains('.'),
        "{expire}"
    );

    // signJwt and signBlob, allowed on target, denied on loner.
    let (status, body) = post_json(
        &s.iam(&sa("target"), "signJwt"),
        Some(&caller),
        r#"{"payload": "{\"sub\": \"x\"}"}"#,
    )
    .await;
    assert_eq!(status, 200);
    let signed = body["signedJwt"].as_str().unwrap();
    assert_eq!(frontdoor::tokens::peek_claims(signed).unwrap()["sub"], "x");
    // Signed with target's own key, never the issuer's (tests/it/account_keys.rs).
    let key = s.emu.state.system_keys().existing(&sa("target")).unwrap();
    assert_eq!(body["keyId"], key.kid());
    assert!(!s.emu.state.keys().kids().contains(&key.kid()));
    let (status, body) = post_json(
        &s.iam(&sa("target"), "signBlob"),
        Some(&caller),
        &format!(r#"{{"payload": "{}"}}"#, STANDARD.encode(b"blob")),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        key.verify(
            b"blob",
            &STANDARD
                .decode(body["signedBlob"].as_str().unwrap())
                .unwrap()
        )
    );
    for (method, payload) in [
        ("signJwt", r#"{"payload": "{}"}"#),
        ("signBlob", r#"{"payload": "e30="}"#),
    ] {
        let (status, _) = post_json(&s.iam(&sa("loner"), method), Some(&caller), payload).await;
        assert_eq!(status, 403, "{method}");
    }

    // Delegation: caller → hop → deep works hop by hop; skipping the hop does not.
    let chain = format!(
        r#"{{"audience": "{aud}", "delegates": ["projects/-/serviceAccounts/{}"]}}"#,
        sa("hop")
    );
    assert_eq!(
        post_json(
            &s.iam(&sa("deep"), "generateIdToken"),
            Some(&caller),
            &chain
        )
        .await
        .0,
        200
    );
    let (status, body) = post_json(
        &s.iam(&sa("deep"), "generateIdToken"),
        Some(&caller),
        &id_body,
    )
    .await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = post_json(
        &s.iam(&sa("target"), "generateIdToken"),
        Some(&caller),
        &format!(
            r#"{{"audience": "{aud}", "delegates": ["{}"]}}"#,
            sa("loner")
        ),
    )
    .await;
    assert_eq!(
        (
            status,
            body["error"]["details"][0]["metadata"]["permission"].as_str()
        ),
        (403, Some("iam.serviceAccounts.implicitDelegation"))
    );

    // A self-signed service-account JWT is a bearer token too.
    let now = s.emu.state.now();
    let self_signed = jwt(
        json!({"alg": "RS256", "kid": s.key.kid()}),
        json!({"iss": sa("caller"), "sub": sa("caller"), "aud": "https://iamcredentials.googleapis.com/", "iat": now, "exp": now + 600}),
        &s.key,
    );
    assert_eq!(
        post_json(
            &s.iam(&sa("target"), "generateIdToken"),
            Some(&self_signed),
            &id_body
        )
        .await
        .0,
        200
    );
    s.emu.stop().await;
}

#[tokio::test]
async fn iam_credentials_bad_input() {
    let s = Setup::new().await;
    let caller = s.caller_access_token().await;
    let id_token = s.emu.sa_token(&sa("caller"), "https://x");
    let url = s.iam(&sa("target"), "generateIdToken");
    let aud = r#"{"audience": "https://x"}"#;
    // (what, url, bearer, body, status, Google's status name)
    type Case<'a> = (&'a str, String, Option<&'a str>, &'a str, u16, &'a str);
    let chain =
        |hops: &[String]| serde_json::json!({"audience": "x", "delegates": hops}).to_string();
    // 40,000 hops once wrote 40,001 log lines: refused before any is looked up.
    let long_chain = chain(&vec![sa("hop"); 40_000]);
    let cycle = chain(&[sa("hop"), sa("deep"), sa("hop")]);
    let to_itself = chain(&[sa("target")]);
    let long_audience = serde_json::json!({"audience": "a".repeat(8193)}).to_string();
    // Issue 26: a project id where IAM Credentials requires the `-` wildcard.
    let with_project = |method: &str| {
        s.emu.google(&format!(
            "/v1/projects/other-project/serviceAccounts/{}:{method}",
            sa("target")
        ))
    };
    let cases: Vec<Case<'_>> = vec![
        ("no bearer", url.clone(), None, aud, 401, "UNAUTHENTICATED"),
        (
            "a project id for generateIdToken",
            with_project("generateIdToken"),
            Some(caller.as_str()),
            aud,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "a project id for generateAccessToken",
            with_project("generateAccessToken"),
            Some(caller.as_str()),
            r#"{"scope": ["https://www.googleapis.com/auth/cloud-platform"]}"#,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "a project id for signJwt",
            with_project("signJwt"),
            Some(caller.as_str()),
            r#"{"payload": "{}"}"#,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "a project id for signBlob",
            with_project("signBlob"),
            Some(caller.as_str()),
            r#"{"payload": "YQ=="}"#,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "an ID token as bearer",
            url.clone(),
            Some(id_token.as_str()),
            aud,
            401,
            "UNAUTHENTICATED",
        ),
        (
            "an unknown access token",
            url.clone(),
            Some("ya29.unknown"),
            aud,
            401,
            "UNAUTHENTICATED",
        ),
        (
            "an empty audience",
            url.clone(),
            Some(caller.as_str()),
            r#"{"audience": ""}"#,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "not JSON",
            url.clone(),
            Some(caller.as_str()),
            "{",
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "an unknown field",
            url.clone(),
            Some(caller.as_str()),
            r#"{"audience": "x", "colour": 1}"#,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "a bad boolean",
            url.clone(),
            Some(caller.as_str()),
            r#"{"audience": "x", "includeEmail": "perhaps"}"#,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "an unknown account",
            s.iam(&sa("ghost"), "generateIdToken"),
            Some(caller.as_str()),
            aud,
            404,
            "NOT_FOUND",
        ),
        (
            "an unknown method",
            s.iam(&sa("target"), "mintEverything"),
            Some(caller.as_str()),
            aud,
            404,
            "NOT_FOUND",
        ),
        (
            "lifetime over an hour",
            s.iam(&sa("target"), "generateAccessToken"),
            Some(caller.as_str()),
            r#"{"scope": ["s"], "lifetime": "7200s"}"#,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "no scope",
            s.iam(&sa("target"), "generateAccessToken"),
            Some(caller.as_str()),
            r#"{"lifetime": "60s"}"#,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "signJwt payload not JSON",
            s.iam(&sa("target"), "signJwt"),
            Some(caller.as_str()),
            r#"{"payload": "nope"}"#,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "signBlob payload not base64",
            s.iam(&sa("target"), "signBlob"),
            Some(caller.as_str()),
            r#"{"payload": "***"}"#,
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "an audience over the cap",
            url.clone(),
            Some(caller.as_str()),
            long_audience.as_str(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "a delegates chain over the cap",
            url.clone(),
            Some(caller.as_str()),
            long_chain.as_str(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "a delegates cycle",
            url.clone(),
            Some(caller.as_str()),
            cycle.as_str(),
            400,
            "INVALID_ARGUMENT",
        ),
        (
            "the target among its own delegates",
            url.clone(),
            Some(caller.as_str()),
            to_itself.as_str(),
            400,
            "INVALID_ARGUMENT",
        ),
    ];
    for (name, url, bearer, body, status, code) in cases {
        let (got, reply) = post_json(&url, bearer, body).await;
        assert_eq!(got, status, "{name}: {reply}");
        assert_eq!(reply["error"]["status"], code, "{name}");
        assert_eq!(reply["error"]["code"], status, "{name}");
    }
    let (_, reply) = post_json(&url, Some(&id_token), aud).await;
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("needs an access token"),
        "{reply}"
    );
    s.emu.stop().await;
}
