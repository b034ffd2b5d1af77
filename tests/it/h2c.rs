//! Containers spoken to over h2c (issue 28): a service that is HTTP/2 end to end, called by
//! HTTP/1 and HTTP/2 clients; no 32 MiB limit on a stream; the service's timeout over the
//! whole stream; a container that speaks HTTP/1 on a port declared h2c; malformed frames,
//! a reset mid-body and 10,000 streams on one connection.

use crate::common;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use futures_util::StreamExt as _;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};

type Boxed = http_body_util::combinators::BoxBody<Bytes, Infallible>;

fn full(text: impl Into<Bytes>) -> Boxed {
    Full::new(text.into()).boxed()
}

/// A body that sends `first`, then nothing, ever.
fn stalled(first: &'static str) -> Boxed {
    let frames = futures_util::stream::once(async move { Ok(Frame::data(Bytes::from(first))) })
        .chain(futures_util::stream::pending());
    BodyExt::boxed(StreamBody::new(frames))
}

/// An h2c-only upstream (HTTP/2 with prior knowledge, as a gRPC server speaks):
/// - `/seen` answers JSON: the version, `:authority`, and the headers it was sent;
/// - `/count` reads the whole body and answers its length;
/// - `/stall` answers its headers and a first chunk, then nothing (with the request's
///   content type, so a gRPC call gets a gRPC answer).
async fn h2c_upstream() -> std::net::SocketAddr {
    listen(|stream| async move {
        let service = hyper::service::service_fn(|req: hyper::Request<Incoming>| async move {
            Ok::<_, Infallible>(answer(req).await)
        });
        let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await
}

/// A loopback listener whose every connection `serve` takes, on a task of its own.
async fn listen<F, Fut>(serve: F) -> std::net::SocketAddr
where
    F: Fn(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream));
        }
    });
    addr
}

async fn answer(req: hyper::Request<Incoming>) -> hyper::Response<Boxed> {
    match req.uri().path() {
        "/seen" => {
            let headers: serde_json::Map<String, serde_json::Value> = req
                .headers()
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").into()))
                .collect();
            let seen = serde_json::json!({
                "version": format!("{:?}", req.version()),
                "authority": req.uri().authority().map(|a| a.to_string()),
                "headers": headers,
            });
            hyper::Response::new(full(seen.to_string()))
        }
        "/count" => {
            let mut body = req.into_body();
            let mut total = 0usize;
            while let Some(frame) = body.frame().await {
                match frame {
                    Ok(f) => total += f.data_ref().map_or(0, |d| d.len()),
                    Err(e) => return hyper::Response::new(full(format!("broken: {e}"))),
                }
            }
            hyper::Response::new(full(format!("{total} bytes")))
        }
        "/stall" => {
            let mut response = hyper::Response::new(stalled("first"));
            if let Some(kind) = req.headers().get("content-type") {
                response.headers_mut().insert("content-type", kind.clone());
            }
            response
        }
        _ => hyper::Response::new(full("hello over h2c")),
    }
}

/// An upstream that speaks HTTP/1 only: what an h2c port should never be.
async fn http1_upstream() -> std::net::SocketAddr {
    listen(|stream| async move {
        let service = hyper::service::service_fn(|_| async {
            Ok::<_, Infallible>(hyper::Response::new(full("hello over HTTP/1.1")))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), service)
            .await;
    })
    .await
}

fn config(h2c: std::net::SocketAddr, http1: std::net::SocketAddr) -> String {
    let public = "iam_policy: {bindings: [{role: roles/run.invoker, members: [allUsers]}]}";
    format!(
        r#"{PROJECT}services:
  - name: streamer
    upstream: http://{h2c}
    use_http2: true
    timeout: 2s
    listen: 127.0.0.1:0
    {public}
  - name: mislabelled
    upstream: http://{http1}
    use_http2: true
    listen: 127.0.0.1:0
    {public}
  - name: plain
    upstream: http://{http1}
    listen: 127.0.0.1:0
    {public}
"#
    )
}

/// An HTTP/2 connection with prior knowledge to `addr`.
async fn h2_client(addr: &str) -> hyper::client::conn::http2::SendRequest<Boxed> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

fn host_port(url: &str) -> String {
    url.trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_and_http2_clients_reach_an_h2c_service_with_no_32_mib_limit() {
    let emu = Emulator::start(&config(h2c_upstream().await, http1_upstream().await)).await;
    let client = reqwest::Client::new();

    // An HTTP/1 client: frontdoor speaks HTTP/2 to the container, the client's Host as
    // `:authority`, and no Host header besides.
    let seen: serde_json::Value = client
        .get(emu.service("streamer", "/seen"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let addr = host_port(&emu.service("streamer", ""));
    assert_eq!(seen["version"], "HTTP/2.0", "{seen}");
    assert_eq!(seen["authority"], addr.as_str(), "{seen}");
    assert!(seen["headers"].get("host").is_none(), "{seen}");
    assert_eq!(seen["headers"]["x-forwarded-proto"], "https", "{seen}");
    assert!(seen["headers"].get("traceparent").is_some(), "{seen}");

    // The same through the shared listener by the service's URL: its host is the authority.
    let url = emu.url_of("streamer");
    let host = url.trim_start_matches("https://");
    let seen: serde_json::Value = client
        .get(format!("http://{}/seen", emu.addresses.frontdoor))
        .header("host", host)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["authority"], host, "{seen}");

    // A Host that is no authority (a path and a query in it) cannot move the request
    // elsewhere on the container: the container's own host goes as `:authority`.
    let seen: serde_json::Value = client
        .get(emu.service("streamer", "/seen"))
        .header("host", "evil.example/count?")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["version"], "HTTP/2.0", "{seen}");
    assert_ne!(seen["authority"], "evil.example", "{seen}");

    // A malformed body is the client's fault (400), on a connection already open to the
    // container as on a new one.
    let raw = host_port(&emu.service("streamer", ""));
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(raw).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\nzz\r\n")
            .unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        String::from_utf8_lossy(&all).into_owned()
    })
    .await
    .unwrap();
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(
        answer.contains("malformed_request: ")
            && answer.contains("the request body could not be read"),
        "{answer}"
    );

    // 40 MiB up in chunks, no Content-Length: HTTP/1's 32 MiB limit is not a stream's.
    const CHUNK: usize = 64 * 1024;
    let chunks =
        futures_util::stream::iter((0..40 * 16).map(|_| Ok::<_, std::io::Error>(vec![7u8; CHUNK])));
    let r = client
        .post(emu.service("streamer", "/count"))
        .body(reqwest::Body::wrap_stream(chunks))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.text().await.unwrap(),
        format!("{} bytes", 40 * 1024 * 1024)
    );
    // Over HTTP/1 to an HTTP/1 service the limit stands, declared or not (a control).
    let r = client
        .post(emu.service("plain", "/"))
        .header("content-length", (33 * 1024 * 1024).to_string())
        .body(Vec::new())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);

    // An HTTP/2 client to the HTTP/1 service: translated, as before.
    let mut h2 = h2_client(&host_port(&emu.service("plain", ""))).await;
    let response = h2
        .send_request(
            hyper::Request::builder()
                .uri(emu.service("plain", "/"))
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello over HTTP/1.1");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_services_timeout_covers_the_whole_stream() {
    let emu = Emulator::start(&config(h2c_upstream().await, http1_upstream().await)).await;

    // A plain client: the first chunk, then the body is cut off at the 2 s timeout.
    let started = Instant::now();
    let mut r = reqwest::get(emu.service("streamer", "/stall"))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.chunk().await.unwrap().unwrap(), "first");
    assert!(r.chunk().await.is_err(), "the stalled body must be cut off");
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(1500)..Duration::from_secs(10)).contains(&took),
        "{took:?}"
    );

    // A gRPC call: the output so far, then trailers a gRPC client reads as DEADLINE_EXCEEDED.
    let mut h2 = h2_client(&host_port(&emu.service("streamer", ""))).await;
    let response = h2
        .send_request(
            hyper::Request::builder()
                .method("POST")
                .uri(emu.service("streamer", "/stall"))
                .header("content-type", "application/grpc")
                .header("te", "trailers")
                .body(full(""))
                .unwrap(),
        )
        .await
        .unwrap();
    let collected = response.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(collected.to_bytes(), "first");
    assert_eq!(trailers["grpc-status"], "4", "{trailers:?}");
    let message = trailers["grpc-message"].to_str().unwrap();
    assert!(message.contains("timeout of 2 s ran out"), "{message}");
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_container_on_an_h2c_port_is_a_clear_503() {
    let emu = Emulator::start(&config(h2c_upstream().await, http1_upstream().await)).await;
    let started = Instant::now();
    let r = reqwest::get(emu.service("mislabelled", "/")).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(r.status(), 503);
    let reason = r.headers()["x-frontdoor-reason"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        reason.starts_with("upstream_failed: ")
            && reason.contains("did not speak HTTP/2: the service is HTTP/2 end to end")
            && reason.contains("--no-use-http2"),
        "{reason}"
    );
    let d = emu.decisions().await.pop().unwrap();
    assert_eq!(
        (d["status"].as_u64(), d["code"].as_str()),
        (Some(503), Some("upstream_failed"))
    );
    emu.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_resets_and_ten_thousand_streams_lose_nothing() {
    let emu = Emulator::start(&config(h2c_upstream().await, http1_upstream().await)).await;
    let addr = host_port(&emu.service("streamer", ""));

    // The preface, then a frame of an unknown-length garbage header: the connection is
    // closed, promptly, and the listener serves the next one.
    let raw = addr.clone();
    let answer = tokio::task::spawn_blocking(move || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(raw).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").unwrap();
        s.write_all(&[
            0xff, 0xff, 0xff, 0x01, 0x00, 0x00, 0x00, 0x00, 0x01, 1, 2, 3,
        ])
        .unwrap();
        let mut all = Vec::new();
        let _ = s.read_to_end(&mut all);
        all
    })
    .await
    .unwrap();
    // A SETTINGS frame, then a GOAWAY (type 7) before the close.
    assert!(answer.windows(2).any(|w| w == [0x07, 0x00]), "{answer:?}");

    // A request whose body is reset mid-way: the container sees it broken, frontdoor goes on.
    let mut h2 = h2_client(&addr).await;
    let frames = futures_util::stream::iter([
        Ok(Frame::data(Bytes::from_static(b"partial"))),
        Err(std::io::Error::other("the client gave up")),
    ]);
    let broken = h2
        .send_request(
            hyper::Request::builder()
                .method("POST")
                .uri(emu.service("streamer", "/count"))
                .body(BodyExt::boxed(
                    StreamBody::new(frames).map_err(|_| unreachable!()),
                ))
                .unwrap(),
        )
        .await;
    // Either the reset reached the client first or the container's answer did: both end,
    // and the connection that carried the broken stream still serves the next one.
    if let Ok(r) = broken {
        let _ = r.into_body().collect().await;
    }
    let after = h2
        .send_request(
            hyper::Request::builder()
                .uri(emu.service("streamer", "/"))
                .body(full(""))
                .unwrap(),
        )
        .await
        .expect("the connection outlives a stream's reset");
    assert_eq!(after.status(), 200);
    let body = after.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "hello over h2c");

    // 10,000 streams at once on one connection: the front door takes 200 at a time (its
    // SETTINGS_MAX_CONCURRENT_STREAMS), and every one is answered.
    let mut h2 = h2_client(&addr).await;
    let started = Instant::now();
    let calls = (0..10_000).map(|_| {
        let request = hyper::Request::builder()
            .uri(emu.service("streamer", "/"))
            .body(full(""))
            .unwrap();
        let sent = h2.send_request(request);
        async move {
            let r = sent.await.unwrap();
            let status = r.status();
            r.into_body().collect().await.unwrap();
            status
        }
    });
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 200));
    assert!(started.elapsed() < Duration::from_secs(120));
    // And the listener still answers.
    let r = reqwest::get(emu.service("streamer", "/")).await.unwrap();
    assert_eq!(r.text().await.unwrap(), "hello over h2c");
    emu.stop().await;
}
