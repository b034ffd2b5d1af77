//! The metadata server: every rule of SPEC §5, and Google's own client libraries (Python
//! google-auth, Node google-auth-library, the documented curl recipe) getting each
//! service's identity from it with nothing changed but environment variables.

use crate::common;

use std::process::Command;

use common::*;
use frontdoor::clock::FixedClock;
use reqwest::StatusCode;
use serde_json::Value;

struct Got {
    status: StatusCode,
    headers: reqwest::header::HeaderMap,
    body: String,
}

/// A metadata server: a running listener's address, or its `Router` alone.
enum At {
    Host(String),
    App(axum::Router),
}

async fn md(at: impl Into<At>, path: &str, headers: &[(&str, &str)]) -> Got {
    let (status, headers, body) = match at.into() {
        At::Host(host) => {
            let mut req = reqwest::Client::new().get(format!("http://{host}{path}"));
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            let r = req.send().await.unwrap();
            let (status, headers) = (r.status(), r.headers().clone());
            (status, headers, r.text().await.unwrap())
        }
        At::App(app) => {
            let mut req = axum::http::Request::get(path);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            oneshot(&app, req.body(axum::body::Body::empty()).unwrap()).await
        }
    };
    // Every answer, whatever it is, carries the flavor and a content type.
    assert_eq!(
        headers.get("metadata-flavor").map(|v| v.to_str().unwrap()),
        Some("Google"),
        "{path}"
    );
    assert!(headers.contains_key("content-type"), "{path}");
    Got {
        status,
        headers,
        body,
    }
}

impl From<&str> for At {
    fn from(host: &str) -> At {
        At::Host(host.to_owned())
    }
}

impl From<&String> for At {
    fn from(host: &String) -> At {
        At::Host(host.clone())
    }
}

impl From<&axum::Router> for At {
    fn from(app: &axum::Router) -> At {
        At::App(app.clone())
    }
}

const FLAVOR: (&str, &str) = ("metadata-flavor", "Google");
const V1: &str = "/computeMetadata/v1";

#[tokio::test]
async fn the_metadata_rules() {
    // Router-level: user-profiles' metadata server alone, nothing listening.
    let generation = generation(&three_services());
    let app = frontdoor::metadata::app(generation.live.clone(), Some("user-profiles".into()));
    let h = &app;

    // Pings: `/` needs no header; `instance` answers 200 with the flavor header.
    let g = md(h, "/", &[]).await;
    assert_eq!(g.status, 200);
    for p in ["/instance", "/instance/"] {
        assert_eq!(
            md(h, &format!("{V1}{p}"), &[FLAVOR]).await.status,
            200,
            "{p}"
        );
    }

    // The header is required, and a proxied request is refused.
    let g = md(h, &format!("{V1}/project/project-id"), &[]).await;
    assert_eq!(
        (g.status, g.body.as_str()),
        (
            StatusCode::FORBIDDEN,
            "Missing Metadata-Flavor:Google header."
        )
    );
    let g = md(
        h,
        &format!("{V1}/project/project-id"),
        &[("metadata-flavor", "google-ish")],
    )
    .await;
    assert_eq!(g.status, 403);
    let g = md(
        h,
        &format!("{V1}/project/project-id"),
        &[FLAVOR, ("x-forwarded-for", "10.0.0.1")],
    )
    .await;
    assert_eq!(g.status, 403);
    assert!(g.body.contains("X-Forwarded-For"));
    // The legacy header Google's v1 server still accepts.
    let g = md(
        h,
        &format!("{V1}/project/project-id"),
        &[("x-google-metadata-request", "True")],
    )
    .await;
    assert_eq!(
        (g.status, g.body.as_str()),
        (StatusCode::OK, "demo-project")
    );

    let text_values = [
        ("/project/project-id", "demo-project"),
        ("/project/numeric-project-id", "123456789012"),
        (
            "/instance/region",
            "projects/123456789012/regions/us-central1",
        ),
        (
            "/instance/zone",
            "projects/123456789012/zones/us-central1-1",
        ),
        ("/universe/universe-domain", "googleapis.com"),
        (
            "/instance/service-accounts/default/email",
            "profiles@demo-project.iam.gserviceaccount.com",
        ),
        (
            "/instance/service-accounts/profiles@demo-project.iam.gserviceaccount.com/email",
            "profiles@demo-project.iam.gserviceaccount.com",
        ),
        ("/instance/service-accounts/default/aliases", "default"),
        (
            "/instance/service-accounts/default/scopes",
            "https://www.googleapis.com/auth/cloud-platform\n",
        ),
        (
            "/instance/service-accounts/",
            "default/\nprofiles@demo-project.iam.gserviceaccount.com/\n",
        ),
    ];
    for (path, want) in text_values {
        let g = md(h, &format!("{V1}{path}"), &[FLAVOR]).await;
        assert_eq!(
            (g.status, g.body.as_str()),
            (StatusCode::OK, want),
            "{path}"
        );
        assert_eq!(g.headers["content-type"], "application/text", "{path}");
    }
    let id = md(h, &format!("{V1}/instance/id"), &[FLAVOR]).await.body;
    assert!(
        id.len() >= 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );

    let g = md(
        h,
        &format!("{V1}/instance/service-accounts/?recursive=true"),
        &[FLAVOR],
    )
    .await;
    assert_eq!(g.headers["content-type"], "application/json");
    let all: Value = serde_json::from_str(&g.body).unwrap();
    assert_eq!(all["default"]["email"], sa("profiles"));
    assert_eq!(
        all[sa("profiles")]["aliases"],
        serde_json::json!(["default"])
    );
    for path in [
        "/instance/service-accounts/default/?recursive=true",
        "/instance/service-accounts/default?recursive=true",
    ] {
        let one: Value =
            serde_json::from_str(&md(h, &format!("{V1}{path}"), &[FLAVOR]).await.body).unwrap();
        assert_eq!(
            one,
            serde_json::json!({"aliases": ["default"], "email": sa("profiles"), "scopes": ["https://www.googleapis.com/auth/cloud-platform"]}),
            "{path}"
        );
    }

    for path in [
        "/instance/nothing",
        "/instance/service-accounts/login@demo-project.iam.gserviceaccount.com/token",
        "/v2/instance",
        "/computeMetadata/v1beta1/instance",
    ] {
        let full = if path.starts_with("/computeMetadata") {
            path.to_owned()
        } else {
            format!("{V1}{path}")
        };
        let g = md(h, &full, &[FLAVOR]).await;
        assert_eq!(g.status, 404, "{path}");
    }
}

#[tokio::test]
async fn access_tokens_are_cached_bound_and_scoped() {
    let emu = Emulator::start(&three_services()).await;
    let h = emu.metadata_of("login");
    let token = |q: &'static str| {
        let h = h.clone();
        async move {
            let g = md(
                &h,
                &format!("{V1}/instance/service-accounts/default/token{q}"),
                &[FLAVOR],
            )
            .await;
            assert_eq!(g.status, 200);
            assert_eq!(g.headers["content-type"], "application/json");
            serde_json::from_str::<Value>(&g.body).unwrap()
        }
    };
    let a = token("").await;
    assert_eq!(a["token_type"], "Bearer");
    assert!(a["access_token"].as_str().unwrap().starts_with("ya29."));
    assert!((3500..=3600).contains(&a["expires_in"].as_i64().unwrap()));
    assert_eq!(
        token("").await["access_token"],
        a["access_token"],
        "identical requests share the cached token"
    );
    let scoped =
        token("?scopes=https://www.googleapis.com/auth/a%2Chttps://www.googleapis.com/auth/b")
            .await;
    assert_ne!(scoped["access_token"], a["access_token"]);
    let grant = emu
        .state
        .access_tokens()
        .lookup(scoped["access_token"].as_str().unwrap(), emu.state.now())
        .unwrap();
    assert_eq!(
        grant.principal,
        frontdoor::iam::Principal::ServiceAccount(sa("login"))
    );
    assert_eq!(
        grant.scopes,
        [
            "https://www.googleapis.com/auth/a",
            "https://www.googleapis.com/auth/b"
        ]
    );
    emu.stop().await;
}

#[tokio::test]
async fn identity_tokens_follow_the_rules_and_the_cache() {
    let clock = FixedClock::new(frontdoor::clock::Clock::now(&frontdoor::clock::SystemClock));
    let emu = Emulator::start_with_clock(&three_services(), clock.clone()).await;
    let h = emu.metadata_of("login");
    let aud = emu.url_of("user-profiles");
    let ident = |query: String| {
        let h = h.clone();
        async move {
            md(
                &h,
                &format!("{V1}/instance/service-accounts/default/identity{query}"),
                &[FLAVOR],
            )
            .await
        }
    };

    for (query, why) in [
        ("".to_owned(), "non-empty audience"),
        ("?audience=".to_owned(), "non-empty audience"),
        (
            format!("?audience={aud}&format=compact"),
            "format must be standard or full",
        ),
        (
            format!("?audience={aud}&licenses=maybe"),
            "licenses must be TRUE or FALSE",
        ),
    ] {
        let g = ident(query.clone()).await;
        assert_eq!(g.status, 400, "{query}");
        assert!(g.body.contains(why), "{query}: {}", g.body);
    }

    // Raw JWT, no newline; an unencoded audience and any parameter order work.
    let g = ident(format!("?audience={aud}")).await;
    assert_eq!(g.status, 200);
    assert!(!g.body.ends_with('\n') && g.body.split('.').count() == 3);
    let standard = frontdoor::tokens::verify(
        emu.state.keys(),
        &g.body,
        &emu.config.issuer,
        emu.state.now(),
    )
    .unwrap();
    assert_eq!(standard.aud, aud);
    assert_eq!(standard.email(), Some(sa("login").as_str()));
    assert!(standard.claims.get("google").is_none());

    let full = ident(format!(
        "?format=full&licenses=TRUE&audience={}",
        urlencode(&aud)
    ))
    .await;
    let full = frontdoor::tokens::verify(
        emu.state.keys(),
        &full.body,
        &emu.config.issuer,
        emu.state.now(),
    )
    .unwrap();
    assert_eq!(full.aud, aud);
    let engine = &full.claims["google"]["compute_engine"];
    assert_eq!(engine["project_id"], "demo-project");
    assert_eq!(engine["project_number"], 123456789012u64);
    assert_eq!(engine["zone"], "us-central1-1");
    assert_eq!(engine["instance_name"], "login");
    assert_eq!(engine["license_id"], serde_json::json!([]));

    // Cached until five minutes before expiry; distinct audiences, distinct tokens.
    let first = ident(format!("?audience={aud}")).await.body;
    assert_eq!(first, g.body);
    assert_ne!(
        ident("?audience=https://other.example.com".into())
            .await
            .body,
        first
    );
    clock.advance(3600 - 300 - 1);
    assert_eq!(ident(format!("?audience={aud}")).await.body, first);
    clock.advance(1);
    let renewed = ident(format!("?audience={aud}")).await.body;
    assert_ne!(renewed, first);
    emu.stop().await;
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

#[tokio::test]
async fn each_listener_serves_its_own_identity() {
    let yaml = format!("metadata_service_account: search{SA}\n{}", three_services());
    let emu = Emulator::start(&yaml).await;
    for (host, want) in [
        (emu.metadata_of("login"), sa("login")),
        (emu.metadata_of("user-profiles"), sa("profiles")),
        (emu.metadata_of("search"), sa("search")),
        (emu.addresses.metadata.to_string(), sa("search")),
    ] {
        let g = md(
            &host,
            &format!("{V1}/instance/service-accounts/default/email"),
            &[FLAVOR],
        )
        .await;
        assert_eq!(g.body, want, "{host}");
    }
    // search's listener and the default one share search's account, yet a `format=full`
    // token names the instance that asked: the cache is keyed by it (issue 10).
    let mut names = Vec::new();
    for host in [
        emu.metadata_of("search"),
        emu.addresses.metadata.to_string(),
    ] {
        let g = md(
            &host,
            &format!("{V1}/instance/service-accounts/default/identity?audience=x&format=full"),
            &[FLAVOR],
        )
        .await;
        let claims = frontdoor::tokens::peek_claims(&g.body).unwrap();
        names.push(claims["google"]["compute_engine"]["instance_name"].clone());
    }
    assert_eq!(names, ["search", "localhost"]);
    emu.stop().await;
    // Without the setting, the default listener is the first account declared.
    let emu = Emulator::start(&three_services()).await;
    let g = md(
        &emu.addresses.metadata.to_string(),
        &format!("{V1}/instance/service-accounts/default/email"),
        &[FLAVOR],
    )
    .await;
    assert_eq!(g.body, sa("login"));
    emu.stop().await;
}

/// Python's google-auth, as a `login` container would run it, and as `user-profiles` would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs Python's google-auth"]
async fn python_google_auth_gets_each_services_identity() {
    let emu = Emulator::start(&three_services()).await;
    let home = tempfile::tempdir().unwrap();
    let certs = emu.google("/oauth2/v1/certs");
    let mut subs = Vec::new();
    for (service, account, target) in [
        ("login", "login", "user-profiles"),
        ("user-profiles", "profiles", "search"),
    ] {
        let env = cloud_run_env(&emu.metadata_of(service), home.path());
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let aud = emu.url_of(target);
        let call = emu.service(target, "/from-python");
        let out: Value = serde_json::from_str(&run_python(
            "metadata_clients.py",
            &[&aud, &certs, &call],
            &env,
        ))
        .unwrap();
        for key in ["fetch_id_token", "verified", "id_token_credentials"] {
            assert_eq!(out[key]["email"], sa(account), "{service} {key}");
            assert_eq!(out[key]["aud"], aud, "{service} {key}");
        }
        assert!(
            out["access_token"]["token"]
                .as_str()
                .unwrap()
                .starts_with("ya29.")
        );
        assert_eq!(out["access_token"]["project"], "demo-project");
        assert_eq!(out["access_token"]["email"], sa(account));
        subs.push(out["verified"]["sub"].as_str().unwrap().to_owned());
        // login may call user-profiles; user-profiles may not call search.
        let want = if service == "login" { 200 } else { 403 };
        assert_eq!(
            out["call"]["status"], want,
            "{service} → {target}: {}",
            out["call"]
        );
    }
    assert_ne!(subs[0], subs[1], "each service has its own identity");

    // login's token, minted for search, is refused there by IAM.
    let env = cloud_run_env(&emu.metadata_of("login"), home.path());
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let out: Value = serde_json::from_str(&run_python(
        "metadata_clients.py",
        &[&emu.url_of("search"), &certs, &emu.service("search", "/")],
        &env,
    ))
    .unwrap();
    assert_eq!(out["call"]["status"], 403);
    emu.stop().await;
}

/// Node's google-auth-library: getIdTokenClient through GCE_METADATA_HOST, a request to the
/// front door through that client, and verifyIdToken against frontdoor's certificates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs Node's google-auth-library"]
async fn node_google_auth_library_gets_each_services_identity() {
    let emu = Emulator::start(&three_services()).await;
    let home = tempfile::tempdir().unwrap();
    let certs = emu.google("/oauth2/v1/certs");
    let mut subs = Vec::new();
    for (service, account, target, want) in [
        ("login", "login", "user-profiles", 200),
        ("user-profiles", "profiles", "search", 403),
    ] {
        let mut env = cloud_run_env(&emu.metadata_of(service), home.path());
        // Node reads GCE_METADATA_HOST alone; leave out the IP to prove it.
        env.retain(|(k, _)| k != "GCE_METADATA_IP");
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let out: Value = serde_json::from_str(&run_node(
            "metadata_clients.js",
            &[
                &emu.url_of(target),
                &certs,
                &emu.service(target, "/from-node"),
            ],
            &env,
        ))
        .unwrap();
        assert_eq!(out["verified"]["email"], sa(account), "{service}");
        assert_eq!(out["verified"]["aud"], emu.url_of(target));
        assert_eq!(
            out["call"]["status"], want,
            "{service} → {target}: {}",
            out["call"]
        );
        if want == 200 {
            assert_eq!(
                out["call"]["body"]["claims"]["authorization"]["email"],
                sa(account)
            );
        }
        subs.push(out["verified"]["sub"].as_str().unwrap().to_owned());
    }
    assert_ne!(subs[0], subs[1]);
    emu.stop().await;
}

/// The seed's shell recipe, with curl, against the address `frontdoor env` prints.
#[test]
#[ignore = "left to scripts/test: runs curl"]
fn the_documented_curl_recipe_and_frontdoor_env() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("services.yaml");
    std::fs::write(&file, format!("{EPHEMERAL}{}", three_services())).unwrap();
    state_dir_with_test_keys(&dir.path().join("state"));
    let mut server = frontdoor()
        .arg("serve")
        .arg("--config")
        .arg(&file)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let addresses = dir.path().join("state/addresses.json");
    wait_for_file(&addresses, std::time::Duration::from_secs(20));

    let exports = succeed(
        frontdoor()
            .args(["env", "user-profiles"])
            .arg("--config")
            .arg(&file)
            .arg("--state-dir")
            .arg(dir.path().join("state")),
    );
    let host = exports
        .lines()
        .find_map(|l| l.strip_prefix("export GCE_METADATA_HOST="))
        .unwrap()
        .to_owned();
    assert!(
        exports.contains(&format!("export GCE_METADATA_IP={host}\n")),
        "{exports}"
    );
    assert!(
        exports.contains("export GOOGLE_CLOUD_PROJECT=demo-project\n"),
        "{exports}"
    );
    assert!(
        exports.contains("export K_SERVICE=user-profiles\n"),
        "{exports}"
    );
    // Cloud Run's container contract, which Node's library reads to see Cloud Run.
    assert!(
        exports.contains("export K_REVISION=user-profiles-00001-")
            && exports.contains("export K_CONFIGURATION=user-profiles\n"),
        "{exports}"
    );

    let recipe = r#"curl -s -f -H "Metadata-Flavor: Google" "http://$GCE_METADATA_HOST/computeMetadata/v1/instance/service-accounts/default/identity?audience=https://search-123456789012.us-central1.run.app""#;
    let run = |script: &str| {
        Command::new("bash")
            .arg("-c")
            .arg(format!("{exports}{script}"))
            .output()
            .unwrap()
    };
    let got = run(recipe);
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let claims = frontdoor::tokens::peek_claims(std::str::from_utf8(&got.stdout).unwrap()).unwrap();
    assert_eq!(claims["email"], sa("profiles"));
    // Without the header, refused.
    let refused = run(&recipe.replace(r#"-H "Metadata-Flavor: Google" "#, ""));
    assert!(!refused.status.success());

    let unknown = frontdoor()
        .args(["env", "nope"])
        .arg("--config")
        .arg(&file)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no service `nope`"));
    let _ = Command::new("kill").arg(server.id().to_string()).status();
    assert!(server.wait().unwrap().success());
}

/// Inputs are bounded in bytes (issue 10): an audience or scope list past the cap is a
/// 400 naming the cap, never a token to cache.
#[tokio::test]
async fn oversized_audiences_and_scopes_are_refused() {
    let emu = Emulator::start(&three_services()).await;
    let host = emu.metadata_of("login");
    let long = "a".repeat(frontdoor::tokens::MAX_PARAMETER_BYTES + 1);
    for path in [
        format!("{V1}/instance/service-accounts/default/identity?audience={long}"),
        format!("{V1}/instance/service-accounts/default/token?scopes={long}"),
    ] {
        let g = md(&host, &path, &[FLAVOR]).await;
        assert_eq!(g.status, 400, "{}", &path[..60]);
        assert!(
            g.body.contains("more than the 8192 frontdoor accepts"),
            "{}",
            g.body
        );
    }
    // At the cap, it is served.
    let at_cap = "a".repeat(frontdoor::tokens::MAX_PARAMETER_BYTES);
    let g = md(
        &host,
        &format!("{V1}/instance/service-accounts/default/identity?audience={at_cap}"),
        &[FLAVOR],
    )
    .await;
    assert_eq!(g.status, 200);
    emu.stop().await;
}
