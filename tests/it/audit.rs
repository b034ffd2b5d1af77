//! Audit mode (`enforcement: audit`, issue 15): every request the front door would refuse
//! passes, recorded as "would deny" with its code and reason, and said loudly; enforcing is
//! the default.

use crate::common;

use common::*;

fn audit_config() -> String {
    format!("{}enforcement: audit\n", three_services())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_mode_lets_refusals_through_and_records_them_as_would_deny() {
    let emu = Emulator::start(&audit_config()).await;
    assert_eq!(emu.status().await["enforcement"], "audit");

    // No token for a private service: enforcement's 403, let through.
    let (status, headers, body) = get_with(&emu.service("search", "/"), &[]).await;
    assert_eq!(status, 200, "{body}");
    let said = headers["x-frontdoor-would-deny"].to_str().unwrap();
    assert!(
        said.starts_with("403 no_credential: no credential"),
        "{said}"
    );
    assert!(headers.get("x-frontdoor-reason").is_none());
    let d = emu.decisions().await.pop().unwrap();
    assert_eq!(d["allowed"], true, "{d}");
    assert_eq!(d["status"], 200);
    assert_eq!(d["would_deny"], 403);
    assert_eq!(d["code"], "no_credential");

    // A token for another service: enforcement's 401, let through, the token untouched.
    let token = emu.sa_token(&sa("login"), &emu.url_of("login"));
    let (status, headers, body) = get_with(
        &emu.service("search", "/"),
        &[("authorization", &bearer(&token))],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let said = headers["x-frontdoor-would-deny"].to_str().unwrap();
    assert!(said.starts_with("401 audience_not_accepted: "), "{said}");
    let echoed: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        echoed["headers"]["authorization"],
        bearer(&token),
        "{echoed}"
    );

    // What enforcement allows is allowed as ever, with nothing to say.
    let (status, headers, _) = get_with(&emu.service("login", "/"), &[]).await;
    assert_eq!(status, 200);
    assert!(headers.get("x-frontdoor-would-deny").is_none());
    let d = emu.decisions().await.pop().unwrap();
    assert!(
        d.get("would_deny").is_none() && d.get("code").is_none(),
        "{d}"
    );

    // And the CLI says AUDIT, never ALLOW, for the ones let through.
    let text = emu.cli(&["decisions"]);
    assert!(
        text.contains("AUDIT 200 GET search /")
            && text.contains("would deny 403: no_credential: no credential"),
        "{text}"
    );
    let status = emu.cli(&["status"]);
    assert!(
        status.contains("AUDIT MODE: nothing is enforced"),
        "{status}"
    );
    emu.stop().await;
}

#[tokio::test]
async fn enforcing_is_the_default() {
    let emu = Emulator::start(&three_services()).await;
    assert_eq!(emu.status().await["enforcement"], "enforce");
    let (status, headers, _) = get_with(&emu.service("search", "/"), &[]).await;
    assert_eq!(status, 403);
    assert!(headers.get("x-frontdoor-would-deny").is_none());
    assert_eq!(emu.decisions().await.pop().unwrap()["allowed"], false);
    emu.stop().await;
}

/// `serve` says so at start-up, loudly, after the listeners.
#[test]
fn serve_announces_audit_mode() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("services.yaml");
    std::fs::write(&file, format!("{EPHEMERAL}{}", audit_config())).unwrap();
    state_dir_with_test_keys(&dir.path().join("state"));
    let (mut child, lines) = spawn_serve(dir.path(), &file, |l| l.contains("NOTHING IS ENFORCED"));
    stop(&mut child);
    assert!(
        lines
            .concat()
            .contains("!!! AUDIT MODE (enforcement: audit): NOTHING IS ENFORCED !!!"),
        "{lines:?}"
    );
}

/// An audited request whose container then fails is refused for that, and its reason keeps
/// the refusal audit mode let through.
#[tokio::test]
async fn an_audited_request_to_a_failing_container_keeps_its_would_deny() {
    let emu = Emulator::start(&format!(
        "{PROJECT}enforcement: audit\nservices:\n  - name: down\n    upstream: http://127.0.0.1:1\n    listen: 127.0.0.1:0\n"
    ))
    .await;
    let (status, _, _) = get_with(&emu.service("down", "/"), &[]).await;
    assert_eq!(status, 503);
    let d = emu.decisions().await.pop().unwrap();
    assert_eq!(d["code"], "upstream_failed", "{d}");
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("(audit: would deny 403: no_credential); but the container at"),
        "{d}"
    );
    emu.stop().await;
}
