//! Every google-listener endpoint answered at the router level: one request handed to the
//! listener's `Router` (`common::oneshot`), nothing bound or started. The end-to-end
//! tests (`token_endpoints`, `sts`, `iam_credentials`, the client tests) cover the same
//! endpoints through real sockets and Google's libraries; these pin each endpoint's own
//! answers, good and bad, cheaply.

use crate::common;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::*;
use serde_json::Value;

const YAML: &str = r#"project: {id: demo-project, number: "123456789012", region: us-central1}
service_accounts:
  - email: login@demo-project.iam.gserviceaccount.com
services:
  - name: search
    upstream: builtin:echo
"#;

const FORM: &str = "application/x-www-form-urlencoded";

fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).unwrap()
}

fn post(path: &str, content_type: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", content_type)
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn each_endpoint_answers_good_and_bad_requests() {
    let g = generation(YAML);
    let app = frontdoor::server::google_listener(g.live.clone());
    let state = g.live.get();
    let login = state
        .config()
        .service_account("login@demo-project.iam.gserviceaccount.com")
        .unwrap()
        .clone();
    let now = state.now();
    let id_token = frontdoor::tokens::mint(
        state.keys(),
        &frontdoor::tokens::service_account_claims(
            &state.config().issuer,
            &login,
            "https://search.example",
            now,
        ),
    );
    let sa_path = "/v1/projects/-/serviceAccounts/login@demo-project.iam.gserviceaccount.com";
    let cases: Vec<(&str, Request<Body>, u16, &[&str])> = vec![
        (
            "discovery",
            get("/.well-known/openid-configuration"),
            200,
            &[r#""id_token_signing_alg_values_supported":["RS256"]"#],
        ),
        ("JWKS", get("/oauth2/v3/certs"), 200, &[r#""kty":"RSA""#]),
        (
            "PEM certificates",
            get("/oauth2/v1/certs"),
            200,
            &["-----BEGIN CERTIFICATE-----"],
        ),
        (
            "an undeclared account's key",
            get("/service_accounts/v1/jwk/ghost@demo-project.iam.gserviceaccount.com"),
            404,
            &["ghost@demo-project.iam.gserviceaccount.com"],
        ),
        (
            "tokeninfo, a valid ID token",
            get(&format!("/oauth2/v3/tokeninfo?id_token={id_token}")),
            200,
            &[r#""aud":"https://search.example""#],
        ),
        (
            "tokeninfo, not a JWT",
            get("/oauth2/v3/tokeninfo?id_token=nope"),
            400,
            &["invalid_token"],
        ),
        (
            "/token, an unknown grant",
            post("/token", FORM, "grant_type=password"),
            400,
            &["unsupported_grant_type"],
        ),
        (
            "/token, jwt-bearer without an assertion",
            post(
                "/token",
                FORM,
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer",
            ),
            400,
            &["invalid_request"],
        ),
        (
            "/token, an assertion that is not a JWT",
            post(
                "/token",
                FORM,
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=nope",
            ),
            400,
            &["invalid_grant"],
        ),
        (
            "generateIdToken without a credential",
            post(
                &format!("{sa_path}:generateIdToken"),
                "application/json",
                r#"{"audience": "https://search.example"}"#,
            ),
            401,
            &[
                "UNAUTHENTICATED",
                "CREDENTIALS_MISSING",
                "Request is missing required authentication credential",
                "send `Authorization: Bearer ACCESS_TOKEN`",
            ],
        ),
        (
            "generateIdToken with an ID token as the credential",
            Request::post(format!("{sa_path}:generateIdToken"))
                .header("authorization", format!("Bearer {id_token}"))
                .header("content-type", "application/json")
                .body(Body::from(r#"{"audience": "https://search.example"}"#))
                .unwrap(),
            401,
            &["UNAUTHENTICATED", "an ID token was sent"],
        ),
        (
            "an unknown IAM Credentials method",
            post(
                &format!("{sa_path}:mintEverything"),
                "application/json",
                "{}",
            ),
            404,
            &["mintEverything"],
        ),
        (
            "STS, an unknown grant",
            post("/v1/token", FORM, "grant_type=password"),
            400,
            &["unsupported_grant_type"],
        ),
        (
            "STS, no subject token type",
            post(
                "/v1/token",
                FORM,
                "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Atoken-exchange",
            ),
            400,
            &["invalid_request"],
        ),
        (
            "STS, a JSON body that is not an object",
            post("/v1/token", "application/json", "[1]"),
            400,
            &["not a JSON object"],
        ),
        ("health", get("/healthz"), 200, &["ok\n"]),
        (
            "status",
            get("/frontdoor/v1/status"),
            200,
            &[r#""generation":1"#],
        ),
        (
            "decisions of an unknown surface",
            get("/frontdoor/v1/decisions?surface=st"),
            400,
            &["did you mean `sts`?"],
        ),
        ("metrics", get("/metrics"), 200, &["frontdoor_"]),
    ];
    for (name, request, status, needles) in cases {
        let (got, _, body) = oneshot(&app, request).await;
        assert_eq!(got, StatusCode::from_u16(status).unwrap(), "{name}: {body}");
        for needle in needles {
            assert!(body.contains(needle), "{name}: {body}");
        }
    }
}

#[tokio::test]
async fn issuer_keys_are_cacheable_and_match_the_signing_keys() {
    let g = generation(YAML);
    let app = frontdoor::server::google_listener(g.live.clone());
    let (status, headers, body) = oneshot(&app, get("/oauth2/v3/certs")).await;
    assert_eq!(status, 200);
    assert!(
        headers["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age="),
        "{headers:?}"
    );
    let jwks: Value = serde_json::from_str(&body).unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids, g.live.get().keys().kids());
}

/// Issue 26, item 12: frontdoor's own endpoints answer only requests that name this
/// machine, so a web page cannot reach them by DNS rebinding; Google's paths on the same
/// listener answer any host, as Google's do.
#[tokio::test]
async fn frontdoors_own_endpoints_answer_only_names_of_this_machine() {
    let g = generation(YAML);
    let app = frontdoor::server::google_listener(g.live.clone());
    let with_host = |method: &str, path: &str, host: &str| {
        Request::builder()
            .method(method)
            .uri(path)
            .header("host", host)
            .header("content-type", "application/json")
            .body(Body::from(r#"{"service": "search", "token": "x"}"#))
            .unwrap()
    };
    let own = [
        ("GET", "/frontdoor/v1/decisions"),
        ("GET", "/frontdoor/v1/status"),
        ("GET", "/frontdoor/v1/codes"),
        ("GET", "/metrics"),
        ("GET", "/healthz"),
        ("GET", "/frontdoor/ui/"),
        ("POST", "/frontdoor/v1/explain"),
    ];
    for (method, path) in own {
        let (status, _, body) =
            oneshot(&app, with_host(method, path, "rebound.example:8088")).await;
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{path}: {body}");
        assert!(body.contains("`rebound.example:8088`"), "{body}");
        for host in ["127.0.0.1:8088", "localhost:8088"] {
            let (status, _, body) = oneshot(&app, with_host(method, path, host)).await;
            assert_ne!(
                status,
                StatusCode::MISDIRECTED_REQUEST,
                "{path} {host}: {body}"
            );
        }
    }
    let (status, _, body) = oneshot(
        &app,
        with_host(
            "GET",
            "/.well-known/openid-configuration",
            "accounts.google.com",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
