//! The front door end to end: routing, the order of checks, the hostile-token corpus, IAM,
//! and what the container receives.

use crate::common;

use common::*;
use serde_json::{Value, json};

#[tokio::test]
async fn the_seed_scenario_login_reaches_user_profiles_but_not_search() {
    let emu = Emulator::start(&three_services()).await;

    // Anyone reaches the public login service, with no token.
    let (status, headers, body) = get_with(&emu.service("login", "/hello?x=1"), &[]).await;
    assert_eq!(status, 200);
    assert_eq!(headers["server"], "Google Frontend");
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            echo["service"].as_str(),
            echo["path"].as_str(),
            echo["query"].as_str()
        ),
        (Some("login"), Some("/hello"), Some("x=1"))
    );

    // login's identity reaches user-profiles; the container sees the token redacted.
    let token = emu.sa_token(&sa("login"), &emu.url_of("user-profiles"));
    let (status, _, body) = get_with(
        &emu.service("user-profiles", "/me"),
        &[("x-serverless-authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    let (signed, _) = token.rsplit_once('.').unwrap();
    assert_eq!(
        echo["headers"]["x-serverless-authorization"],
        format!("Bearer {signed}.SIGNATURE_REMOVED_BY_GOOGLE")
    );
    assert_eq!(
        echo["claims"]["x-serverless-authorization"]["email"],
        sa("login")
    );

    // login's identity, minted for search, is refused by IAM with the GFE page.
    let token = emu.sa_token(&sa("login"), &emu.url_of("search"));
    let (status, headers, body) = get_with(
        &emu.service("search", "/q"),
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(headers["content-type"], "text/html; charset=UTF-8");
    let reason = headers["x-frontdoor-reason"].to_str().unwrap();
    assert!(
        reason.contains("has no role carrying run.routes.invoke"),
        "{reason}"
    );
    assert_eq!(headers["server"], "Google Frontend");
    assert!(
        body.contains("<title>403 Forbidden</title>") && body.contains("<code>/q</code>"),
        "{body}"
    );

    // A token for the wrong audience is a 401 with WWW-Authenticate.
    let token = emu.sa_token(&sa("login"), &emu.url_of("user-profiles"));
    let (status, headers, _) = get_with(
        &emu.service("search", "/q"),
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        r#"Bearer error="invalid_token" error_description="The access token could not be verified""#
    );

    let decisions = emu.decisions().await;
    let summary: Vec<(bool, u64, &str)> = decisions
        .iter()
        .map(|d| {
            (
                d["allowed"].as_bool().unwrap(),
                d["status"].as_u64().unwrap(),
                d["service"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (true, 200, "login"),
            (true, 200, "user-profiles"),
            (false, 403, "search"),
            (false, 401, "search")
        ]
    );
    assert!(
        decisions[0]["reason"]
            .as_str()
            .unwrap()
            .contains("is public")
    );
    assert!(
        decisions[1]["reason"]
            .as_str()
            .unwrap()
            .contains("holds roles/run.invoker on service `user-profiles`")
    );
    let denied = decisions[2]["reason"].as_str().unwrap();
    assert!(
        denied.starts_with(&format!(
            "serviceAccount:{} has no role carrying run.routes.invoke",
            sa("login")
        )),
        "{denied}"
    );
    assert!(denied.contains("on service `search`: (none)"), "{denied}");
    let wrong_aud = decisions[3]["reason"].as_str().unwrap();
    assert!(
        wrong_aud.contains(&format!(
            "audience `{}` is not one of service `search`'s audiences",
            emu.url_of("user-profiles")
        )),
        "{wrong_aud}"
    );
    assert!(wrong_aud.contains(&emu.url_of("search")), "{wrong_aud}");
    assert_eq!(
        decisions[2]["principal"],
        format!("serviceAccount:{}", sa("login"))
    );
    emu.stop().await;
}

#[tokio::test]
async fn routing_by_host_covers_every_url_form() {
    let emu = Emulator::start(&three_services()).await;
    let svc = emu.config.service("user-profiles").unwrap().clone();
    let token = emu.sa_token(&sa("login"), &svc.url);
    let host_of = |u: &str| u.trim_start_matches("https://").to_owned();
    let legacy = host_of(&svc.legacy_url);
    for host in [
        host_of(&svc.url),
        legacy.clone(),
        format!("blue---{legacy}"),
        "profiles.example.com".into(),
        format!("{}:443", host_of(&svc.url)),
    ] {
        let (status, _, body) = get_with(
            &emu.frontdoor("/"),
            &[("host", &host), ("authorization", &bearer(&token))],
        )
        .await;
        assert_eq!(status, 200, "{host}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["service"],
            "user-profiles"
        );
    }
    for host in ["nowhere.run.app", &format!("green---{legacy}")] {
        let (status, headers, body) = get_with(
            &emu.frontdoor("/x"),
            &[("host", host), ("authorization", &bearer(&token))],
        )
        .await;
        assert_eq!(status, 404, "{host}");
        assert_eq!(headers["server"], "Google Frontend");
        assert!(body.contains("<title>404 Not Found</title>"));
    }
    let last = emu.decisions().await.pop().unwrap();
    assert!(
        last["reason"]
            .as_str()
            .unwrap()
            .contains("is not the URL of any service"),
        "{last}"
    );
    emu.stop().await;
}

/// Every audience form of SPEC §3 step 7, accepted and refused.
#[tokio::test]
async fn accepted_audiences() {
    let emu = Emulator::start(&format!("{}iam_policy: {{bindings: [{{role: roles/run.invoker, members: [allAuthenticatedUsers]}}]}}\n", three_services())).await;
    let svc = emu.config.service("search").unwrap().clone();
    let profiles = emu.config.service("user-profiles").unwrap().clone();
    let cases: Vec<(String, &str, bool)> = vec![
        (svc.url.clone(), "search", true),
        (format!("{}/", svc.url), "search", true),
        (svc.legacy_url.clone(), "search", true),
        (format!("{}/", svc.legacy_url), "search", true),
        (format!("{}//", svc.url), "search", false),
        (format!("{}/path", svc.url), "search", false),
        (format!("{}?q=1", svc.url), "search", false),
        (svc.url.to_uppercase(), "search", false),
        ("https://profiles.example.com".into(), "user-profiles", true),
        ("profiles".into(), "user-profiles", true),
        (
            "https://profiles.example.com/".into(),
            "user-profiles",
            false,
        ),
        (profiles.url.clone(), "search", false),
        (
            "32555940559.apps.googleusercontent.com".into(),
            "search",
            false,
        ),
    ];
    for (aud, service, ok) in cases {
        let token = emu.sa_token(&sa("search"), &aud);
        let (status, _, _) = get_with(
            &emu.service(service, "/"),
            &[("authorization", &bearer(&token))],
        )
        .await;
        assert_eq!(status == 200, ok, "{aud} → {service}: {status}");
        if !ok {
            assert_eq!(status, 401, "{aud}");
        }
    }
    // gcloud's client id is accepted for user tokens only.
    let user = emu.user_token("alice@example.com", None);
    let (status, _, body) = get_with(
        &emu.service("search", "/"),
        &[("authorization", &bearer(&user))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let echo: Value = serde_json::from_str(&body).unwrap();
    // A user token in Authorization reaches the container redacted.
    assert!(
        echo["headers"]["authorization"]
            .as_str()
            .unwrap()
            .ends_with(".SIGNATURE_REMOVED_BY_GOOGLE")
    );
    let reason = emu.decisions().await.iter().rev().nth(1).unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        reason
            .contains("is accepted only in user tokens: add `--audiences=` and the service's URL"),
        "{reason}"
    );
    emu.stop().await;
}

#[tokio::test]
async fn iam_members_roles_and_scopes() {
    let yaml = format!(
        r#"{PROJECT}
service_accounts: [{{email: a{SA}}}, {{email: b{SA}}}]
users: [alice@example.com, bob@corp.example.org, carol@example.com]
groups: [{{email: devs@example.com, members: [user:alice@example.com]}}]
iam_policy: {{bindings: [{{role: roles/run.developer, members: [group:devs@example.com]}}]}}
services:
  - name: by-domain
    upstream: builtin:echo
    listen: 127.0.0.1:0
    iam_policy: {{bindings: [{{role: roles/run.servicesInvoker, members: [domain:corp.example.org]}}, {{role: roles/run.viewer, members: [serviceAccount:a{SA}]}}]}}
  - name: by-owner
    upstream: builtin:echo
    listen: 127.0.0.1:0
    iam_policy: {{bindings: [{{role: roles/owner, members: [serviceAccount:b{SA}]}}]}}
  - name: open
    upstream: builtin:echo
    listen: 127.0.0.1:0
    invoker_iam_disabled: true
"#
    );
    let emu = Emulator::start(&yaml).await;
    let cases: Vec<(&str, String, u16)> = vec![
        (
            "by-domain",
            emu.user_token("bob@corp.example.org", Some(&emu.url_of("by-domain"))),
            200,
        ),
        (
            "by-domain",
            emu.user_token("alice@example.com", Some(&emu.url_of("by-domain"))),
            200,
        ), // project: group → developer
        (
            "by-domain",
            emu.user_token("carol@example.com", Some(&emu.url_of("by-domain"))),
            403,
        ),
        (
            "by-domain",
            emu.sa_token(&sa("a"), &emu.url_of("by-domain")),
            403,
        ), // viewer does not carry invoke
        (
            "by-owner",
            emu.sa_token(&sa("b"), &emu.url_of("by-owner")),
            200,
        ),
        (
            "by-owner",
            emu.sa_token(&sa("a"), &emu.url_of("by-owner")),
            403,
        ),
    ];
    for (service, token, want) in cases {
        let (status, _, body) = get_with(
            &emu.service(service, "/"),
            &[("authorization", &bearer(&token))],
        )
        .await;
        assert_eq!(status.as_u16(), want, "{service}: {body}");
    }
    // With IAM disabled, every header reaches the container untouched, even a garbage token.
    let (status, _, body) = get_with(
        &emu.service("open", "/"),
        &[
            ("authorization", "Bearer not-a-token"),
            ("x-serverless-authorization", "Bearer also.not.one"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["authorization"], "Bearer not-a-token");
    assert_eq!(
        echo["headers"]["x-serverless-authorization"],
        "Bearer also.not.one"
    );
    emu.stop().await;
}

#[tokio::test]
async fn credentials_precedence_and_presence() {
    let emu = Emulator::start(&three_services()).await;
    let url = emu.service("user-profiles", "/");
    let good = emu.sa_token(&sa("login"), &emu.url_of("user-profiles"));

    // No credential at all: 403, not 401.
    let (status, headers, _) = get_with(&url, &[]).await;
    assert_eq!(status, 403);
    assert!(headers.get("www-authenticate").is_none());
    let decision = emu.decisions().await.pop().unwrap();
    let reason = decision["reason"].as_str().unwrap().to_owned();
    assert!(reason.starts_with("no credential"), "{reason}");
    assert_eq!(decision["code"], "no_credential");

    // X-Serverless-Authorization wins even when invalid and Authorization is valid.
    let (status, _, _) = get_with(
        &url,
        &[
            ("x-serverless-authorization", "Bearer garbage"),
            ("authorization", &bearer(&good)),
        ],
    )
    .await;
    assert_eq!(status, 401);
    let last = emu.decisions().await.pop().unwrap();
    assert_eq!(last["credential"], "x-serverless-authorization");

    // A valid X-Serverless-Authorization lets the container have its own Authorization.
    let (status, _, body) = get_with(
        &url,
        &[
            ("x-serverless-authorization", &bearer(&good)),
            ("authorization", "Basic dXNlcjpwYXNz"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["authorization"], "Basic dXNlcjpwYXNz");

    // A service-account token in Authorization passes intact (our choice, SPEC §4).
    let (_, _, body) = get_with(&url, &[("authorization", &bearer(&good))]).await;
    let echo: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(echo["headers"]["authorization"], bearer(&good));
    emu.stop().await;
}

#[tokio::test]
async fn ingress_internal_is_a_404_unless_the_caller_is_internal() {
    let base = format!(
        "{PROJECT}services:\n  - name: private\n    upstream: builtin:echo\n    listen: 127.0.0.1:0\n    ingress: internal\n    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [allUsers]}}]}}\n"
    );
    let emu = Emulator::start(&base).await;
    let (status, _, body) = get_with(&emu.service("private", "/"), &[]).await;
    assert_eq!(status, 404);
    assert!(body.contains("404 Not Found"));
    let reason = emu.decisions().await.pop().unwrap()["reason"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(reason.contains("ingress `internal`"), "{reason}");
    emu.stop().await;

    let emu = Emulator::start(&format!("internal_callers: [127.0.0.1]\n{base}")).await;
    let (status, _, _) = get_with(&emu.service("private", "/"), &[]).await;
    assert_eq!(status, 200);
    emu.stop().await;
}

#[tokio::test]
async fn the_container_sees_forwarding_headers_and_no_client_google_headers() {
    let emu = Emulator::start(&three_services()).await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let (_, _, body) = get_with(
        &emu.service("login", "/"),
        &[
            ("x-forwarded-for", "203.0.113.9"),
            ("x-google-user", "admin@example.com"),
            ("x-cloud-trace-context", &format!("{trace}/1;o=1")),
            ("connection", "keep-alive, x-hop"),
            ("x-hop", "1"),
        ],
    )
    .await;
    let echo: Value = serde_json::from_str(&body).unwrap();
    let h = &echo["headers"];
    assert_eq!(h["x-forwarded-for"], "203.0.113.9, 127.0.0.1");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["forwarded"], "for=\"127.0.0.1\";proto=https");
    assert_eq!(h["x-cloud-trace-context"], format!("{trace}/1;o=1"));
    assert_eq!(h["traceparent"], format!("00-{trace}-0000000000000001-01"));
    assert!(h.get("x-google-user").is_none());
    assert!(h.get("x-hop").is_none());
    assert!(h.get("connection").is_none());
    emu.stop().await;
}

/// A token without `email` (generateIdToken without includeEmail) is the account its `sub`
/// names.
#[tokio::test]
async fn principals_by_sub() {
    let emu = Emulator::start(&three_services()).await;
    let account = emu.config.service_account(&sa("login")).unwrap().clone();
    let mut claims = frontdoor::tokens::service_account_claims(
        &emu.config.issuer,
        &account,
        &emu.url_of("user-profiles"),
        emu.state.now(),
    );
    claims.remove("email");
    let token = frontdoor::tokens::mint(emu.state.keys(), &claims);
    let (status, _, _) = get_with(
        &emu.service("user-profiles", "/"),
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(
        emu.decisions().await.pop().unwrap()["principal"],
        format!("serviceAccount:{}", sa("login"))
    );

    claims.insert("sub".into(), json!("999"));
    let token = frontdoor::tokens::mint(emu.state.keys(), &claims);
    let (status, _, _) = get_with(
        &emu.service("user-profiles", "/"),
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(status, 403);
    emu.stop().await;
}
