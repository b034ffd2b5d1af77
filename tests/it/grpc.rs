//! gRPC through the front door (issue 28): a gRPC server started by `command:` (Python's
//! grpcio, cleartext h2c on `$PORT`) called by Google's gRPC clients as Google's
//! gRPC-on-Cloud-Run samples write them, each with an ID token for the service's URL and
//! its environment only what `frontdoor env` sets, at `SERVICE-NUMBER.REGION.run.app:443`.

use crate::common;

use common::*;
use serde_json::Value;

/// `caller` calls; `pinger` is a default (HTTP/1) service, which gRPC reaches over h2c
/// anyway, as on Cloud Run; `pong` is HTTP/2 end to end and lets only `pinger` in (the
/// relay hop of Google's grpc-ping); `h1` serves HTTP/1 on a port it declares h2c.
fn yaml() -> String {
    let python = python().display().to_string();
    let grpc = repo()
        .join("tests/services/grpc_app.py")
        .display()
        .to_string();
    let http1 = repo().join("tests/services/app.py").display().to_string();
    format!(
        r#"{PROJECT}service_accounts: [{{email: caller{SA}}}, {{email: pinger{SA}}}]
services:
  - name: caller
    service_account: caller{SA}
    upstream: builtin:echo
  - name: pinger
    service_account: pinger{SA}
    command: ['{python}', '{grpc}']
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:caller{SA}]}}]}}
  - name: pong
    command: ['{python}', '{grpc}']
    use_http2: true
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:pinger{SA}]}}]}}
  - name: h1
    command: ['{python}', '{http1}', serve]
    use_http2: true
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [allUsers]}}]}}
"#
    )
}

/// The Python client's answer for `case` against `service`, run as `caller`.
fn python_grpc(shell: &ClientShell, service: &str, case: &str, extra: &[&str]) -> Value {
    let host = format!("{service}-123456789012.us-central1.run.app");
    let out = succeed(
        shell
            .command(python())
            .arg(repo().join("tests/clients/python/grpc_client.py"))
            .args([host.as_str(), case])
            .args(extra),
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// The last front-door decision on `path` of `service`.
async fn last_on(emu: &Emulator, service: &str, path: &str) -> Value {
    emu.decisions()
        .await
        .into_iter()
        .rev()
        .find(|d| d["path"] == path && (d["service"] == service || d["service"].is_null()))
        .unwrap_or_else(|| panic!("no decision on {service} {path}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs Python's grpcio"]
async fn python_grpc_clients_call_a_grpc_service_through_the_front_door() {
    let emu = Emulator::start(&yaml()).await;
    let shell = ClientShell::new(&emu, Some("caller"));
    let probe = "/frontdoor.test.Probe/";

    // The four kinds of method, trailers, and a client deadline that ends the call on both
    // sides.
    let out = python_grpc(&shell, "pinger", "kinds", &[]);
    assert_eq!(out["unary"]["request"], "hello", "{out}");
    assert_eq!(out["unary"]["service"], "pinger", "{out}");
    let metadata = &out["unary"]["metadata"];
    assert_eq!(metadata["x-forwarded-proto"], "https", "{out}");
    assert!(metadata["traceparent"].is_string(), "{out}");
    assert!(
        metadata["authorization"]
            .as_str()
            .unwrap()
            .starts_with("Bearer ey"),
        "{out}"
    );
    assert_eq!(
        out["server_stream"],
        serde_json::json!(vec!["xxx"; 5]),
        "{out}"
    );
    assert_eq!(out["client_stream"], "60", "{out}");
    assert_eq!(
        out["bidi"],
        serde_json::json!(["echo:1", "echo:2", "echo:3"]),
        "{out}"
    );
    assert_eq!(out["trailers"]["answer"], "ok", "{out}");
    assert_eq!(
        out["trailers"]["trailing"]["x-probe-trailer"], "yes",
        "{out}"
    );
    assert_eq!(out["deadline"]["code"], "DEADLINE_EXCEEDED", "{out}");
    assert_eq!(out["stats"]["cancelled"], 1, "{out}");
    let d = last_on(&emu, "pinger", &format!("{probe}Unary")).await;
    assert_eq!(
        (d["allowed"].as_bool(), d["status"].as_u64()),
        (Some(true), Some(200)),
        "{d}"
    );
    assert_eq!(
        d["principal"],
        format!("serviceAccount:{}", sa("caller")),
        "{d}"
    );
    // The status came in the trailers, after the decision: it is added to it.
    assert_eq!(d["grpc_status"], 0, "{d}");
    let container = d["steps"].as_array().unwrap().last().unwrap();
    assert!(
        container["detail"]
            .as_str()
            .unwrap()
            .ends_with("answered 200 with grpc-status 0 (OK)"),
        "{container}"
    );

    // Refusals read as Cloud Run's: the front end's HTTP status, which gRPC maps.
    let refused = [
        // No token: 403, as for any request.
        (
            "pinger",
            &["--no-token"][..],
            "PERMISSION_DENIED",
            403,
            "no_credential",
        ),
        // A token for another audience: 401.
        (
            "pinger",
            &["--audience", "https://elsewhere.example.com"][..],
            "UNAUTHENTICATED",
            401,
            "audience_not_accepted",
        ),
        // No binding for caller on pong.
        (
            "pong",
            &[][..],
            "PERMISSION_DENIED",
            403,
            "no_invoker_binding",
        ),
        // No such service: 404, which gRPC reads as UNIMPLEMENTED.
        ("nosuch", &[][..], "UNIMPLEMENTED", 404, "unknown_host"),
        // HTTP/1 on a port declared h2c: 503.
        ("h1", &[][..], "UNAVAILABLE", 503, "upstream_failed"),
    ];
    for (service, flags, grpc_code, status, code) in refused {
        let out = python_grpc(&shell, service, "unary", flags);
        assert_eq!(out["code"], grpc_code, "{service} {flags:?}: {out}");
        let d = last_on(&emu, service, &format!("{probe}Unary")).await;
        assert_eq!(
            (d["status"].as_u64(), d["code"].as_str()),
            (Some(status), Some(code)),
            "{service} {flags:?}: {d}"
        );
    }
    let d = last_on(&emu, "h1", &format!("{probe}Unary")).await;
    assert!(
        d["reason"]
            .as_str()
            .unwrap()
            .contains("did not speak HTTP/2: gRPC requests reach the container over h2c"),
        "{d}"
    );

    // Google's grpc-ping shape: pinger relays to pong with its own identity.
    let out = python_grpc(
        &shell,
        "pinger",
        "relay",
        &["pong-123456789012.us-central1.run.app"],
    );
    assert_eq!(out["code"], "OK", "{out}");
    assert_eq!(out["answer"]["code"], "OK", "{out}");
    assert_eq!(out["answer"]["answer"]["service"], "pong", "{out}");
    assert_eq!(out["answer"]["answer"]["request"], "relayed", "{out}");
    let d = last_on(&emu, "pong", &format!("{probe}Unary")).await;
    assert_eq!(
        d["principal"],
        format!("serviceAccount:{}", sa("pinger")),
        "{d}"
    );

    // The container's own refusal: let in by the front door, ended by the app; the decision
    // names the method and the grpc-status the container answered.
    let out = python_grpc(&shell, "pinger", "refuse", &[]);
    assert_eq!(out["code"], "PERMISSION_DENIED", "{out}");
    assert_eq!(out["details"], "the app's own check says no", "{out}");
    let d = last_on(&emu, "pinger", &format!("{probe}Refuse")).await;
    assert_eq!(
        (
            d["allowed"].as_bool(),
            d["status"].as_u64(),
            d["grpc_status"].as_u64()
        ),
        (Some(true), Some(200), Some(7)),
        "{d}"
    );
    let container = d["steps"].as_array().unwrap().last().unwrap();
    assert!(
        container["detail"]
            .as_str()
            .unwrap()
            .ends_with("answered 200 with grpc-status 7 (PERMISSION_DENIED)"),
        "{container}"
    );

    // 100 MiB each way: no 413 on a stream.
    let out = python_grpc(&shell, "pinger", "big", &[]);
    assert_eq!(out["client_stream"], 100 << 20, "{out}");
    assert_eq!(out["server_stream"], 100 << 20, "{out}");

    // A container that dies mid-stream: its output so far, then UNAVAILABLE.
    let out = python_grpc(&shell, "pinger", "die", &[]);
    assert_eq!(out["code"], "UNAVAILABLE", "{out}");
    assert_eq!(out["messages"], serde_json::json!(vec!["xxxx"; 3]), "{out}");
    assert!(
        out["details"]
            .as_str()
            .unwrap()
            .contains("the container broke the stream off"),
        "{out}"
    );
    let d = last_on(&emu, "pinger", &format!("{probe}ServerStream")).await;
    assert_eq!(d["grpc_status"], 14, "{d}");
    emu.stop().await;
}

/// gRPC's other runtimes, as their users write a Cloud Run client: Go (grpc-go, per-RPC
/// credentials from google.golang.org/api/idtoken), Node (@grpc/grpc-js, a metadata
/// generator over google-auth-library's ID-token client) and Java (grpc-java on Netty,
/// MoreCallCredentials over IdTokenCredentials).
#[derive(Debug, Clone, Copy)]
enum Runtime {
    Go,
    Node,
    Java,
}

impl Runtime {
    fn run(self, shell: &ClientShell, service: &str, case: &str) -> Value {
        let host = format!("{service}-123456789012.us-central1.run.app");
        let mut cmd = match self {
            Runtime::Go => {
                let mut cmd = shell.command(go_client());
                cmd.arg("grpc");
                cmd
            }
            Runtime::Node => {
                let mut cmd = shell.command("node");
                cmd.arg(node_script("grpc.js"));
                cmd
            }
            Runtime::Java => {
                let mut cmd = shell.command("java");
                let mut args = java_client_args();
                *args.last_mut().unwrap() = "frontdoor.GrpcProbe".into();
                cmd.args(args);
                cmd
            }
        };
        let out = succeed(cmd.args([host.as_str(), case]));
        let mut out: Value =
            serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{self:?}: {e}: {out}"));
        canonical_codes(&mut out);
        out
    }
}

/// gRPC's status names as the protocol writes them: Go's `PermissionDenied` is
/// `PERMISSION_DENIED`.
fn canonical_codes(v: &mut Value) {
    match v {
        Value::Object(fields) => {
            for (key, field) in fields.iter_mut() {
                match field {
                    Value::String(code) if key == "code" => {
                        let mut name = String::new();
                        let mut lower_before = false;
                        for c in code.chars() {
                            if c.is_ascii_uppercase() && lower_before {
                                name.push('_');
                            }
                            lower_before = c.is_ascii_lowercase();
                            name.push(c.to_ascii_uppercase());
                        }
                        *code = name;
                    }
                    other => canonical_codes(other),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonical_codes),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs Go, Node and Java gRPC clients"]
async fn go_node_and_java_grpc_clients_call_through_the_front_door() {
    let emu = Emulator::start(&yaml()).await;
    let shell = ClientShell::new(&emu, Some("caller"));
    let unary = "/frontdoor.test.Probe/Unary";
    for runtime in [Runtime::Go, Runtime::Node, Runtime::Java] {
        let out = runtime.run(&shell, "pinger", "kinds");
        assert_eq!(out["unary"]["request"], "hello", "{runtime:?}: {out}");
        assert_eq!(out["unary"]["service"], "pinger", "{runtime:?}: {out}");
        let token = out["unary"]["metadata"]["authorization"]
            .as_str()
            .unwrap_or("");
        assert!(token.starts_with("Bearer ey"), "{runtime:?}: {out}");
        assert_eq!(
            out["server_stream"],
            serde_json::json!(vec!["xxx"; 5]),
            "{runtime:?}: {out}"
        );
        assert_eq!(out["client_stream"], "60", "{runtime:?}: {out}");
        assert_eq!(
            out["bidi"],
            serde_json::json!(["echo:1", "echo:2", "echo:3"]),
            "{runtime:?}: {out}"
        );
        assert_eq!(out["trailers"]["answer"], "ok", "{runtime:?}: {out}");
        assert_eq!(
            out["trailers"]["trailing"]["x-probe-trailer"], "yes",
            "{runtime:?}: {out}"
        );
        assert_eq!(
            out["deadline"]["code"], "DEADLINE_EXCEEDED",
            "{runtime:?}: {out}"
        );
        let d = last_on(&emu, "pinger", unary).await;
        assert_eq!(
            d["principal"],
            format!("serviceAccount:{}", sa("caller")),
            "{runtime:?}: {d}"
        );

        for (service, case, grpc_code, status, code) in [
            (
                "pinger",
                "no-token",
                "PERMISSION_DENIED",
                403,
                "no_credential",
            ),
            (
                "pong",
                "unary",
                "PERMISSION_DENIED",
                403,
                "no_invoker_binding",
            ),
            ("nosuch", "unary", "UNIMPLEMENTED", 404, "unknown_host"),
        ] {
            let out = runtime.run(&shell, service, case);
            assert_eq!(
                out["code"], grpc_code,
                "{runtime:?} {service} {case}: {out}"
            );
            let d = last_on(&emu, service, unary).await;
            assert_eq!(
                (d["status"].as_u64(), d["code"].as_str()),
                (Some(status), Some(code)),
                "{runtime:?} {service} {case}: {d}"
            );
        }
    }
    // grpc-js's own bridge to google-auth-library sends no token with its version 10
    // (grpc/grpc-node#2993): the front door says so, as Cloud Run's would refuse it.
    let out = Runtime::Node.run(&shell, "pinger", "google-credential");
    assert_eq!(out["code"], "PERMISSION_DENIED", "{out}");
    let d = last_on(&emu, "pinger", unary).await;
    assert_eq!(d["code"], "no_credential", "{d}");
    emu.stop().await;
}
