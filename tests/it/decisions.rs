//! One decision log for every surface (issue 9): IAM Credentials, `/token`, STS, tokeninfo
//! and the metadata server record their allow and deny decisions beside the front door's,
//! with the surface, the caller, the target, the permission and a reason; a refusal says
//! its reason in `X-Frontdoor-Reason` too; `frontdoor decisions --surface` filters.

use crate::common;

use common::tokens::*;
use common::*;
use serde_json::{Value, json};

async fn last_of(emu: &Emulator, surface: &str) -> Value {
    let body: Value = reqwest::get(emu.google(&format!(
        "/frontdoor/v1/decisions?surface={surface}&limit=1"
    )))
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    body["decisions"][0].clone()
}

async fn reason_of(r: reqwest::Response) -> (u16, String) {
    let status = r.status().as_u16();
    let reason = r
        .headers()
        .get("x-frontdoor-reason")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, reason)
}

fn post(url: &str) -> reqwest::RequestBuilder {
    reqwest::Client::new().post(url)
}

// Multi-threaded: the CLI runs as a blocking child process while this runtime serves it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_surface_records_its_decisions_with_their_reasons() {
    let s = Setup::new().await;
    let emu = &s.emu;
    let caller = s.caller_access_token().await;

    // /token: the grant above was allowed, with its caller.
    let d = last_of(emu, "token").await;
    assert_eq!(
        (&d["allowed"], &d["principal"]),
        (
            &json!(true),
            &json!(format!("serviceAccount:{}", sa("caller")))
        )
    );
    // …and an assertion signed by a key that is not caller's refused, saying why.
    let now = emu.state.now();
    let forged = jwt(
        json!({"alg": "RS256", "kid": s.key.kid(), "typ": "JWT"}),
        json!({"iss": sa("caller"), "sub": sa("caller"), "aud": emu.google("/token"), "iat": now, "exp": now + 3600, "scope": "x"}),
        &test_key("c"),
    );
    let r = post(&emu.google("/token"))
        .form(&[
            ("grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"),
            ("assertion", &forged),
        ])
        .send()
        .await
        .unwrap();
    let (status, reason) = reason_of(r).await;
    assert_eq!(
        (status, reason.as_str()),
        (400, "invalid_grant: Invalid JWT Signature.")
    );
    let d = last_of(emu, "token").await;
    assert_eq!(
        (d["allowed"].as_bool(), d["status"].as_u64()),
        (Some(false), Some(400))
    );
    // Every surface's refusal has its stable code, as the front door's do.
    assert_eq!(
        (&d["code"], &d["reason"]),
        (&json!("invalid_grant"), &json!("Invalid JWT Signature."))
    );

    // IAM Credentials: denied on loner with IAM's reason, allowed on target.
    let r = post(&s.iam(&sa("loner"), "generateIdToken"))
        .bearer_auth(&caller)
        .json(&json!({"audience": "https://x"}))
        .send()
        .await
        .unwrap();
    let (status, reason) = reason_of(r).await;
    assert_eq!(status, 403);
    assert!(
        reason.starts_with(
            "permission_denied: Permission 'iam.serviceAccounts.getOpenIdToken' denied"
        ) && reason.contains("has no role carrying iam.serviceAccounts.getOpenIdToken"),
        "{reason}"
    );
    let d = last_of(emu, "iamcredentials").await;
    assert_eq!(d["allowed"], false);
    assert_eq!(d["principal"], format!("serviceAccount:{}", sa("caller")));
    assert_eq!(d["target"], sa("loner"));
    assert_eq!(d["permission"], "iam.serviceAccounts.getOpenIdToken");
    assert_eq!(d["code"], "permission_denied");
    let r = post(&s.iam(&sa("target"), "generateIdToken"))
        .bearer_auth(&caller)
        .json(&json!({"audience": "https://x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(reason_of(r).await, (200, String::new()));
    let d = last_of(emu, "iamcredentials").await;
    assert_eq!(
        (&d["allowed"], &d["target"]),
        (&json!(true), &json!(sa("target")))
    );

    // STS: a subject token from nobody's issuer.
    let stranger = jwt(
        json!({"alg": "RS256", "typ": "JWT"}),
        json!({"iss": "https://ci.example.com", "sub": "x", "aud": "y", "iat": 1, "exp": 2}),
        &test_key("c"),
    );
    let r = post(&emu.google("/v1/token"))
        .form(&[
            (
                "grant_type",
                "urn:ietf:params:oauth:grant-type:token-exchange",
            ),
            ("audience", &format!("{POOL}/providers/ci")),
            ("subject_token", &stranger),
            ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
        ])
        .send()
        .await
        .unwrap();
    let (status, reason) = reason_of(r).await;
    assert_eq!(status, 400);
    assert!(reason.starts_with("invalid_grant: "), "{reason}");
    let d = last_of(emu, "sts").await;
    assert_eq!((&d["allowed"], &d["status"]), (&json!(false), &json!(400)));
    assert_eq!(d["code"], "invalid_grant");

    // tokeninfo: Google's body says "Invalid Value"; the reason says what is wrong.
    let r = reqwest::get(emu.google("/tokeninfo?id_token=not.a-token"))
        .await
        .unwrap();
    let (status, reason) = reason_of(r).await;
    assert_eq!(status, 400);
    assert!(
        reason
            == "invalid_token: the credential is not a JWT: it has 2 dot-separated segments, a JWT has three (header.payload.signature)",
        "{reason}"
    );
    let valid = emu.sa_token(&sa("target"), "https://x");
    assert_eq!(
        reqwest::get(emu.google(&format!("/tokeninfo?id_token={valid}")))
            .await
            .unwrap()
            .status(),
        200
    );
    let d = last_of(emu, "tokeninfo").await;
    assert_eq!(
        (&d["allowed"], &d["target"]),
        (&json!(true), &json!("https://x"))
    );

    // The metadata server: a request without the flavor header, then an ID token.
    let md = format!(
        "http://{}/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://x",
        emu.addresses.metadata
    );
    let (status, reason) = reason_of(reqwest::get(&md).await.unwrap()).await;
    assert_eq!(
        (status, reason.as_str()),
        (
            403,
            "metadata_flavor_missing: Missing Metadata-Flavor:Google header."
        )
    );
    let d = last_of(emu, "metadata").await;
    assert_eq!(d["allowed"], false);
    assert_eq!(d["code"], "metadata_flavor_missing");
    let r = reqwest::Client::new()
        .get(&md)
        .header("metadata-flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let d = last_of(emu, "metadata").await;
    assert_eq!(d["allowed"], true);
    assert_eq!(d["reason"], "minted an ID token for audience https://x");
    // The same token again comes from the cache: no new decision.
    let r = reqwest::Client::new()
        .get(&md)
        .header("metadata-flavor", "Google")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let all: Value = reqwest::get(emu.google("/frontdoor/v1/decisions?surface=metadata"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["decisions"].as_array().unwrap().len(), 2, "{all}");
    assert_eq!(d["principal"], format!("serviceAccount:{}", sa("caller")));

    // The CLI filters by surface, and says when a surface has decided nothing.
    let out = succeed(
        frontdoor()
            .args(["decisions", "--surface", "iamcredentials", "--config"])
            .arg(emu.config_file()),
    );
    assert!(
        out.contains(&format!("DENY  403 iamcredentials POST {}", sa("loner")))
            && out.contains(&format!("ALLOW 200 iamcredentials POST {}", sa("target")))
            && out.contains(
                "\n    permission_denied: Permission 'iam.serviceAccounts.getOpenIdToken' denied"
            )
            && !out.contains("metadata"),
        "{out}"
    );
    let out = succeed(
        frontdoor()
            .args(["decisions", "--surface", "frontdoor", "--config"])
            .arg(emu.config_file()),
    );
    assert!(
        out.contains("no decisions of surface `frontdoor` yet"),
        "{out}"
    );
    let r = reqwest::get(emu.google("/frontdoor/v1/decisions?surface=sst"))
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("(did you mean `sts`?)"),
        "{body}"
    );
    s.emu.stop().await;
}

#[tokio::test]
async fn health_waits_for_every_instance_and_metrics_count_decisions() {
    // A command that never listens: not ready, and /healthz says which and why.
    let emu = Emulator::start(&format!(
        "{PROJECT}services:\n  - name: api\n    upstream: builtin:echo\n    listen: 127.0.0.1:0\n  - name: deaf\n    command: [sleep, \"60\"]\n    start_timeout: 1s\n"
    ))
    .await;
    let r = reqwest::get(emu.google("/healthz")).await.unwrap();
    assert_eq!(r.status(), 503);
    let body = r.text().await.unwrap();
    assert!(body.contains("deaf: "), "{body}");
    emu.stop().await;

    let emu = Emulator::start(&format!(
        "{PROJECT}services:\n  - name: api\n    upstream: builtin:echo\n    listen: 127.0.0.1:0\n"
    ))
    .await;
    let r = reqwest::get(emu.google("/healthz")).await.unwrap();
    assert_eq!(
        (r.status().as_u16(), r.text().await.unwrap()),
        (200, "ok\n".to_owned())
    );

    // Two refusals at the front door, one refused reload.
    for _ in 0..2 {
        assert_eq!(
            reqwest::get(emu.service("api", "/"))
                .await
                .unwrap()
                .status(),
            403
        );
    }
    emu.rewrite_config("project: [not, a, mapping]\n");
    emu.wait_status("the refusal", |s| s["last_reload"]["ok"] == false)
        .await;
    let r = reqwest::get(emu.google("/metrics")).await.unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    let text = r.text().await.unwrap();
    for line in [
        r#"frontdoor_decisions_total{surface="frontdoor",service="api",outcome="deny",status="403"} 2"#,
        r#"frontdoor_decision_duration_seconds_count{surface="frontdoor"} 2"#,
        r#"frontdoor_cache_entries{name="decision_log"} 2"#,
        r#"frontdoor_reloads_total{name="refused"} 1"#,
        r#"frontdoor_reloads_total{name="applied"} 0"#,
        "# EOF",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    emu.stop().await;
}

/// Every front-door refusal carries its stable code: in the decision, in the text of
/// `frontdoor decisions`, and in `/frontdoor/v1/codes` with its meaning and fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_has_its_stable_code_everywhere() {
    let emu = Emulator::start(&three_services()).await;
    // login holds no invoker binding on search.
    let token = emu.sa_token(&sa("login"), &emu.url_of("search"));
    let r = reqwest::Client::new()
        .get(emu.service("search", "/"))
        .header("authorization", bearer(&token))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let header = r.headers()["x-frontdoor-reason"].to_str().unwrap();
    assert!(header.starts_with("no_invoker_binding: "), "{header}");
    let decision = last_of(&emu, "frontdoor").await;
    assert_eq!(decision["code"], "no_invoker_binding", "{decision}");
    let text = emu.cli(&["decisions"]);
    assert!(
        text.contains("\n    no_invoker_binding: serviceAccount:login@"),
        "{text}"
    );
    // An allowed decision has none.
    let public = reqwest::get(emu.service("login", "/")).await.unwrap();
    assert_eq!(public.status(), 200);
    assert!(last_of(&emu, "frontdoor").await.get("code").is_none());

    let codes: Value = reqwest::get(emu.google("/frontdoor/v1/codes"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let binding = codes["codes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["code"] == "no_invoker_binding")
        .unwrap();
    assert!(
        binding["fix"]
            .as_str()
            .unwrap()
            .contains("roles/run.invoker"),
        "{binding}"
    );
    let surfaces_of = |surfaces: &str| {
        codes["codes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["surfaces"] == surfaces)
            .count()
    };
    assert_eq!((surfaces_of("frontdoor"), surfaces_of("google")), (27, 19));
    emu.stop().await;
}

/// A front-door decision lists its chain of checks, in `/frontdoor/v1/decisions` and
/// `frontdoor decisions --json` alike: a refusal's failed check last, an allowed call's
/// every check passed through to the container, a public service's token checks not made;
/// and the token's header and claims, never its signature.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_shows_its_chain_of_checks() {
    let emu = Emulator::start(&three_services()).await;
    let denied = emu.sa_token(&sa("login"), &emu.url_of("search"));
    let allowed = emu.sa_token(&sa("login"), &emu.url_of("user-profiles"));
    for (service, token, status) in [("search", &denied, 403), ("user-profiles", &allowed, 200)] {
        let (got, _, _) = get_with(
            &emu.service(service, "/"),
            &[("authorization", &bearer(token))],
        )
        .await;
        assert_eq!(got, status, "{service}");
    }
    let public = reqwest::get(emu.service("login", "/")).await.unwrap();
    assert_eq!(public.status(), 200);

    let listed: Value =
        serde_json::from_str(&emu.cli(&["decisions", "--json", "--surface", "frontdoor"])).unwrap();
    let decisions = listed["decisions"].as_array().unwrap();
    let served = emu.decisions().await;
    assert_eq!(decisions.len(), 3);
    let checks = |d: &Value| -> Vec<String> {
        d["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                format!(
                    "{}:{}",
                    s["check"].as_str().unwrap(),
                    s["outcome"].as_str().unwrap()
                )
            })
            .collect()
    };
    let mut want: Vec<String> = CHECKS_BEFORE_IAM
        .iter()
        .map(|c| format!("{c}:passed"))
        .collect();
    want.push("iam:failed".into());
    assert_eq!(checks(&decisions[0]), want);
    want.pop();
    want.extend(["iam:passed".to_owned(), "container:passed".to_owned()]);
    assert_eq!(checks(&decisions[1]), want);
    assert_eq!(
        checks(&decisions[2]),
        [
            "route:passed",
            "ingress:passed",
            "public:passed",
            "container:passed"
        ]
    );
    assert!(
        decisions[2]["steps"][2]["detail"]
            .as_str()
            .unwrap()
            .starts_with("yes")
    );
    // The IAM step says why none matched: the bindings on the service and the project.
    let iam = &decisions[0]["steps"][12]["detail"];
    assert!(
        iam.as_str()
            .unwrap()
            .contains("bindings on service `search`: (none); on project"),
        "{iam}"
    );
    // The server's list and the CLI's are one.
    assert_eq!(decisions[0]["steps"], served[served.len() - 3]["steps"]);
    // The token: decoded header and claims; its signature nowhere.
    let token = &decisions[0]["token"];
    assert_eq!(token["header"]["alg"], "RS256");
    assert_eq!(token["claims"]["email"], sa("login"));
    let signature = denied.rsplit('.').next().unwrap();
    assert!(!listed.to_string().contains(signature));
    assert!(decisions[2].get("token").is_none());
    emu.stop().await;
}
