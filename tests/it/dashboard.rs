//! The dashboard (issue 15), end to end in a real browser: Debian's chromium driven by
//! playwright-core (`tests/browser/dashboard.mjs`, both installed by
//! `scripts/setup-test-deps`). The page loads with nothing leaving loopback; a denied call
//! shows within a second with its failed check and code; hostile claims and a 10,000-byte
//! reason are shown as text; the inspector's verdicts are the front door's; a live edit
//! draws its edge, a refused reload is shown, and audit mode raises its banner. The
//! screenshot in the README is the one this test takes.

use crate::common;

use std::path::PathBuf;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

/// The seed example's services, with `login` holding no binding on `search`, and a
/// Pub/Sub push subscription that delivers to `user-profiles` as login's account.
fn config(extra_search_policy: &str, enforcement: &str) -> String {
    let profiles = "https://user-profiles-123456789012.us-central1.run.app";
    let pubsub = format!(
        "pubsub:
  backoff_divisor: 1000
  topics:
    - name: signups
      subscriptions:
        - name: signups-to-profiles
          push_endpoint: {profiles}/events
          push_service_account: login{SA}
          push_audience: {profiles}
"
    );
    three_services().replace(
        "  - name: search\n    service_account: search",
        &format!("  - name: search\n{extra_search_policy}    service_account: search"),
    ) + &pubsub
        + enforcement
}

/// Publishes one message to `signups` (at the emulator host) and waits for its push to
/// be decided.
async fn push_one(emu: &Emulator) -> Value {
    let client = reqwest::Client::new();
    let answer = client
        .post(emu.google("/v1/projects/demo-project/topics/signups:publish"))
        .json(&json!({"messages": [{"data": "eyJ1c2VyIjogImFkYSJ9"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let pushed = emu.decisions().await.into_iter().find(|d| {
            d["via"]
                .as_str()
                .is_some_and(|v| v.contains("subscription signups-to-profiles"))
        });
        if let Some(decision) = pushed {
            return decision;
        }
        assert!(std::time::Instant::now() < deadline, "no push decided");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// A token from the emulator's key for login's account with `claims` changed.
fn login_token_with(emu: &Emulator, audience: &str, change: impl Fn(&mut Value)) -> String {
    let login = emu.config.service_account(&sa("login")).unwrap();
    let mut claims = Value::Object(frontdoor::tokens::service_account_claims(
        &emu.config.issuer,
        login,
        audience,
        emu.state.now(),
    ));
    change(&mut claims);
    let Value::Object(claims) = claims else {
        unreachable!()
    };
    frontdoor::tokens::mint(emu.state.keys(), &claims)
}

fn browser_script() -> PathBuf {
    let modules = repo().join("tests/browser/node_modules/playwright-core");
    assert!(
        modules.exists(),
        "{} is missing: run scripts/setup-test-deps (scripts/test does)",
        modules.display()
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Debian's chromium is missing: run scripts/setup-test-deps (scripts/test does)"
    );
    repo().join("tests/browser/dashboard.mjs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs chromium"]
async fn the_dashboard_shows_why_in_a_real_browser() {
    let script = browser_script();
    let emu = Emulator::start(&config("", "")).await;
    let search = emu.url_of("search");
    let profiles = emu.url_of("user-profiles");
    // An asynchronous path, as the README's picture shows it: a Pub/Sub push, let in.
    let pushed = push_one(&emu).await;
    assert_eq!(pushed["allowed"], true, "{pushed:#}");

    let denied = emu.sa_token(&sa("login"), &search);
    let hostile_email = "<img src=x onerror=\"window.__pwned=1\">@evil.iam.gserviceaccount.com";
    let hostile_claims = login_token_with(&emu, &search, |c| {
        c["email"] = json!(hostile_email);
        c["note"] = json!("</pre><script>window.__pwned=1</script>\u{1b}[31m");
    });
    let long_audience = format!("https://{}.example.com", "a".repeat(10_000));
    let long_reason = login_token_with(&emu, &long_audience, |_| {});

    let corpus = corpus::hostile(&emu, &profiles, &search, &sa("login"));
    let mut inspector: Vec<(String, &str, String)> = corpus
        .cases
        .iter()
        .map(|(name, token)| ((*name).to_owned(), "user-profiles", token.clone()))
        .collect();
    inspector.push(("valid".into(), "user-profiles", corpus.valid.clone()));
    inspector.push(("no binding".into(), "search", denied.clone()));
    inspector.push((
        "garbage paste".into(),
        "search",
        "hello, is this a token?".into(),
    ));
    inspector.push(("public service".into(), "login", "anything".into()));

    // The front door's own answers, while it enforces (the browser run ends in audit mode).
    let mut answers = Vec::new();
    for (_, service, token) in &inspector {
        answers.push(front_door_verdict(&emu, service, token).await);
    }

    let binding = format!(
        "    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:login{SA}]}}]}}\n"
    );
    // A token minted for a near miss of search's URL: the first fix is the caller's.
    let near_miss = emu.sa_token(
        &sa("login"),
        &emu.url_of("search").replacen("search-", "serch-", 1),
    );
    // search asks IAM Credentials for login's ID token, holding no role on login.
    let search_access = emu.access_token("search").await;
    let cases = json!({
        "dashboard": emu.google("/frontdoor/ui/"),
        "token_creator": {
            "url": emu.google(&format!("/v1/projects/-/serviceAccounts/login{SA}:generateIdToken")),
            "token": search_access,
            "body": {"audience": emu.url_of("search")},
            "subject": format!("IAM Credentials: login{SA}"),
            "code": "permission_denied",
        },
        "denied": {"url": emu.service("search", "/"), "token": denied, "service": "search", "code": "no_invoker_binding"},
        "near_miss": {"url": emu.service("search", "/"), "token": near_miss, "service": "search", "code": "audience_not_accepted"},
        "hostile": [
            {"name": "claims", "url": emu.service("search", "/"), "token": hostile_claims, "service": "search", "code": "no_invoker_binding"},
            {"name": "long reason", "url": emu.service("search", "/"), "token": long_reason, "service": "search", "code": "audience_not_accepted"},
        ],
        "inspector": inspector.iter().map(|(name, service, token)| json!({"name": name, "service": service, "token": token})).collect::<Vec<_>>(),
        "edit": {
            "config": emu.config_file(),
            "yaml": format!("{EPHEMERAL}{}", config(&binding, "")),
            "broken": format!("{EPHEMERAL}{}", config(&binding, "").replace("roles/run.invoker, members: [serviceAccount:login", "roles/run.invokr, members: [serviceAccount:login")),
            "audit": format!("{EPHEMERAL}{}", config(&binding, "enforcement: audit\n")),
            "from": format!("serviceAccount:login{SA}"),
            "to": "service:search",
        },
    });
    let tmp = tempfile::tempdir().unwrap();
    let cases_file = tmp.path().join("cases.json");
    std::fs::write(&cases_file, cases.to_string()).unwrap();
    let out_file = tmp.path().join("out.json");
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");

    let mut node = Command::new("node");
    node.arg(&script)
        .env("FD_CASES", &cases_file)
        .env("FD_OUT", &out_file)
        .env("FD_SCREENSHOT", &screenshot)
        .current_dir(repo().join("tests/browser"));
    let run = tokio::task::spawn_blocking(move || bounded_output(&mut node))
        .await
        .unwrap();
    let out: Value = std::fs::read_to_string(&out_file)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
        .unwrap_or(Value::Null);
    assert!(
        run.status.success(),
        "the browser run failed: {}\n{}\nwhat it saw: {out:#}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );

    // Nothing left loopback, and the page raised no error.
    let requests = out["requests"].as_array().unwrap();
    assert!(requests.len() >= 3, "{requests:?}");
    for url in requests {
        let url = url.as_str().unwrap();
        assert!(
            url.starts_with(&emu.google("/")),
            "the page asked something off its own listener: {url}"
        );
    }
    assert_eq!(out["console_errors"], json!([]), "{out:#}");

    // The seed's refused call, within a second, at IAM, with the binding that fixes it.
    let d = &out["denied"];
    assert_eq!(d["status"], 403, "{d:#}");
    assert!(d["shown_ms"].as_u64().unwrap() <= 1000, "{d:#}");
    assert_eq!(d["failed_steps"], json!(["iam"]), "{d:#}");
    for check in CHECKS_BEFORE_IAM {
        assert!(
            d["passed_steps"]
                .as_array()
                .unwrap()
                .contains(&json!(check)),
            "{check} not passed: {d:#}"
        );
    }
    assert_eq!(d["code"], "no_invoker_binding");
    // The ranked fixes: the grant merged into search's own policy (one `iam_policy:`
    // block, never a second), with the gcloud command that does the same.
    let fix = d["fix"].as_str().unwrap();
    assert!(
        fix.contains("Least privilege first:")
            && fix.contains(&format!(
                "gcloud run services add-iam-policy-binding search --member=serviceAccount:login{SA} --role=roles/run.invoker"
            ))
            && fix.matches("bindings:").count() == 1,
        "{fix}"
    );
    assert!(
        d["claims"]
            .as_str()
            .unwrap()
            .contains(&format!("\"email\": \"login{SA}\"")),
        "{d:#}"
    );

    // The near-miss audience, as the page ranks its fixes: "did you mean" search's own URL
    // first, adding the audience last and labelled as widening access.
    let near = &out["near_miss"];
    assert_eq!(near["kinds"], json!(["caller", "setting"]), "{near:#}");
    assert_eq!(near["widens"], json!([false, true]), "{near:#}");
    assert!(
        near["first"]
            .as_str()
            .unwrap()
            .contains(&format!("did you mean {}?", emu.url_of("search"))),
        "{near:#}"
    );

    // IAM Credentials' refusal is on the page with its ranked fix: the ID-token-only role
    // on login's account alone, and no chain of the front door's checks.
    let creator = &out["token_creator"];
    assert_eq!(creator["status"], 403, "{creator:#}");
    assert_eq!(creator["steps"], 0, "{creator:#}");
    assert_eq!(creator["kinds"], json!(["policy"]), "{creator:#}");
    assert_eq!(creator["widens"], json!([false]), "{creator:#}");
    let first = creator["first"].as_str().unwrap();
    assert!(
        first.contains(&format!(
            "grant serviceAccount:search{SA} roles/iam.serviceAccountOpenIdTokenCreator on login{SA} alone"
        )) && first.contains("gcloud iam service-accounts add-iam-policy-binding"),
        "{creator:#}"
    );

    // Hostile claims and a 10,000-character reason, as text.
    for h in out["hostile"].as_array().unwrap() {
        assert_eq!(h["pwned"], false, "{h:#}");
        assert_eq!(h["injected_elements"], 0, "{h:#}");
    }
    let claims = &out["hostile"][0];
    assert!(
        claims["row_text"].as_str().unwrap().contains(hostile_email),
        "{claims:#}"
    );
    assert!(
        claims["detail_text"]
            .as_str()
            .unwrap()
            .contains("</pre><script>window.__pwned=1</script>"),
        "{claims:#}"
    );
    let long = &out["hostile"][1];
    assert_eq!(long["status"], 401);
    assert!(long["reason_chars"].as_u64().unwrap() > 10_000, "{long:#}");

    // The inspector's verdict is the front door's, token for token.
    let shown = out["inspector"].as_array().unwrap();
    assert_eq!(shown.len(), inspector.len());
    for (((name, _, _), (status, code)), seen) in inspector.iter().zip(answers).zip(shown) {
        let heading = seen["heading"].as_str().unwrap();
        let verdict = if status == 200 { "ALLOW" } else { "DENY" };
        assert!(
            heading.starts_with(&format!("{verdict} {status} ")),
            "{name}: the page said {heading:?}, the front door {status} {code:?}"
        );
        assert_eq!(
            seen["code"].as_str().map(str::to_owned),
            code,
            "{name}: {seen:#}"
        );
        assert_eq!(
            seen["failed_steps"].as_array().unwrap().len(),
            usize::from(status != 200),
            "{name}: {seen:#}"
        );
    }

    // The live edit drew its edge; the refused reload raises the banner over the page, and
    // the graph in force stays drawn.
    let edit = &out["edit"];
    assert_eq!(edit["edge_before"], 0, "{edit:#}");
    assert!(edit["edge_ms"].as_u64().unwrap() < 10_000, "{edit:#}");
    assert!(
        edit["refused_text"]
            .as_str()
            .unwrap()
            .contains("roles/run.invokr"),
        "{edit:#}"
    );
    assert_eq!(edit["edge_after_refusal"], 1, "{edit:#}");

    // Audit mode raises the banner; enforcing, it was hidden.
    assert_eq!(out["audit"]["banner_before"], false);
    assert!(
        out["audit"]["banner_text"]
            .as_str()
            .unwrap()
            .contains("NOTHING IS ENFORCED"),
        "{out:#}"
    );
    assert!(std::fs::metadata(&screenshot).unwrap().len() > 10_000);
    // The README shows a copy of it.
    let kept = std::fs::read(repo().join("docs/dashboard.png")).unwrap();
    assert!(kept.starts_with(b"\x89PNG"), "docs/dashboard.png is no PNG");
    emu.stop().await;
}

/// The data of the last `config` event in `read`.
fn config_data(read: &str) -> Value {
    let at = read
        .rfind("event: config\ndata: ")
        .expect("no config event");
    let data = read[at + "event: config\ndata: ".len()..]
        .lines()
        .next()
        .unwrap();
    serde_json::from_str(data).unwrap()
}

/// Reads the event stream until `done` accepts what was read, or fails after `within`.
async fn read_events_until(
    response: &mut reqwest::Response,
    read: &mut String,
    within: std::time::Duration,
    done: impl Fn(&str) -> bool,
) {
    let deadline = tokio::time::Instant::now() + within;
    while !done(read) {
        let chunk = tokio::time::timeout_at(deadline, response.chunk())
            .await
            .unwrap_or_else(|_| panic!("nothing more within {within:?}; read:\n{read}"))
            .unwrap()
            .expect("the stream ended");
        read.push_str(&String::from_utf8_lossy(&chunk));
    }
}

/// Without a browser: the page's headers and assets, the feed's events (a decision within
/// a second, a reload), and a decision by number, with the bad numbers refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_feed_and_the_page_hold_their_contract() {
    let emu = Emulator::start(&config("", "")).await;
    let page = reqwest::get(emu.google("/frontdoor/ui/")).await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.starts_with("default-src 'none'; script-src 'self'"),
        "{csp}"
    );
    let html = page.text().await.unwrap();
    // Nothing the page loads is off this listener.
    for attr in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attr) {
            let target = &html[i + attr.len()..];
            assert!(
                target.starts_with("/frontdoor/ui/"),
                "{}",
                &target[..40.min(target.len())]
            );
        }
    }
    for asset in ["app.js", "style.css", "icon.svg"] {
        let r = reqwest::get(emu.google(&format!("/frontdoor/ui/{asset}")))
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
    }

    let mut feed = reqwest::get(emu.google("/frontdoor/v1/events"))
        .await
        .unwrap();
    assert_eq!(feed.headers()["content-type"], "text/event-stream");
    let mut read = String::new();
    read_events_until(
        &mut feed,
        &mut read,
        std::time::Duration::from_secs(5),
        |r| r.contains("event: config\n") && r.contains("event: decisions\n"),
    )
    .await;
    let first_config = config_data(&read);
    let token = emu.sa_token(&sa("login"), &emu.url_of("search"));
    let (status, _, _) = get_with(
        &emu.service("search", "/"),
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(status, 403);
    let sent = std::time::Instant::now();
    read.clear();
    read_events_until(
        &mut feed,
        &mut read,
        std::time::Duration::from_secs(1),
        |r| r.contains("\"code\":\"no_invoker_binding\""),
    )
    .await;
    assert!(sent.elapsed() < std::time::Duration::from_secs(1));
    let data = read
        .lines()
        .find(|l| l.starts_with("data: ") && l.contains("no_invoker_binding"))
        .unwrap();
    let event: Value = serde_json::from_str(&data["data: ".len()..]).unwrap();
    let row = &event["decisions"][0];
    assert_eq!(row["service"], "search");
    assert_eq!(row["principal"], format!("serviceAccount:login{SA}"));
    // The row is small: the chain and the token come with the decision by number.
    assert!(
        row.get("steps").is_none() && row.get("token").is_none(),
        "{row}"
    );
    let seq = row["seq"].as_u64().unwrap();
    let whole: Value = reqwest::get(emu.google(&format!("/frontdoor/v1/decisions/{seq}")))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(whole["seq"], seq);
    assert_eq!(
        whole["steps"].as_array().unwrap().last().unwrap()["check"],
        "iam"
    );
    for (path, status) in [("0", 404), ("99999", 404), ("-1", 400), ("x%1b[2J", 400)] {
        let r = reqwest::get(emu.google(&format!("/frontdoor/v1/decisions/{path}")))
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(
            !body["error"].as_str().unwrap().contains('\u{1b}'),
            "{body}"
        );
    }

    // A reload, applied: the config event, with its generation.
    emu.rewrite_config(&config("", "enforcement: audit\n"));
    read.clear();
    read_events_until(
        &mut feed,
        &mut read,
        std::time::Duration::from_secs(10),
        |r| r.contains("\"enforcement\":\"audit\""),
    )
    .await;
    let config = config_data(&read);
    assert_eq!(config["enforcement"], "audit", "{config}");
    assert_eq!(config["generation"], 2, "{config}");
    // The same server: the same boot id as the first config event said.
    assert_eq!(config["boot"], first_config["boot"], "{config}");
    assert_eq!(config["boot"].as_str().unwrap().len(), 32, "{config}");
    // An open feed ends when shutdown begins: it never holds the drain (ten seconds).
    let stopping = std::time::Instant::now();
    emu.stop().await;
    assert!(
        stopping.elapsed() < std::time::Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    // What was sent before the stop may still be in flight (a late decisions event, a
    // keep-alive); after it the stream ends, promptly.
    let ended = tokio::time::timeout(std::time::Duration::from_secs(2), async {
        while let Ok(Some(_)) = feed.chunk().await {}
    })
    .await;
    assert!(ended.is_ok(), "the feed stayed open after the stop");
}
