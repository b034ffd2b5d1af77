//! What every listener knows of a connection, and how each reads one: the accept loop
//! (`server::accept`) and the egress proxy's TLS tunnels (`egress`) serve HTTP alike.

pub(crate) mod idle;

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

/// The host one of the egress proxy's TLS tunnels was opened to, on each request inside
/// it: how a surface tells a request through the proxy from one to its own listener.
#[derive(Clone)]
pub(crate) struct TunnelHost(pub(crate) std::sync::Arc<str>);

/// A request the front door gets from a Google-managed caller, in process, rather than
/// from a client: who it is, for the decision and the ingress check (`Pub/Sub push,
/// subscription S, as SA, attempt N`). Nothing on the network can set it.
#[derive(Debug, Clone)]
pub(crate) struct ManagedCaller(pub(crate) std::sync::Arc<str>);

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

/// Lets a request through only if it names this machine: no `Host` (nor HTTP/2 authority)
/// at all, `localhost` or a name under it, a loopback address, or the address the
/// connection reached; any other name gets a 421 saying why. A browser always sends the
/// name it looked up, so a page whose name was pointed at 127.0.0.1 (DNS rebinding) is
/// refused here.
pub(crate) async fn local_names_only(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let named = req
        .headers()
        .get(axum::http::header::HOST)
        .map(|h| h.to_str().unwrap_or("\u{fffd}").to_owned())
        .or_else(|| req.uri().authority().map(ToString::to_string));
    let local = req
        .extensions()
        .get::<ConnectInfo<Peer>>()
        .map(|ConnectInfo(peer)| peer.local.ip());
    match named {
        Some(host) if !names_this_machine(&host, local) => (
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            [(axum::http::header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!(
                "frontdoor's own endpoints answer only requests for this machine (localhost, a loopback address or the listener's own address), not for `{}`\n",
                host.chars().take(100).collect::<String>()
            ),
        )
            .into_response(),
        _ => next.run(req).await,
    }
}

/// A request that changes or hands back something (anything but GET and HEAD) to
/// frontdoor's own endpoints: JSON from this machine's own pages or programs only. A web
/// page elsewhere can make the browser send a `text/plain` POST to a loopback address
/// without asking first (no CORS preflight), and its Host names this machine; such a
/// request is refused before it can make a key or mint a token. A browser says where a
/// request comes from (`Sec-Fetch-Site`, `Origin`); the CLI and test clients say
/// neither.
pub(crate) async fn same_origin_json_only(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::http::{Method, StatusCode, header};
    use axum::response::IntoResponse;
    if matches!(*req.method(), Method::GET | Method::HEAD) {
        return next.run(req).await;
    }
    let headers = req.headers();
    let text = |name: &str| headers.get(name).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    // As `local_names_only` reads it: the Host header, else HTTP/2's `:authority`.
    let authority = req.uri().authority().map(ToString::to_string);
    let host = text(header::HOST.as_str())
        .or(authority.as_deref())
        .unwrap_or_default();
    let refusal = if text("sec-fetch-site").is_some_and(|s| s != "same-origin" && s != "none") {
        Some((
            StatusCode::FORBIDDEN,
            "frontdoor's own endpoints take requests from its own pages and programs, not from another site's page".to_owned(),
        ))
    } else if let Some(origin) = text(header::ORIGIN.as_str())
        && origin.split_once("://").map(|(_, authority)| authority) != Some(host)
    {
        Some((
            StatusCode::FORBIDDEN,
            format!(
                "frontdoor's own endpoints take requests from its own pages and programs, not from a page at `{}`",
                origin.chars().take(100).collect::<String>()
            ),
        ))
    } else if !text(header::CONTENT_TYPE.as_str()).is_some_and(|t| {
        t.trim_start()
            .to_ascii_lowercase()
            .starts_with("application/json")
    }) {
        Some((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the body as JSON, with `Content-Type: application/json`".to_owned(),
        ))
    } else {
        None
    };
    match refusal {
        Some((status, message)) => (
            status,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            message + "\n",
        )
            .into_response(),
        None => next.run(req).await,
    }
}

/// Whether `host` (a `Host` header: a name or address, maybe with a port) names this
/// machine: its loopback (`config::names::is_loopback_name`), or `local`.
fn names_this_machine(host: &str, local: Option<std::net::IpAddr>) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => match host.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
            _ => host,
        },
    };
    crate::config::names::is_loopback_name(name)
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| Some(ip.to_canonical()) == local.map(|l| l.to_canonical()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_names_of_this_machine_reach_frontdoors_own_endpoints() {
        let local: std::net::IpAddr = "192.0.2.5".parse().unwrap();
        for ok in [
            "localhost",
            "LOCALHOST:8088",
            "dash.localhost:8088",
            "127.0.0.1:8088",
            "127.1.2.3",
            "[::1]:8088",
            "192.0.2.5:8088",
            "localhost.",
        ] {
            assert!(names_this_machine(ok, Some(local)), "{ok}");
        }
        for refused in [
            "evil.example",
            "evil.example:8088",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "192.0.2.6:8088",
            "oauth2.googleapis.com",
            "localhost:x.evil.example",
            "",
        ] {
            assert!(!names_this_machine(refused, Some(local)), "{refused}");
        }
    }
}
