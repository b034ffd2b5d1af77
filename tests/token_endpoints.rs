//! The google listener's token APIs (SPEC §6): the jwt-bearer grant, tokeninfo, IAM
//! Credentials with its permissions, and STS — allowed and denied in pairs, and every bad
//! input with its exact status and error shape.

mod common;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::*;
use frontdoor::keys::SigningKey;
use serde_json::{Value, json};

const P: &str = "@demo-project.iam.gserviceaccount.com";
const POOL: &str =
    "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/ci-pool";

fn sa(name: &str) -> String {
    format!("{name}{P}")
}

fn jwt(header: Value, claims: Value, key: &SigningKey) -> String {
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(signed.as_bytes()))
    )
}

async fn post_form(url: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .form(fields)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn post_json(url: &str, bearer: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(url)
        .header("content-type", "text/json; charset=utf-8")
        .body(body.to_owned());
    if let Some(t) = bearer {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

struct Setup {
    emu: Emulator,
    key: SigningKey,
}

impl Setup {
    async fn new() -> Setup {
        let emu = Emulator::start(&token_config()).await;
        let key = emu.install_account_key(&sa("caller"), "e");
        Setup { emu, key }
    }

    fn assertion(&self, f: impl Fn(&mut Value)) -> String {
        let now = self.emu.state.now();
        let mut claims = json!({"iss": sa("caller"), "sub": sa("caller"), "aud": self.emu.google("/token"), "iat": now, "exp": now + 3600});
        f(&mut claims);
        jwt(
            json!({"alg": "RS256", "kid": self.key.kid(), "typ": "JWT"}),
            claims,
            &self.key,
        )
    }

    async fn grant(&self, assertion: &str) -> (u16, Value) {
        post_form(
            &self.emu.google("/token"),
            &[
                ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
                ("assertion", assertion),
            ],
        )
        .await
    }

    /// An access token for `caller`, from the jwt-bearer grant.
    async fn caller_access_token(&self) -> String {
        let (status, body) = self
            .grant(&self.assertion(|c| {
                c["scope"] = json!("https://www.googleapis.com/auth/cloud-platform")
            }))
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    fn iam(&self, target: &str, method: &str) -> String {
        self.emu
            .google(&format!("/v1/projects/-/serviceAccounts/{target}:{method}"))
    }
}

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
        &s.emu.state.keys,
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
    // A deleted key's assertions are refused.
    let valid = s.assertion(|c| c["target_audience"] = json!("x"));
    assert_eq!(s.grant(&valid).await.0, 200);
    assert_eq!(
        s.emu
            .state
            .state_dir
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

#[tokio::test]
async fn iam_credentials_permissions_in_pairs() {
    let s = Setup::new().await;
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
    assert_eq!(body["keyId"], s.emu.state.keys.current().kid());
    let (status, body) = post_json(
        &s.iam(&sa("target"), "signBlob"),
        Some(&caller),
        &format!(r#"{{"payload": "{}"}}"#, STANDARD.encode(b"blob")),
    )
    .await;
    assert_eq!(status, 200);
    assert!(
        s.emu.state.keys.current().verify(
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

async fn call(url: &str, token: &str) -> (u16, Value, String) {
    let r = reqwest::Client::new()
        .get(url)
        .header("authorization", format!("Bearer {token}"))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    )
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
    let cases: Vec<Case<'_>> = vec![
        ("no bearer", url.clone(), None, aud, 401, "UNAUTHENTICATED"),
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
    let cases: Vec<(&str, String, String, &str)> = vec![
        (
            "unknown issuer",
            external(&s.emu, |c| c["iss"] = json!("https://evil.example.com")),
            provider_audience(),
            "invalid_grant",
        ),
        (
            "wrong audience",
            external(&s.emu, |c| c["aud"] = json!("https://elsewhere")),
            provider_audience(),
            "invalid_grant",
        ),
        (
            "expired",
            external(&s.emu, |c| c["exp"] = json!(now - 1000)),
            provider_audience(),
            "invalid_grant",
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
        ),
        (
            "no subject",
            external(&s.emu, |c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            provider_audience(),
            "invalid_grant",
        ),
        (
            "unknown provider",
            external(&s.emu, |_| {}),
            format!("{POOL}/providers/nope"),
            "invalid_target",
        ),
    ];
    for (name, token, audience, error) in cases {
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
                .is_some_and(|d| !d.is_empty()),
            "{name}"
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
