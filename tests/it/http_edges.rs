//! The front door at the edges of HTTP (issue 10): two Host headers, CONNECT, an
//! absolute-form target, a malformed chunked body, h2c to an HTTP/1 upstream, and an
//! Upgrade that is not WebSocket.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::*;

/// Sends `raw` to `addr` and returns the response's status line and the rest.
fn raw(addr: &str, raw: &str) -> (String, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream.write_all(raw.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (status, rest) = answer.split_once("\r\n").unwrap_or((&answer, ""));
    (status.to_owned(), rest.to_owned())
}

/// `raw`, off the runtime that serves the emulator.
async fn send(addr: &str, text: String) -> (String, String) {
    let addr = addr.to_owned();
    tokio::task::spawn_blocking(move || raw(&addr, &text))
        .await
        .unwrap()
}

fn config(upstream: &str) -> String {
    format!(
        "{}  - name: open\n    upstream: {upstream}\n    listen: 127.0.0.1:0\n    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [allUsers]}}]}}\n",
        three_services()
    )
}

/// An HTTP/1 upstream that reads the whole body and answers with its length.
async fn upstream() -> std::net::SocketAddr {
    let app = axum::Router::new()
        .fallback(|body: axum::body::Bytes| async move { format!("{} bytes", body.len()) });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_at_the_edges_of_http_get_clear_answers() {
    let up = upstream().await;
    let emu = Emulator::start(&config(&format!("http://{up}"))).await;
    let shared = emu.addresses.frontdoor.to_string();
    let login = emu
        .url_of("login")
        .trim_start_matches("https://")
        .to_owned();
    let search = emu
        .url_of("search")
        .trim_start_matches("https://")
        .to_owned();

    // Two Host headers: which one is meant? Neither is guessed.
    let (status, rest) = send(
        &shared,
        format!("GET / HTTP/1.1\r\nHost: {login}\r\nHost: {search}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{rest}");
    assert!(
        rest.contains("x-frontdoor-reason: malformed_request: the request has 2 Host headers"),
        "{rest}"
    );

    // CONNECT: the front door is no proxy.
    let (status, rest) = send(
        &shared,
        "CONNECT search.example.com:443 HTTP/1.1\r\nHost: search.example.com:443\r\nConnection: close\r\n\r\n".to_owned(),
    )
    .await;
    assert_eq!(status, "HTTP/1.1 405 Method Not Allowed", "{rest}");

    // Absolute form: the target's host wins over Host (RFC 9112 §3.2.2). login is public,
    // search is not: a 403 shows the request went to search.
    let (status, rest) = send(
        &shared,
        format!("GET http://{search}/ HTTP/1.1\r\nHost: {login}\r\nConnection: close\r\n\r\n"),
    )
    .await;
    assert_eq!(status, "HTTP/1.1 403 Forbidden", "{rest}");
    let d = emu.decisions().await.pop().unwrap();
    assert_eq!(d["service"], "search");

    // A malformed chunk size is the client's error: 400, to an HTTP upstream and to echo.
    let chunked = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n";
    for service in ["open", "login"] {
        let addr = emu
            .service(service, "")
            .trim_start_matches("http://")
            .to_owned();
        let (status, rest) = send(&addr, chunked.to_owned()).await;
        assert_eq!(status, "HTTP/1.1 400 Bad Request", "{service}: {rest}");
        assert!(
            rest.contains("x-frontdoor-reason:")
                && rest.contains("the request body could not be read"),
            "{service}: {rest}"
        );
    }
    // A well-formed one passes, as a control.
    let addr = emu
        .service("open", "")
        .trim_start_matches("http://")
        .to_owned();
    let (status, rest) = send(
        &addr,
        "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_owned(),
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{rest}");
    assert!(rest.ends_with("3 bytes"), "{rest}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2c_reaches_an_http1_upstream_and_only_websocket_upgrades() {
    let up = upstream().await;
    let emu = Emulator::start(&config(&format!("http://{up}"))).await;
    let addr = emu
        .service("open", "")
        .trim_start_matches("http://")
        .to_owned();

    // HTTP/2 with prior knowledge to the front door; the upstream speaks HTTP/1.1.
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = hyper::Request::builder()
        .uri(format!("http://{addr}/"))
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            b"hello",
        )))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);

    // An h2c Upgrade over HTTP/1.1 is not passed on: the upstream answers a plain request.
    let echo = emu
        .service("login", "")
        .trim_start_matches("http://")
        .to_owned();
    let (status, rest) = send(
        &echo,
        "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n".to_owned(),
    )
    .await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{rest}");
    let body = rest.split("\r\n\r\n").nth(1).unwrap_or("");
    let seen: serde_json::Value = serde_json::from_str(body).unwrap();
    assert!(seen["headers"].get("upgrade").is_none(), "{seen}");
    assert!(seen["headers"].get("http2-settings").is_none(), "{seen}");
    emu.stop().await;
}
