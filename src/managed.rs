//! Google-managed callers: the services of Google's that call a Cloud Run service on a
//! user's behalf, with an ID token for an account the user names. Now Pub/Sub's pushes.
//!
//! Push deliveries, as Google makes them: each message of a push subscription is POSTed to
//! its endpoint, in Google's envelope (or bare, with `noWrapper`), with an ID token for the
//! subscription's account when it names one. An endpoint that is a Cloud Run URL (a
//! `*.run.app` host or a custom domain) goes through the front door in-process, so the
//! account's `run.invoker` is checked and the decision says which subscription pushed;
//! another `http://` endpoint is called directly. A 102, 200, 201, 202 or 204 acknowledges
//! the message; anything else, or no answer within the ack deadline, hands it back for
//! the backoff, and a dead-letter policy ends it after its attempts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, HeaderValue, Method, Request, StatusCode, header};
use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use pb::push_config::{AuthenticationMethod, Wrapper};
use serde_json::json;
use tower::ServiceExt;

use crate::broker::{Broker, Handed};
use crate::decisions::{Code, Decision, Surface};
use crate::google::pubsub::json::{message_out, timestamp_out};
use crate::peer::{ManagedCaller, Peer};
use crate::state::{AppState, Live};

/// Pushes out at once to one subscription's endpoint, at most: Google grows its window
/// with the endpoint's successes; a fixed window keeps a slow receiver from being flooded.
const MAX_OUTSTANDING_PUSHES: usize = 64;
/// Google's push user agent.
const USER_AGENT: &str =
    "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)";

/// Runs the push deliveries until the process ends.
pub(crate) async fn run(live: Live) {
    let frontdoor = crate::frontdoor::app(live.clone(), None);
    let outstanding: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    loop {
        let state = live.get();
        let broker = state.pubsub().clone();
        let changed = broker.changed();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        let mut wait = Duration::from_secs(1);
        for subscription in broker.push_subscriptions() {
            let out = count(&outstanding, &subscription.name);
            let room = MAX_OUTSTANDING_PUSHES.saturating_sub(out);
            if room > 0 {
                let handed = broker
                    .pull(&subscription.name, room, None)
                    .unwrap_or_default();
                for message in handed {
                    *lock(&outstanding)
                        .entry(subscription.name.clone())
                        .or_default() += 1;
                    let push = Push {
                        state: state.clone(),
                        frontdoor: frontdoor.clone(),
                        subscription: subscription.clone(),
                        message,
                    };
                    let outstanding = outstanding.clone();
                    tokio::spawn(async move {
                        let name = push.subscription.name.clone();
                        // Counted down however the push ends, a panic included.
                        let _slot = Slot { outstanding, name };
                        push.deliver().await;
                    });
                }
            }
            // A subscription with no room waits for a push to end, which wakes `changed`.
            if room > 0
                && let Some(due) = broker.next_due(&subscription.name)
            {
                wait = wait.min(due.saturating_duration_since(std::time::Instant::now()));
            }
        }
        let wait = wait.max(Duration::from_millis(5));
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}

/// One push out to a subscription's endpoint; its place is given back when it is dropped,
/// and a subscription with none out is forgotten.
struct Slot {
    outstanding: Arc<Mutex<HashMap<String, usize>>>,
    name: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut outstanding = lock(&self.outstanding);
        if let Some(n) = outstanding.get_mut(&self.name) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                outstanding.remove(&self.name);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn count(outstanding: &Mutex<HashMap<String, usize>>, name: &str) -> usize {
    lock(outstanding).get(name).copied().unwrap_or(0)
}

/// One delivery attempt of one message.
struct Push {
    state: AppState,
    frontdoor: axum::Router,
    subscription: pb::Subscription,
    message: Handed,
}

impl Push {
    async fn deliver(self) {
        let broker: &Broker = self.state.pubsub();
        let deadline = Duration::from_secs(
            u64::try_from(self.subscription.ack_deadline_seconds.max(10)).unwrap_or(10),
        );
        let started = std::time::Instant::now();
        let outcome = match self.request() {
            Ok((request, through_frontdoor)) => {
                let asked = through_frontdoor.then(|| {
                    let host = request
                        .headers()
                        .get(axum::http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .unwrap_or_default()
                        .to_owned();
                    let via = request.extensions().get::<ManagedCaller>().cloned();
                    (host, request.uri().path().to_owned(), via)
                });
                let sent = if through_frontdoor {
                    let frontdoor = self.frontdoor.clone();
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
                    Ok(Ok(status)) => Ok(status),
                    Ok(Err(e)) => Err(e),
                    Err(_) => {
                        let why = format!(
                            "no answer within the ack deadline ({}s): the push is given up on and the message handed back",
                            deadline.as_secs()
                        );
                        // The front door records a decision when the answer's headers
                        // come; one that never came is recorded here, so that every
                        // attempt is in the log.
                        if let Some((host, path, via)) = asked {
                            self.record_unanswered(&host, path, via, &why, started);
                        }
                        Err(why)
                    }
                }
            }
            Err(e) => Err(e),
        };
        let delivered = matches!(
            outcome,
            Ok(StatusCode::PROCESSING
                | StatusCode::OK
                | StatusCode::CREATED
                | StatusCode::ACCEPTED
                | StatusCode::NO_CONTENT)
        );
        match &outcome {
            Ok(status) => tracing::info!(
                subscription = %self.subscription.name,
                message_id = %self.message.message.message_id,
                attempt = self.message.attempt,
                status = status.as_u16(),
                delivered,
                "pub/sub push"
            ),
            Err(e) => tracing::info!(
                subscription = %self.subscription.name,
                message_id = %self.message.message.message_id,
                attempt = self.message.attempt,
                error = %e,
                "pub/sub push failed"
            ),
        }
        broker.pushed(&self.subscription.name, &self.message.ack_id, delivered);
    }

    /// The decision for a push through the front door that got no answer in time.
    fn record_unanswered(
        &self,
        host: &str,
        path: String,
        via: Option<ManagedCaller>,
        why: &str,
        started: std::time::Instant,
    ) {
        let state = &self.state;
        let mut decision = Decision::about(
            Surface::Frontdoor,
            state.now(),
            "POST",
            host.to_owned(),
            path,
        )
        .timed(started);
        decision.service = state
            .frontdoor()
            .route(host)
            .map(|i| state.config().services[i].name.clone());
        decision.via = via.map(|v| v.0.to_string());
        // The front door let it through (it was sent); the container never answered, as a
        // front-door upstream failure is recorded.
        decision.allowed = true;
        decision.principal = self
            .subscription
            .push_config
            .as_ref()
            .and_then(|p| p.authentication_method.as_ref())
            .map(|AuthenticationMethod::OidcToken(o)| {
                format!("serviceAccount:{}", o.service_account_email)
            });
        decision.status = StatusCode::GATEWAY_TIMEOUT.as_u16();
        decision.code = Some(Code::UpstreamFailed);
        decision.reason = why.to_owned();
        state.decisions().record(decision);
    }

    /// The POST Google makes, and whether it goes through the front door.
    fn request(&self) -> Result<(Request<Body>, bool), String> {
        let push = self.subscription.push_config.clone().unwrap_or_default();
        let url = url::Url::parse(&push.push_endpoint).map_err(|e| e.to_string())?;
        let host = url.host_str().unwrap_or_default().to_ascii_lowercase();
        let through_frontdoor =
            host.ends_with(".run.app") || self.state.frontdoor().route(&host).is_some();
        if !through_frontdoor && (url.scheme() != "http" || !is_loopback(&host)) {
            return Err(format!(
                "{} is no Cloud Run URL, and frontdoor pushes elsewhere only to plain http on this machine (localhost, 127.0.0.1, [::1]): it sends nothing off it",
                push.push_endpoint
            ));
        }
        let message = &self.message.message;
        let mut builder = Request::builder()
            .method(Method::POST)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::USER_AGENT, USER_AGENT);
        // A CloudEvent (an Eventarc trigger's endpoint asks for one) always carries the
        // wrapped message, and no publisher's attribute as a header beside its `ce-*` ones.
        let cloudevent = url.query_pairs().any(|(k, v)| {
            k == crate::config::eventarc::CLOUDEVENTS_MODE && v.starts_with("CUSTOM_PUBSUB_")
        });
        let body = match &push.wrapper {
            Some(Wrapper::NoWrapper(no)) if !cloudevent => {
                if no.write_metadata {
                    for (name, value) in self.metadata_headers(&push) {
                        builder = builder.header(name, value);
                    }
                }
                message.data.clone()
            }
            _ => serde_json::to_vec(&self.envelope()).map_err(|e| e.to_string())?,
        };
        // The same data as a CloudEvent in binary content mode, its attributes in `ce-*`
        // headers, as Eventarc delivers it.
        let trigger = self.trigger().filter(|_| cloudevent);
        if cloudevent {
            let topic = &self.subscription.topic;
            let ce = [
                ("ce-id", message.message_id.clone()),
                ("ce-source", format!("//pubsub.googleapis.com/{topic}")),
                ("ce-specversion", "1.0".to_owned()),
                (
                    "ce-type",
                    crate::config::eventarc::MESSAGE_PUBLISHED.to_owned(),
                ),
                (
                    "ce-time",
                    message.publish_time.map(timestamp_out).unwrap_or_default(),
                ),
            ];
            for (name, value) in ce {
                builder = builder.header(name, value);
            }
        }
        if let Some(AuthenticationMethod::OidcToken(oidc)) = &push.authentication_method {
            let token = self.id_token(
                &oidc.service_account_email,
                &oidc.audience,
                &push.push_endpoint,
            )?;
            builder = builder.header(header::AUTHORIZATION, format!("Bearer {token}"));
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
            .body(Body::from(body))
            .map_err(|e| e.to_string())?;
        if through_frontdoor {
            let oidc = match &push.authentication_method {
                Some(AuthenticationMethod::OidcToken(o)) => {
                    format!(", as {}", o.service_account_email)
                }
                None => ", without a token".to_owned(),
            };
            let label = match trigger {
                Some(trigger) => format!(
                    "Eventarc trigger {trigger}{oidc}, attempt {}",
                    self.message.attempt
                ),
                None if cloudevent => format!(
                    "Pub/Sub push as a CloudEvent, subscription {}{oidc}, attempt {}",
                    crate::broker::short(&self.subscription.name),
                    self.message.attempt
                ),
                None => format!(
                    "Pub/Sub push, subscription {}{oidc}, attempt {}",
                    crate::broker::short(&self.subscription.name),
                    self.message.attempt
                ),
            };
            let extensions = request.extensions_mut();
            extensions.insert(ManagedCaller(Arc::from(label)));
            extensions.insert(ConnectInfo(Peer {
                remote: SocketAddr::from(([127, 0, 0, 1], 0)),
                local: self.state.config().listen.frontdoor,
            }));
        }
        Ok((request, through_frontdoor))
    }

    /// The Eventarc trigger this subscription delivers for, if it is one's.
    fn trigger(&self) -> Option<&str> {
        self.subscription
            .labels
            .get(crate::config::eventarc::TRIGGER_LABEL)
            .map(String::as_str)
    }

    /// Google's envelope: the message (its ids and time in both spellings, as Google
    /// sends them), the subscription, and the attempt when the subscription dead-letters.
    fn envelope(&self) -> serde_json::Value {
        let message = &self.message.message;
        let mut shown = message_out(message);
        shown["message_id"] = json!(message.message_id);
        shown["publish_time"] = shown["publishTime"].clone();
        let mut envelope = json!({"message": shown, "subscription": self.subscription.name});
        if self.subscription.dead_letter_policy.is_some() {
            envelope["deliveryAttempt"] = json!(self.message.attempt);
        }
        envelope
    }

    /// `noWrapper` with `writeMetadata`: the message's metadata and attributes as headers.
    fn metadata_headers(&self, _push: &pb::PushConfig) -> Vec<(HeaderName, HeaderValue)> {
        let message = &self.message.message;
        let mut headers = vec![
            (
                "x-goog-pubsub-subscription-name".to_owned(),
                self.subscription.name.clone(),
            ),
            (
                "x-goog-pubsub-message-id".to_owned(),
                message.message_id.clone(),
            ),
            (
                "x-goog-pubsub-publish-time".to_owned(),
                message.publish_time.map(timestamp_out).unwrap_or_default(),
            ),
        ];
        if !message.ordering_key.is_empty() {
            headers.push((
                "x-goog-pubsub-ordering-key".into(),
                message.ordering_key.clone(),
            ));
        }
        if self.subscription.dead_letter_policy.is_some() {
            headers.push((
                "x-goog-pubsub-delivery-attempt".into(),
                self.message.attempt.to_string(),
            ));
        }
        // The attributes as headers, but never one that would change how the request is
        // read, whom it names, or what Google's own headers say: a publisher must not be
        // able to put a credential of its own in front of the subscription's.
        headers.extend(
            message
                .attributes
                .iter()
                .filter(|(k, _)| !reserved_header(k))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        headers
            .into_iter()
            .filter_map(|(k, v)| {
                Some((
                    HeaderName::try_from(k).ok()?,
                    HeaderValue::try_from(v).ok()?,
                ))
            })
            .collect()
    }

    /// An ID token for `account`, as Google mints a push token: the audience given, else
    /// the endpoint's URL as the subscription gives it. Reused, as a metadata server's
    /// token is, until it nears expiry (the same bounded cache, under its own key): a
    /// stream of pushes costs one signature, not one each, and the front door's verified
    /// token cache then knows it.
    fn id_token(&self, account: &str, audience: &str, endpoint: &str) -> Result<String, String> {
        let config = self.state.config();
        let account = config.service_account(account).ok_or_else(|| {
            format!("the push account {account} is no longer declared; no token can be minted")
        })?;
        let audience = if audience.is_empty() {
            endpoint
        } else {
            audience
        };
        let now = self.state.now();
        let asked = format!("push\0{}\0{}\0{audience}", account.email, account.unique_id);
        let minted = self
            .state
            .metadata_tokens()
            .get_or_mint(config, &asked, now, || {
                let claims =
                    crate::tokens::service_account_claims(&config.issuer, account, audience, now);
                Ok::<_, std::convert::Infallible>((
                    crate::tokens::mint(self.state.keys(), &claims),
                    now + crate::tokens::LIFETIME,
                ))
            });
        let Ok((token, _, _)) = minted;
        Ok(token)
    }
}

fn reserved_header(name: &str) -> bool {
    const RESERVED: [&str; 12] = [
        "authorization",
        "x-serverless-authorization",
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "user-agent",
    ];
    let name = name.to_ascii_lowercase();
    RESERVED.contains(&name.as_str())
        || name.starts_with("x-goog-")
        || name.starts_with("ce-")
        || name.starts_with("proxy-")
        || name.starts_with("forwarded")
        || name.starts_with("x-forwarded-")
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A push to a plain-http endpoint that is not a Cloud Run URL, on a connection kept open
/// between pushes (hyper's pooling client), as Google's push senders keep theirs; closed
/// after 4 s idle, before common servers' keep-alive (Node's 5 s) closes it under a push.
async fn direct(request: Request<Body>) -> Result<StatusCode, String> {
    static CLIENT: std::sync::OnceLock<Client<HttpConnector, Body>> = std::sync::OnceLock::new();
    let client = CLIENT.get_or_init(|| {
        Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(std::time::Duration::from_secs(4))
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
