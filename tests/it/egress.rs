//! The egress proxy: unmodified clients reach frontdoor at Google's own URLs, with only a
//! proxy and a CA bundle set in their environment (issue 12).

use crate::common;

use std::process::{Command, Output};

use common::*;

fn yaml() -> String {
    format!(
        r#"{PROJECT}service_accounts: [{{email: login{SA}}}, {{email: vault{SA}}}]
services:
  - name: login
    service_account: login{SA}
    upstream: builtin:echo
  - name: vault
    service_account: vault{SA}
    upstream: builtin:echo
    ingress: internal
    custom_domains: [Vault.Example.COM]
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:login{SA}]}}]}}
  - name: open
    upstream: builtin:echo
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [allUsers]}}]}}
# Emulated hosts listed here stay emulated.
egress: {{passthrough: [www.googleapis.com, vault-123456789012.us-central1.run.app]}}
"#
    )
}

fn ca_file(emu: &Emulator) -> std::path::PathBuf {
    emu.dir.path().join(".frontdoor/ca/ca.pem")
}

/// curl with `login`'s proxy and, unless `trust` is false, the local CA.
fn curl(emu: &Emulator, trust: bool, args: &[&str]) -> Output {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "20", "-o", "-", "-w", "\n%{http_code}"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env(
            "HTTPS_PROXY",
            format!("http://{}", emu.metadata_of("login")),
        )
        // curl reads only the lowercase form for plain http.
        .env("http_proxy", format!("http://{}", emu.metadata_of("login")));
    if trust {
        cmd.env("CURL_CA_BUNDLE", ca_file(emu));
    }
    cmd.args(args).output().unwrap()
}

/// How long a raw exchange with the proxy may take before the test fails (never hangs).
const READ_LIMIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Sends `request` to the proxy at `proxy` and reads its answer's head (to the blank
/// line, a byte at a time so nothing after it is taken): the stream, then the head.
async fn via_proxy(proxy: &str, request: &str) -> (tokio::net::TcpStream, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(proxy).await.unwrap();
    s.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let read = async {
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            if s.read(&mut byte).await.unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
    };
    tokio::time::timeout(READ_LIMIT, read)
        .await
        .expect("the proxy answered within the limit");
    (s, String::from_utf8_lossy(&head).into_owned())
}

/// The body and the status `-w` appended.
fn answer(out: &Output) -> (String, String) {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (body.to_owned(), code.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs curl"]
async fn curl_reaches_services_and_the_metadata_server_at_their_real_urls() {
    let emu = Emulator::start(&yaml()).await;
    let vault = emu.url_of("vault");
    let token = emu.sa_token(&format!("login{SA}"), &vault);
    let auth = format!("Authorization: Bearer {token}");

    // https://vault-….run.app through login's proxy: TLS at frontdoor, the front door's
    // checks, and ingress internal satisfied because the request came through a service.
    let out = curl(&emu, true, &["-H", &auth, &format!("{vault}/hello")]);
    let (body, code) = answer(&out);
    assert_eq!(
        code,
        "200",
        "{body} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains(r#""x-forwarded-proto":"https""#), "{body}");
    // No token: the same 403 as on the front door's own port, over TLS.
    let (body, code) = answer(&curl(&emu, true, &[&format!("{vault}/hello")]));
    assert_eq!(code, "403", "{body}");
    // A hostile token: refused with the verifier's reason.
    let (body, code) = answer(&curl(
        &emu,
        true,
        &["-H", "Authorization: Bearer a.b.c", &format!("{vault}/")],
    ));
    assert_eq!(code, "401", "{body}");

    // The metadata server at its real name, plain http through the proxy: login's identity.
    let (body, code) = answer(&curl(
        &emu,
        true,
        &[
            "-H",
            "Metadata-Flavor: Google",
            "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/email",
        ],
    ));
    assert_eq!(
        (body.as_str(), code.as_str()),
        (&*format!("login{SA}"), "200")
    );

    // A custom domain, written in the configuration in another case, routes as on the
    // front door.
    let (body, code) = answer(&curl(
        &emu,
        true,
        &["-H", &auth, "https://vault.example.com/hello"],
    ));
    assert_eq!(code, "200", "{body}");

    // The listener named by its own address in absolute form (GCE_METADATA_HOST and the
    // proxy both set to it) is the metadata server, not a refused host.
    let own = format!(
        "http://{}/computeMetadata/v1/project/project-id",
        emu.metadata_of("login")
    );
    let (body, code) = answer(&curl(&emu, true, &["-H", "Metadata-Flavor: Google", &own]));
    assert_eq!((body.as_str(), code.as_str()), ("demo-project", "200"));

    // Discovery through the tunnel hands out Google's https URLs, which the proxy serves.
    let (body, code) = answer(&curl(
        &emu,
        true,
        &["https://accounts.google.com/.well-known/openid-configuration"],
    ));
    assert_eq!(code, "200", "{body}");
    assert!(
        body.contains(r#""jwks_uri":"https://accounts.google.com/oauth2/v3/certs""#),
        "{body}"
    );

    // Google's key URL serves the issuer's keys.
    let (body, code) = answer(&curl(
        &emu,
        true,
        &["https://www.googleapis.com/oauth2/v3/certs"],
    ));
    assert_eq!(code, "200", "{body}");
    assert!(body.contains(r#""kty":"RSA""#), "{body}");

    // Over HTTP/2 the host is the request's authority, not a Host header: the decision log
    // still names it.
    let (body, code) = answer(&curl(
        &emu,
        true,
        &[
            "--http2",
            // The version before the code: `--http2` only asks, and curl falls back to
            // HTTP/1.1 silently when the handshake does not choose h2.
            "-w",
            "\n%{http_version}\n%{http_code}",
            "https://oauth2.googleapis.com/tokeninfo?id_token=garbage",
        ],
    ));
    assert_eq!(code, "400", "{body}");
    assert!(body.ends_with("\n2"), "not HTTP/2: {body}");
    let logged = emu.decisions().await;
    let tokeninfo = logged
        .iter()
        .find(|d| d["surface"] == "tokeninfo")
        .expect("the tokeninfo decision is logged");
    assert_eq!(tokeninfo["host"], "oauth2.googleapis.com", "{tokeninfo}");

    // A request inside vault's tunnel whose Host names another service is not routed to
    // it: the handshake named vault.
    let (body, code) = answer(&curl(
        &emu,
        true,
        &[
            "-H",
            &auth,
            "-H",
            &format!(
                "Host: {}",
                emu.url_of("open").trim_start_matches("https://")
            ),
            &format!("{vault}/hello"),
        ],
    ));
    assert_eq!(code, "421", "{body}");
    assert!(body.contains("a request for open-"), "{body}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs curl"]
async fn bad_and_unknown_requests_are_refused_clearly() {
    let emu = Emulator::start(&yaml()).await;
    let open = emu.url_of("open");

    // A client that does not trust the CA: a TLS error, never a pass.
    let out = curl(&emu, false, &[&format!("{open}/")]);
    assert_eq!(out.status.code(), Some(60), "{out:?}");

    // An unknown host: refused at once, naming it and the way to let it through.
    let started = std::time::Instant::now();
    let out = curl(&emu, true, &["-v", "https://example.com/"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("403"), "{stderr}");
    assert!(
        stderr.contains("example.com is not emulated by frontdoor; add it to `egress.passthrough`"),
        "{stderr}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    let (body, code) = answer(&curl(&emu, true, &["http://example.com/"]));
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains("http://example.com is not emulated by frontdoor"),
        "{body}"
    );

    // Raw proxy requests: a CONNECT with no port, a client hello without SNI, a tunnel
    // to the metadata server (plain http only).
    let proxy = emu.metadata_of("login");
    let raw = |request: &'static str| {
        let proxy = proxy.clone();
        async move { via_proxy(&proxy, request).await.1 }
    };
    let got = raw("CONNECT open.run.app HTTP/1.1\r\nHost: open.run.app\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");
    assert!(got.contains("has no port"), "{got}");
    let got = raw("CONNECT metadata.google.internal:80 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(got.starts_with("HTTP/1.1 403"), "{got}");
    let got = raw("CONNECT open.run.app:8443 HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(
        got.starts_with("HTTP/1.1 403") && got.contains("port 443 only"),
        "{got}"
    );
    // Tunnel granted, then a TLS client hello without SNI: the handshake is refused (an
    // alert, then the close), and the proxy serves on.
    {
        let (s, head) = via_proxy(
            &proxy,
            "CONNECT open.run.app:443 HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let root = {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            let pem = std::fs::read_to_string(ca_file(&emu)).unwrap();
            roots
                .add(pem::parse(pem).unwrap().into_contents().into())
                .unwrap();
            roots
        };
        let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(
            std::sync::Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider()),
        )
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(root)
        .with_no_client_auth();
        config.enable_sni = false;
        let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
        let name = tokio_rustls::rustls::pki_types::ServerName::try_from("open.run.app").unwrap();
        // The server's refusal (rustls's alert when no certificate is resolved), not a
        // certificate the client distrusts or a dropped connection.
        let err = connector.connect(name, s).await.unwrap_err().to_string();
        assert_eq!(err, "received fatal alert: AccessDenied");
    }
    let (_, code) = answer(&curl(&emu, true, &[&format!("{open}/")]));
    assert_eq!(code, "200");

    // Issue 26: this machine is no passthrough host (the configuration refuses loopback
    // names), so the proxy cannot be chained to frontdoor's own listeners, the google
    // listener or itself.
    let google_port = emu.addresses.google.port();
    let own_port = proxy.rsplit(':').next().unwrap().to_owned();
    for port in [google_port.to_string(), own_port] {
        for host in ["localhost", "127.0.0.1"] {
            let (_, got) = via_proxy(
                &proxy,
                &format!("CONNECT {host}:{port} HTTP/1.1\r\nHost: x\r\n\r\n"),
            )
            .await;
            // The reason is in the status line too: all pip and npm show of a refused
            // tunnel.
            assert!(
                got.starts_with(&format!(
                    "HTTP/1.1 403 Forbidden: {host} is this machine: the proxy does not tunnel to it"
                )),
                "{host}:{port}: {got}"
            );
        }
    }
    emu.stop().await;
}

/// Python's `requests` and `google-auth`, unmodified: a proxy and a CA bundle in the
/// environment, and the code calls `https://….run.app` and verifies with Google's default
/// certificate URL.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs Python's google-auth"]
async fn python_code_runs_unchanged_with_only_the_environment_set() {
    let emu = Emulator::start(&yaml()).await;
    let script = r#"
import os, sys
import requests
import google.auth.transport.requests
import google.oauth2.id_token

url = sys.argv[1]
session = requests.Session()
token = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(session), url)
r = requests.get(url + "/hello", headers={"Authorization": "Bearer " + token})
print(r.status_code)
# A service with no binding for the caller.
closed = sys.argv[2]
other = google.oauth2.id_token.fetch_id_token(google.auth.transport.requests.Request(session), closed)
print(requests.get(closed + "/hello", headers={"Authorization": "Bearer " + other}).status_code)
claims = google.oauth2.id_token.verify_oauth2_token(token, google.auth.transport.requests.Request(session), url)
print(claims["email"])
tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
try:
    google.oauth2.id_token.verify_oauth2_token(tampered, google.auth.transport.requests.Request(session), url)
    print("tampered accepted")
except ValueError as e:
    print("tampered refused")
"#;
    let out = Command::new(python())
        .args(["-c", script, &emu.url_of("vault"), &emu.url_of("login")])
        .env_clear()
        .envs(env_of(&emu, Some("login")))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().collect::<Vec<_>>(),
        ["200", "403", &format!("login{SA}"), "tampered refused"]
    );
    emu.stop().await;
}
