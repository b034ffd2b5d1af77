//! `bench-tool bare-proxy legacy|conn LISTEN UPSTREAM`: the floor under the front door's
//! speed. A reverse proxy built from the same parts as frontdoor's front door and laid out
//! the same way (one single-threaded runtime per core, each accepting on its own copy of
//! the socket, hyper's HTTP/1 server), forwarding every request to UPSTREAM unchanged:
//! no token, no IAM, no decision, no log. Whatever frontdoor does per request costs on top
//! of this, so this against nginx is as close to nginx as frontdoor could get while it
//! speaks HTTP through hyper.
//!
//! - `legacy`: hyper-util's pooled client, one per thread (what frontdoor uses);
//! - `conn`: a hand-kept pool of `hyper::client::conn::http1` connections per thread, to
//!   measure what dropping the pooled client would gain.

use std::cell::RefCell;
use std::convert::Infallible;
use std::net::SocketAddr;

use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};

type Body = http_body_util::combinators::UnsyncBoxBody<bytes::Bytes, hyper::Error>;

#[derive(Clone, Copy)]
enum Mode {
    Legacy,
    Conn,
}

thread_local! {
    static LEGACY: Client<HttpConnector, Incoming> = {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        Client::builder(TokioExecutor::new()).build(connector)
    };
    static IDLE: RefCell<Vec<SendRequest<Incoming>>> = const { RefCell::new(Vec::new()) };
}

pub(crate) fn run(args: &[&str]) {
    let [mode, listen, upstream] = args else {
        panic!("bare-proxy legacy|conn LISTEN UPSTREAM");
    };
    let mode = match *mode {
        "legacy" => Mode::Legacy,
        "conn" => Mode::Conn,
        other => panic!("mode is legacy or conn, not {other}"),
    };
    let upstream: SocketAddr = upstream.parse().expect("UPSTREAM is HOST:PORT");
    let listener = std::net::TcpListener::bind(listen).expect("LISTEN is free");
    listener.set_nonblocking(true).unwrap();
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads: Vec<_> = (0..workers)
        .map(|_| {
            let listener = listener.try_clone().unwrap();
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(serve(listener, mode, upstream));
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

async fn serve(listener: std::net::TcpListener, mode: Mode, upstream: SocketAddr) {
    let listener = TcpListener::from_std(listener).unwrap();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| forward(req, mode, upstream));
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    req: Request<Incoming>,
    mode: Mode,
    upstream: SocketAddr,
) -> Result<Response<Body>, Infallible> {
    let answer = match mode {
        Mode::Legacy => {
            let (mut parts, body) = req.into_parts();
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            parts.uri = format!("http://{upstream}{path}").parse().unwrap();
            LEGACY
                .with(Client::clone)
                .request(Request::from_parts(parts, body))
                .await
                .ok()
        }
        Mode::Conn => pooled(req, upstream).await,
    };
    Ok(match answer {
        Some(r) => r.map(|b| b.boxed_unsync()),
        None => Response::builder()
            .status(502)
            .body(
                http_body_util::Empty::new()
                    .map_err(|never| match never {})
                    .boxed_unsync(),
            )
            .unwrap(),
    })
}

/// An idle connection of this thread's, or a new one; given back once its answer's headers
/// are in, at most 256 kept (hyper queues nothing: a connection still sending a body is not
/// ready, and is passed over until it is).
async fn pooled(req: Request<Incoming>, upstream: SocketAddr) -> Option<Response<Incoming>> {
    let ready = IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        idle.retain(|s| !s.is_closed());
        let at = idle.iter().position(SendRequest::is_ready)?;
        Some(idle.swap_remove(at))
    });
    let mut sender = match ready {
        Some(s) => s,
        None => {
            let stream = TcpStream::connect(upstream).await.ok()?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .ok()?;
            tokio::spawn(connection);
            sender
        }
    };
    let response = sender.send_request(req).await.ok()?;
    IDLE.with(|idle| {
        let mut idle = idle.borrow_mut();
        if idle.len() < 256 {
            idle.push(sender);
        }
    });
    Some(response)
}
