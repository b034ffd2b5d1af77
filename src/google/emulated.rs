//! What the Google APIs that frontdoor emulates as a whole service share (Pub/Sub, Cloud
//! Tasks): who is calling, through either of Google's transports, and how one call's
//! answer and decision are made in each. Each API brings its own call type ([`Api`]) that
//! checks permissions and does the work; REST's [`answer`] and gRPC's [`unary`] run it and
//! attach what it says of itself to the decision.
//!
//! Who may call: through the egress proxy (the API's `*.googleapis.com` host), or with a
//! bearer token on the google listener itself, the caller's access token names a
//! principal whose roles are checked, as Google checks them. A call on the google
//! listener with no credentials at all is the emulator's (`PUBSUB_EMULATOR_HOST` points
//! there): as on Google's own emulators, nothing is checked.

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tonic::Status;
use tonic::server::Grpc;
use tonic_prost::ProstCodec;

use super::errors::ApiError;
use crate::decisions::Explanation;
use crate::iam::{self, Principal};
use crate::state::{AppState, Live};

/// Who is calling: the emulator's anonymous caller, or a principal whose roles count.
#[derive(Debug, Clone)]
pub(crate) enum Who {
    Emulator,
    Principal(Principal),
}

impl Who {
    /// From the request: its bearer token if it has one; none at all on the google
    /// listener itself is the emulator, and through the proxy is Google's 401.
    pub(crate) fn of(
        state: &AppState,
        headers: &HeaderMap,
        through_proxy: bool,
    ) -> Result<Who, ApiError> {
        if headers.get(axum::http::header::AUTHORIZATION).is_none() && !through_proxy {
            return Ok(Who::Emulator);
        }
        super::caller::caller(state, headers).map(Who::Principal)
    }

    /// The caller of `req`.
    fn of_request(state: &AppState, req: &Request) -> Result<Who, ApiError> {
        let through_proxy = req.extensions().get::<crate::peer::TunnelHost>().is_some();
        Who::of(state, req.headers(), through_proxy)
    }

    /// The principal's name for a decision; the emulator's caller is nobody.
    pub(crate) fn principal(&self) -> Option<String> {
        match self {
            Who::Emulator => None,
            Who::Principal(p) => Some(p.to_string()),
        }
    }
}

/// One call of an emulated API, made for a caller.
pub(crate) trait Api: Send + 'static {
    fn new(state: AppState, who: Who) -> Self;
    /// What the decision says: who, the permission checked, on what, and why. A refusal
    /// brings its own reason (its rendering attaches it), so the call's is left out then.
    fn finish(&mut self, failed: bool) -> Explanation;
}

/// What every call of an emulated API holds: the state it reads, who is calling, and what
/// the decision will say of it. An API's own call type wraps it.
pub(crate) struct Checked {
    pub(crate) state: AppState,
    pub(crate) who: Who,
    pub(crate) explanation: Explanation,
}

impl Checked {
    pub(crate) fn new(state: AppState, who: Who) -> Checked {
        Checked {
            explanation: Explanation {
                principal: who.principal(),
                ..Explanation::default()
            },
            state,
            who,
        }
    }

    /// What the decision says: who, the permission checked, on what, and why. A refusal
    /// brings its own reason (its rendering attaches it), so the call's is left out then.
    pub(crate) fn finish(&mut self, failed: bool) -> Explanation {
        let mut explanation = std::mem::take(&mut self.explanation);
        if failed {
            explanation.reason = None;
        }
        explanation
    }

    /// Whether the caller holds `permission` on `name`, judged on its project's policy (an
    /// API whose resources hold no policies of their own here); `api` names the API in a
    /// refusal, as a possessive ("Cloud Tasks'"). The emulator's caller holds everything; a principal's project must be
    /// this frontdoor's.
    pub(crate) fn allow_in_project(
        &mut self,
        permission: &'static str,
        name: &str,
        api: &str,
    ) -> Result<(), ApiError> {
        self.explanation.permission = Some(permission);
        self.explanation.target = Some(name.to_owned());
        let Who::Principal(who) = &self.who else {
            self.explanation.reason = Some(format!(
                "the emulator's caller (no credentials on the google listener) may {permission} on {name}: nothing is checked"
            ));
            return Ok(());
        };
        let config = self.state.config();
        let project = name
            .strip_prefix("projects/")
            .and_then(|r| r.split('/').next())
            .unwrap_or("");
        if project != config.project.id && project != config.project.number {
            return Err(ApiError::NotFound(format!(
                "project `{}` is not the one frontdoor emulates ({}); with credentials, {api} resources are in it",
                project.chars().take(100).collect::<String>(),
                config.project.id
            )));
        }
        let reason = super::judge(config, who, permission, super::Resource::Project)?;
        self.explanation.reason = Some(reason);
        Ok(())
    }

    /// [`allow_account`] for this call.
    pub(crate) fn allow_account(&mut self, email: &str, field: &str) -> Result<(), ApiError> {
        allow_account(&self.state, &self.who, &mut self.explanation, email, field)
    }
}

/// A REST call: runs `f` as the caller of `req` with its method and body (at most
/// `max_body` bytes), and answers with its JSON, or Google's error; the decision gets who
/// called, the permission and why.
pub(crate) async fn answer<C: Api>(
    live: &Live,
    req: Request,
    max_body: usize,
    f: impl FnOnce(&mut C, Method, Bytes) -> Result<Value, ApiError>,
) -> Response {
    let state = live.get();
    let method = req.method().clone();
    let who = match Who::of_request(&state, &req) {
        Ok(who) => who,
        Err(e) => return e.into_response(),
    };
    let body = match axum::body::to_bytes(req.into_body(), max_body).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::InvalidArgument(format!(
                "Request payload size exceeds the limit: {max_body} bytes."
            ))
            .into_response();
        }
    };
    let mut call = C::new(state, who);
    let result = f(&mut call, method, body);
    let failed = result.is_err();
    let mut response = match result {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => e.into_response(),
    };
    call.finish(failed).attach(&mut response);
    response
}

/// The body as `T`; an empty body is `T`'s default, as Google reads `{}`.
pub(crate) fn body<T: DeserializeOwned + Default>(bytes: &Bytes) -> Result<T, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::InvalidArgument(format!("Invalid JSON payload received. {e}")))
}

/// `id` or `id:method`, as Google writes a custom method after the resource.
pub(crate) fn custom(segment: &str) -> (&str, Option<&str>) {
    match segment.split_once(':') {
        Some((id, method)) => (id, Some(method)),
        None => (segment, None),
    }
}

pub(crate) fn page(query: Option<&str>) -> Result<(usize, String), ApiError> {
    let mut size = 0;
    let mut token = String::new();
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "pageSize" | "page_size" => {
                size = value.parse().map_err(|_| {
                    ApiError::InvalidArgument(format!("Invalid pageSize `{value}`: a number"))
                })?;
            }
            "pageToken" | "page_token" => token = value.into_owned(),
            _ => {}
        }
    }
    Ok((size, token))
}

/// A page of a list as Google's REST gives it: `{KEY: [...], "nextPageToken"}`, the token
/// only when there is a next page.
pub(crate) fn listed(key: &str, items: impl Iterator<Item = Value>, next: String) -> Value {
    let mut out = json!({ key: items.collect::<Vec<_>>() });
    if !next.is_empty() {
        out["nextPageToken"] = json!(next);
    }
    out
}

/// What the decision says of a gRPC call, filled in by the call as it ends.
pub(crate) type Said = Arc<Mutex<Option<Explanation>>>;

pub(crate) fn say(said: &Said, explanation: Explanation) {
    *said
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(explanation);
}

/// A refusal as gRPC answers it, and its decision: the error's code and reason, with who
/// asked and for what from the call.
pub(crate) fn refused<C: Api>(call: &mut C, e: ApiError) -> (Status, Explanation) {
    let (status, mut explanation) = e.into_status();
    let asked = call.finish(true);
    explanation.principal = asked.principal;
    explanation.permission = asked.permission;
    explanation.target = asked.target;
    (status, explanation)
}

/// The caller of a gRPC call, or the refusal to answer at once.
pub(crate) fn grpc_who(state: &AppState, req: &Request) -> Result<Who, Response> {
    Who::of_request(state, req).map_err(|e| {
        let (status, explanation) = e.into_status();
        let mut response = status.into_http::<Body>();
        explanation.attach(&mut response);
        response
    })
}

/// gRPC's answer to a method of `service` (`google.cloud.tasks.v2.CloudTasks`) not
/// emulated; `see` says where the methods that are are listed.
pub(crate) fn unimplemented(service: &str, method: &str, see: &str) -> Response {
    let status = Status::unimplemented(format!(
        "frontdoor does not emulate {service}.{method}; see {see} for the methods it does"
    ));
    let mut response = status.into_http::<Body>();
    Explanation::refused(
        crate::decisions::Code::NotFound,
        format!("no method {service}.{method} here"),
    )
    .attach(&mut response);
    response
}

/// One unary gRPC method: `f` with the decoded request (at most `max_message` bytes), as
/// the caller.
pub(crate) async fn unary<C, Q, A>(
    state: AppState,
    who: Who,
    req: Request,
    max_message: usize,
    f: fn(&mut C, Q) -> Result<A, ApiError>,
) -> Response
where
    C: Api,
    Q: prost::Message + Default + Send + 'static,
    A: prost::Message + Send + 'static,
{
    let said: Said = Arc::default();
    let method = {
        let said = said.clone();
        tower::service_fn(move |request: tonic::Request<Q>| {
            let mut call = C::new(state.clone(), who.clone());
            let said = said.clone();
            async move {
                match f(&mut call, request.into_inner()) {
                    Ok(answer) => {
                        say(&said, call.finish(false));
                        Ok(tonic::Response::new(answer))
                    }
                    Err(e) => {
                        let (status, explanation) = refused(&mut call, e);
                        say(&said, explanation);
                        Err(status)
                    }
                }
            }
        })
    };
    let mut grpc = Grpc::new(ProstCodec::<A, Q>::default()).max_decoding_message_size(max_message);
    let mut response = grpc.unary(method, req).await.map(Body::new);
    let explanation = said
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(explanation) = explanation {
        explanation.attach(&mut response);
    }
    response
}

/// Whether the caller may have frontdoor mint tokens for `email` on its behalf (a push's,
/// a task's): the account must be declared, and a principal needs
/// `iam.serviceAccounts.actAs` on it, as Google requires. Without credentials nothing can
/// be checked; so that the emulator's door mints no token a metadata server would not hand
/// out anyway, it may name only an account some service runs as (or the default metadata
/// identity). `field` says where the account was named.
pub(crate) fn allow_account(
    state: &AppState,
    who: &Who,
    explanation: &mut Explanation,
    email: &str,
    field: &str,
) -> Result<(), ApiError> {
    let config = state.config();
    let account = config.service_account(email).ok_or_else(|| {
        ApiError::InvalidArgument(format!(
            "The service account `{email}` {field} is not declared under service_accounts in {}; frontdoor mints tokens only for declared accounts",
            config
                .file
                .file_name()
                .map_or_else(|| "the configuration".into(), |n| n.to_string_lossy())
        ))
    })?;
    match who {
        Who::Emulator => {
            let runs_as = |email: &str| email.eq_ignore_ascii_case(&account.email);
            let served = config.services.iter().any(|s| runs_as(&s.service_account))
                || runs_as(&config.metadata_identity);
            if !served {
                return Err(ApiError::ActAsDenied {
                    account: account.email.clone(),
                    why: format!(
                        "without credentials (the emulator's door), a token may be asked for only an account some service runs as; {} runs no service: call with credentials that hold iam.serviceAccounts.actAs on it (roles/iam.serviceAccountUser)",
                        account.email
                    ),
                });
            }
        }
        Who::Principal(who) => {
            // A refusal's decision names this check; an allowed call keeps the method's.
            let asked = (explanation.permission, explanation.target.clone());
            explanation.permission = Some(iam::ACT_AS);
            explanation.target = Some(account.email.clone());
            super::judge(config, who, iam::ACT_AS, super::Resource::Account(account))?;
            (explanation.permission, explanation.target) = asked;
        }
    }
    Ok(())
}
