//! The egress proxy: how unmodified code reaches frontdoor at Google's own URLs.
//!
//! Every metadata listener is also an HTTP forward proxy (`HTTPS_PROXY`/`HTTP_PROXY`), so a
//! request that arrives at a service's proxy is known to come from that service, as its
//! metadata requests are. Through it:
//!
//! - `CONNECT` to `*.run.app` or a configured custom domain, port 443 → TLS ends here with a
//!   leaf of the local CA (`keys::ca`), and the request goes to the front door, every check
//!   as on the front door's own port. A request through a service's proxy counts as that
//!   service for ingress `internal`.
//! - `CONNECT` to Google's API hosts ([`is_google_host`]), port 443 → the google listener's
//!   handlers, on Google's paths.
//! - plain-http requests to `metadata.google.internal` or `169.254.169.254` (absolute-form)
//!   → this listener's own metadata server, identity included.
//! - any other host → refused at once, with a 403 naming it; hosts listed under
//!   `egress.passthrough` are tunnelled untouched.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::uri::{Authority, Scheme};
use axum::http::{Method, Response, StatusCode, Uri, Version, header};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::rustls::server::{Acceptor, ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ServerConfig, crypto};
use tower::ServiceExt;

use crate::decisions::{REASON_HEADER, reason_header};
use crate::frontdoor::CallerProcess;
use crate::keys::ca::LocalCa;
use crate::peer::idle::{Connections, Slot};
use crate::peer::{Peer, TunnelHost, http_builder, with_connection};
use crate::state::Live;

/// Google's hosts whose APIs frontdoor serves (SPEC §6): the issuer's keys and discovery,
/// the token endpoints, IAM Credentials and STS, and the Admin APIs a deployer calls (Cloud
/// Run, IAM, Resource Manager).
const GOOGLE_HOSTS: [&str; 12] = [
    "oauth2.googleapis.com",
    "www.googleapis.com",
    "accounts.google.com",
    "iamcredentials.googleapis.com",
    "sts.googleapis.com",
    "run.googleapis.com",
    "iam.googleapis.com",
    "cloudresourcemanager.googleapis.com",
    "pubsub.googleapis.com",
    "cloudtasks.googleapis.com",
    "cloudscheduler.googleapis.com",
    "eventarc.googleapis.com",
];

/// One of [`GOOGLE_HOSTS`], or Cloud Run's regional host `REGION-run.googleapis.com`, which
/// gcloud calls for `gcloud run`.
pub(crate) fn is_google_host(host: &str) -> bool {
    GOOGLE_HOSTS.contains(&host)
        || host
            .strip_suffix("-run.googleapis.com")
            .is_some_and(crate::config::region_is_valid)
}

/// The metadata server's names, reached over plain http.
pub(crate) const METADATA_HOSTS: [&str; 2] = ["metadata.google.internal", "169.254.169.254"];

/// A tunnel's TLS handshake, and each request's headers inside it, must arrive within this
/// (as every listener's headers must).
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Tunnels open at once through one proxy at most: past this a CONNECT gets 503. A tunnel
/// outlives the request that opened it, so the listener's own connection cap does not
/// count it.
const MAX_TUNNELS: usize = 1024;

struct Proxy {
    live: Live,
    /// The service this proxy belongs to; `None` for the default one.
    service: Option<String>,
    metadata: Router,
    frontdoor: Router,
    google: Router,
    /// `None` when the local CA cannot be loaded: TLS hosts are then refused.
    tls: Option<Tls>,
    tunnels: Connections,
}

/// Built once per proxy: the config that serves a leaf for the SNI (once it is known to
/// name the CONNECT host), and one that refuses the handshake.
struct Tls {
    serve: Arc<ServerConfig>,
    refuse: Arc<ServerConfig>,
}

/// `metadata` (a metadata listener's router) with the egress proxy in front of it.
pub(crate) fn app(metadata: Router, live: Live, service: Option<String>) -> Router {
    let tls = match live.get().ca() {
        Ok(ca) => tls_configs(ca)
            .map_err(|e| tracing::error!(error = %e, "cannot configure TLS for the egress proxy"))
            .ok(),
        Err(e) => {
            tracing::error!(error = %e, "cannot load or make the local CA; the egress proxy refuses TLS hosts");
            None
        }
    };
    let proxy = Proxy {
        // The tunnel-host check is installed once here, not per tunnel: layering a router
        // wraps every route, which each CONNECT would pay for.
        frontdoor: crate::frontdoor::app(live.clone(), None)
            .layer(axum::middleware::from_fn(for_the_tunnel_host)),
        google: crate::google::app(live.clone())
            .layer(axum::middleware::from_fn(for_the_tunnel_host)),
        live,
        service,
        metadata,
        tls,
        tunnels: Connections::new(MAX_TUNNELS),
    };
    Router::new().fallback(handle).with_state(Arc::new(proxy))
}

fn tls_configs(ca: Arc<LocalCa>) -> Result<Tls, tokio_rustls::rustls::Error> {
    let config = |resolver: Arc<dyn ResolvesServerCert>| {
        let provider = Arc::new(crypto::aws_lc_rs::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(resolver);
        // http/1.0 too: `curl -0` (seed 001's generateIdToken recipe) offers only it, and
        // a server without a match must end the handshake (RFC 7301 §3.2).
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec(), b"http/1.0".to_vec()];
        Ok::<_, tokio_rustls::rustls::Error>(Arc::new(config))
    };
    Ok(Tls {
        serve: config(Arc::new(BySni(ca)))?,
        refuse: config(Arc::new(NoCertificate))?,
    })
}

/// Where a proxied request goes.
enum Route {
    FrontDoor,
    Google,
    Passthrough,
}

async fn handle(State(proxy): State<Arc<Proxy>>, req: Request) -> Response<Body> {
    if req.method() == Method::CONNECT {
        return connect(&proxy, req).await;
    }
    // An HTTP/1 request in absolute form (`GET http://host/…`) is meant for the proxy.
    // (HTTP/2 always names an authority; plain-http HTTP/2 is the metadata server's own.)
    if req.version() <= Version::HTTP_11
        && let Some(host) = req.uri().host()
    {
        let host = host.to_ascii_lowercase();
        if !METADATA_HOSTS.contains(&host.as_str()) && !names_this_listener(&req, &host) {
            return refuse(
                StatusCode::FORBIDDEN,
                &format!(
                    "http://{host} is not emulated by frontdoor; through its proxy, plain http reaches only the metadata server (http://metadata.google.internal), and Cloud Run services and Google's APIs are https"
                ),
            );
        }
    }
    match proxy.metadata.clone().oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

/// Whether an absolute-form request names this very listener (`GCE_METADATA_HOST` set to
/// its address, with the proxy set to it too): served as any metadata request.
fn names_this_listener(req: &Request, host: &str) -> bool {
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<Peer>>() else {
        return false;
    };
    let port = req.uri().port_u16().unwrap_or(80);
    let host = host.trim_matches(['[', ']']);
    port == peer.local.port()
        && (host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip == peer.local.ip()))
}

fn refuse(status: StatusCode, why: &str) -> Response<Body> {
    tracing::info!(reason = why, "egress proxy refused a request");
    let mut response = Response::new(Body::from(format!("{why}\n")));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(value) = reason_header(why) {
        headers.insert(REASON_HEADER, value);
    }
    // In the status line too: for a refused CONNECT it is all pip and npm show
    // ("Tunnel connection failed: 403 …"), never the body. (curl, and so cargo and git,
    // show neither: the server's log has it.)
    if let Some(phrase) = reason_phrase(status, why) {
        response.extensions_mut().insert(phrase);
    }
    response
}

/// `status`'s reason phrase with `why` after it, as a status line may carry it (visible
/// ASCII and spaces, at most 300 bytes).
fn reason_phrase(status: StatusCode, why: &str) -> Option<hyper::ext::ReasonPhrase> {
    let mut phrase = format!("{}: ", status.canonical_reason().unwrap_or("Refused"));
    for c in why.chars() {
        if phrase.len() >= 300 {
            break;
        }
        phrase.push(if c == ' ' || c.is_ascii_graphic() {
            c
        } else {
            '?'
        });
    }
    hyper::ext::ReasonPhrase::try_from(phrase).ok()
}

/// Why a CONNECT is refused a tunnel.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum NoTunnel {
    #[error(
        "{0} is the metadata server, plain http: send requests to http://{0}/ through the proxy, not a CONNECT tunnel"
    )]
    Metadata(String),
    #[error(
        "{host} is not emulated by frontdoor; add it to `egress.passthrough` in {file} to let it through"
    )]
    NotEmulated { host: String, file: String },
    #[error("{host}:{port}: frontdoor serves {host} on port 443 only, as Google does")]
    Port { host: String, port: u16 },
    #[error(
        "{0} is this machine: the proxy does not tunnel to it (egress.passthrough takes no loopback name); reach a local server without the proxy (add it to NO_PROXY)"
    )]
    ThisMachine(String),
}

fn classify(proxy: &Proxy, host: &str, port: u16) -> Result<Route, NoTunnel> {
    let state = proxy.live.get();
    let config = state.config();
    // Any `*.run.app` name ends here, as on Google, where an unknown one is the front
    // door's 404; custom domains as the front door routes them. Emulated hosts come
    // first: listing one under `egress.passthrough` cannot send it to the real host.
    let route = if host.ends_with(".run.app") || state.frontdoor().route(host).is_some() {
        Route::FrontDoor
    } else if is_google_host(host) {
        Route::Google
    } else if METADATA_HOSTS.contains(&host) {
        return Err(NoTunnel::Metadata(host.to_owned()));
    } else if config.egress_passthrough.iter().any(|h| h == host) {
        return Ok(Route::Passthrough);
    } else if crate::config::is_loopback_name(host) {
        return Err(NoTunnel::ThisMachine(host.to_owned()));
    } else {
        return Err(NoTunnel::NotEmulated {
            host: host.to_owned(),
            file: config
                .file
                .file_name()
                .map_or_else(|| "the configuration".into(), |n| n.to_string_lossy())
                .into_owned(),
        });
    };
    if port != 443 {
        return Err(NoTunnel::Port {
            host: host.to_owned(),
            port,
        });
    }
    Ok(route)
}

async fn connect(proxy: &Proxy, req: Request) -> Response<Body> {
    let Some(authority) = req.uri().authority().cloned() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "a CONNECT request names HOST:PORT, as in `CONNECT search-abc-uc.a.run.app:443`",
        );
    };
    let host = authority
        .host()
        .trim_matches(['[', ']'])
        .to_ascii_lowercase();
    let Some(port) = authority.port_u16() else {
        return refuse(
            StatusCode::BAD_REQUEST,
            &format!("CONNECT {authority}: the target has no port; expected HOST:PORT"),
        );
    };
    let route = match classify(proxy, &host, port) {
        Ok(route) => route,
        Err(why) => return refuse(StatusCode::FORBIDDEN, &why.to_string()),
    };
    let Some(ConnectInfo(peer)) = req.extensions().get::<ConnectInfo<Peer>>().copied() else {
        return refuse(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the connection's addresses are unknown",
        );
    };
    let app = match route {
        Route::FrontDoor => proxy.frontdoor.clone(),
        Route::Google => proxy.google.clone(),
        Route::Passthrough => return tunnel(req, host, port, peer, &proxy.tunnels).await,
    };
    let Some(tls) = &proxy.tls else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "frontdoor's local CA is unusable (see the server's log), so it cannot end TLS",
        );
    };
    let slot = match admit_tunnel(&proxy.tunnels).await {
        Ok(slot) => slot,
        Err(refused) => return refused,
    };
    let configs = (tls.serve.clone(), tls.refuse.clone());
    // Through a service's proxy, the caller is that service; through the default one,
    // whichever started service holds the connection, looked up as on the front door.
    let caller = match &proxy.service {
        Some(name) => CallerProcess::known(name.clone()),
        None => req
            .extensions()
            .get::<CallerProcess>()
            .cloned()
            .unwrap_or_default(),
    };
    tokio::spawn(async move {
        match hyper::upgrade::on(req).await {
            Ok(upgraded) => {
                let io = TokioIo::new(upgraded);
                if let Err(e) = serve_tls(io, host, configs, app, peer, caller, slot).await {
                    tracing::debug!(error = %e, "egress tunnel ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT was not upgraded"),
        }
    });
    Response::new(Body::empty())
}

/// A leaf for the client hello's SNI; [`serve_tls`] has checked it names the CONNECT host.
#[derive(Debug)]
struct BySni(Arc<LocalCa>);

impl ResolvesServerCert for BySni {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let sni = hello.server_name()?.to_ascii_lowercase();
        self.0
            .leaf(&sni)
            .map_err(|e| tracing::error!(error = %e, "cannot issue a leaf certificate"))
            .ok()
    }
}

/// No certificate: the handshake fails with an alert the client can report.
#[derive(Debug)]
struct NoCertificate;

impl ResolvesServerCert for NoCertificate {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        None
    }
}

async fn serve_tls<IO>(
    io: IO,
    host: String,
    (serve, refuse): (Arc<ServerConfig>, Arc<ServerConfig>),
    app: Router,
    peer: Peer,
    caller: CallerProcess,
    slot: Slot,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let handshake = async {
        let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
        // The leaf is for the host the tunnel was opened to, and only for it: a client hello
        // without SNI, or naming another host, is refused.
        let sni = start.client_hello().server_name().map(str::to_owned);
        let config = match &sni {
            Some(sni) if sni.eq_ignore_ascii_case(&host) => serve,
            _ => {
                tracing::info!(%host, sni = sni.as_deref().unwrap_or("(none)"), "egress: the client hello's SNI does not name the CONNECT host; refused");
                refuse
            }
        };
        start.into_stream(config).await
    };
    let tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake).await??;
    let authority = Authority::try_from(host.as_str()).ok();
    let tunnel = TunnelHost(Arc::from(host));
    let service = with_connection(app, peer, caller).map_request(
        move |mut req: axum::http::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(tunnel.clone());
            as_https(&mut req, authority.as_ref());
            req
        },
    );
    // A tunnel that goes quiet after its handshake is closed at the deadline for its first
    // request, or sooner when the cap needs its place.
    let builder = http_builder(HANDSHAKE_TIMEOUT);
    let connection = builder.serve_connection_with_upgrades(
        TokioIo::new(slot.first_byte(tls, HANDSHAKE_TIMEOUT)),
        TowerToHyperService::new(service),
    );
    let mut connection = std::pin::pin!(connection);
    tokio::select! {
        biased;
        served = connection.as_mut() => return served,
        () = slot.shed() => {}
    }
    connection.as_mut().graceful_shutdown();
    connection.await
}

/// A request inside a tunnel is for the host the tunnel (and its TLS handshake) named:
/// one whose `Host` or HTTP/2 authority names another is a 421 (RFC 9110 §15.5.20), never
/// routed by that header to a service the handshake did not name. A request outside a
/// tunnel carries no [`TunnelHost`] and passes.
async fn for_the_tunnel_host(req: Request, next: axum::middleware::Next) -> Response<Body> {
    let Some(TunnelHost(tunnel)) = req.extensions().get::<TunnelHost>() else {
        return next.run(req).await;
    };
    let named = [
        req.uri().host(),
        req.headers()
            .get(header::HOST)
            .map(|h| host_part(h.to_str().unwrap_or("\u{fffd}"))),
    ];
    if let Some(other) = named
        .into_iter()
        .flatten()
        .find(|other| !other.eq_ignore_ascii_case(tunnel))
    {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            &format!(
                "this connection was opened to {tunnel}; a request for {other} needs its own CONNECT"
            ),
        );
    }
    next.run(req).await
}

/// The host of a `Host` header's `HOST[:PORT]` (`[v6]:PORT` too), without copying it.
fn host_part(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority
            .find(']')
            .map_or(authority, |end| &authority[..=end]);
    }
    match authority.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => authority,
    }
}

/// An HTTP/1 request inside a tunnel, written as HTTP/2 writes it: `https://HOST/path`, so
/// that the handlers see the scheme the caller used (discovery hands out https URLs).
fn as_https<B>(req: &mut axum::http::Request<B>, tunnel: Option<&Authority>) {
    if req.uri().scheme().is_some() {
        return;
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| Authority::try_from(h.as_bytes()).ok())
        .or_else(|| tunnel.cloned());
    let mut parts = req.uri().clone().into_parts();
    parts.scheme = Some(Scheme::HTTPS);
    parts.authority = host;
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(axum::http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// A place among the tunnels, taken only once a `CONNECT` is known to be granted, so that
/// one refused for another reason makes no other tunnel close. At the cap one is asked to
/// make room (at once if idle, issue 26); a refusal if none did within a second.
async fn admit_tunnel(tunnels: &Connections) -> Result<Slot, Response<Body>> {
    const REFUSED: &str = "tunnels are open through this proxy already, and none made room within a second; close some";
    match tunnels.admit(Duration::from_secs(1), REFUSED).await {
        Some(slot) => Ok(slot),
        None => Err(refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("{} {REFUSED}", tunnels.max()),
        )),
    }
}

/// Why a passthrough host that resolved to `addrs` must not be tunnelled to, if it must
/// not: it is this proxy (`local`), or on this machine (loopback, unspecified, the proxy's
/// own address on any port), where frontdoor's own listeners are. IPv4-mapped IPv6
/// addresses are read as the IPv4 ones they are.
fn on_this_machine(addrs: &[SocketAddr], local: SocketAddr) -> Option<String> {
    let ours = local.ip().to_canonical();
    let own = addrs.iter().find(|a| {
        let ip = a.ip().to_canonical();
        ip == ours || ip.is_loopback() || ip.is_unspecified()
    })?;
    Some(
        if own.ip().to_canonical() == ours && own.port() == local.port() {
            format!("resolves to {own}, this proxy itself; a tunnel to it would loop")
        } else {
            format!(
                "resolves to {own}, on this machine; a tunnel there could reach frontdoor's own listeners"
            )
        },
    )
}

/// A host under `egress.passthrough`: bytes both ways, untouched. Connected before the
/// tunnel is granted, so that an unreachable host, or this very proxy (a loop), is an
/// answer and not a hang.
async fn tunnel(
    req: Request,
    host: String,
    port: u16,
    peer: Peer,
    tunnels: &Connections,
) -> Response<Body> {
    let target = format!("{host}:{port}");
    let addrs: Vec<_> = match tokio::net::lookup_host(&target).await {
        Ok(addrs) => addrs.collect(),
        Err(e) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                &format!("{target} (egress.passthrough) does not resolve: {e}"),
            );
        }
    };
    // The configuration refuses loopback names and addresses; a name can still resolve to
    // this machine (issue 26: the proxy chained to frontdoor's own listeners).
    if let Some(why) = on_this_machine(&addrs, peer.local) {
        return refuse(
            StatusCode::FORBIDDEN,
            &format!("{target} (egress.passthrough) {why}"),
        );
    }
    let connected = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::net::TcpStream::connect(&addrs[..]),
    )
    .await;
    let mut upstream = match connected {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            return refuse(
                StatusCode::BAD_GATEWAY,
                &format!("{target} (egress.passthrough) cannot be reached: {e}"),
            );
        }
        Err(_) => {
            return refuse(
                StatusCode::GATEWAY_TIMEOUT,
                &format!("{target} (egress.passthrough) did not answer within 10 s"),
            );
        }
    };
    let slot = match admit_tunnel(tunnels).await {
        Ok(slot) => slot,
        Err(refused) => return refused,
    };
    // Bytes alone show no idle moment, and a transfer cut short is lost: this tunnel is
    // never asked to make room, and keeps its place until it closes.
    slot.keep();
    tokio::spawn(async move {
        let _slot = slot;
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            let mut client = TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    });
    Response::new(Body::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_passthrough_host_on_this_machine_is_never_tunnelled_to() {
        let local: SocketAddr = "192.0.2.7:3128".parse().unwrap();
        let away: SocketAddr = "203.0.113.9:443".parse().unwrap();
        assert_eq!(on_this_machine(&[away], local), None);
        for own in [
            "127.0.0.1:8088",
            "127.9.9.9:443",
            "0.0.0.0:443",
            "[::1]:443",
            "[::ffff:127.0.0.1]:443",
            "192.0.2.7:8088",
            "[::ffff:192.0.2.7]:443",
        ] {
            let own: SocketAddr = own.parse().unwrap();
            let why = on_this_machine(&[away, own], local).unwrap();
            assert!(why.contains("on this machine"), "{own}: {why}");
        }
        let why = on_this_machine(&[local], local).unwrap();
        assert!(why.contains("would loop"), "{why}");
    }

    /// A status line carries the reason as it may: visible ASCII and spaces, cut at 300
    /// bytes.
    #[test]
    fn the_reason_phrase_is_a_valid_status_line() {
        let phrase = reason_phrase(StatusCode::FORBIDDEN, "caf\u{e9}.example\r\nX: y").unwrap();
        assert_eq!(phrase.as_bytes(), b"Forbidden: caf?.example??X: y");
        let long = reason_phrase(StatusCode::FORBIDDEN, &"a".repeat(1000)).unwrap();
        assert_eq!(long.as_bytes().len(), 300);
    }
}
