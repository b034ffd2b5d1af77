//! Pub/Sub's gRPC transport: `google.pubsub.v1.Publisher` and `…Subscriber`, what every
//! client library speaks (through the egress proxy, or plaintext at
//! `PUBSUB_EMULATOR_HOST`). The generated crate ships the messages and clients but no
//! server traits, so each method is dispatched here by its path, and tonic's own server
//! codec (`tonic::server::Grpc`) decodes, encodes and frames it.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::response::Response;
use axum::routing::post;
use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use tonic::Status;
use tonic::server::Grpc;
use tonic_prost::ProstCodec;

use super::names::{self, Kind};
use super::{Call, Who, received};
use crate::broker::{Broker, Page};
use crate::decisions::Explanation;
use crate::google::emulated::{self, Api as _, Said, refused, say};
use crate::google::errors::ApiError;
use crate::iam;
use crate::state::{AppState, Live};

mod policy;

pub(crate) fn routes() -> Router<Live> {
    Router::new()
        .route("/google.pubsub.v1.Publisher/{method}", post(publisher))
        .route("/google.pubsub.v1.Subscriber/{method}", post(subscriber))
        .route("/google.iam.v1.IAMPolicy/{method}", post(policy::methods))
}

/// The largest message a call may carry: a publish of Google's 10 MB, with its framing.
const MAX_MESSAGE: usize = super::rest::MAX_BODY;

/// One unary method: [`emulated::unary`] with Pub/Sub's message limit.
async fn unary<Q, A>(
    state: AppState,
    who: Who,
    req: Request,
    f: fn(&mut Call, Q) -> Result<A, ApiError>,
) -> Response
where
    Q: prost::Message + Default + Send + 'static,
    A: prost::Message + Send + 'static,
{
    emulated::unary(state, who, req, MAX_MESSAGE, f).await
}

fn unimplemented(service: &str, method: &str) -> Response {
    let package = if service == "IAMPolicy" {
        "google.iam.v1"
    } else {
        "google.pubsub.v1"
    };
    let status = Status::unimplemented(format!(
        "frontdoor does not emulate {package}.{service}.{method}; see the README's Pub/Sub section for the methods it does"
    ));
    let mut response = status.into_http::<Body>();
    Explanation::refused(
        crate::decisions::Code::NotFound,
        format!("no Pub/Sub method {service}.{method} here"),
    )
    .attach(&mut response);
    response
}

async fn publisher(State(live): State<Live>, Path(method): Path<String>, req: Request) -> Response {
    let state = live.get();
    let who = match emulated::grpc_who(&state, &req) {
        Ok(who) => who,
        Err(refused) => return refused,
    };
    match method.as_str() {
        "CreateTopic" => unary(state, who, req, Call::create_topic).await,
        "GetTopic" => {
            unary(state, who, req, |call, r: pb::GetTopicRequest| {
                call.get_topic(&r.topic)
            })
            .await
        }
        "ListTopics" => {
            unary(state, who, req, |call, r: pb::ListTopicsRequest| {
                let page = Page::of(r.page_size, &r.page_token);
                let (topics, next_page_token) = call.list_topics(&r.project, page)?;
                Ok(pb::ListTopicsResponse {
                    topics,
                    next_page_token,
                })
            })
            .await
        }
        "ListTopicSubscriptions" => {
            unary(
                state,
                who,
                req,
                |call, r: pb::ListTopicSubscriptionsRequest| {
                    Ok(pb::ListTopicSubscriptionsResponse {
                        subscriptions: call.topic_subscriptions(&r.topic)?,
                        next_page_token: String::new(),
                    })
                },
            )
            .await
        }
        "DeleteTopic" => {
            unary(state, who, req, |call, r: pb::DeleteTopicRequest| {
                call.delete_topic(&r.topic)
            })
            .await
        }
        "Publish" => {
            unary(state, who, req, |call, r: pb::PublishRequest| {
                Ok(pb::PublishResponse {
                    message_ids: call.publish(&r.topic, r.messages)?,
                })
            })
            .await
        }
        other => unimplemented("Publisher", other),
    }
}

async fn subscriber(
    State(live): State<Live>,
    Path(method): Path<String>,
    req: Request,
) -> Response {
    let state = live.get();
    let who = match emulated::grpc_who(&state, &req) {
        Ok(who) => who,
        Err(refused) => return refused,
    };
    match method.as_str() {
        "CreateSubscription" => unary(state, who, req, Call::create_subscription).await,
        "GetSubscription" => {
            unary(state, who, req, |call, r: pb::GetSubscriptionRequest| {
                call.get_subscription(&r.subscription)
            })
            .await
        }
        "UpdateSubscription" => {
            unary(state, who, req, |call, r: pb::UpdateSubscriptionRequest| {
                let mask = r.update_mask.map(|m| m.paths).unwrap_or_default();
                call.update_subscription(r.subscription.unwrap_or_default(), &mask)
            })
            .await
        }
        "ListSubscriptions" => {
            unary(state, who, req, |call, r: pb::ListSubscriptionsRequest| {
                let page = Page::of(r.page_size, &r.page_token);
                let (subscriptions, next_page_token) = call.list_subscriptions(&r.project, page)?;
                Ok(pb::ListSubscriptionsResponse {
                    subscriptions,
                    next_page_token,
                })
            })
            .await
        }
        "DeleteSubscription" => {
            unary(state, who, req, |call, r: pb::DeleteSubscriptionRequest| {
                call.delete_subscription(&r.subscription)
            })
            .await
        }
        "ModifyPushConfig" => {
            unary(state, who, req, |call, r: pb::ModifyPushConfigRequest| {
                call.modify_push_config(&r.subscription, r.push_config)
            })
            .await
        }
        "Pull" => {
            unary(state, who, req, |call, r: pb::PullRequest| {
                Ok(pb::PullResponse {
                    received_messages: call.pull(&r.subscription, r.max_messages)?,
                })
            })
            .await
        }
        "Acknowledge" => {
            unary(state, who, req, |call, r: pb::AcknowledgeRequest| {
                call.acknowledge(&r.subscription, &r.ack_ids)
            })
            .await
        }
        "ModifyAckDeadline" => {
            unary(state, who, req, |call, r: pb::ModifyAckDeadlineRequest| {
                call.modify_ack_deadline(&r.subscription, &r.ack_ids, r.ack_deadline_seconds)
            })
            .await
        }
        "StreamingPull" => streaming_pull(state, who, req).await,
        other => unimplemented("Subscriber", other),
    }
}

/// What a streaming pull was opened for: checked on its first request.
struct Opened {
    subscription: String,
    lease: Duration,
    /// How many messages may be out, unacknowledged, on this stream (the client's flow
    /// control; none or a number not above 0 is no limit, as Google documents).
    max_outstanding: usize,
    dead_lettering: bool,
}

impl Call {
    /// The first request of a streaming pull: the subscription (which the caller may
    /// consume), the stream's ack deadline, its flow control; and its acks, if any.
    fn open_stream(&mut self, first: &pb::StreamingPullRequest) -> Result<Opened, ApiError> {
        let name = &first.subscription;
        names::parse(name, Kind::Subscription)?;
        self.allow(iam::SUBSCRIPTIONS_CONSUME, name)?;
        let deadline = first.stream_ack_deadline_seconds;
        if !(10..=600).contains(&deadline) {
            return Err(ApiError::InvalidArgument(format!(
                "Invalid stream_ack_deadline_seconds given: {deadline}. It must be between 10 and 600 seconds."
            )));
        }
        let subscription = self.broker().subscription(name)?;
        apply(self.broker(), name, first, &mut HashSet::new())?;
        Ok(Opened {
            subscription: name.clone(),
            lease: Duration::from_secs(deadline.unsigned_abs().into()),
            max_outstanding: usize::try_from(first.max_outstanding_messages)
                .ok()
                .filter(|n| *n > 0)
                .unwrap_or(usize::MAX),
            dead_lettering: subscription.dead_letter_policy.is_some(),
        })
    }
}

/// A streaming pull's acks and deadline changes.
fn apply(
    broker: &Broker,
    subscription: &str,
    req: &pb::StreamingPullRequest,
    outstanding: &mut HashSet<String>,
) -> Result<(), ApiError> {
    if req.modify_deadline_ack_ids.len() != req.modify_deadline_seconds.len() {
        return Err(ApiError::InvalidArgument(format!(
            "modify_deadline_seconds has {} entries and modify_deadline_ack_ids {}: they pair up",
            req.modify_deadline_seconds.len(),
            req.modify_deadline_ack_ids.len()
        )));
    }
    if !req.ack_ids.is_empty() {
        broker.acknowledge(subscription, &req.ack_ids)?;
        for id in &req.ack_ids {
            outstanding.remove(id);
        }
    }
    for (id, seconds) in req
        .modify_deadline_ack_ids
        .iter()
        .zip(&req.modify_deadline_seconds)
    {
        broker.modify_ack_deadline(subscription, std::slice::from_ref(id), *seconds)?;
        if *seconds == 0 {
            outstanding.remove(id);
        }
    }
    Ok(())
}

async fn streaming_pull(state: AppState, who: Who, req: Request) -> Response {
    let said: Said = Arc::default();
    let method = {
        let said = said.clone();
        tower::service_fn(
            move |request: tonic::Request<tonic::Streaming<pb::StreamingPullRequest>>| {
                let mut call = Call::new(state.clone(), who.clone());
                let said = said.clone();
                let broker = state.pubsub().clone();
                async move {
                    let mut inbound = request.into_inner();
                    let first = inbound.message().await?.ok_or_else(|| {
                        Status::invalid_argument(
                            "The stream ended before its first request, which names the subscription",
                        )
                    })?;
                    let opened = match call.open_stream(&first) {
                        Ok(opened) => {
                            say(&said, call.finish(false));
                            opened
                        }
                        Err(e) => {
                            let (status, explanation) = refused(&mut call, e);
                            say(&said, explanation);
                            return Err(status);
                        }
                    };
                    let (tx, rx) = tokio::sync::mpsc::channel(2);
                    tokio::spawn(deliver(broker, opened, inbound, tx));
                    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
                        rx.recv().await.map(|item| (item, rx))
                    });
                    Ok(tonic::Response::new(stream))
                }
            },
        )
    };
    let mut grpc = Grpc::new(ProstCodec::<
        pb::StreamingPullResponse,
        pb::StreamingPullRequest,
    >::default())
    .max_decoding_message_size(MAX_MESSAGE);
    let mut response = grpc.streaming(method, req).await.map(Body::new);
    let explanation = said
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take();
    if let Some(explanation) = explanation {
        explanation.attach(&mut response);
    }
    response
}

/// Sends a streaming pull its messages as they become deliverable, within its flow
/// control, and applies its acks as they come, until either side ends it.
async fn deliver(
    broker: Arc<Broker>,
    opened: Opened,
    mut inbound: tonic::Streaming<pb::StreamingPullRequest>,
    tx: tokio::sync::mpsc::Sender<Result<pb::StreamingPullResponse, Status>>,
) {
    let name = &opened.subscription;
    let mut outstanding = HashSet::new();
    loop {
        // Armed before looking, so that a publish between the look and the wait wakes it.
        let changed = broker.changed();
        let mut changed = std::pin::pin!(changed);
        changed.as_mut().enable();
        // Client libraries acknowledge by unary calls, not on the stream: what is still
        // out is the broker's to say.
        broker.retain_outstanding(name, &mut outstanding);
        let room = opened.max_outstanding.saturating_sub(outstanding.len());
        if room > 0 {
            match broker.pull(name, room.min(Page::MAX), Some(opened.lease)) {
                Ok(handed) if !handed.is_empty() => {
                    outstanding.extend(handed.iter().map(|h| h.ack_id.clone()));
                    let received_messages = handed
                        .into_iter()
                        .map(|h| received(h, opened.dead_lettering))
                        .collect();
                    let response = pb::StreamingPullResponse {
                        received_messages,
                        ..Default::default()
                    };
                    if tx.send(Ok(response)).await.is_err() {
                        return;
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    // The subscription was deleted under the stream.
                    let _ = tx.send(Err(ApiError::from(e).into_status().0)).await;
                    return;
                }
            }
        }
        // With no room, only an ack (which wakes `changed`) or a lease running out (the
        // second's check) makes some.
        let due = if room > 0 {
            broker.next_due(name)
        } else {
            None
        };
        let wait = due
            .map_or(Duration::from_secs(1), |t| {
                t.saturating_duration_since(Instant::now())
            })
            .clamp(Duration::from_millis(5), Duration::from_secs(1));
        tokio::select! {
            next = inbound.message() => match next {
                Ok(Some(req)) => {
                    if let Err(e) = apply(&broker, name, &req, &mut outstanding) {
                        let _ = tx.send(Err(e.into_status().0)).await;
                        return;
                    }
                }
                // The client closed its side, or the stream broke.
                Ok(None) | Err(_) => return,
            },
            () = changed => {}
            () = tokio::time::sleep(wait) => {}
            () = tx.closed() => return,
        }
    }
}
