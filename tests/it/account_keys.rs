//! `signJwt` and `signBlob` sign with the account's own Google-managed key (SPEC §6),
//! published per account and never taken for an ID token. Issue 10's forgery: an account
//! allowed to sign as another once minted a token claiming any identity, and the front
//! door let it in.

use crate::common;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::tokens::*;
use common::*;
use frontdoor::keys::PublicKey;
use serde_json::{Value, json};

fn config() -> String {
    format!(
        r#"{PROJECT}
service_accounts:
  - email: login{SA}
  - email: admin{SA}
  - email: search{SA}
    iam_policy: {{bindings: [{{role: roles/iam.serviceAccountTokenCreator, members: [serviceAccount:login{SA}]}}]}}
services:
  - name: login
    service_account: login{SA}
    upstream: builtin:echo
    listen: 127.0.0.1:0
  - name: vault
    upstream: builtin:echo
    listen: 127.0.0.1:0
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:admin{SA}]}}]}}
workload_identity_pools:
  - name: ci-pool
    providers:
      - name: google
        issuer: https://accounts.google.com
        jwks: builtin
"#
    )
}

/// The key published at `/service_accounts/v1/jwk/EMAIL`.
async fn published_key(emu: &Emulator, email: &str) -> (String, PublicKey) {
    let jwks: Value = reqwest::get(emu.google(&format!("/service_accounts/v1/jwk/{email}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jwk = &jwks["keys"][0];
    let part = |k: &str| URL_SAFE_NO_PAD.decode(jwk[k].as_str().unwrap()).unwrap();
    (
        jwk["kid"].as_str().unwrap().to_owned(),
        PublicKey::from_components(&part("n"), &part("e")).unwrap(),
    )
}

#[tokio::test]
async fn a_sign_jwt_forgery_is_refused_everywhere_an_id_token_is_accepted() {
    let emu = Emulator::start(&config()).await;
    let system = emu.install_system_key(&sa("search"), "f");
    let login = emu.access_token("login").await;
    let vault = emu.service("vault", "/");

    // The control: admin's real ID token opens the vault, so a 401 below means the forgery.
    let real = emu.sa_token(&sa("admin"), &emu.url_of("vault"));
    assert_eq!(call(&vault, &real).await.0, 200);

    // login may sign as search, and claims to be admin for the vault's URL.
    let admin_id = &emu.config.service_account(&sa("admin")).unwrap().unique_id;
    let now = emu.state.now();
    let payload = json!({"iss": "https://accounts.google.com", "aud": emu.url_of("vault"), "azp": admin_id, "email": sa("admin"), "email_verified": true, "sub": admin_id, "iat": now, "exp": now + 3600});
    let (status, body) = post_json(
        &emu.google(&format!(
            "/v1/projects/-/serviceAccounts/{}:signJwt",
            sa("search")
        )),
        Some(&login),
        &json!({ "payload": payload.to_string() }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["keyId"], system.kid(), "signed with search's own key");
    assert!(!emu.state.keys().kids().contains(&system.kid()));
    let forged = body["signedJwt"].as_str().unwrap().to_owned();

    // The signature is real: it verifies with search's published key.
    let (kid, key) = published_key(&emu, &sa("search")).await;
    assert_eq!(kid, system.kid());
    let (signed, signature) = forged.rsplit_once('.').unwrap();
    assert!(key.verify(
        signed.as_bytes(),
        &URL_SAFE_NO_PAD.decode(signature).unwrap()
    ));

    // The front door, in either header: 401, naming the key that is not the issuer's.
    let (status, _, text) = call(&vault, &forged).await;
    assert_eq!(status, 401, "{text}");
    let reason = emu.decisions().await.pop().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.contains(system.kid()) && reason.contains("not one of the issuer's published keys"),
        "{reason}"
    );
    let r = reqwest::Client::new()
        .get(&vault)
        .header("x-serverless-authorization", bearer(&forged))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // tokeninfo: Google's invalid_token.
    let r = reqwest::get(emu.google(&format!("/tokeninfo?id_token={forged}")))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["error"], "invalid_token");

    // STS, even for a provider whose issuer is Google's.
    let (status, body) = post_form(
        &emu.google("/v1/token"),
        &[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", &format!("{POOL}/providers/google")),
            ("subject_token", &forged),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            (
                "requested_token_type",
                "urn:ietf:params:oauth:token-type:access_token",
            ),
        ],
    )
    .await;
    assert_eq!(status, 400, "{body}");
    emu.stop().await;
}

#[tokio::test]
async fn an_accounts_key_is_published_and_its_sign_blob_assertion_is_a_grant() {
    let emu = Emulator::start(&config()).await;
    let system = emu.install_system_key(&sa("search"), "f");
    let login = emu.access_token("login").await;

    // Both published forms name the same key, by email or by unique id.
    let certs: Value = reqwest::get(emu.google(&format!(
        "/service_accounts/v1/metadata/x509/{}",
        sa("search")
    )))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    assert!(
        certs[system.kid()]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----"),
        "{certs}"
    );
    let id = &emu.config.service_account(&sa("search")).unwrap().unique_id;
    assert_eq!(published_key(&emu, id).await.0, system.kid());
    let r = reqwest::get(
        emu.google("/service_accounts/v1/jwk/nobody@demo-project.iam.gserviceaccount.com"),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["status"],
        "NOT_FOUND"
    );

    // An assertion signed through signBlob, as Python's compute_engine.IDTokenCredentials
    // makes one, is search's own: /token grants on it.
    let now = emu.state.now();
    let header = json!({"alg": "RS256", "typ": "JWT", "kid": system.kid()});
    let claims = json!({"iss": sa("search"), "sub": sa("search"), "aud": emu.google("/token"), "iat": now, "exp": now + 3600, "target_audience": emu.url_of("login")});
    let signed = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let (status, body) = post_json(
        &emu.google(&format!(
            "/v1/projects/-/serviceAccounts/{}:signBlob",
            sa("search")
        )),
        Some(&login),
        &json!({ "payload": STANDARD.encode(&signed) }).to_string(),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["keyId"], system.kid());
    let signature = STANDARD
        .decode(body["signedBlob"].as_str().unwrap())
        .unwrap();
    assert!(system.verify(signed.as_bytes(), &signature));
    let assertion = format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&signature));
    let (status, body) = post_form(
        &emu.google("/token"),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &assertion),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let id_token = frontdoor::tokens::peek_claims(body["id_token"].as_str().unwrap()).unwrap();
    assert_eq!(id_token["email"], sa("search"));

    // The same assertion signed by a key that is not search's: refused.
    let stranger = test_key("c");
    let forged = format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(stranger.sign(signed.as_bytes()))
    );
    let (status, body) = post_form(
        &emu.google("/token"),
        &[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &forged),
        ],
    )
    .await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_grant")));
    emu.stop().await;
}
