//! Google-managed callers: the services of Google's that call a Cloud Run service on a
//! user's behalf, with a token for an account the user names. Pub/Sub's pushes (and
//! Eventarc's, which are pushes) are `push`; Cloud Tasks' dispatches are `tasks`. Each
//! builds its own request ([`Outgoing`]); [`send`] is the one place that mints the
//! account's token and sends it.
//!
//! A target that is a Cloud Run URL (a `*.run.app` host or a custom domain) goes through
//! the front door in-process, so the account's `run.invoker` is checked and the decision
//! says which caller sent it and on which attempt; another `http://` target on this
//! machine is called directly; nothing is sent off it.

mod push;
mod scheduler;
mod tasks;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use tower::ServiceExt;

use crate::decisions::{Code, Decision, Surface};
use crate::iam::Principal;
use crate::peer::{ManagedCaller, Peer};
use crate::state::{AppState, Live};

/// Starts every Google-managed caller, each on its own task (so that one's failure does
/// not stop another), to run until the process ends.
pub(crate) fn start(live: &Live) {
    tokio::spawn(push::run(live.clone()));
    tokio::spawn(tasks::run(live.clone()));
    tokio::spawn(scheduler::run(live.clone()));
}

/// The token a call carries.
#[derive(Debug, Clone)]
pub(crate) enum Token {
    /// An ID token for `account`, for `audience` (the target URL when empty).
    Oidc { account: String, audience: String },
    /// An access token for `account`, with `scope` (cloud-platform when empty).
    Oauth { account: String, scope: String },
}

impl Token {
    fn account(&self) -> &str {
        match self {
            Token::Oidc { account, .. } | Token::Oauth { account, .. } => account,
        }
    }
}

/// One call a Google-managed caller makes.
pub(crate) struct Outgoing {
    pub(crate) url: String,
    pub(crate) method: Method,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) body: bytes::Bytes,
    pub(crate) token: Option<Token>,
    /// Who is calling, as the front door's decision names it ("Cloud Tasks queue Q task
    /// T, as SA, attempt 2").
    pub(crate) label: String,
    /// How long to wait for the answer's headers, and what that deadline is called.
    pub(crate) deadline: Duration,
    pub(crate) deadline_name: &'static str,
    /// What becomes of a call unanswered by the deadline.
    pub(crate) unanswered: &'static str,
}

/// Sends `out`, and the status it got; an error says why there was none (the target is
/// not one frontdoor sends to, no token could be minted, the deadline passed).
pub(crate) async fn send(
    state: &AppState,
    frontdoor: &axum::Router,
    out: Outgoing,
) -> Result<StatusCode, String> {
    let (deadline, deadline_name, unanswered) = (out.deadline, out.deadline_name, out.unanswered);
    // A decision's time counts the token's minting, as the push's always has.
    let started = Instant::now();
    let principal = out
        .token
        .as_ref()
        .map(|t| format!("serviceAccount:{}", t.account()));
    let (request, through_frontdoor) = request(state, out)?;
    let asked = through_frontdoor.then(|| {
        let host = request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let via = request.extensions().get::<ManagedCaller>().cloned();
        (host, request.uri().path().to_owned(), via)
    });
    let method = request.method().clone();
    let sent = if through_frontdoor {
        let frontdoor = frontdoor.clone();
        tokio::time::timeout(deadline, async move {
            frontdoor
                .oneshot(request)
                .await
                .map(|r| r.status())
                .map_err(|never| match never {})
        })
        .await
    } else {
        tokio::time::timeout(deadline, direct(request)).await
    };
    match sent {
        Ok(result) => result,
        Err(_) => {
            let why = format!(
                "no answer within the {} ({}s): {}",
                deadline_name,
                deadline.as_secs(),
                unanswered
            );
            // The front door records a decision when the answer's headers come; one
            // that never came is recorded here, so that every attempt is in the log.
            if let Some((host, path, via)) = asked {
                let asked = Asked {
                    method,
                    host,
                    path,
                    via,
                    principal,
                };
                record_unanswered(state, asked, &why, started);
            }
            Err(why)
        }
    }
}

/// The request `out` makes, and whether it goes through the front door.
fn request(state: &AppState, out: Outgoing) -> Result<(Request<Body>, bool), String> {
    let url = url::Url::parse(&out.url).map_err(|e| format!("{}: {e}", out.url))?;
    let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
    let through_frontdoor = host.ends_with(".run.app") || state.frontdoor().route(&host).is_some();
    if !through_frontdoor && (url.scheme() != "http" || !is_loopback(&host)) {
        return Err(format!(
            "{} is no Cloud Run URL, and frontdoor calls elsewhere only plain http on this machine (localhost, 127.0.0.1, [::1]): it sends nothing off it",
            out.url
        ));
    }
    let mut builder = Request::builder().method(out.method);
    for (name, value) in out.headers {
        builder = builder.header(name, value);
    }
    match &out.token {
        Some(Token::Oidc { account, audience }) => {
            let audience = if audience.is_empty() {
                &out.url
            } else {
                audience
            };
            let token = id_token(state, account, audience)?;
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        Some(Token::Oauth { account, scope }) => {
            let token = access_token(state, account, scope)?;
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        None => {}
    }
    let path = match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    };
    let authority = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.clone(),
    };
    let uri = if through_frontdoor {
        path
    } else {
        format!("http://{authority}{path}")
    };
    let mut request = builder
        .uri(uri)
        .header(header::HOST, authority)
        .body(Body::from(out.body))
        .map_err(|e| e.to_string())?;
    if through_frontdoor {
        let extensions = request.extensions_mut();
        extensions.insert(ManagedCaller(Arc::from(out.label)));
        extensions.insert(ConnectInfo(Peer {
            remote: SocketAddr::from(([127, 0, 0, 1], 0)),
            local: state.config().listen.frontdoor,
        }));
    }
    Ok((request, through_frontdoor))
}

/// What an unanswered call through the front door asked, for its decision.
struct Asked {
    method: Method,
    host: String,
    path: String,
    via: Option<ManagedCaller>,
    principal: Option<String>,
}

/// The decision for a call through the front door that got no answer in time.
fn record_unanswered(state: &AppState, asked: Asked, why: &str, started: Instant) {
    let mut decision = Decision::about(
        Surface::Frontdoor,
        state.now(),
        asked.method.as_str(),
        asked.host.clone(),
        asked.path,
    )
    .timed(started);
    decision.service = state
        .frontdoor()
        .route(&asked.host)
        .map(|i| state.config().services[i].name.clone());
    decision.via = asked.via.map(|v| v.0.to_string());
    // The front door let it through (it was sent); the container never answered, as a
    // front-door upstream failure is recorded.
    decision.allowed = true;
    decision.principal = asked.principal;
    decision.status = StatusCode::GATEWAY_TIMEOUT.as_u16();
    decision.code = Some(Code::UpstreamFailed);
    decision.reason = why.to_owned();
    state.decisions().record(decision);
}

/// An ID token for `account`, as Google mints a managed caller's: for `audience`. Reused,
/// as a metadata server's token is, until it nears expiry (the same bounded cache, under
/// its own key): a stream of calls costs one signature, not one each, and the front
/// door's verified token cache then knows it.
fn id_token(state: &AppState, account: &str, audience: &str) -> Result<String, String> {
    let config = state.config();
    let account = config.service_account(account).ok_or_else(|| {
        format!("the account {account} is no longer declared; no token can be minted")
    })?;
    let now = state.now();
    let asked = format!("push\0{}\0{}\0{audience}", account.email, account.unique_id);
    let minted = state
        .metadata_tokens()
        .get_or_mint(config, &asked, now, || {
            let claims =
                crate::tokens::service_account_claims(&config.issuer, account, audience, now);
            Ok::<_, std::convert::Infallible>((
                crate::tokens::mint(state.keys(), &claims),
                now + crate::tokens::LIFETIME,
            ))
        });
    let Ok((token, _, _)) = minted;
    Ok(token)
}

/// An access token for `account` with `scope`, as Cloud Tasks' `oauthToken` sends one.
fn access_token(state: &AppState, account: &str, scope: &str) -> Result<String, String> {
    let config = state.config();
    let account = config.service_account(account).ok_or_else(|| {
        format!("the account {account} is no longer declared; no token can be minted")
    })?;
    let scopes: Vec<String> = if scope.is_empty() {
        vec!["https://www.googleapis.com/auth/cloud-platform".to_owned()]
    } else {
        scope.split_whitespace().map(str::to_owned).collect()
    };
    let now = state.now();
    let asked = format!("managed-token\0{}\0{}", account.email, scopes.join(","));
    let (token, _, _) = state
        .metadata_tokens()
        .get_or_mint(config, &asked, now, || {
            let principal = Principal::ServiceAccount(account.email.clone());
            let (token, grant) = state.access_tokens().issue(
                principal,
                scopes.clone(),
                now,
                crate::tokens::LIFETIME,
            )?;
            Ok((token, grant.exp))
        })
        .map_err(|e: crate::access::TooLarge| e.to_string())?;
    Ok(token)
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A call to a plain-http target that is not a Cloud Run URL, on a connection kept open
/// between calls (hyper's pooling client), as Google's senders keep theirs; closed after
/// 4 s idle, before common servers' keep-alive (Node's 5 s) closes it under a call.
async fn direct(request: Request<Body>) -> Result<StatusCode, String> {
    static CLIENT: std::sync::OnceLock<Client<HttpConnector, Body>> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(4))
            .build_http()
    });
    let response =
        client
            .request(request)
            .await
            .map_err(|e| match std::error::Error::source(&e) {
                Some(cause) => format!("{e}: {cause}"),
                None => e.to_string(),
            })?;
    Ok(response.status())
}
