//! Connections to the containers, kept open between requests: a pool per thread and per
//! upstream address, of hyper's HTTP/1 client connections.
//!
//! Not hyper-util's pooled client: on the warm path that client cost 2.3 µs a request more
//! than this pool (13.1 against 10.8 µs of CPU for a bare proxy, bench/README.md), about a
//! tenth of the front door's whole cost, for a shared pool with checkout futures, locks and
//! idle timers the front door does not need. Most front-door listeners run one
//! single-threaded runtime per core, so a connection's task stays on the thread that
//! opened it; on a multi-threaded runtime (the egress proxy's TLS side) a connection may
//! come back to another thread's pool, which is only a pool of its own.
//!
//! - A connection goes back into the pool once its answer's headers are in. It is taken
//!   again only when hyper says it is ready, that is once the answer's body has been read;
//!   until then a request passes it over and opens another. The most recently used ready
//!   one is taken, so that a burst's extra connections go unused and age out.
//! - A request handed to a pooled connection the container had just closed goes once more,
//!   on a new connection: if hyper had not yet sent it (as hyper-util's client does), and
//!   if it had but has no body and a method that may be repeated (as nginx does) and the
//!   connection had gone unused long enough for a keep-alive timeout to be closing it. A
//!   request with a body is never sent twice.
//! - At most [`MAX_IDLE`] connections an upstream are kept per thread, the least recently
//!   used dropped first; one unused for [`IDLE_TIMEOUT`] is closed at the next request to
//!   that upstream; one the container closed is dropped. An upstream seen for the first
//!   time (a restarted command's new port) sweeps away the pools left with no open
//!   connection.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use axum::body::Body;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Connections kept per upstream and thread, beyond those in use.
const MAX_IDLE: usize = 256;
/// How long a connection may go unused before it is closed (hyper-util's client: 60 s).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a connection must have gone unused before a container's keep-alive timeout can
/// be closing it as a request arrives: every server we know waits a second or more (Node
/// 5 s, gunicorn 2 s, nginx 75 s). Only then is a request kept to be sent again (see
/// [`Spare`]); on the warm path a connection is reused within microseconds, and copying
/// every request's headers for a retry that cannot happen was 2% of its CPU.
const RACE_AFTER: Duration = Duration::from_millis(100);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A pooled connection, and when it was last handed a request.
struct Kept {
    sender: SendRequest<Body>,
    used: Instant,
}

thread_local! {
    /// By upstream `host:port`, the configuration's own addresses: bounded by it, not by
    /// anything a client sends. Least recently used first.
    static POOL: RefCell<HashMap<String, VecDeque<Kept>>> = RefCell::new(HashMap::new());
}

/// Why a request did not get an answer.
#[derive(Debug)]
pub(crate) enum SendError {
    /// No connection could be opened.
    Connect(String),
    /// The connection failed while the request or the answer's head was on it, or the
    /// request's own body failed (see `proxy::reading_body`).
    Exchange(hyper::Error),
    /// Over h2c, the container answered in another protocol: how it showed.
    NotHttp2(String),
}

/// Sends `req` (in origin form, with its `Host`) to the container at `authority`, on a
/// pooled connection if one is ready, else on a new one.
pub(crate) async fn send(
    authority: &str,
    mut req: Request<Body>,
) -> Result<Response<Incoming>, SendError> {
    if let Some((mut sender, idle)) = checkout(authority) {
        let spare = (idle >= RACE_AFTER).then(|| Spare::of(&req)).flatten();
        match sender.try_send_request(req).await {
            Ok(response) => {
                checkin(authority, sender, &response);
                return Ok(response);
            }
            Err(mut e) => match (e.take_message(), spare) {
                // Closed by the container before the request went out: on a new one.
                (Some(unsent), _) => req = unsent,
                // Closed as the request went out, before any answer: a request with no
                // body that may be repeated is sent again, as nginx does on a kept-alive
                // connection. Anything else is the container's failure.
                (None, Some(spare)) if e.error().is_incomplete_message() => req = spare.request(),
                (None, _) => return Err(SendError::Exchange(e.into_error())),
            },
        }
    }
    let mut sender = connect(authority).await?;
    let response = sender
        .send_request(req)
        .await
        .map_err(SendError::Exchange)?;
    checkin(authority, sender, &response);
    Ok(response)
}

/// What it takes to send a request again: kept only for a request with no body whose
/// method may be repeated (RFC 9110 §9.2.2), on a connection unused for [`RACE_AFTER`].
struct Spare(hyper::http::request::Parts);

impl Spare {
    fn of(req: &Request<Body>) -> Option<Spare> {
        if !req.method().is_idempotent() || !http_body::Body::is_end_stream(req.body()) {
            return None;
        }
        let mut parts = Request::new(()).into_parts().0;
        parts.method = req.method().clone();
        parts.uri = req.uri().clone();
        parts.version = req.version();
        parts.headers = req.headers().clone();
        Some(Spare(parts))
    }

    fn request(self) -> Request<Body> {
        Request::from_parts(self.0, Body::empty())
    }
}

/// The most recently used ready connection to `authority`, and how long it went unused,
/// after dropping the least recently used ones that are closed or unused too long.
fn checkout(authority: &str) -> Option<(SendRequest<Body>, Duration)> {
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = pool.get_mut(authority)?;
        let now = Instant::now();
        while idle
            .front()
            .is_some_and(|k| k.sender.is_closed() || now - k.used > IDLE_TIMEOUT)
        {
            idle.pop_front();
        }
        let at = idle.iter().rposition(|k| k.sender.is_ready())?;
        idle.remove(at).map(|k| (k.sender, now - k.used))
    })
}

/// Back into the pool, unless the answer took the connection over (a WebSocket's `101`):
/// such a connection never carries a request again.
fn checkin(authority: &str, sender: SendRequest<Body>, answer: &Response<Incoming>) {
    if answer.status() == hyper::StatusCode::SWITCHING_PROTOCOLS {
        return;
    }
    let kept = Kept {
        sender,
        used: Instant::now(),
    };
    POOL.with(|pool| {
        let mut pool = pool.borrow_mut();
        let idle = match pool.get_mut(authority) {
            Some(idle) => idle,
            None => {
                // A new upstream, rare: the pools of those gone (a command restarted on
                // another port, a reload) go with their last connection.
                pool.retain(|_, idle| {
                    idle.retain(|k| !k.sender.is_closed());
                    !idle.is_empty()
                });
                pool.entry(authority.to_owned()).or_default()
            }
        };
        idle.push_back(kept);
        if idle.len() > MAX_IDLE {
            idle.retain(|k| !k.sender.is_closed());
            while idle.len() > MAX_IDLE {
                idle.pop_front();
            }
        }
    });
}

/// A TCP connection to the container at `authority`, within [`CONNECT_TIMEOUT`], with
/// Nagle's algorithm off (a request's head and body go at once); HTTP/1's and h2c's.
pub(super) async fn open(authority: &str) -> Result<TcpStream, SendError> {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(authority)).await {
        Err(_) => {
            return Err(SendError::Connect(format!(
                "no answer within {} s",
                CONNECT_TIMEOUT.as_secs()
            )));
        }
        Ok(Err(e)) => return Err(SendError::Connect(e.to_string())),
        Ok(Ok(stream)) => stream,
    };
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

async fn connect(authority: &str) -> Result<SendRequest<Body>, SendError> {
    let stream = open(authority).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| SendError::Connect(e.to_string()))?;
    // The connection's task; `with_upgrades` lets a WebSocket answer take the socket over.
    tokio::spawn(async move {
        let _ = connection.with_upgrades().await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(authority: &str) -> Request<Body> {
        Request::builder()
            .uri("/")
            .header("host", authority)
            .body(Body::empty())
            .unwrap()
    }

    /// The race the retries are for: the container closes an idle connection just as a
    /// request is handed to it. A server on its own thread answers one request per
    /// connection and closes it once the test has read the answer; the test's runtime is
    /// blocked until the close is done, so the connection's task has not seen it when the
    /// next request takes the connection.
    #[tokio::test]
    async fn a_connection_the_container_closed_is_replaced_not_failed() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let (read_tx, read) = std::sync::mpsc::channel::<()>();
        let (closed_tx, closed) = std::sync::mpsc::channel::<()>();
        let server = std::thread::spawn(move || {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok");
                read.recv().unwrap();
                drop(s);
                closed_tx.send(()).unwrap();
            }
        });
        for _ in 0..2 {
            let response = send(&authority, get(&authority)).await.unwrap();
            assert_eq!(response.status(), 200);
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap();
            read_tx.send(()).unwrap();
            // Blocking on purpose: nothing else on this runtime runs until the close.
            closed
                .recv_timeout(Duration::from_secs(5))
                .expect("the server closed the connection");
            // Only a connection unused for RACE_AFTER is in the race (see `send`).
            std::thread::sleep(RACE_AFTER);
        }
        // A request with a body is not sent twice: the closed connection is its failure.
        let post = Request::post("/")
            .header("host", &authority)
            .body(Body::from("x"))
            .unwrap();
        match send(&authority, post).await {
            Err(SendError::Exchange(e)) => assert!(e.is_incomplete_message(), "{e}"),
            other => panic!("{other:?}"),
        }
        server.join().unwrap();
    }

    #[tokio::test]
    async fn a_ready_connection_is_used_again() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        let server = tokio::spawn(async move {
            let mut accepted = 0;
            while let Ok(Ok((s, _))) =
                tokio::time::timeout(Duration::from_millis(500), listener.accept()).await
            {
                accepted += 1;
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(|_| async {
                        Ok::<_, std::convert::Infallible>(Response::new(Body::from("ok")))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(s), service)
                        .await;
                });
            }
            accepted
        });
        for _ in 0..5 {
            let response = send(&authority, get(&authority)).await.unwrap();
            http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap();
        }
        assert_eq!(server.await.unwrap(), 1, "one connection for five requests");
    }

    #[tokio::test]
    async fn nothing_listening_is_a_connect_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let authority = listener.local_addr().unwrap().to_string();
        drop(listener);
        match send(&authority, get(&authority)).await {
            Err(SendError::Connect(why)) => assert!(why.contains("refused"), "{why}"),
            other => panic!("{other:?}"),
        }
    }
}
