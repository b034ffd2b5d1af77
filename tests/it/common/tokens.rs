//! Helpers for the token-endpoint tests: signing arbitrary JWTs, posting forms and JSON,
//! and an emulator with an account key installed.
#![allow(dead_code, unreachable_pub)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use frontdoor::keys::SigningKey;
use serde_json::{Value, json};

use super::*;

pub const P: &str = "@demo-project.iam.gserviceaccount.com";
pub const POOL: &str =
    "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/ci-pool";

pub fn jwt(header: Value, claims: Value, key: &SigningKey) -> String {
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

pub async fn post_form(url: &str, fields: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .form(fields)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

pub async fn post_json(url: &str, bearer: Option<&str>, body: &str) -> (u16, Value) {
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

pub struct Setup {
    pub emu: Emulator,
    pub key: SigningKey,
}

impl Setup {
    pub async fn new() -> Setup {
        let emu = Emulator::start(&token_config()).await;
        let key = emu.install_account_key(&sa("caller"), "e");
        Setup { emu, key }
    }

    pub fn assertion(&self, f: impl Fn(&mut Value)) -> String {
        let now = self.emu.state.now();
        let mut claims = json!({"iss": sa("caller"), "sub": sa("caller"), "aud": self.emu.google("/token"), "iat": now, "exp": now + 3600});
        f(&mut claims);
        jwt(
            json!({"alg": "RS256", "kid": self.key.kid(), "typ": "JWT"}),
            claims,
            &self.key,
        )
    }

    pub async fn grant(&self, assertion: &str) -> (u16, Value) {
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
    pub async fn caller_access_token(&self) -> String {
        let (status, body) = self
            .grant(&self.assertion(|c| {
                c["scope"] = json!("https://www.googleapis.com/auth/cloud-platform")
            }))
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub fn iam(&self, target: &str, method: &str) -> String {
        self.emu
            .google(&format!("/v1/projects/-/serviceAccounts/{target}:{method}"))
    }
}

pub async fn call(url: &str, token: &str) -> (u16, Value, String) {
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
