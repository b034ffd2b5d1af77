//! The accept loop every listener runs, in place of `axum::serve`, which has no header-read
//! timeout, no cap on open connections and no bound on a shutdown (issue 10: slowloris
//! connections were held forever, 500 half-sent requests held 340 MB, running out of file
//! descriptors made every listener unreachable).
//!
//! - a connection's first byte, and each request's headers, must arrive within
//!   [`Limits::header_read_timeout`], which also closes a keep-alive connection that sends
//!   nothing for that long (`peer::idle`);
//! - headers are read into at most [`crate::peer::MAX_HEADER_BYTES`];
//! - at most [`Limits::max_connections`] are open per listener; past that the oldest is
//!   asked to close (at once if idle), and a new connection is closed only if none made
//!   room within a second; the listener keeps serving the others;
//! - an accept error (out of file descriptors, say) is logged and retried after a pause,
//!   never the end of the listener;
//! - on stop, idle connections close at once and requests in flight may finish (the caller
//!   bounds how long).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::frontdoor::CallerProcess;
use crate::peer::idle::Connections;
use crate::peer::{Peer, http_builder, with_connection};

/// How long a connection may take to send a request's headers, and how many may be open.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_connections: usize,
}

impl Default for Limits {
    /// 10 s for headers (ample on loopback, where every client here is); 4,096 connections
    /// a listener, well under the file-descriptor limit `serve` raises itself to.
    fn default() -> Self {
        Limits {
            header_read_timeout: Duration::from_secs(10),
            max_connections: 4096,
        }
    }
}

/// Serves `app` on `listener` until `stop` turns true; then closes idle connections and
/// waits for the requests in flight.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    stop: watch::Receiver<bool>,
    limits: Limits,
) -> std::io::Result<()> {
    let connections = Connections::new(limits.max_connections);
    serve_counted(listener, app, stop, limits, connections).await
}

/// [`serve`], its open connections counted in `connections` (which tests read).
async fn serve_counted(
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
    limits: Limits,
    connections: Connections,
) -> std::io::Result<()> {
    // Shared, not cloned per connection: each connection borrows it in its own task.
    let builder = Arc::new(http_builder(limits.header_read_timeout));
    loop {
        let (stream, remote) = tokio::select! {
            biased;
            () = stopped(&mut stop) => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot accept a connection; trying again in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let peer = Peer {
            remote,
            local: stream.local_addr().unwrap_or(remote),
        };
        let service = with_connection(app.clone(), peer, CallerProcess::default());
        let (connections, builder) = (connections.clone(), builder.clone());
        tokio::spawn(async move {
            // At the cap the oldest connection is asked to close (at once if idle) and this
            // one waits for its place here, not in the accept loop, which goes on.
            let Some(slot) = connections.admit(SHED_WAIT, REFUSED).await else {
                return;
            };
            let io = slot.first_byte(stream, limits.header_read_timeout);
            let connection = builder.serve_connection_with_upgrades(
                TokioIo::new(io),
                TowerToHyperService::new(service),
            );
            let mut connection = std::pin::pin!(connection);
            // Polled on every wake: the connection first, and one cheap signal for both
            // making room and stopping.
            tokio::select! {
                biased;
                _ = connection.as_mut() => return drop(slot),
                () = slot.shed() => {}
            }
            // Idle, it closes now; a request in flight may finish first.
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
            drop(slot);
        });
    }
    drop(listener);
    connections.close_all();
    connections.all_closed().await;
    Ok(())
}

/// How long a connection over the cap waits for the oldest to make room.
const SHED_WAIT: Duration = Duration::from_secs(1);

/// What the log says, at most once a second, when a connection is refused at the cap.
const REFUSED: &str =
    "too many open connections, and none made room within a second; closing new ones";

/// Completes once `stop` turns true (or its sender is gone). A function of its own so
/// that the `watch` guard is dropped inside it and the accept loop's future stays `Send`.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// Errors of one connection that went away before it was accepted: nothing to wait for.
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::MAX_HEADER_BYTES;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A server of "ok" under `limits` on an ephemeral port: its address, the switch that
    /// stops it, the task serving, and its count of open connections.
    async fn start(
        limits: Limits,
    ) -> (
        std::net::SocketAddr,
        watch::Sender<bool>,
        tokio::task::JoinHandle<std::io::Result<()>>,
        Connections,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = Router::new().fallback(|| async { "ok" });
        let (stop_tx, stop_rx) = watch::channel(false);
        let connections = Connections::new(limits.max_connections);
        let counted = connections.clone();
        let server = tokio::spawn(serve_counted(listener, app, stop_rx, limits, counted));
        (addr, stop_tx, server, connections)
    }

    /// Waits until `connections` holds `n` open ones; fails the test after 5 s.
    async fn until_open(connections: &Connections, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while connections.open() != n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{} connections open, not {n}",
                connections.open()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn closed_within(stream: &mut tokio::net::TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        loop {
            match tokio::time::timeout(within, stream.read(&mut buf)).await {
                Err(_) => return false,
                Ok(Ok(0) | Err(_)) => return true,
                Ok(Ok(_)) => {}
            }
        }
    }

    #[tokio::test]
    async fn slow_headers_time_out_and_connections_past_the_cap_are_closed() {
        let (addr, stop_tx, server, connections) = start(Limits {
            header_read_timeout: Duration::from_millis(500),
            max_connections: 2,
        })
        .await;

        // Two slowloris connections: half a request each, never finished.
        let mut slow = Vec::new();
        for _ in 0..2 {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await.unwrap();
            slow.push(s);
        }
        until_open(&connections, 2).await;
        // A third is over the cap: the oldest is asked to make room, and a connection
        // half-way through its headers is no idle one, so the third is closed.
        let mut third = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut third, Duration::from_millis(1500)).await);
        // The slow ones are cut off once their headers are late.
        for s in &mut slow {
            assert!(closed_within(s, Duration::from_secs(2)).await);
        }
        // And the listener serves again.
        until_open(&connections, 0).await;
        let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        ok.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

        // Stopping closes an idle keep-alive connection at once.
        let mut idle = tokio::net::TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 512];
        let n = idle.read(&mut buf).await.unwrap();
        assert!(n > 0);
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(2), server)
            .await
            .expect("the server stopped at once")
            .unwrap()
            .unwrap();
        assert!(closed_within(&mut idle, Duration::from_millis(500)).await);
    }

    /// Issue 26: the cap's worth of sockets that never send a byte cannot shut a listener
    /// out; a new client is served within a second, and the silent ones are closed.
    #[tokio::test]
    async fn silent_sockets_at_the_cap_make_room_for_a_new_client() {
        let (addr, _stop_tx, _, connections) = start(Limits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 64,
        })
        .await;
        let mut silent = Vec::new();
        for _ in 0..64 {
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        until_open(&connections, 64).await;
        for round in 0..3 {
            let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
            ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut answer = String::new();
            tokio::time::timeout(Duration::from_secs(1), ok.read_to_string(&mut answer))
                .await
                .unwrap_or_else(|_| panic!("round {round}: not served within a second"))
                .unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        }
        // The oldest silent one made room, closed at once; the others' places were given
        // back by the served clients, each closed after its answer.
        assert!(closed_within(&mut silent[0], Duration::from_millis(500)).await);
    }

    /// Issue 26: at the cap, a connection busy with a slow request is not the one asked to
    /// make room while others have never sent a byte; the newcomer is served at once and
    /// the busy request finishes.
    #[tokio::test]
    async fn at_the_cap_a_silent_connection_makes_room_before_an_older_busy_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Told when the slow request is in its handler: the busy connection has spoken.
        let (started_tx, started) = tokio::sync::oneshot::channel::<()>();
        let started_tx = Arc::new(std::sync::Mutex::new(Some(started_tx)));
        let app = Router::new()
            .route(
                "/slow",
                axum::routing::get(move || {
                    if let Some(tx) = started_tx.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    async move {
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        "slow"
                    }
                }),
            )
            .fallback(|| async { "ok" });
        let (_stop_tx, stop_rx) = watch::channel(false);
        let limits = Limits {
            header_read_timeout: Duration::from_secs(30),
            max_connections: 4,
        };
        tokio::spawn(serve(listener, app, stop_rx, limits));
        let mut busy = tokio::net::TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(5), started)
            .await
            .expect("the slow request reached its handler within 5 s")
            .unwrap();
        let mut silent = Vec::new();
        for _ in 0..3 {
            silent.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
        let mut ok = tokio::net::TcpStream::connect(addr).await.unwrap();
        ok.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        tokio::time::timeout(Duration::from_secs(1), ok.read_to_string(&mut answer))
            .await
            .expect("served within a second, not after the slow request")
            .unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let mut slow = String::new();
        busy.read_to_string(&mut slow).await.unwrap();
        assert!(
            slow.starts_with("HTTP/1.1 200") && slow.ends_with("slow"),
            "{slow}"
        );
    }

    /// A connection that never sends its first byte is closed at the header deadline, as
    /// one that stops half-way through its headers is.
    #[tokio::test]
    async fn a_connection_that_sends_nothing_is_closed_at_the_deadline() {
        let (addr, _stop_tx, _, _) = start(Limits {
            header_read_timeout: Duration::from_millis(300),
            max_connections: 8,
        })
        .await;
        let mut silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut silent, Duration::from_secs(2)).await);
    }

    #[tokio::test]
    async fn headers_over_the_budget_are_refused() {
        let (addr, _stop_tx, _, _) = start(Limits::default()).await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let big = format!(
            "GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "a".repeat(MAX_HEADER_BYTES + 1024)
        );
        let _ = s.write_all(big.as_bytes()).await;
        let mut answer = Vec::new();
        let _ = s.read_to_end(&mut answer).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 431") || answer.is_empty(),
            "{answer}"
        );
        assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
}
