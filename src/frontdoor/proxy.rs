//! Proxying an allowed request to the service's container (SPEC §4): bodies streamed both
//! ways, hop-by-hop and client-supplied `X-Google-*` headers dropped, forwarding and trace
//! headers added, the checked token redacted, WebSocket upgrades spliced through.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use hyper_util::rt::TokioIo;

use super::auth::Credential;
use super::h2c;
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

/// A WebSocket upgrade, the one protocol change the front door passes on: any other
/// `Upgrade` (h2c, say) is a hop-by-hop header and is dropped.
fn is_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::UPGRADE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
}

const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// Drops hop-by-hop headers, including any the `Connection` header names. On an upgrade
/// request, `Connection: upgrade` and `Upgrade` stay so the container can accept it.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let kept =
        |name: &HeaderName| keep_upgrade && (name == header::CONNECTION || name == header::UPGRADE);
    // One look at the names present (most messages carry none of these) rather than a
    // removal, each a hash lookup, for every name that might be: 20 lookups a proxied
    // request took about 2,000 instructions (bench/instructions.sh).
    let mut gone: Vec<HeaderName> = headers
        .keys()
        .filter(|n| (HOP_BY_HOP.contains(n) || *n == header::UPGRADE) && !kept(n))
        .cloned()
        .collect();
    gone.extend(
        headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !kept(n)),
    );
    for name in gone {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_CLOUD_TRACE_CONTEXT: HeaderName = HeaderName::from_static("x-cloud-trace-context");
const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
pub(crate) const REDACTED_SIGNATURE: &str = "SIGNATURE_REMOVED_BY_GOOGLE";

fn rewrite_request_headers(
    headers: &mut HeaderMap,
    peer: IpAddr,
    credential: Option<&Credential>,
    upgrade: bool,
) {
    // Read before the hop-by-hop headers go: the checked token is redacted, never dropped.
    let redacted = credential.filter(|c| c.redact).and_then(|c| {
        let token = headers
            .get(&c.header)
            .and_then(|v| super::auth::bearer(v).ok())?;
        let unsigned = token.rsplit_once('.').map_or(token, |(signed, _)| signed);
        Some((
            c.header.clone(),
            format!("Bearer {unsigned}.{REDACTED_SIGNATURE}"),
        ))
    });
    strip_hop_by_hop(headers, upgrade);
    // Identity headers are never trusted from the client.
    let google: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("x-google-"))
        .cloned()
        .collect();
    for name in google {
        headers.remove(name);
    }

    // A client's X-Forwarded-For is kept and our view of the client appended, so the
    // container can tell what the client claimed from what we saw.
    let prior: Vec<&str> = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let ip = ip_text(peer);
    let forwarded = match peer {
        IpAddr::V4(_) => ["for=\"", &ip, "\";proto=https"].concat(),
        IpAddr::V6(_) => ["for=\"[", &ip, "]\";proto=https"].concat(),
    };
    let xff = if prior.is_empty() {
        ip
    } else {
        format!("{}, {ip}", prior.join(", "))
    };
    insert(headers, X_FORWARDED_FOR, &xff);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static("https"));
    insert(headers, header::FORWARDED, &forwarded);
    trace_headers(headers);

    if let Some((name, value)) = redacted {
        insert(headers, name, &value);
    }
}

/// `ip` as text: an IPv4 address's four numbers joined by hand, since `Ipv4Addr`'s
/// `Display` (padding and all) was 2% of a warm request's instructions.
fn ip_text(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let mut text = String::with_capacity(15);
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    text.push('.');
                }
                text.push_str(itoa::Buffer::new().format(octet));
            }
            text
        }
        IpAddr::V6(v6) => v6.to_string(),
    }
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        headers.insert(name, v);
    }
}

/// Keeps the caller's trace context; fills in whichever of the two forms is missing from
/// the other, or starts a new trace.
fn trace_headers(headers: &mut HeaderMap) {
    let text = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let w3c = text(&TRACEPARENT).and_then(|v| parse_traceparent(&v));
    let cloud = text(&X_CLOUD_TRACE_CONTEXT).and_then(|v| parse_cloud_trace(&v));
    let (trace, span) = match (&w3c, &cloud) {
        (Some(t), _) | (None, Some(t)) => t.clone(),
        // A new trace. These ids need to be unique, not secret: a fast thread-local
        // generator saves a getrandom system call on every request.
        (None, None) => {
            let mut trace = String::with_capacity(32);
            push_hex(&mut trace, fastrand::u128(1..), 32);
            (trace, fastrand::u64(1..))
        }
    };
    // Written by hand rather than with `format!`: these run on every request, and the
    // formatting machinery was 1% of the warm path.
    if w3c.is_none() {
        let mut value = String::with_capacity(55);
        value.push_str("00-");
        value.push_str(&trace);
        value.push('-');
        push_hex(&mut value, u128::from(span), 16);
        value.push_str("-01");
        insert(headers, TRACEPARENT, &value);
    }
    if cloud.is_none() {
        let mut value = String::with_capacity(58);
        value.push_str(&trace);
        value.push('/');
        value.push_str(itoa::Buffer::new().format(span));
        value.push_str(";o=1");
        insert(headers, X_CLOUD_TRACE_CONTEXT, &value);
    }
}

/// The last `digits` hex digits of `n`, lowercase, zero-padded.
fn push_hex(out: &mut String, n: u128, digits: u32) {
    for i in (0..digits).rev() {
        out.push(char::from(
            b"0123456789abcdef"[(n >> (4 * i)) as usize & 0xf],
        ));
    }
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `00-TRACE(32 hex)-SPAN(16 hex)-FLAGS`
fn parse_traceparent(v: &str) -> Option<(String, u64)> {
    let mut it = v.trim().split('-');
    let (version, trace, span, flags) = (it.next()?, it.next()?, it.next()?, it.next()?);
    (is_hex(version, 2) && is_hex(trace, 32) && is_hex(span, 16) && is_hex(flags, 2))
        .then(|| {
            Some((
                trace.to_ascii_lowercase(),
                u64::from_str_radix(span, 16).ok()?,
            ))
        })
        .flatten()
}

/// `TRACE(32 hex)/SPAN(decimal);o=N`
fn parse_cloud_trace(v: &str) -> Option<(String, u64)> {
    let (trace, rest) = v.trim().split_once('/')?;
    let span = rest.split(';').next()?;
    (is_hex(trace, 32))
        .then(|| Some((trace.to_ascii_lowercase(), span.parse().ok()?)))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The joined address is `Display`'s, for every kind of address.
    #[test]
    fn ip_text_writes_what_display_writes() {
        for ip in [
            "0.0.0.0",
            "127.0.0.1",
            "10.200.3.45",
            "255.255.255.255",
            "::1",
            "fe80::1",
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(ip_text(ip), ip.to_string());
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_and_google_headers_are_dropped_and_forwarding_added() {
        let mut h = headers(&[
            ("connection", "keep-alive, x-secret"),
            ("x-secret", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("upgrade", "h2c"),
            ("x-google-user", "admin"),
            ("X-Google-Internal", "1"),
            ("x-forwarded-for", "10.9.9.9"),
            ("x-keep", "yes"),
        ]);
        rewrite_request_headers(&mut h, "127.0.0.7".parse().unwrap(), None, false);
        for gone in [
            "connection",
            "x-secret",
            "keep-alive",
            "te",
            "upgrade",
            "x-google-user",
            "x-google-internal",
        ] {
            assert!(!h.contains_key(gone), "{gone} kept");
        }
        assert_eq!(h["x-keep"], "yes");
        assert_eq!(h["x-forwarded-for"], "10.9.9.9, 127.0.0.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["forwarded"], "for=\"127.0.0.7\";proto=https");
        let tp = h["traceparent"].to_str().unwrap().to_owned();
        let (trace, span) = parse_traceparent(&tp).unwrap();
        assert_eq!(
            h["x-cloud-trace-context"],
            format!("{trace}/{span};o=1").as_str()
        );
    }

    #[test]
    fn hex_is_zero_padded_lowercase_and_cut_to_its_digits() {
        for (n, digits) in [
            (0u128, 16),
            (0xAB, 4),
            (u128::MAX, 32),
            (0x1_0000_0000_0000_00ff, 16),
        ] {
            let mut out = String::new();
            push_hex(&mut out, n, digits);
            let mask = if digits == 32 {
                u128::MAX
            } else {
                (1 << (4 * digits)) - 1
            };
            assert_eq!(
                out,
                format!("{:0width$x}", n & mask, width = digits as usize)
            );
        }
    }

    #[test]
    fn trace_context_is_kept_and_completed() {
        let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
        let mut h = headers(&[("x-cloud-trace-context", &format!("{trace}/17;o=1"))]);
        trace_headers(&mut h);
        assert_eq!(
            h["traceparent"],
            format!("00-{trace}-0000000000000011-01").as_str()
        );
        assert_eq!(
            h["x-cloud-trace-context"],
            format!("{trace}/17;o=1").as_str()
        );

        let mut h = headers(&[("traceparent", &format!("00-{trace}-00f067aa0ba902b7-01"))]);
        trace_headers(&mut h);
        assert_eq!(
            h["traceparent"],
            format!("00-{trace}-00f067aa0ba902b7-01").as_str()
        );
        assert_eq!(
            h["x-cloud-trace-context"],
            format!("{trace}/{};o=1", 0x00f067aa0ba902b7u64).as_str()
        );
    }

    #[test]
    fn the_checked_token_is_redacted_when_asked() {
        let credential = Credential {
            header: HeaderName::from_static("x-serverless-authorization"),
            redact: true,
        };
        let mut h = headers(&[
            ("x-serverless-authorization", "Bearer aaa.bbb.ccc"),
            ("authorization", "Bearer mine"),
        ]);
        rewrite_request_headers(
            &mut h,
            "127.0.0.1".parse().unwrap(),
            Some(&credential),
            false,
        );
        assert_eq!(
            h["x-serverless-authorization"],
            "Bearer aaa.bbb.SIGNATURE_REMOVED_BY_GOOGLE"
        );
        assert_eq!(h["authorization"], "Bearer mine");

        let kept = Credential {
            redact: false,
            header: header::AUTHORIZATION,
        };
        let mut h = headers(&[("authorization", "Bearer aaa.bbb.ccc")]);
        rewrite_request_headers(&mut h, "127.0.0.1".parse().unwrap(), Some(&kept), false);
        assert_eq!(h["authorization"], "Bearer aaa.bbb.ccc");
    }

    #[test]
    fn upgrades_keep_their_headers() {
        let mut h = headers(&[
            ("connection", "Upgrade"),
            ("upgrade", "websocket"),
            ("sec-websocket-key", "k"),
        ]);
        assert!(is_upgrade(&h));
        rewrite_request_headers(&mut h, "127.0.0.1".parse().unwrap(), None, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
    }

    #[test]
    fn only_websocket_is_an_upgrade_the_rest_is_hop_by_hop() {
        for protocol in ["h2c", "TLS/1.0", "websocketx", ""] {
            let mut h = headers(&[("connection", "Upgrade"), ("upgrade", protocol)]);
            assert!(!is_upgrade(&h), "{protocol}");
            rewrite_request_headers(&mut h, "127.0.0.1".parse().unwrap(), None, false);
            assert!(!h.contains_key("upgrade"), "{protocol}");
        }
        let h = headers(&[
            ("connection", "keep-alive, upgrade"),
            ("upgrade", "h2c, WebSocket"),
        ]);
        assert!(is_upgrade(&h));
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
    }

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
