//! Proxying an allowed request to the service's container (SPEC §4): bodies streamed both
//! ways, the headers rewritten (`headers`: hop-by-hop and client-supplied `X-Google-*`
//! dropped, forwarding and trace headers added, the checked token redacted), WebSocket
//! upgrades spliced through.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;

use super::auth::Credential;
use super::h2c;
use super::headers::{insert, ip_text, is_upgrade, rewrite_request_headers, strip_hop_by_hop};
use super::pool::{self, SendError};
use crate::config::{Service, Upstream};
use crate::upstream::Supervisor;
use crate::upstream::supervisor::InFlight;

/// Cloud Run's limit on an HTTP/1 request body.
pub(crate) const MAX_REQUEST_BODY: usize = 32 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub(crate) enum ProxyError {
    #[error("the request body is over Cloud Run's limit of 32 MiB for HTTP/1 requests")]
    TooLarge,
    #[error("the container at {upstream} is not reachable ({cause})")]
    Unreachable { upstream: String, cause: String },
    #[error("the container at {upstream} did not answer within the service's timeout of {secs} s")]
    Timeout { upstream: String, secs: u64 },
    /// Cloud Run's words for a container that never came up, then ours.
    #[error("the instance could not start: {0}")]
    NotStarted(String),
    /// The client's own body was malformed or cut short: its fault, not the container's.
    #[error("the request body could not be read: {0}")]
    BadBody(String),
    /// The request went over h2c and the container answered in another protocol.
    #[error(
        "the container at {upstream} did not speak HTTP/2: {why}, but {how}; serve h2c (HTTP/2 without TLS, as gRPC servers do) on the port{fix}"
    )]
    NotHttp2 {
        upstream: String,
        why: &'static str,
        how: String,
        fix: &'static str,
    },
}

impl ProxyError {
    /// The stable code of the refusal: the client's body, or the container.
    pub(crate) fn code(&self) -> crate::decisions::Code {
        use crate::decisions::Code;
        match self {
            ProxyError::TooLarge => Code::BodyTooLarge,
            ProxyError::BadBody(_) => Code::MalformedRequest,
            ProxyError::Unreachable { .. }
            | ProxyError::Timeout { .. }
            | ProxyError::NotStarted(_)
            | ProxyError::NotHttp2 { .. } => Code::UpstreamFailed,
        }
    }

    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ProxyError::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::Unreachable { .. } | ProxyError::NotHttp2 { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::NotStarted(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::BadBody(_) => StatusCode::BAD_REQUEST,
        }
    }
}

/// Where an allowed request goes.
pub(crate) enum Target<'a> {
    Echo,
    /// The container at the service's `upstream:` URL.
    Http(&'a url::Url),
    /// A started command's address, with the request counted in flight on it.
    Instance(SocketAddr, InFlight),
}

impl<'a> Target<'a> {
    /// The target of `service`; a started command's address once it listens, waiting for
    /// a start in progress.
    pub(crate) async fn of(
        service: &'a Service,
        supervisor: &Supervisor,
    ) -> Result<Target<'a>, ProxyError> {
        match &service.upstream {
            Upstream::Echo => Ok(Target::Echo),
            Upstream::Http(url) => Ok(Target::Http(url)),
            Upstream::Command(spec) => {
                let Some(instance) = supervisor.get(&service.name) else {
                    return Err(ProxyError::NotStarted(
                        "frontdoor has not started it".to_owned(),
                    ));
                };
                instance
                    .address(spec.start_timeout)
                    .await
                    .map(|(addr, guard)| Target::Instance(addr, guard))
                    .map_err(ProxyError::NotStarted)
            }
        }
    }
}

/// A container the proxy speaks HTTP to: read from the configuration's parsed URL or the
/// started command's address on each request, never parsed again.
#[derive(Clone, Copy)]
enum Container<'a> {
    Url(&'a url::Url),
    Started(SocketAddr),
}

impl Container<'_> {
    /// Where to connect: `host:port`, port 80 when the URL names none.
    fn address(&self) -> String {
        // Joined, not formatted: the pool is asked on every request.
        let (host, port) = match self {
            Container::Url(url) => (
                std::borrow::Cow::Borrowed(url.host_str().unwrap_or_default()),
                url.port_or_known_default().unwrap_or(80),
            ),
            Container::Started(addr @ SocketAddr::V4(_)) => {
                (ip_text(addr.ip()).into(), addr.port())
            }
            Container::Started(addr) => return addr.to_string(),
        };
        [&host, ":", itoa::Buffer::new().format(port)].concat()
    }

    /// The `Host` of a request that came without one (from an HTTP/2 client): the host
    /// and port as the URL writes them.
    fn host(&self) -> std::borrow::Cow<'_, str> {
        match self {
            Container::Url(url) => url[url::Position::BeforeHost..url::Position::AfterPort].into(),
            Container::Started(addr) => addr.to_string().into(),
        }
    }

    /// The URL's path, prefixed to every request's, with no trailing slash.
    fn prefix(&self) -> &str {
        match self {
            Container::Url(url) => url.path().trim_end_matches('/'),
            Container::Started(_) => "",
        }
    }
}

/// `http://host:port[/prefix]`, as errors name the container.
impl std::fmt::Display for Container<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Container::Url(url) => f.write_str(url.as_str().trim_end_matches('/')),
            Container::Started(addr) => write!(f, "http://{addr}"),
        }
    }
}

pub(crate) async fn forward(
    service: &Service,
    target: Target<'_>,
    req: Request,
    peer: IpAddr,
    credential: Option<&Credential>,
) -> Result<Response<Body>, ProxyError> {
    let upgrade = is_upgrade(req.headers());
    let grpc = h2c::is_grpc(req.headers());
    // Over h2c: gRPC always, every request of a service that is HTTP/2 end to end (but a
    // WebSocket's upgrade, which is HTTP/1's).
    let h2 = match (upgrade, grpc, service.use_http2) {
        (true, ..) => None,
        (false, true, _) => Some(H2c {
            why: "gRPC requests reach the container over h2c, as on Cloud Run",
            fix: "",
        }),
        (false, false, true) => Some(H2c {
            why: "the service is HTTP/2 end to end (use_http2, or a Knative port named h2c)",
            fix: ", or turn HTTP/2 end to end off (`use_http2: false`, `gcloud run services update --no-use-http2`)",
        }),
        (false, false, false) => None,
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if h2.is_none() && declared.is_some_and(|n| n > MAX_REQUEST_BODY as u64) {
        return Err(ProxyError::TooLarge);
    }
    // Read before the hop-by-hop headers go, and only for h2c: HTTP/1's hot path pays
    // nothing for it.
    let trailers = h2.is_some() && (grpc || asks_for_trailers(req.headers()));
    let (mut parts, body) = req.into_parts();
    let authority = h2.and_then(|_| client_authority(&parts));
    rewrite_request_headers(&mut parts.headers, peer, credential, upgrade);
    let client_upgrade = parts.extensions.remove::<hyper::upgrade::OnUpgrade>();
    let body = match h2 {
        // Cloud Run's limit is HTTP/1's: a stream has none.
        Some(_) => body,
        // A chunked body is counted as it streams; past the limit the upload is cut off.
        None => Body::new(Limited::new(body, MAX_REQUEST_BODY)),
    };

    let mut in_flight = None;
    let container = match target {
        Target::Echo => {
            let req = Request::from_parts(parts, body);
            return crate::upstream::echo(service, req).await.map_err(|e| {
                reading_body(&e.0).unwrap_or_else(|| ProxyError::BadBody(e.0.to_string()))
            });
        }
        Target::Http(url) => Container::Url(url),
        Target::Instance(addr, guard) => {
            in_flight = Some(guard);
            Container::Started(addr)
        }
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    if let Some(h2) = h2 {
        // The client's authority goes on as HTTP/2's own, `:authority`, as Cloud Run's does,
        // when it is one (a host and port, nothing more); else the container's.
        let authority = authority
            .and_then(|a| a.parse::<axum::http::uri::Authority>().ok())
            .filter(|a| !a.as_str().contains('@'))
            .or_else(|| container.host().parse().ok());
        let mut uri = Uri::builder().scheme("http");
        if let Some(authority) = authority {
            uri = uri.authority(authority);
        }
        parts.uri = uri
            .path_and_query([container.prefix(), path].concat())
            .build()
            .map_err(|e| ProxyError::Unreachable {
                upstream: container.to_string(),
                cause: format!("the upstream URL is invalid: {e}"),
            })?;
        parts.headers.remove(header::HOST);
        if trailers {
            parts
                .headers
                .insert(header::TE, HeaderValue::from_static("trailers"));
        }
        parts.version = axum::http::Version::HTTP_2;
        // hyper resets the stream when the client's body fails, and reports only that the
        // stream went: what failed is kept here, so the client's fault stays a 400.
        let client_failed = Arc::new(std::sync::OnceLock::new());
        let body = {
            let client_failed = client_failed.clone();
            Body::new(body.map_err(move |e| {
                let _ = client_failed.set(e.to_string());
                e
            }))
        };
        let address = container.address();
        let arrived = tokio::time::Instant::now();
        let sent = h2c::send(&address, hyper::Request::from_parts(parts, body));
        let response = match tokio::time::timeout(service.timeout, sent).await {
            Err(_) => {
                return Err(ProxyError::Timeout {
                    upstream: container.to_string(),
                    secs: service.timeout.as_secs(),
                });
            }
            // First: a new connection's exchange may fail on the client's body before
            // the container has said a word.
            Ok(Err(_)) if client_failed.get().is_some() => {
                return Err(ProxyError::BadBody(
                    client_failed.get().cloned().unwrap_or_default(),
                ));
            }
            Ok(Err(SendError::NotHttp2(how))) => {
                return Err(ProxyError::NotHttp2 {
                    upstream: container.to_string(),
                    why: h2.why,
                    how,
                    fix: h2.fix,
                });
            }
            Ok(Err(e)) => return Err(classify(e, container.to_string())),
            Ok(Ok(r)) => r,
        };
        let deadline = arrived + service.timeout;
        let secs = service.timeout.as_secs();
        let mut response = response
            .map(|body| Body::new(h2c::Streamed::new(body, deadline, secs, grpc, in_flight)));
        if grpc {
            // So the front door looks for a gRPC status on this answer alone.
            response.extensions_mut().insert(h2c::GrpcCall);
        }
        return Ok(response);
    }
    // In origin form, with the client's Host (or, from an HTTP/2 client, the container's).
    parts.uri = Uri::try_from(format!("{}{path}", container.prefix())).map_err(|e| {
        ProxyError::Unreachable {
            upstream: container.to_string(),
            cause: format!("the upstream URL is invalid: {e}"),
        }
    })?;
    if !parts.headers.contains_key(header::HOST) {
        insert(&mut parts.headers, header::HOST, &container.host());
    }
    // Upstreams are spoken to in HTTP/1.1, whatever the client spoke (h2c included).
    parts.version = axum::http::Version::HTTP_11;
    let request = hyper::Request::from_parts(parts, body);

    let address = container.address();
    let sent = pool::send(&address, request);
    let mut response = match tokio::time::timeout(service.timeout, sent).await {
        Err(_) => {
            return Err(ProxyError::Timeout {
                upstream: container.to_string(),
                secs: service.timeout.as_secs(),
            });
        }
        Ok(Err(e)) => return Err(classify(e, container.to_string())),
        Ok(Ok(r)) => r,
    };

    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            // The splice is the request now: it holds the instance until either side closes.
            let held = in_flight.take();
            tokio::spawn(async move {
                if let (Ok(c), Ok(u)) = (client_upgrade.await, upstream_upgrade.await) {
                    let _ =
                        tokio::io::copy_bidirectional(&mut TokioIo::new(c), &mut TokioIo::new(u))
                            .await;
                }
                drop(held);
            });
        }
    } else {
        strip_hop_by_hop(response.headers_mut(), false);
    }
    Ok(match in_flight {
        // The request stays in flight until its body is sent or abandoned: the closure owns
        // the guard, and goes with the body.
        Some(guard) => response.map(|body| {
            Body::new(body.map_frame(move |frame| {
                let _held = &guard;
                frame
            }))
        }),
        None => response.map(Body::new),
    })
}

/// Why a request goes to the container over h2c, and how to stop it, for the error that
/// says the container answered in another protocol.
#[derive(Clone, Copy)]
struct H2c {
    why: &'static str,
    fix: &'static str,
}

/// The host the client asked for: HTTP/2's `:authority` (the URI's), else `Host`.
fn client_authority(parts: &axum::http::request::Parts) -> Option<String> {
    parts
        .uri
        .authority()
        .map(|a| a.as_str().rsplit('@').next().unwrap_or_default())
        .or_else(|| {
            parts
                .headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
        })
        .filter(|a| !a.is_empty())
        .map(str::to_owned)
}

/// Whether the client said it takes trailers (`TE: trailers`), which HTTP/2 passes on.
fn asks_for_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("trailers"))
}

/// When `e` comes from reading the client's request body: over the limit (413), or
/// malformed or cut short (400). The incoming body's errors reach us wrapped in
/// `axum::Error`; the upstream connection's never are.
fn reading_body(e: &(dyn std::error::Error + 'static)) -> Option<ProxyError> {
    let mut source = Some(e);
    let mut client_side = None;
    while let Some(s) = source {
        if s.is::<LengthLimitError>() {
            return Some(ProxyError::TooLarge);
        }
        if client_side.is_none() && s.is::<axum::Error>() {
            client_side = Some(
                s.source()
                    .map_or_else(|| s.to_string(), ToString::to_string),
            );
        }
        source = s.source();
    }
    client_side.map(ProxyError::BadBody)
}

fn classify(e: SendError, upstream: String) -> ProxyError {
    let cause = match e {
        SendError::Connect(why) => format!("cannot connect: {why}"),
        // Only h2c sends find this, and they say why before asking here.
        SendError::NotHttp2(how) => format!("the container did not speak HTTP/2: {how}"),
        SendError::Exchange(e) => {
            if let Some(body) = reading_body(&e) {
                return body;
            }
            "the connection was closed or reset before a complete response".to_owned()
        }
    };
    ProxyError::Unreachable { upstream, cause }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_upstream_url_is_an_address_a_host_and_a_prefix() {
        for (base, address, host, prefix) in [
            (
                "http://127.0.0.1:8080",
                "127.0.0.1:8080",
                "127.0.0.1:8080",
                "",
            ),
            (
                "http://localhost:9000/api/v1",
                "localhost:9000",
                "localhost:9000",
                "/api/v1",
            ),
            (
                "http://example.internal",
                "example.internal:80",
                "example.internal",
                "",
            ),
            ("http://[::1]:8081/p", "[::1]:8081", "[::1]:8081", "/p"),
            ("http://[::1]", "[::1]:80", "[::1]", ""),
            (
                "http://user:secret@10.0.0.1:81/x",
                "10.0.0.1:81",
                "10.0.0.1:81",
                "/x",
            ),
        ] {
            let url = url::Url::parse(base).unwrap();
            let container = Container::Url(&url);
            assert_eq!(
                (
                    container.address(),
                    container.host().as_ref(),
                    container.prefix()
                ),
                (address.to_owned(), host, prefix),
                "{base}"
            );
        }
        let started = Container::Started("127.0.0.1:4000".parse().unwrap());
        assert_eq!(
            (started.address(), started.host().as_ref(), started.prefix()),
            ("127.0.0.1:4000".to_owned(), "127.0.0.1:4000", "")
        );
        assert_eq!(started.to_string(), "http://127.0.0.1:4000");
    }

    #[tokio::test]
    async fn a_body_error_is_the_clients_unless_it_came_from_the_upstream() {
        let over = Limited::new(
            http_body_util::Full::new(bytes::Bytes::from_static(b"abc")),
            2,
        )
        .collect()
        .await
        .unwrap_err();
        let limit = axum::Error::new(over);
        assert!(matches!(reading_body(&limit), Some(ProxyError::TooLarge)));
        let malformed = axum::Error::new(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "invalid chunk size line",
        ));
        match reading_body(&malformed) {
            Some(e @ ProxyError::BadBody(_)) => {
                assert_eq!(e.status(), StatusCode::BAD_REQUEST);
                assert!(e.to_string().contains("invalid chunk size line"), "{e}");
            }
            other => panic!("{other:?}"),
        }
        let upstream = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(reading_body(&upstream).is_none());
    }
}
