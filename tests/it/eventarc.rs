//! Eventarc's own API (issue 30): `gcloud eventarc triggers` verbatim, through the egress
//! proxy, makes a Pub/Sub trigger whose deliveries reach a private service as CloudEvents
//! with its account's ID token; the trigger outlives a restart; callers without the role,
//! or without actAs on the account, are refused; bad requests get Google's errors.

use crate::common;

use std::path::Path;

use common::*;
use serde_json::{Value, json};

const RECEIVER: &str = "https://receiver-123456789012.us-central1.run.app";
const LOCATION: &str = "/v1/projects/demo-project/locations/us-central1";

/// `app` may make triggers and act as any account; `noact` may make triggers but act as
/// nobody; `reader` may only read them. `pusher` may invoke `receiver`; `outsider` nothing.
fn yaml(records: &Path) -> String {
    let python = python().display().to_string();
    let receiver = repo()
        .join("tests/services/push_receiver.py")
        .display()
        .to_string();
    let record = records.join("receiver.jsonl").display().to_string();
    format!(
        r#"{PROJECT}pubsub: {{backoff_divisor: 1000, topics: [{{name: orders}}]}}
service_accounts:
  - email: app{SA}
  - email: noact{SA}
  - email: reader{SA}
  - email: pusher{SA}
  - email: outsider{SA}
iam_policy:
  bindings:
    - role: roles/eventarc.developer
      members: [serviceAccount:app{SA}, serviceAccount:noact{SA}]
    - role: roles/pubsub.editor
      members: [serviceAccount:app{SA}]
    - role: roles/iam.serviceAccountUser
      members: [serviceAccount:app{SA}]
    - role: roles/eventarc.viewer
      members: [serviceAccount:reader{SA}]
services:
  - name: app
    service_account: app{SA}
    upstream: builtin:echo
  - name: noact
    service_account: noact{SA}
    upstream: builtin:echo
  - name: reader
    service_account: reader{SA}
    upstream: builtin:echo
  - name: receiver
    command: ['{python}', '{receiver}', '{record}', '{RECEIVER}', 'pusher{SA}']
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:pusher{SA}]}}]}}
"#
    )
}

/// `gcloud eventarc triggers create` as the docs write it, for `trigger` to `receiver`.
fn create_args<'a>(trigger: &'a str, account: &'a str, topic: Option<&'a str>) -> Vec<String> {
    let mut args: Vec<String> = [
        "eventarc",
        "triggers",
        "create",
        trigger,
        "--location=us-central1",
        "--destination-run-service=receiver",
        "--destination-run-path=/raw/events",
        "--event-filters=type=google.cloud.pubsub.topic.v1.messagePublished",
        "--service-account",
        account,
    ]
    .map(str::to_owned)
    .to_vec();
    if let Some(topic) = topic {
        args.extend(["--transport-topic".to_owned(), topic.to_owned()]);
    }
    args
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs gcloud, and a receiver on Python's google-auth"]
async fn gcloud_makes_a_trigger_that_delivers_cloudevents_as_its_account() {
    let records = tempfile::tempdir().unwrap();
    let file = records.path().join("receiver.jsonl");
    let emu = Emulator::start_ready(&yaml(records.path())).await;
    let mut shell = ClientShell::new(&emu, Some("app"));
    let run = |shell: &ClientShell, args: &[String]| {
        let out = shell.command("gcloud").args(args).output().unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "gcloud {args:?}: {said}");
        (String::from_utf8_lossy(&out.stdout).into_owned(), said)
    };
    let words = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();

    let (_, said) = run(
        &shell,
        &create_args("on-order", &sa("pusher"), Some("orders")),
    );
    assert!(
        said.contains(
            "Creating trigger [on-order] in project [demo-project], location [us-central1]"
        ) && said.contains("Publish to Pub/Sub topic [projects/demo-project/topics/orders]"),
        "{said}"
    );
    let (described, _) = run(
        &shell,
        &words(&[
            "eventarc",
            "triggers",
            "describe",
            "on-order",
            "--location=us-central1",
            "--format=json",
        ]),
    );
    let described: Value = serde_json::from_str(&described).unwrap();
    assert_eq!(
        described["destination"]["cloudRun"],
        json!({"service": "receiver", "path": "/raw/events", "region": "us-central1"}),
        "{described:#}"
    );
    assert_eq!(described["serviceAccount"], sa("pusher"));
    assert_eq!(
        described["transport"]["pubsub"]["subscription"],
        "projects/demo-project/subscriptions/eventarc-us-central1-on-order-sub-000"
    );

    // A message published to the topic reaches the receiver as a CloudEvent, with the
    // trigger's account's token, which it verifies.
    let (status, published) = google_json(
        &emu,
        None,
        "POST",
        "/v1/projects/demo-project/topics/orders:publish",
        Some(json!({"messages": [{"data": "b3JkZXI="}]})),
    )
    .await;
    assert_eq!(status, 200, "{published}");
    let pushes = recorded_lines(&file, |_| true, |l| !l.is_empty());
    let push = &pushes[0];
    assert!(
        push["path"].as_str().unwrap().starts_with("/raw/events?"),
        "{push:#}"
    );
    assert_eq!(push["claims"]["email"], sa("pusher"), "{push:#}");
    assert_eq!(
        push["headers"]["ce-type"],
        "google.cloud.pubsub.topic.v1.messagePublished"
    );
    assert_eq!(push["headers"]["ce-id"], published["messageIds"][0]);

    // Without --transport-topic Eventarc makes a topic for the trigger, and deletes it
    // with the trigger.
    let (_, said) = run(&shell, &create_args("on-anything", &sa("pusher"), None));
    let made = said
        .split("Created Pub/Sub topic [")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .unwrap_or_else(|| panic!("{said}"))
        .to_owned();
    assert!(
        made.starts_with("projects/demo-project/topics/eventarc-us-central1-on-anything-"),
        "{made}"
    );
    let (listed, _) = run(
        &shell,
        &words(&[
            "eventarc",
            "triggers",
            "list",
            "--location=us-central1",
            "--format=value(name)",
        ]),
    );
    let names: Vec<&str> = listed.lines().collect();
    assert_eq!(names, ["on-anything", "on-order"], "{listed}");
    run(
        &shell,
        &words(&[
            "eventarc",
            "triggers",
            "delete",
            "on-anything",
            "--location=us-central1",
        ]),
    );
    let (status, _) = google_json(&emu, None, "GET", &format!("/v1/{made}"), None).await;
    assert_eq!(status, 404, "the trigger's own topic goes with it");

    // A reader may list but not create; a developer without actAs on the account is
    // refused as Google refuses it.
    let viewer = ClientShell::new(&emu, Some("reader"));
    run(
        &viewer,
        &words(&["eventarc", "triggers", "list", "--location=us-central1"]),
    );
    let refused = fails(viewer.command("gcloud").args(create_args(
        "nope",
        &sa("pusher"),
        Some("orders"),
    )));
    assert!(refused.contains("eventarc.triggers.create"), "{refused}");
    let noact = ClientShell::new(&emu, Some("noact"));
    let refused = fails(noact.command("gcloud").args(create_args(
        "nope",
        &sa("pusher"),
        Some("orders"),
    )));
    assert!(refused.contains("iam.serviceAccounts.actAs"), "{refused}");
    let decisions = emu.decisions().await;
    let refusals: Vec<&Value> = decisions
        .iter()
        .filter(|d| d["surface"] == "eventarc" && d["allowed"] == false)
        .collect();
    assert_eq!(refusals.len(), 2, "{refusals:#?}");

    // The trigger outlives a restart (its subscription is kept in the layer), and keeps
    // delivering.
    let emu = emu.restart().await;
    shell.reconnect(&emu);
    let (status, again) = google_json(
        &emu,
        None,
        "POST",
        "/v1/projects/demo-project/topics/orders:publish",
        Some(json!({"messages": [{"data": "YWdhaW4="}]})),
    )
    .await;
    assert_eq!(status, 200, "{again}");
    let pushes = recorded_lines(
        &file,
        |l| l["headers"]["ce-id"] == again["messageIds"][0],
        |l| !l.is_empty(),
    );
    assert_eq!(pushes[0]["claims"]["email"], sa("pusher"), "{pushes:#?}");
    let (listed, _) = run(
        &shell,
        &words(&[
            "eventarc",
            "triggers",
            "list",
            "--location=us-central1",
            "--format=value(name)",
        ]),
    );
    assert_eq!(listed.trim(), "on-order", "{listed}");

    // `frontdoor fold` writes it into services.yaml as the trigger it is.
    let said = succeed(
        frontdoor()
            .args(["fold", "--config"])
            .arg(emu.config_file())
            .arg("--state-dir")
            .arg(emu.state.state_dir().path()),
    );
    assert!(
        said.contains("Eventarc trigger on-order: → eventarc.triggers"),
        "{said}"
    );
    let folded = std::fs::read_to_string(emu.config_file()).unwrap();
    assert!(
        folded.contains("    - destination_run_path: /raw/events\n      destination_run_service: receiver\n      name: on-order\n"),
        "{folded}"
    );
    let layer = std::fs::read_to_string(emu.state.state_dir().path().join("changes.json"))
        .unwrap_or_default();
    assert!(!layer.contains("on-order"), "left in the layer: {layer}");
    emu.wait_status("the folded file in force", |s| s["generation"] == 2)
        .await;
    let (listed, _) = run(
        &shell,
        &words(&[
            "eventarc",
            "triggers",
            "list",
            "--location=us-central1",
            "--format=value(name)",
        ]),
    );
    assert_eq!(listed.trim(), "on-order", "{listed}");
    emu.stop().await;
}

/// Bad input gets Google's error, and nothing is made of it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_trigger_requests_get_googles_errors() {
    let records = tempfile::tempdir().unwrap();
    // No receiver process is needed: nothing is delivered.
    let config = yaml(records.path()).replace(
        &format!(
            "    command: ['{}', '{}', '{}', '{RECEIVER}', 'pusher{SA}']",
            python().display(),
            repo().join("tests/services/push_receiver.py").display(),
            records.path().join("receiver.jsonl").display()
        ),
        "    upstream: builtin:echo",
    );
    assert!(config.contains("builtin:echo\n    iam_policy"), "{config}");
    let emu = Emulator::start(&config).await;
    let token = emu.access_token("app").await;
    let app = Some(token.as_str());
    let good = json!({
        "eventFilters": [{"attribute": "type", "value": "google.cloud.pubsub.topic.v1.messagePublished"}],
        "serviceAccount": sa("pusher"),
        "destination": {"cloudRun": {"service": "receiver", "path": "/events", "region": "us-central1"}},
        "transport": {"pubsub": {"topic": "projects/demo-project/topics/orders"}},
    });
    let with = |pointer: &str, value: Value| {
        let mut body = good.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        body
    };
    let create = |id: &str| format!("{LOCATION}/triggers?triggerId={id}");
    let cases: Vec<(String, Value, u16, &str)> = vec![
        (
            format!("{LOCATION}/triggers"),
            good.clone(),
            400,
            "triggerId is required",
        ),
        (create("Bad_Name"), good.clone(), 400, "lowercase letters"),
        (
            create("t"),
            with(
                "/eventFilters/0/value",
                json!("google.cloud.storage.object.v1.finalized"),
            ),
            400,
            "is not emulated",
        ),
        (
            create("t"),
            with(
                "/destination",
                json!({"workflow": "projects/p/locations/l/workflows/w"}),
            ),
            400,
            "Cloud Run services only",
        ),
        (
            create("t"),
            with("/destination/cloudRun/service", json!("reciever")),
            400,
            "did you mean `receiver`",
        ),
        (
            create("t"),
            with("/destination/cloudRun/region", json!("europe-west1")),
            400,
            "does not exist in region `europe-west1`",
        ),
        (
            create("t"),
            with("/destination/cloudRun/path", json!("events")),
            400,
            "not a plain path",
        ),
        (
            create("t"),
            with("/serviceAccount", json!("")),
            400,
            "names no service account",
        ),
        (
            create("t"),
            with("/serviceAccount", json!(sa("nobody"))),
            400,
            "not declared under service_accounts",
        ),
        (
            create("t"),
            with(
                "/transport/pubsub/topic",
                json!("projects/demo-project/topics/missing"),
            ),
            404,
            "was not found",
        ),
        (
            create("t"),
            with(
                "/transport/pubsub/topic",
                json!("projects/other/topics/orders"),
            ),
            400,
            "is not a topic of project demo-project",
        ),
        (
            "/v1/projects/demo-project/locations/Mars/triggers?triggerId=t".to_owned(),
            good.clone(),
            400,
            "projects/PROJECT/locations/LOCATION",
        ),
    ];
    for (path, body, status, says) in cases {
        let (got, answer) = google_json(&emu, app, "POST", &path, Some(body.clone())).await;
        assert_eq!(got, status, "{path} {body}: {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| m.contains(says)),
            "{path} {body}: {answer}"
        );
    }
    let (got, answer) = google_json(&emu, app, "GET", &format!("{LOCATION}/triggers"), None).await;
    assert_eq!(
        (got, &answer),
        (200, &json!({"triggers": []})),
        "nothing was made"
    );

    // Made once; the second is Google's 409, and unknown names are 404s.
    let (got, op) = google_json(&emu, app, "POST", &create("t"), Some(good.clone())).await;
    assert_eq!(got, 200, "{op}");
    assert_eq!(op["done"], true, "{op}");
    assert_eq!(
        op["response"]["name"],
        format!("{}/triggers/t", &LOCATION[4..])
    );
    let (got, again) = google_json(&emu, app, "POST", &create("t"), Some(good.clone())).await;
    assert_eq!(got, 409, "{again}");
    let name = op["name"].as_str().unwrap();
    let (got, read) = google_json(&emu, app, "GET", &format!("/v1/{name}"), None).await;
    assert_eq!((got, &read), (200, &op));
    for path in [
        format!("{LOCATION}/triggers/missing"),
        format!("{LOCATION}/operations/operation-1"),
    ] {
        let (got, answer) = google_json(&emu, app, "GET", &path, None).await;
        assert_eq!(got, 404, "{path}: {answer}");
    }
    // A page of one, then the next; then deleted, and gone.
    let (got, op) = google_json(&emu, app, "POST", &create("u"), Some(good.clone())).await;
    assert_eq!(got, 200, "{op}");
    let (_, first) = google_json(
        &emu,
        app,
        "GET",
        &format!("{LOCATION}/triggers?pageSize=1"),
        None,
    )
    .await;
    assert_eq!(
        first["triggers"][0]["name"],
        format!("{}/triggers/t", &LOCATION[4..]),
        "{first}"
    );
    let token = first["nextPageToken"]
        .as_str()
        .unwrap_or_else(|| panic!("{first}"));
    let (_, second) = google_json(
        &emu,
        app,
        "GET",
        &format!("{LOCATION}/triggers?pageSize=1&pageToken={token}"),
        None,
    )
    .await;
    assert_eq!(
        second["triggers"][0]["name"],
        format!("{}/triggers/u", &LOCATION[4..]),
        "{second}"
    );
    assert!(second.get("nextPageToken").is_none(), "{second}");
    let (_, every) = google_json(
        &emu,
        app,
        "GET",
        "/v1/projects/demo-project/locations/-/triggers",
        None,
    )
    .await;
    assert_eq!(
        every["triggers"].as_array().map(Vec::len),
        Some(2),
        "{every}"
    );
    let (got, op) = google_json(&emu, app, "DELETE", &format!("{LOCATION}/triggers/u"), None).await;
    assert_eq!(
        (got, &op["metadata"]["verb"]),
        (200, &json!("delete")),
        "{op}"
    );
    let (got, _) = google_json(&emu, app, "GET", &format!("{LOCATION}/triggers/u"), None).await;
    assert_eq!(got, 404);
    let (got, answer) = google_json(
        &emu,
        app,
        "PATCH",
        &format!("{LOCATION}/triggers/t"),
        Some(json!({})),
    )
    .await;
    assert_eq!(got, 404, "{answer}");
    assert!(
        answer
            .to_string()
            .contains("does not emulate UpdateTrigger")
    );
    emu.stop().await;
}
