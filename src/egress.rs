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
//! - `CONNECT` to Google's API hosts ([`GOOGLE_HOSTS`]), port 443 → the google listener's
//!   handlers, on Google's paths.
//! - plain-http requests to `metadata.google.internal` or `169.254.169.254` (absolute-form)
//!   → this listener's own metadata server, identity included.
//! - any other host → refused at once, with a 403 naming it; hosts listed under
//!   `egress.passthrough` are tunnelled untouched.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{Method, Response, StatusCode, header};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{ServerConfig, crypto};
use tower::ServiceExt;

use crate::frontdoor::CallerProcess;
use crate::keys::ca::LocalCa;
use crate::peer::Peer;
use crate::state::Live;

/// Google's hosts whose APIs frontdoor serves (SPEC §6): the issuer's keys and discovery,
/// the token endpoints, IAM Credentials and STS.
pub(crate) const GOOGLE_HOSTS: [&str; 5] = [
    "oauth2.googleapis.com",
    "www.googleapis.com",
    "accounts.google.com",
    "iamcredentials.googleapis.com",
    "sts.googleapis.com",
];

/// The metadata server's names, reached over plain http.
pub(crate) const METADATA_HOSTS: [&str; 2] = ["metadata.google.internal", "169.254.169.254"];

/// Headers of a request inside a tunnel must arrive within this (as on every listener).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_HEADER_BYTES: usize = 64 * 1024;

#[derive(Clone)]
struct Proxy {
    live: Live,
    /// The service this proxy belongs to; `None` for the default one.
    service: Option<String>,
    metadata: Router,
    frontdoor: Router,
    google: Router,
}

/// `metadata` (a metadata listener's router) with the egress proxy in front of it.
pub(crate) fn app(metadata: Router, live: Live, service: Option<String>) -> Router {
    let proxy = Proxy {
        frontdoor: crate::frontdoor::app(live.clone(), None),
        google: crate::google::app(live.clone()),
        live,
        service,
        metadata,
    };
    Router::new().fallback(handle).with_state(proxy)
}

/// Where a proxied request goes.
enum Route {
    FrontDoor,
    Google,
    Passthrough,
}

async fn handle(State(proxy): State<Proxy>, req: Request) -> Response<Body> {
    if req.method() == Method::CONNECT {
        return connect(proxy, req).await;
    }
    // Absolute-form (`GET http://host/…`): a request meant for the proxy.
    if let Some(host) = req.uri().host() {
        let host = host.to_ascii_lowercase();
        if !METADATA_HOSTS.contains(&host.as_str()) {
            return refuse(
                StatusCode::FORBIDDEN,
                &format!(
                    "http://{host} is not emulated by frontdoor; through its proxy, plain http reaches only the metadata server (http://metadata.google.internal), and Cloud Run services and Google's APIs are https"
                ),
            );
        }
    }
    match proxy.metadata.oneshot(req).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
}

fn refuse(status: StatusCode, why: &str) -> Response<Body> {
    tracing::info!(reason = why, "egress proxy refused a request");
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .header("x-frontdoor-reason", why.replace(['\r', '\n'], " "))
        .body(Body::from(format!("{why}\n")))
        .expect("a response of valid parts")
}

fn classify(proxy: &Proxy, host: &str, port: u16) -> Result<Route, String> {
    let state = proxy.live.get();
    let config = state.config();
    if config.egress_passthrough.iter().any(|h| h == host) {
        return Ok(Route::Passthrough);
    }
    let custom = config
        .services
        .iter()
        .any(|s| s.custom_domains.iter().any(|d| d == host));
    let route = if host.ends_with(".run.app") || custom {
        Route::FrontDoor
    } else if GOOGLE_HOSTS.contains(&host) {
        Route::Google
    } else if METADATA_HOSTS.contains(&host) {
        return Err(format!(
            "{host} is the metadata server, plain http: send requests to http://{host}/ through the proxy, not a CONNECT tunnel"
        ));
    } else {
        return Err(format!(
            "{host} is not emulated by frontdoor; add it to `egress.passthrough` in {} to let it through",
            config
                .file
                .file_name()
                .map_or_else(|| "the configuration".into(), |n| n.to_string_lossy())
        ));
    };
    if port != 443 {
        return Err(format!(
            "{host}:{port}: frontdoor serves {host} on port 443 only, as Google does"
        ));
    }
    Ok(route)
}

async fn connect(proxy: Proxy, req: Request) -> Response<Body> {
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
    let route = match classify(&proxy, &host, port) {
        Ok(route) => route,
        Err(why) => return refuse(StatusCode::FORBIDDEN, &why),
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
        Route::Passthrough => return tunnel(req, host, port, peer).await,
    };
    let ca = match proxy.live.get().ca() {
        Ok(ca) => ca,
        Err(e) => {
            tracing::error!(error = %e, "cannot load or make the local CA");
            return refuse(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("frontdoor's local CA is unusable: {e}"),
            );
        }
    };
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
                if let Err(e) = serve_tls(TokioIo::new(upgraded), host, ca, app, peer, caller).await
                {
                    tracing::debug!(error = %e, "egress tunnel ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT was not upgraded"),
        }
    });
    Response::new(Body::empty())
}

/// The leaf for the host the tunnel was opened to, and only for it: a client hello without
/// SNI, or naming another host, gets no certificate and the handshake fails.
#[derive(Debug)]
struct OneHost {
    ca: Arc<LocalCa>,
    host: String,
}

impl ResolvesServerCert for OneHost {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let Some(sni) = hello.server_name() else {
            tracing::info!(host = %self.host, "egress: a client hello without SNI; refused");
            return None;
        };
        if !sni.eq_ignore_ascii_case(&self.host) {
            tracing::info!(host = %self.host, %sni, "egress: SNI names another host than CONNECT; refused");
            return None;
        }
        self.ca
            .leaf(&self.host)
            .map_err(|e| tracing::error!(error = %e, "cannot issue a leaf certificate"))
            .ok()
    }
}

async fn serve_tls<IO>(
    io: IO,
    host: String,
    ca: Arc<LocalCa>,
    app: Router,
    peer: Peer,
    caller: CallerProcess,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let provider = Arc::new(crypto::aws_lc_rs::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(OneHost { ca, host }));
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let tls = TlsAcceptor::from(Arc::new(config)).accept(io).await?;
    let service = tower::service_fn(move |mut req: Request<hyper::body::Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(caller.clone());
        app.clone().oneshot(req)
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32);
    builder
        .serve_connection_with_upgrades(TokioIo::new(tls), TowerToHyperService::new(service))
        .await
}

/// A host under `egress.passthrough`: bytes both ways, untouched. Connected before the
/// tunnel is granted, so that an unreachable host, or this very proxy (a loop), is an
/// answer and not a hang.
async fn tunnel(req: Request, host: String, port: u16, peer: Peer) -> Response<Body> {
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
    if addrs.contains(&peer.local) {
        return refuse(
            StatusCode::FORBIDDEN,
            &format!("{target} is this proxy itself; a tunnel to it would loop"),
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
    tokio::spawn(async move {
        if let Ok(upgraded) = hyper::upgrade::on(req).await {
            let mut client = TokioIo::new(upgraded);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
        }
    });
    Response::new(Body::empty())
}
