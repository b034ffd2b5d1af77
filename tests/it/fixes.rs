//! Ranked fixes (issue 33): for each broken setup, the first fix is the least-privilege
//! one, nothing before it widens access, and following it (in the call, or in
//! `services.yaml` exactly as shown) lets the call in, keeping who was in already.

use crate::common;

use common::*;
use serde_json::{Value, json};

/// The last front-door decision, as `GET /frontdoor/v1/decisions/N` gives it.
async fn last_refusal(emu: &Emulator) -> Value {
    let listed = emu.decisions().await;
    let last = listed
        .iter()
        .rev()
        .find(|d| d["surface"] == "frontdoor")
        .expect("a front-door decision");
    assert_eq!(last["allowed"], false, "{last}");
    last.clone()
}

async fn call(emu: &Emulator, service: &str, token: &str) -> u16 {
    get_with(
        &emu.service(service, "/"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
    .0
    .as_u16()
}

/// The fixes of `decision`, checked: at least one, the first one not widening, and every
/// widening one after every one that does not.
fn fixes(decision: &Value) -> Vec<Value> {
    let fixes = decision["fixes"].as_array().cloned().unwrap_or_default();
    assert!(!fixes.is_empty(), "no fixes: {decision:#}");
    let widening: Vec<bool> = fixes.iter().map(|f| f["widens"] == true).collect();
    assert!(!widening[0], "{decision:#}");
    assert!(
        widening.windows(2).all(|w| w[0] <= w[1]),
        "a widening fix ranked before a narrower one: {decision:#}"
    );
    // Never the public members, never a check turned off.
    let shown = json!(fixes).to_string();
    for never in ["allUsers", "allAuthenticatedUsers", "invoker_iam_disabled"] {
        assert!(!shown.contains(never), "{never}: {shown}");
    }
    fixes
}

/// `explain`, asked about the same token for `service` without a call, ranks the same
/// fixes as the refusal `decision` (the dashboard shows the decision's).
async fn explain_ranks_the_same(emu: &Emulator, service: &str, token: &str, decision: &Value) {
    let answer: Value = reqwest::Client::new()
        .post(emu.google("/frontdoor/v1/explain"))
        .json(&json!({"service": service, "token": token}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["fixes"], decision["fixes"], "{answer:#}");
}

/// The grant among `decision`'s fixes.
fn grant_of(decision: &Value) -> Value {
    fixes(decision)
        .into_iter()
        .find(|f| f["kind"] == "policy")
        .expect("a grant among the fixes")
}

/// Rewrites the configuration and waits until the server applied it.
async fn apply(emu: &Emulator, yaml: &str) {
    let before = emu.status().await["generation"].clone();
    emu.rewrite_config(yaml);
    let now = emu
        .wait_status("the edit to be dealt with", |s| s["generation"] != before)
        .await;
    assert_eq!(now["last_reload"]["ok"], true, "{now:#}");
}

fn indent(text: &str, by: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(by)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_binding_is_merged_into_the_policy_the_service_has() {
    let file = |policy: &str| {
        format!(
            "{PROJECT}service_accounts: [{{email: ci{SA}}}, {{email: cart{SA}}}]\nservices:\n  - name: api\n    upstream: builtin:echo\n    listen: 127.0.0.1:0\n{}",
            indent(policy, 4)
        )
    };
    let emu = Emulator::start(&file(&format!(
        "iam_policy:\n  bindings:\n    - role: roles/run.invoker\n      members: [serviceAccount:ci{SA}]"
    )))
    .await;
    let url = emu.url_of("api");
    assert_eq!(
        call(&emu, "api", &emu.sa_token(&sa("cart"), &url)).await,
        403
    );
    let decision = last_refusal(&emu).await;
    explain_ranks_the_same(&emu, "api", &emu.sa_token(&sa("cart"), &url), &decision).await;
    let first = &fixes(&decision)[0];
    assert_eq!(first["kind"], "policy", "{decision:#}");
    let yaml = first["yaml"].as_str().unwrap();
    // One block, the existing member kept beside the new one: pasted in place of the old
    // block, it reloads.
    assert_eq!(yaml.matches("iam_policy:").count(), 1, "{yaml}");
    assert!(yaml.contains(&format!("serviceAccount:ci{SA}")), "{yaml}");
    apply(&emu, &file(yaml)).await;
    assert_eq!(
        call(&emu, "api", &emu.sa_token(&sa("cart"), &url)).await,
        200
    );
    assert_eq!(call(&emu, "api", &emu.sa_token(&sa("ci"), &url)).await, 200);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_wrong_account_impersonated_is_told_the_one_the_service_admits() {
    let creator = "iam_policy: {bindings: [{role: roles/iam.serviceAccountTokenCreator, members: [serviceAccount:runner@demo-project.iam.gserviceaccount.com]}]}";
    let emu = Emulator::start(&format!(
        "{PROJECT}service_accounts:\n  - email: runner{SA}\n  - email: ci{SA}\n    {creator}\n  - email: cart{SA}\n    {creator}\nservices:\n  - name: api\n    upstream: builtin:echo\n    listen: 127.0.0.1:0\n    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:ci{SA}]}}]}}\n"
    ))
    .await;
    let url = emu.url_of("api");
    assert_eq!(
        call(&emu, "api", &emu.sa_token(&sa("cart"), &url)).await,
        403
    );
    let decision = last_refusal(&emu).await;
    explain_ranks_the_same(&emu, "api", &emu.sa_token(&sa("cart"), &url), &decision).await;
    let ranked = fixes(&decision);
    let first = &ranked[0];
    assert_eq!(first["kind"], "caller", "{decision:#}");
    let text = first["text"].as_str().unwrap();
    assert!(
        text.contains(&format!("call as serviceAccount:ci{SA}"))
            && text.contains(&format!("serviceAccount:runner{SA}")),
        "{text}"
    );
    // The grant is still offered, after.
    assert!(ranked.iter().skip(1).any(|f| f["kind"] == "policy"));
    assert_eq!(call(&emu, "api", &emu.sa_token(&sa("ci"), &url)).await, 200);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audience_mistakes_are_fixed_in_the_call_before_any_audience_is_added() {
    let emu = Emulator::start(&format!(
        "{PROJECT}service_accounts: [{{email: ci{SA}}}]\nservices:\n  - name: api\n    upstream: builtin:echo\n    listen: 127.0.0.1:0\n    custom_audiences: [https://billing.internal.shop.example]\n    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:ci{SA}]}}]}}\n  - name: web\n    upstream: builtin:echo\n    listen: 127.0.0.1:0\n"
    ))
    .await;
    let cases = [
        // A near miss of a custom audience.
        (
            "https://billing.shop.example".to_owned(),
            "did you mean https://billing.internal.shop.example?",
            "https://billing.internal.shop.example".to_owned(),
        ),
        // Another service's URL.
        (
            emu.url_of("web"),
            "the token was minted for web",
            emu.url_of("api"),
        ),
        // The URL with a path.
        (
            format!("{}/orders", emu.url_of("api")),
            "no path",
            emu.url_of("api"),
        ),
    ];
    for (sent, said, right) in cases {
        let token = emu.sa_token(&sa("ci"), &sent);
        assert_eq!(call(&emu, "api", &token).await, 401);
        let decision = last_refusal(&emu).await;
        explain_ranks_the_same(&emu, "api", &token, &decision).await;
        let ranked = fixes(&decision);
        let text = ranked[0]["text"].as_str().unwrap();
        assert_eq!(ranked[0]["kind"], "caller", "{decision:#}");
        assert!(
            text.contains(said) && text.contains(&right),
            "{sent}: {text}"
        );
        // Adding the audience is offered last, as widening.
        assert_eq!(ranked.last().unwrap()["widens"], true, "{decision:#}");
        assert_eq!(
            call(&emu, "api", &emu.sa_token(&sa("ci"), &right)).await,
            200
        );
    }
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_outside_the_bound_group_is_told_to_join_it() {
    let file = |groups: &str| {
        format!(
            "{PROJECT}users: [dana@example.com, eli@example.com]\ngroups:\n{}services:\n  - name: api\n    upstream: builtin:echo\n    listen: 127.0.0.1:0\n    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [group:ops@example.com]}}]}}\n",
            indent(groups, 2)
        )
    };
    let emu = Emulator::start(&file(
        "- email: ops@example.com\n  members: [user:eli@example.com]",
    ))
    .await;
    let url = emu.url_of("api");
    let dana = emu.user_token("dana@example.com", Some(&url));
    assert_eq!(call(&emu, "api", &dana).await, 403);
    let decision = last_refusal(&emu).await;
    explain_ranks_the_same(&emu, "api", &dana, &decision).await;
    let first = &fixes(&decision)[0];
    assert_eq!(first["kind"], "roster", "{decision:#}");
    let text = first["text"].as_str().unwrap();
    assert!(
        text.contains("user:dana@example.com")
            && text.contains("members now: user:eli@example.com"),
        "{text}"
    );
    apply(&emu, &file(first["yaml"].as_str().unwrap())).await;
    assert_eq!(call(&emu, "api", &dana).await, 200);
    let eli = emu.user_token("eli@example.com", Some(&url));
    assert_eq!(call(&emu, "api", &eli).await, 200);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_fixed_by_fetching_a_new_one() {
    let emu = Emulator::start(&format!(
        "{PROJECT}service_accounts: [{{email: ci{SA}}}]\nservices:\n  - name: api\n    upstream: builtin:echo\n    listen: 127.0.0.1:0\n    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:ci{SA}]}}]}}\n"
    ))
    .await;
    let url = emu.url_of("api");
    let account = emu.config.service_account(&sa("ci")).unwrap();
    let hours_ago = frontdoor::clock::Clock::now(&frontdoor::clock::SystemClock) - 7200;
    let stale = corpus::signed(
        &emu,
        Value::Object(frontdoor::tokens::service_account_claims(
            &emu.config.issuer,
            account,
            &url,
            hours_ago,
        )),
    );
    assert_eq!(call(&emu, "api", &stale).await, 401);
    let decision = last_refusal(&emu).await;
    assert_eq!(decision["code"], "token_expired");
    explain_ranks_the_same(&emu, "api", &stale, &decision).await;
    let first = &fixes(&decision)[0];
    assert!(
        first["kind"] == "caller"
            && first["text"]
                .as_str()
                .unwrap()
                .contains("fetch a new token"),
        "{decision:#}"
    );
    assert_eq!(call(&emu, "api", &emu.sa_token(&sa("ci"), &url)).await, 200);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mistyped_service_url_is_told_the_service_it_meant() {
    let emu = Emulator::start(&format!(
        "{PROJECT}service_accounts: [{{email: ci{SA}}}]\nservices:\n  - name: api\n    upstream: builtin:echo\n    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:ci{SA}]}}]}}\n"
    ))
    .await;
    let url = emu.url_of("api");
    let token = emu.sa_token(&sa("ci"), &url);
    let typo = url
        .trim_start_matches("https://")
        .replacen("api-", "apj-", 1);
    let (status, _, _) = get_with(
        &emu.frontdoor("/"),
        &[
            ("host", &typo),
            ("authorization", &format!("Bearer {token}")),
        ],
    )
    .await;
    assert_eq!(status, 404);
    let decision = last_refusal(&emu).await;
    assert_eq!(decision["code"], "unknown_host", "{decision:#}");
    let first = &fixes(&decision)[0];
    let text = first["text"].as_str().unwrap();
    assert!(text.contains(&format!("did you mean {url}?")), "{text}");
    let (status, _, _) = get_with(
        &emu.frontdoor("/"),
        &[
            ("host", url.trim_start_matches("https://")),
            ("authorization", &format!("Bearer {token}")),
        ],
    )
    .await;
    assert_eq!(status, 200);
    emu.stop().await;
}

/// Token Creator missing: the narrowest role, on the account alone, merged into the
/// account's own policy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_token_creator_is_granted_on_the_account_alone() {
    let file = |policy: &str| {
        format!(
            "{PROJECT}service_accounts:\n  - email: login{SA}\n{}  - email: cart{SA}\n  - email: ci{SA}\nservices: [{{name: api, upstream: builtin:echo}}]\n",
            indent(policy, 4)
        )
    };
    let emu = Emulator::start(&file(&format!(
        "iam_policy: {{bindings: [{{role: roles/iam.serviceAccountTokenCreator, members: [serviceAccount:ci{SA}]}}]}}"
    )))
    .await;
    let mint_as = |caller: &str| {
        bounded_output(
            frontdoor()
                .args([
                    "token",
                    "--impersonate-service-account",
                    &sa("login"),
                    "--as",
                ])
                .arg(format!("serviceAccount:{caller}"))
                .arg("--config")
                .arg(emu.config_file()),
        )
    };
    assert!(!mint_as(&sa("cart")).status.success());
    let decisions = emu.decisions().await;
    let decision = decisions
        .iter()
        .rev()
        .find(|d| d["surface"] == "iamcredentials")
        .unwrap()
        .clone();
    assert_eq!(decision["code"], "permission_denied", "{decision:#}");
    let first = &fixes(&decision)[0];
    assert_eq!(first["kind"], "policy", "{decision:#}");
    let yaml = first["yaml"].as_str().unwrap();
    assert!(
        yaml.contains("roles/iam.serviceAccountOpenIdTokenCreator")
            && yaml.contains(&format!("serviceAccount:ci{SA}")),
        "{yaml}"
    );
    // explain asks the same without a call, and ranks the same fix first.
    let explained = emu.cli_denied(&[
        "explain",
        "--principal",
        &format!("serviceAccount:{}", sa("cart")),
        "--permission",
        "iam.serviceAccounts.getOpenIdToken",
        "--resource",
        &format!("serviceAccounts/{}", sa("login")),
    ]);
    assert!(
        explained.contains("fixes, least privilege first:")
            && explained.contains("1. (policy) grant")
            && explained.contains("roles/iam.serviceAccountOpenIdTokenCreator"),
        "{explained}"
    );
    apply(&emu, &file(yaml)).await;
    assert!(mint_as(&sa("cart")).status.success());
    assert!(mint_as(&sa("ci")).status.success());
    emu.stop().await;
}

/// An internal service called from outside: the fix is to call from inside (through a
/// service's own egress, as `frontdoor exec` gives it), not to open the ingress, which is
/// offered last, as widening.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs curl through frontdoor exec"]
async fn an_internal_service_is_called_from_inside_before_its_ingress_is_opened() {
    let emu = Emulator::start(&format!(
        "{PROJECT}service_accounts: [{{email: ci{SA}}}]\nservices:\n  - name: api\n    upstream: builtin:echo\n    listen: 127.0.0.1:0\n    ingress: internal\n    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:ci{SA}]}}]}}\n  - name: web\n    upstream: builtin:echo\n    service_account: ci{SA}\n"
    ))
    .await;
    let url = emu.url_of("api");
    let token = emu.sa_token(&sa("ci"), &url);
    assert_eq!(call(&emu, "api", &token).await, 404);
    let decision = last_refusal(&emu).await;
    assert_eq!(decision["code"], "ingress_internal_only", "{decision:#}");
    let ranked = fixes(&decision);
    assert_eq!(ranked[0]["kind"], "caller", "{decision:#}");
    assert!(
        ranked[0]["text"]
            .as_str()
            .unwrap()
            .contains("frontdoor exec")
    );
    assert_eq!(ranked.last().unwrap()["widens"], true);
    // From inside: as web, through its egress (`frontdoor exec`, as the fix says).
    let code = succeed(
        frontdoor()
            .args(["exec", "web", "--config"])
            .arg(emu.config_file())
            .args([
                "--",
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
            ])
            .arg(format!("Authorization: Bearer {token}"))
            .arg(format!("{url}/")),
    );
    assert_eq!(code, "200");
    emu.stop().await;
}

/// A setting kept elsewhere than under the service in `services.yaml` is changed where it
/// lives: a policy the Admin API set goes in after `frontdoor fold` (before it, the same
/// lines change nothing: the layer wins), and an ingress a Knative file gives goes in that
/// file, as its annotation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fix_for_a_setting_kept_elsewhere_says_where_it_lives() {
    let file = |api: &str| {
        format!(
            "{PROJECT}service_accounts: [{{email: ci{SA}}}, {{email: cart{SA}}}, {{email: runner{SA}}}, {{email: deployer{SA}}}]\niam_policy: {{bindings: [{{role: roles/run.admin, members: [serviceAccount:deployer{SA}]}}]}}\nservices:\n  - name: tools\n    service_account: deployer{SA}\n    upstream: builtin:echo\n    listen: 127.0.0.1:0\n{}",
            indent(api, 2)
        )
    };
    let plain = |policy: &str| {
        format!(
            "- name: api\n  upstream: builtin:echo\n  listen: 127.0.0.1:0\n{}",
            indent(policy, 2)
        )
    };
    let emu = Emulator::start(&file(&plain(&format!(
        "iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:ci{SA}]}}]}}"
    ))))
    .await;
    // The deployer binds runner through the Admin API: the layer now holds api's policy.
    let token = emu.access_token("tools").await;
    let policy = "/v1/projects/demo-project/locations/us-central1/services/api";
    let (status, body) = google_json(
        &emu,
        Some(&token),
        "POST",
        &format!("{policy}:setIamPolicy"),
        Some(
            json!({"policy": {"bindings": [{"role": "roles/run.invoker", "members": [
            format!("serviceAccount:ci{SA}"), format!("serviceAccount:runner{SA}")]}]}}),
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let url = emu.url_of("api");
    let cart = || emu.sa_token(&sa("cart"), &url);
    assert_eq!(call(&emu, "api", &cart()).await, 403);
    let decision = last_refusal(&emu).await;
    let grant = grant_of(&decision);
    let place = grant["place"].as_str().unwrap();
    assert!(place.starts_with("after `frontdoor fold`"), "{grant:#}");
    let yaml = grant["yaml"].as_str().unwrap();
    assert!(
        yaml.contains(&format!("serviceAccount:runner{SA}")),
        "{yaml}"
    );
    // Before the fold, the lines are in the file and change nothing (the file is read,
    // and the configuration it resolves to is the one in force).
    let read = emu.status().await["config_sha256"].clone();
    emu.rewrite_config(&file(&plain(yaml)));
    let now = emu
        .wait_status("the edit to be read", |s| s["config_sha256"] != read)
        .await;
    assert_eq!(now["last_reload"]["ok"], true, "{now:#}");
    assert_eq!(call(&emu, "api", &cart()).await, 403);
    // Folded, then edited as the fix says: in.
    let status = emu.status().await;
    let (before, revision) = (
        status["generation"].clone(),
        status["services"][1]["revision"].clone(),
    );
    let folded = emu.cli(&["fold"]);
    assert!(folded.contains("api"), "{folded}");
    // Nothing in force changed but where the policy is kept: a generation of its own.
    let status = emu
        .wait_status("the fold to be applied", |s| {
            s["changes"].as_array().is_some_and(Vec::is_empty) && s["generation"] != before
        })
        .await;
    // No revision either: the settings are the same.
    assert_eq!(status["services"][1]["revision"], revision, "{status:#}");
    // The file holds the policy now, and the fix says so.
    assert_eq!(call(&emu, "api", &cart()).await, 403);
    let decision = last_refusal(&emu).await;
    let grant = grant_of(&decision);
    assert!(
        grant["place"]
            .as_str()
            .unwrap()
            .starts_with("under service `api`, in place of its policy block"),
        "{grant:#}"
    );
    assert_eq!(grant["yaml"].as_str(), Some(yaml));
    apply(&emu, &file(&plain(yaml))).await;
    for who in ["cart", "ci", "runner"] {
        assert_eq!(
            call(&emu, "api", &emu.sa_token(&sa(who), &url)).await,
            200,
            "{who}"
        );
    }

    // api described by a Knative file that makes it internal: the ingress fix (widening,
    // last) is that file's annotation, and applied there it lets the call in.
    let knative = |ingress: &str| {
        format!(
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: api\n  annotations:\n    {ingress}\nspec:\n  template:\n    spec:\n      serviceAccountName: ci{SA}\n"
        )
    };
    let export = emu.dir.path().join("api.knative.yaml");
    std::fs::write(&export, knative("run.googleapis.com/ingress: internal")).unwrap();
    apply(
        &emu,
        &file(&format!(
            "- knative: api.knative.yaml\n  upstream: builtin:echo\n  listen: 127.0.0.1:0\n  {}",
            yaml.replace('\n', "\n  ")
        )),
    )
    .await;
    assert_eq!(call(&emu, "api", &cart()).await, 404);
    let decision = last_refusal(&emu).await;
    assert_eq!(decision["code"], "ingress_internal_only", "{decision:#}");
    let open = fixes(&decision).pop().unwrap();
    assert_eq!(open["file"], "api.knative.yaml", "{open:#}");
    let annotation = open["yaml"]
        .as_str()
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .trim();
    assert_eq!(annotation, "run.googleapis.com/ingress: all");
    let before = emu.status().await["generation"].clone();
    std::fs::write(&export, knative(annotation)).unwrap();
    let now = emu
        .wait_status("the export's edit", |s| s["generation"] != before)
        .await;
    assert_eq!(now["last_reload"]["ok"], true, "{now:#}");
    assert_eq!(call(&emu, "api", &cart()).await, 200);
    emu.stop().await;
}
