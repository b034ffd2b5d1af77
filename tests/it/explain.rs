//! "Would this pass?" (issue 15, part 4): `POST /frontdoor/v1/explain` and `frontdoor
//! explain` judge a token for a service with the front door's own checks, sending nothing
//! to the service; their verdict is the front door's, case for case.

use crate::common;

use common::*;
use serde_json::{Value, json};

async fn explain(emu: &Emulator, ask: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(emu.google("/frontdoor/v1/explain"))
        .json(&ask)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_gives_the_front_doors_verdict_for_every_token() {
    let emu = Emulator::start(&three_services()).await;
    let aud = emu.url_of("user-profiles");
    let corpus = corpus::hostile(&emu, &aud, &emu.url_of("search"), &sa("login"));
    let mut cases: Vec<(&str, &str, String)> = corpus
        .cases
        .iter()
        .map(|(name, token)| (*name, "user-profiles", token.clone()))
        .collect();
    cases.push(("valid", "user-profiles", corpus.valid.clone()));
    cases.push((
        "no binding on search",
        "search",
        emu.sa_token(&sa("login"), &emu.url_of("search")),
    ));
    cases.push((
        "a user's token",
        "user-profiles",
        emu.user_token("alice@example.com", Some(&aud)),
    ));
    let before = emu.decisions().await.len();
    let mut explained = Vec::new();
    for (name, service, token) in &cases {
        let (status, verdict) = explain(&emu, json!({"service": service, "token": token})).await;
        assert_eq!(status, 200, "{name}: {verdict}");
        explained.push(verdict);
    }
    // Nothing reached a service, and nothing was recorded as a decision.
    assert_eq!(emu.decisions().await.len(), before);
    for ((name, service, token), verdict) in cases.iter().zip(&explained) {
        let (status, code) = front_door_verdict(&emu, service, token).await;
        assert_eq!(verdict["status"], status, "{name}: {verdict}");
        assert_eq!(verdict["allowed"], status == 200, "{name}: {verdict}");
        assert_eq!(
            verdict["code"].as_str().map(str::to_owned),
            code,
            "{name}: {verdict}"
        );
        // The signature is never shown: only the header and the claims.
        let shown = verdict["token"].to_string();
        if let Some(signature) = token.rsplit('.').next().filter(|s| s.len() > 20) {
            assert!(!shown.contains(signature), "{name}: {shown}");
        }
    }
    let valid = &explained[cases.len() - 3];
    assert_eq!(
        valid["principal"],
        format!("serviceAccount:{}", sa("login"))
    );
    assert_eq!(valid["token"]["claims"]["aud"], aud);
    assert_eq!(valid["token"]["header"]["alg"], "RS256");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_mints_when_asked_and_says_what_is_wrong_with_a_question() {
    let emu = Emulator::start(&three_services()).await;
    // Minted for an account: allowed where it is bound, the binding named where not.
    let out = emu.cli(&[
        "explain",
        "--service",
        "user-profiles",
        "--impersonate-service-account",
        &sa("login"),
    ]);
    assert!(
        out.starts_with(&format!(
            "ALLOW 200 user-profiles → serviceAccount:{}",
            sa("login")
        )) && out.contains("(a token minted for the question, sent nowhere)"),
        "{out}"
    );
    let out = emu.cli_denied(&[
        "explain",
        "--service",
        "search",
        "--impersonate-service-account",
        &sa("login"),
    ]);
    assert!(
        out.starts_with("DENY  403 search")
            && out.contains("\n    no_invoker_binding: ")
            && out.contains(
                "\n    fix: grant `roles/run.invoker` to the principal the reason names\n"
            ),
        "{out}"
    );
    let json: Value = serde_json::from_str(&emu.cli_denied(&[
        "explain",
        "--service",
        "user-profiles",
        "--impersonate-service-account",
        &sa("login"),
        "--audience",
        "https://elsewhere.example.com",
        "--json",
    ]))
    .unwrap();
    assert_eq!(json["code"], "audience_not_accepted", "{json}");
    assert_eq!(json["minted"], true);

    // Garbage gets a verdict, not an error page.
    for (paste, code) in [
        ("not a token at all", "not_bearer"),
        ("garbage", "not_a_jwt"),
        ("line\nbreak", "not_bearer"),
        ("a.b.c", "not_a_jwt"),
    ] {
        let (status, verdict) =
            explain(&emu, json!({"service": "user-profiles", "token": paste})).await;
        assert_eq!(status, 200, "{paste:?}: {verdict}");
        assert_eq!(verdict["status"], 401, "{paste:?}: {verdict}");
        assert_eq!(verdict["code"], code, "{paste:?}: {verdict}");
    }
    // A question that cannot be answered says why.
    let (status, out) = explain(&emu, json!({"service": "serch", "token": "x"})).await;
    assert_eq!(status, 404);
    assert!(
        out["error"]
            .as_str()
            .unwrap()
            .contains("did you mean `search`?"),
        "{out}"
    );
    let (status, out) = explain(&emu, json!({"service": "search"})).await;
    assert_eq!(status, 400, "{out}");
    let (status, out) = explain(
        &emu,
        json!({"service": "search", "impersonate_service_account": sa("nobody")}),
    )
    .await;
    assert_eq!(status, 404, "{out}");
    let why = emu.cli_fails(&["explain", "--service", "nope", "--token", "x"]);
    assert!(why.contains("no service `nope`"), "{why}");
    emu.stop().await;
}

/// The other question: whether a principal holds a permission on a resource, judged by the
/// function the Admin APIs and IAM Credentials call, with the code their refusal carries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_judges_a_permission_on_a_resource_as_the_apis_do() {
    let emu = Emulator::start(&format!(
        r#"{PROJECT}
service_accounts:
  - email: ci{SA}
  - email: login{SA}
    iam_policy: {{bindings: [{{role: roles/iam.serviceAccountTokenCreator, members: [group:ops@example.com]}}]}}
users: [dana@example.com, eli@example.com]
groups: [{{email: ops@example.com, members: [user:eli@example.com]}}]
iam_policy: {{bindings: [{{role: roles/run.developer, members: [user:dana@example.com]}}]}}
services:
  - name: search
    service_account: ci{SA}
    upstream: builtin:echo
    listen: 127.0.0.1:0
  - name: open
    upstream: builtin:echo
    listen: 127.0.0.1:0
    invoker_iam_disabled: true
"#
    ))
    .await;
    let ask = |principal: &str, permission: &str, resource: &str| json!({"principal": principal, "permission": permission, "resource": resource});
    let login = format!("serviceAccounts/{}", sa("login"));
    // Each question's verdict: granted through a group; refused with IAM's reason and the
    // API's code; actAs with Cloud Run's own code; the front door's permission with the
    // front door's, and let through where the invoker check is off, as at the front door.
    let ci = sa("ci");
    for (principal, permission, resource, code, reason_has) in [
        (
            "eli@example.com",
            "iam.serviceAccounts.getOpenIdToken",
            login.as_str(),
            None,
            "(as member group:ops@example.com)",
        ),
        (
            &ci,
            "iam.serviceAccounts.getOpenIdToken",
            &login,
            Some("permission_denied"),
            "has no role carrying",
        ),
        (
            "dana@example.com",
            "iam.serviceAccounts.actAs",
            &login,
            Some("act_as_denied"),
            "has no role carrying iam.serviceAccounts.actAs",
        ),
        (
            "dana@example.com",
            "run.routes.invoke",
            "services/search",
            None,
            "holds roles/run.developer",
        ),
        (
            &ci,
            "run.routes.invoke",
            "services/search",
            Some("no_invoker_binding"),
            "has no role carrying run.routes.invoke",
        ),
        (
            &ci,
            "run.routes.invoke",
            "services/open",
            None,
            "invoker_iam_disabled",
        ),
        (
            "dana@example.com",
            "run.services.setIamPolicy",
            "projects/demo-project",
            Some("permission_denied"),
            "has no role carrying",
        ),
    ] {
        let (status, v) = explain(&emu, ask(principal, permission, resource)).await;
        assert_eq!(status, 200, "{v}");
        let allowed = code.is_none();
        assert_eq!(
            (&v["allowed"], &v["status"], &v["code"]),
            (
                &json!(allowed),
                &json!(if allowed { 200 } else { 403 }),
                &json!(code)
            ),
            "{v}"
        );
        assert!(v["reason"].as_str().unwrap().contains(reason_has), "{v}");
    }
    let r = reqwest::get(emu.service("open", "/")).await.unwrap();
    assert_eq!(r.status(), 200);
    // The same question to IAM Credentials itself gets the same code and reason (in the
    // header's ASCII).
    let (_, v) = explain(&emu, ask(&ci, "iam.serviceAccounts.getOpenIdToken", &login)).await;
    assert_eq!(v["principal"], format!("serviceAccount:{ci}"), "{v}");
    let token = emu.access_token("search").await;
    let token = token.as_str();
    let r = reqwest::Client::new()
        .post(emu.google(&format!(
            "/v1/projects/-/serviceAccounts/{}:generateIdToken",
            sa("login")
        )))
        .bearer_auth(token)
        .json(&json!({"audience": "https://x"}))
        .send()
        .await
        .unwrap();
    let header = r.headers()["x-frontdoor-reason"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        header.starts_with("permission_denied: ")
            && header.ends_with(&v["reason"].as_str().unwrap().replace('→', "->")),
        "{header}\n{v}"
    );
    // The CLI says it on two lines.
    let out = emu.cli_denied(&[
        "explain",
        "--principal",
        &sa("ci"),
        "--permission",
        "iam.serviceAccounts.getOpenIdToken",
        "--resource",
        &login,
    ]);
    assert!(
        out.starts_with(&format!(
            "DENY  403 serviceAccount:{} → iam.serviceAccounts.getOpenIdToken on {login}\n    permission_denied: serviceAccount:{} has no role carrying",
            sa("ci"),
            sa("ci")
        )),
        "{out}"
    );

    // A question that cannot be answered says why, and what would do.
    for (ask, status, says) in [
        (
            ask(
                "eli@example.com",
                "iam.serviceAccounts.getOpenIdTokn",
                &login,
            ),
            400,
            "did you mean `iam.serviceAccounts.getOpenIdToken`?",
        ),
        (
            ask("eli@example.com", "run.routes.invoke", "services/serch"),
            404,
            "did you mean `search`?",
        ),
        (
            ask("eli@example.com", "run.routes.invoke", "projects/other"),
            404,
            "is not the one frontdoor emulates",
        ),
        (
            ask(
                "eli@example.com",
                "run.routes.invoke",
                "projects/other/services/search",
            ),
            404,
            "project `other` is not the one frontdoor emulates",
        ),
        (
            ask("eli@example.com", "run.routes.invoke", "buckets/b"),
            400,
            "names no resource",
        ),
        (
            ask(
                "group:ops@example.com",
                "run.routes.invoke",
                "services/search",
            ),
            400,
            "is not one caller",
        ),
        (
            json!({"principal": "eli@example.com", "service": "search"}),
            400,
            "give one question",
        ),
    ] {
        let (got, out) = explain(&emu, ask.clone()).await;
        assert_eq!(got, status, "{ask}: {out}");
        assert!(
            out["error"].as_str().unwrap().contains(says),
            "{ask}: {out}"
        );
    }
    // A question half asked is the CLI's usage error.
    let half = bounded_output(frontdoor().args([
        "explain",
        "--principal",
        "x@example.com",
        "--permission",
        "run.routes.invoke",
    ]));
    let stderr = String::from_utf8_lossy(&half.stderr);
    assert!(
        !half.status.success() && stderr.contains("--resource"),
        "{stderr}"
    );
    emu.stop().await;
}

/// `explain --service S --user EMAIL` asks about a user without a token, and `--group
/// EMAIL` about each member of a group, as the configuration lists them (issue 33): the
/// reason names the group a member gets in through, or the rosters that would have let an
/// outsider in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_asks_about_a_user_or_each_member_of_a_group_without_a_token() {
    let emu = Emulator::start(&format!(
        "{PROJECT}service_accounts:\n  - email: {ci}\nusers: [dana@example.com, eli@example.com]\n\
         groups:\n  - email: ops@example.com\n    members: [user:eli@example.com, serviceAccount:{ci}, group:oncall@example.com]\n  - email: oncall@example.com\n    members: []\n\
         services:\n  - name: search\n    upstream: builtin:echo\n    iam_policy:\n      bindings:\n        - role: roles/run.invoker\n          members: [group:ops@example.com]\n",
        ci = sa("ci")
    ))
    .await;
    let out = emu.cli_denied(&[
        "explain",
        "--service",
        "search",
        "--user",
        "dana@example.com",
    ]);
    assert!(
        out.starts_with(
            "DENY  403 user:dana@example.com → run.routes.invoke on services/search\n    no_invoker_binding: "
        ) && out.contains("ops@example.com")
            && out.contains("user:eli@example.com"),
        "{out}"
    );
    let out = emu.cli(&[
        "explain",
        "--service",
        "search",
        "--user",
        "eli@example.com",
    ]);
    assert!(
        out.starts_with("ALLOW 200 user:eli@example.com → run.routes.invoke on services/search")
            && out.contains("(as member group:ops@example.com)"),
        "{out}"
    );
    let out = emu.cli(&[
        "explain",
        "--service",
        "search",
        "--group",
        "ops@example.com",
    ]);
    assert_eq!(
        out.lines().next().unwrap(),
        format!(
            "group:ops@example.com (members: user:eli@example.com, serviceAccount:{}, group:oncall@example.com) → search",
            sa("ci")
        ),
        "{out}"
    );
    let verdicts: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("  ") && !l.starts_with("      "))
        .collect();
    assert_eq!(
        verdicts,
        [
            "  ALLOW user:eli@example.com".to_owned(),
            format!("  ALLOW serviceAccount:{}", sa("ci")),
            "    -   group:oncall@example.com".to_owned(),
        ],
        "{out}"
    );
    // A group the configuration does not declare is named, with the nearest one.
    let why = emu.cli_fails(&[
        "explain",
        "--service",
        "search",
        "--group",
        "opz@example.com",
    ]);
    assert!(
        why.contains(
            "no group `opz@example.com` under `groups:` (did you mean `ops@example.com`?)"
        ),
        "{why}"
    );
    // A service the configuration does not declare is named, members or none.
    let why = emu.cli_fails(&[
        "explain",
        "--service",
        "serch",
        "--group",
        "oncall@example.com",
    ]);
    assert!(why.contains("serch"), "{why}");
    // One question at a time.
    for ask in [
        json!({"group": "ops@example.com"}),
        json!({"group": "ops@example.com", "service": "search", "token": "x"}),
    ] {
        let (status, body) = explain(&emu, ask).await;
        assert_eq!(status, 400, "{body}");
    }
    let why = emu.cli_fails(&["explain", "--service", "search", "--user", &sa("ci")]);
    assert!(why.contains("is a service account"), "{why}");
    emu.stop().await;
}
