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
use std::time::{Duration, Instant, SystemTime};

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
use crate::taskqueue::Outcome;

/// Starts every Google-managed caller, each on its own task (so that one's failure does
/// not stop another), to run until the process ends.
pub(crate) fn start(live: &Live) {
    tokio::spawn(push::run(live.clone()));
    tokio::spawn(schedule::<crate::taskqueue::Dispatch>(live.clone()));
    tokio::spawn(schedule::<crate::cronjobs::Fire>(live.clone()));
}

/// A call a store hands out when it falls due (a Cloud Tasks dispatch, a Cloud Scheduler
/// attempt), which [`schedule`] makes.
trait Due: Clone + Send + Sync + 'static {
    /// What is due by `now`, marked out, and when the next may be.
    fn take(state: &AppState, now: SystemTime) -> (Vec<Self>, Option<SystemTime>);
    /// Wakes when the store changes.
    fn changed(state: &AppState) -> tokio::sync::futures::Notified<'_>;
    /// The request to make.
    fn outgoing(&self) -> Result<Outgoing, String>;
    /// Reports the call's end to the store, and logs it.
    fn finished(&self, state: &AppState, outcome: &Outcome);
}

/// Makes `D`'s calls as they fall due, until the process ends: each on its own task,
/// reported however it ends (a panic included), and the store looked at again when it
/// changes or the next call falls due.
async fn schedule<D: Due>(live: Live) {
    let frontdoor = crate::frontdoor::app(live.clone(), None);
    loop {
        let state = live.get();
        let changed = D::changed(&state);
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        let (due, next) = D::take(&state, SystemTime::now());
        for call in due {
            let state = state.clone();
            let frontdoor = frontdoor.clone();
            tokio::spawn(async move {
                let mut report = Report {
                    state: state.clone(),
                    call: Some(call.clone()),
                    outcome: Outcome::NoAnswer("the call ended without an answer".into()),
                };
                let outcome = match call.outgoing() {
                    Ok(out) => send(&state, &frontdoor, out).await,
                    Err(e) => Err(e),
                };
                report.outcome = match outcome {
                    Ok(status) => Outcome::Answered(status.as_u16()),
                    Err(e) => Outcome::NoAnswer(e),
                };
            });
        }
        let wait = next
            .map_or(Duration::from_secs(1), |n| {
                n.duration_since(SystemTime::now()).unwrap_or_default()
            })
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// A call's report to its store, made when it is dropped.
struct Report<D: Due> {
    state: AppState,
    call: Option<D>,
    outcome: Outcome,
}

impl<D: Due> Drop for Report<D> {
    fn drop(&mut self) {
        if let Some(call) = self.call.take() {
            call.finished(&self.state, &self.outcome);
        }
    }
}

/// The token a task or a job asks for: an ID token (`oidcToken`) or an access token
/// (`oauthToken`) for its account. Cloud Tasks' and Cloud Scheduler's messages are two
/// crates' types of the same shape.
fn token_of(oidc: Option<(&str, &str)>, oauth: Option<(&str, &str)>) -> Option<Token> {
    match (oidc, oauth) {
        (Some((account, audience)), _) => Some(Token::Oidc {
            account: account.to_owned(),
            audience: audience.to_owned(),
        }),
        (None, Some((account, scope))) => Some(Token::Oauth {
            account: account.to_owned(),
            scope: scope.to_owned(),
        }),
        (None, None) => None,
    }
}

/// A task's or a job's own headers and body as its target gets them, with Google's
/// `user_agent` and its own headers (`google`): a body without a Content-Type is
/// `application/octet-stream`.
fn headers_of(
    own: &std::collections::HashMap<String, String>,
    body: &[u8],
    user_agent: &'static str,
    google: Vec<(&'static str, String)>,
) -> Vec<(HeaderName, HeaderValue)> {
    let mut headers: Vec<(HeaderName, HeaderValue)> = own
        .iter()
        .filter_map(|(k, v)| {
            Some((
                HeaderName::try_from(k).ok()?,
                HeaderValue::try_from(v).ok()?,
            ))
        })
        .collect();
    if !body.is_empty() && !headers.iter().any(|(k, _)| k == header::CONTENT_TYPE) {
        headers.push((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/octet-stream"),
        ));
    }
    headers.push((header::USER_AGENT, HeaderValue::from_static(user_agent)));
    for (name, value) in google {
        if let Ok(value) = HeaderValue::try_from(value) {
            headers.push((HeaderName::from_static(name), value));
        }
    }
    headers
}

/// ", as SA" or ", without a token", as a decision's caller says it.
fn as_whom(token: Option<&Token>) -> String {
    match token {
        Some(token) => format!(", as {}", token.account()),
        None => ", without a token".to_owned(),
    }
}

/// `method` as hyper's, POST when it is not one.
fn method_of(name: &str) -> Method {
    Method::from_bytes(name.as_bytes())
        .ok()
        .filter(|m| *m != Method::CONNECT)
        .unwrap_or(Method::POST)
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
