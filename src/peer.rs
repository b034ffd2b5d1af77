//! What every listener knows of a connection, and how each reads one: the accept loop
//! (`server::accept`) and the egress proxy's TLS tunnels (`egress`) serve HTTP alike.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use hyper_util::server::conn::auto;

/// Both ends of a connection: the caller's address, and ours (which identifies the
/// connection in the kernel's tables, for recognising frontdoor's own services; and, on
/// the google listener, which address the caller reached). The accept loop
/// (`server::accept`) hands it to every request as `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    pub remote: SocketAddr,
    pub local: SocketAddr,
}

/// The most a request's headers may take: Cloud Run's own limit is 64 KiB.
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// HTTP/1 and HTTP/2 with a request's headers bounded in time and in bytes.
pub(crate) fn http_builder(header_read_timeout: Duration) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
}

/// `app` as a connection's service: each request carries the connection's two ends and
/// `caller`, what the listener knows of the process at the other end
/// (`frontdoor::CallerProcess`).
pub(crate) fn with_connection<B, C>(
    app: Router,
    peer: Peer,
    caller: C,
) -> impl tower::Service<
    axum::http::Request<B>,
    Response = axum::response::Response,
    Error = std::convert::Infallible,
    Future = impl Send,
> + Clone
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    C: Clone + Send + Sync + 'static,
    B::Error: Into<axum::BoxError>,
{
    use tower::ServiceExt;
    tower::service_fn(move |mut req: axum::http::Request<B>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(caller.clone());
        app.clone().oneshot(req.map(axum::body::Body::new))
    })
}
