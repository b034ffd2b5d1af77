//! Proxying for real: streamed bodies with flat memory, the 32 MiB limit, an upstream that
//! is down, resets, or is too slow, and a protocol upgrade spliced through.
//! In its own test binary, its tests one at a time (`ONE_AT_A_TIME`), so that the memory
//! measurement sees only its own streams.

use crate::common;

use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Response, StatusCode};
use axum::routing::{any, get};
use common::*;
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const GIB: u64 = 1 << 30;
const CHUNK: usize = 64 * 1024;

/// Held by every test here for its whole run: the flat-memory test reads the process's
/// peak memory, which another test's buffers running beside it would raise.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A small upstream: a 1 GiB download, a slow answer, and an upgrade that echoes bytes.
async fn upstream() -> std::net::SocketAddr {
    let app = axum::Router::new()
        .route(
            "/big",
            get(|| async {
                let chunk = bytes::Bytes::from(vec![7u8; CHUNK]);
                let stream = futures_util::stream::repeat(chunk)
                    .take((GIB as usize) / CHUNK)
                    .map(Ok::<_, std::io::Error>);
                Body::from_stream(stream)
            }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        )
        .route(
            "/upgrade",
            any(|mut req: Request| async move {
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    if let Ok(up) = on.await {
                        let mut io = hyper_util::rt::TokioIo::new(up);
                        let mut buf = [0u8; 64];
                        while let Ok(n) = io.read(&mut buf).await {
                            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                break;
                            }
                        }
                    }
                });
                Response::builder()
                    .status(StatusCode::SWITCHING_PROTOCOLS)
                    .header("connection", "upgrade")
                    .header("upgrade", "websocket")
                    .body(Body::empty())
                    .unwrap()
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A listener that accepts and closes every connection at once.
async fn resetting() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            drop(s);
        }
    });
    addr
}

fn rss_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(field)).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

fn config(up: std::net::SocketAddr, reset: std::net::SocketAddr, down: u16) -> String {
    format!(
        r#"{PROJECT}
service_accounts: [{{email: caller@demo-project.iam.gserviceaccount.com}}]
iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:caller@demo-project.iam.gserviceaccount.com]}}]}}
services:
  - name: files
    upstream: http://{up}
    listen: 127.0.0.1:0
    timeout: 1s
  - name: echo
    upstream: builtin:echo
    listen: 127.0.0.1:0
  - name: down
    upstream: http://127.0.0.1:{down}
    listen: 127.0.0.1:0
  - name: reset
    upstream: http://{reset}
    listen: 127.0.0.1:0
"#
    )
}

/// A port bound but never listened on: connections to it are refused, and no other test
/// can take it while the socket lives.
fn down_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

async fn start() -> (Emulator, tokio::net::TcpSocket) {
    let up = upstream().await;
    let reset = resetting().await;
    let (socket, down) = down_port();
    (Emulator::start(&config(up, reset, down)).await, socket)
}

fn auth(emu: &Emulator, service: &str) -> String {
    format!(
        "Bearer {}",
        emu.sa_token(
            "caller@demo-project.iam.gserviceaccount.com",
            &emu.url_of(service)
        )
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gibibyte_down_and_30_mib_up_stream_with_flat_memory() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (emu, _down) = start().await;
    // The peak so far is another test's: start it again from here (Linux: writing 5 to
    // clear_refs resets VmHWM to the current RSS).
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    let before = rss_kib("VmRSS:");

    let r = reqwest::Client::new()
        .get(emu.service("files", "/big"))
        .header("authorization", auth(&emu, "files"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let mut total = 0u64;
    let mut body = r.bytes_stream();
    while let Some(chunk) = body.next().await {
        total += chunk.unwrap().len() as u64;
    }
    assert_eq!(total, GIB);

    // 30 MiB up, sent as a stream of chunks (no Content-Length), counted by the echo.
    let chunks =
        futures_util::stream::iter((0..30 * 16).map(|_| Ok::<_, std::io::Error>(vec![1u8; CHUNK])));
    let r = reqwest::Client::new()
        .post(emu.service("echo", "/upload"))
        .header("authorization", auth(&emu, "echo"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let echo: Value = r.json().await.unwrap();
    assert_eq!(echo["body_length"], 30 * 1024 * 1024);

    let grown_mib = rss_kib("VmHWM:").saturating_sub(before) / 1024;
    assert!(
        grown_mib < 64,
        "peak memory grew by {grown_mib} MiB while streaming 1 GiB"
    );
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_32_mib_get_413() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (emu, _down) = start().await;
    let over = 32 * 1024 * 1024 + 1;
    // Declared by Content-Length: answered before any of the body is sent.
    let addr = emu.addresses.services["echo"].listen.unwrap();
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: {over}\r\n\r\n",
        auth(&emu, "echo")
    );
    s.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 12];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
    // Streamed without a length: cut off when it passes the limit.
    let chunks = futures_util::stream::iter(
        (0..(33 * 16)).map(|_| Ok::<_, std::io::Error>(vec![1u8; CHUNK])),
    );
    let r = reqwest::Client::new()
        .post(emu.service("echo", "/"))
        .header("authorization", auth(&emu, "echo"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await;
    match r {
        Ok(r) => assert_eq!(r.status(), 413),
        // The server may answer and close before the client has sent everything.
        Err(e) => assert!(e.is_request() || e.is_body(), "{e}"),
    }
    // Exactly 32 MiB passes. Streamed, so that this test holds no 32 MiB buffer while the
    // flat-memory test beside it measures the process.
    let chunks =
        futures_util::stream::iter((0..32 * 16).map(|_| Ok::<_, std::io::Error>(vec![0u8; CHUNK])));
    let r = reqwest::Client::new()
        .post(emu.service("echo", "/"))
        .header("authorization", auth(&emu, "echo"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["body_length"],
        32 * 1024 * 1024
    );
    // Both refusals were for the size, whatever the client saw of the streamed one (an
    // answer, or a connection closed under it).
    let decisions = emu.decisions().await;
    for (i, d) in decisions.iter().take(2).enumerate() {
        assert_eq!(
            (&d["status"], &d["allowed"]),
            (&json!(413), &json!(false)),
            "{i}: {d}"
        );
        assert!(
            d["reason"]
                .as_str()
                .unwrap()
                .contains("over Cloud Run's limit of 32 MiB"),
            "{i}: {d}"
        );
    }
    assert_eq!(decisions[2]["status"], 200);
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broken_upstream_is_503_and_a_slow_one_504() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (emu, _down) = start().await;
    let client = reqwest::Client::new();
    for (service, path, status, words) in [
        ("down", "/", 503, "is not reachable (cannot connect"),
        (
            "reset",
            "/",
            503,
            "closed or reset before a complete response",
        ),
        (
            "files",
            "/slow",
            504,
            "did not answer within the service's timeout of 1 s",
        ),
    ] {
        let r = client
            .get(emu.service(service, path))
            .header("authorization", auth(&emu, service))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status, "{service}");
        assert_eq!(r.headers()["server"], "Google Frontend");
        let body = r.text().await.unwrap();
        assert!(body.contains(words), "{service}: {body}");
        let reason = emu.decisions().await.pop().unwrap()["reason"]
            .as_str()
            .unwrap()
            .to_owned();
        assert!(reason.contains(words), "{reason}");
    }
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_pass_through_after_the_token_checks() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (emu, _down) = start().await;
    let addr = emu.addresses.services["files"].listen.unwrap();
    for (token, want) in [
        (auth(&emu, "files"), "101"),
        ("Bearer nope".to_owned(), "401"),
    ] {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!(
            "GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nAuthorization: {token}\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert_eq!(s.read(&mut byte).await.unwrap(), 1);
            head.push(byte[0]);
        }
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with(&format!("HTTP/1.1 {want}")), "{head}");
        if want == "101" {
            assert!(
                head.to_ascii_lowercase().contains("upgrade: websocket"),
                "{head}"
            );
            s.write_all(b"ping").await.unwrap();
            let mut buf = [0u8; 4];
            tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(&buf, b"ping");
        }
    }
    emu.stop().await;
}
