//! Pub/Sub's REST/JSON transport (`https://pubsub.googleapis.com/v1/…`): what gcloud and
//! seed 002's curl recipe call. Each handler reads the path and body, and hands over to
//! the one [`Call`] both transports share.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::Method;
use axum::response::Response;
use axum::routing::{get, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Call;
use super::json::{self, MessageIn, PushConfigIn, SubscriptionIn, TopicIn};
use crate::broker::Page;
use crate::google::emulated::{self, body, custom, listed, page};
use crate::google::errors::ApiError;
use crate::state::Live;

pub(crate) fn routes() -> Router<Live> {
    Router::new()
        .route("/v1/projects/{project}/topics", get(list_topics))
        .route(
            "/v1/projects/{project}/topics/{topic}",
            put(topic).get(topic).delete(topic).post(topic),
        )
        .route(
            "/v1/projects/{project}/topics/{topic}/subscriptions",
            get(topic_subscriptions),
        )
        .route(
            "/v1/projects/{project}/subscriptions",
            get(list_subscriptions),
        )
        .route(
            "/v1/projects/{project}/subscriptions/{subscription}",
            put(subscription)
                .get(subscription)
                .delete(subscription)
                .patch(subscription)
                .post(subscription),
        )
}

/// The largest body a Pub/Sub request may have: a publish of 10 MB of data in base64,
/// with room for its JSON.
pub(super) const MAX_BODY: usize = 16 * 1024 * 1024;

/// Runs `f` as the caller of `req`: [`emulated::answer`] with Pub/Sub's body limit.
async fn answer(
    live: &Live,
    req: Request,
    f: impl FnOnce(&mut Call, Method, Bytes) -> Result<Value, ApiError>,
) -> Response {
    emulated::answer(live, req, MAX_BODY, f).await
}

fn no_method(method: &Method, what: &str) -> ApiError {
    ApiError::NotFound(format!(
        "frontdoor answers no Pub/Sub method `{method}` on {what}"
    ))
}

async fn list_topics(
    State(live): State<Live>,
    Path(project): Path<String>,
    req: Request,
) -> Response {
    let query = req.uri().query().map(str::to_owned);
    answer(&live, req, |call, _, _| {
        let (size, token) = page(query.as_deref())?;
        let (topics, next) = call.list_topics(
            &format!("projects/{project}"),
            Page {
                size,
                token: &token,
            },
        )?;
        Ok(listed("topics", topics.iter().map(json::topic_out), next))
    })
    .await
}

async fn topic(
    State(live): State<Live>,
    Path((project, segment)): Path<(String, String)>,
    req: Request,
) -> Response {
    answer(&live, req, |call, method, bytes| {
        let (id, custom) = custom(&segment);
        let name = format!("projects/{project}/topics/{id}");
        match (&method, custom) {
            (&Method::PUT, None) => {
                let topic = body::<TopicIn>(&bytes)?.into_topic(name)?;
                Ok(json::topic_out(&call.create_topic(topic)?))
            }
            (&Method::GET, None) => Ok(json::topic_out(&call.get_topic(&name)?)),
            (&Method::DELETE, None) => call.delete_topic(&name).map(|()| json!({})),
            (&Method::POST, Some("publish")) => {
                #[derive(Default, Deserialize)]
                #[serde(default)]
                struct Publish {
                    messages: Vec<MessageIn>,
                }
                let messages = body::<Publish>(&bytes)?
                    .messages
                    .into_iter()
                    .enumerate()
                    .map(|(i, m)| m.into_message(i))
                    .collect::<Result<Vec<_>, _>>()?;
                let ids = call.publish(&name, messages)?;
                Ok(json!({"messageIds": ids}))
            }
            (_, Some(iam)) if iam.ends_with("IamPolicy") || iam == "testIamPermissions" => {
                iam_method(call, &method, iam, &name, &bytes)
            }
            _ => Err(no_method(&method, &name)),
        }
    })
    .await
}

async fn topic_subscriptions(
    State(live): State<Live>,
    Path((project, topic)): Path<(String, String)>,
    req: Request,
) -> Response {
    answer(&live, req, |call, _, _| {
        let names = call.topic_subscriptions(&format!("projects/{project}/topics/{topic}"))?;
        Ok(json!({"subscriptions": names}))
    })
    .await
}

async fn list_subscriptions(
    State(live): State<Live>,
    Path(project): Path<String>,
    req: Request,
) -> Response {
    let query = req.uri().query().map(str::to_owned);
    answer(&live, req, |call, _, _| {
        let (size, token) = page(query.as_deref())?;
        let (subscriptions, next) = call.list_subscriptions(
            &format!("projects/{project}"),
            Page {
                size,
                token: &token,
            },
        )?;
        Ok(listed(
            "subscriptions",
            subscriptions.iter().map(json::subscription_out),
            next,
        ))
    })
    .await
}

async fn subscription(
    State(live): State<Live>,
    Path((project, segment)): Path<(String, String)>,
    req: Request,
) -> Response {
    answer(&live, req, |call, method, bytes| {
        let (id, custom) = custom(&segment);
        let name = format!("projects/{project}/subscriptions/{id}");
        match (&method, custom) {
            (&Method::PUT, None) => {
                let subscription = body::<SubscriptionIn>(&bytes)?.into_subscription(name)?;
                Ok(json::subscription_out(
                    &call.create_subscription(subscription)?,
                ))
            }
            (&Method::GET, None) => Ok(json::subscription_out(&call.get_subscription(&name)?)),
            (&Method::DELETE, None) => call.delete_subscription(&name).map(|()| json!({})),
            (&Method::PATCH, None) => {
                #[derive(Default, Deserialize)]
                #[serde(default, rename_all = "camelCase")]
                struct Update {
                    subscription: SubscriptionIn,
                    #[serde(alias = "update_mask")]
                    update_mask: String,
                }
                let update = body::<Update>(&bytes)?;
                if update.subscription.name().is_some_and(|n| n != name) {
                    return Err(ApiError::InvalidArgument(format!(
                        "The subscription's name in the body is not the one in the URL ({name})"
                    )));
                }
                let subscription = update.subscription.into_subscription(name)?;
                let mask: Vec<String> = update
                    .update_mask
                    .split(',')
                    .map(str::trim)
                    .filter(|f| !f.is_empty())
                    .map(str::to_owned)
                    .collect();
                Ok(json::subscription_out(
                    &call.update_subscription(subscription, &mask)?,
                ))
            }
            (&Method::POST, Some("pull")) => {
                #[derive(Default, Deserialize)]
                #[serde(default, rename_all = "camelCase")]
                struct Pull {
                    #[serde(alias = "max_messages")]
                    max_messages: i32,
                }
                let pull = body::<Pull>(&bytes)?;
                let received = call.pull(&name, pull.max_messages)?;
                if received.is_empty() {
                    return Ok(json!({}));
                }
                let received: Vec<Value> = received.iter().map(json::received_out).collect();
                Ok(json!({"receivedMessages": received}))
            }
            (&Method::POST, Some("acknowledge")) => {
                #[derive(Default, Deserialize)]
                #[serde(default, rename_all = "camelCase")]
                struct Ack {
                    #[serde(alias = "ack_ids")]
                    ack_ids: Vec<String>,
                }
                let ack = body::<Ack>(&bytes)?;
                call.acknowledge(&name, &ack.ack_ids).map(|()| json!({}))
            }
            (&Method::POST, Some("modifyAckDeadline")) => {
                #[derive(Default, Deserialize)]
                #[serde(default, rename_all = "camelCase")]
                struct Modify {
                    #[serde(alias = "ack_ids")]
                    ack_ids: Vec<String>,
                    #[serde(alias = "ack_deadline_seconds")]
                    ack_deadline_seconds: i32,
                }
                let modify = body::<Modify>(&bytes)?;
                call.modify_ack_deadline(&name, &modify.ack_ids, modify.ack_deadline_seconds)
                    .map(|()| json!({}))
            }
            (&Method::POST, Some("modifyPushConfig")) => {
                #[derive(Default, Deserialize)]
                #[serde(default, rename_all = "camelCase")]
                struct Modify {
                    #[serde(alias = "push_config")]
                    push_config: Option<PushConfigIn>,
                }
                let push = body::<Modify>(&bytes)?
                    .push_config
                    .map(PushConfigIn::into_push)
                    .transpose()?;
                call.modify_push_config(&name, push).map(|()| json!({}))
            }
            (_, Some(iam)) if iam.ends_with("IamPolicy") || iam == "testIamPermissions" => {
                iam_method(call, &method, iam, &name, &bytes)
            }
            _ => Err(no_method(&method, &name)),
        }
    })
    .await
}

/// `getIamPolicy` (GET, as gcloud sends it, or POST), `setIamPolicy` and
/// `testIamPermissions` on a topic or subscription.
fn iam_method(
    call: &mut Call,
    method: &Method,
    iam: &str,
    name: &str,
    bytes: &Bytes,
) -> Result<Value, ApiError> {
    use crate::google::policy;
    match (method, iam) {
        (&Method::GET | &Method::POST, "getIamPolicy") => {
            Ok(policy::render(&call.get_iam_policy(name)?))
        }
        (&Method::POST, "setIamPolicy") => {
            let request: policy::SetRequest = serde_json::from_slice(bytes).map_err(|e| {
                ApiError::InvalidArgument(format!("the body is not a setIamPolicy request: {e}"))
            })?;
            let (text, etag) = request.checked().map_err(ApiError::InvalidArgument)?;
            Ok(policy::render(&call.set_iam_policy(name, text, etag)?))
        }
        (&Method::POST, "testIamPermissions") => {
            #[derive(Default, Deserialize)]
            #[serde(default)]
            struct Test {
                permissions: Vec<String>,
            }
            let held = call.test_iam_permissions(name, body::<Test>(bytes)?.permissions)?;
            if held.is_empty() {
                return Ok(json!({}));
            }
            Ok(json!({"permissions": held}))
        }
        _ => Err(no_method(method, name)),
    }
}
