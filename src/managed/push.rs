//! Pub/Sub's push deliveries, as Google makes them: each message of a push subscription
//! is POSTed to its endpoint, in Google's envelope (or bare, with `noWrapper`), with an ID
//! token for the subscription's account when it names one; an Eventarc trigger's
//! subscription sends it as a CloudEvent. A 102, 200, 201, 202 or 204 acknowledges the
//! message; anything else, or no answer within the ack deadline, hands it back for the
//! backoff, and a dead-letter policy ends it after its attempts.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use pb::push_config::{AuthenticationMethod, Wrapper};
use serde_json::json;

use super::{Outgoing, Token};
use crate::broker::{Broker, Handed};
use crate::google::pubsub::json::{message_out, timestamp_out};
use crate::state::{AppState, Live};

/// Pushes out at once to one subscription's endpoint, at most: Google grows its window
/// with the endpoint's successes; a fixed window keeps a slow receiver from being flooded.
const MAX_OUTSTANDING_PUSHES: usize = 64;
/// Google's push user agent.
const USER_AGENT: &str =
    "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)";

/// Runs the push deliveries until the process ends.
pub(super) async fn run(live: Live) {
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
        let outcome = match self.outgoing(deadline) {
            Ok(out) => super::send(&self.state, &self.frontdoor, out).await,
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

    /// The POST Google makes.
    fn outgoing(&self, deadline: Duration) -> Result<Outgoing, String> {
        let push = self.subscription.push_config.clone().unwrap_or_default();
        let url = url::Url::parse(&push.push_endpoint).map_err(|e| e.to_string())?;
        let message = &self.message.message;
        let mut headers = vec![
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::USER_AGENT, HeaderValue::from_static(USER_AGENT)),
        ];
        // A CloudEvent (an Eventarc trigger's endpoint asks for one) always carries the
        // wrapped message, and no publisher's attribute as a header beside its `ce-*` ones.
        let cloudevent = url.query_pairs().any(|(k, v)| {
            k == crate::config::eventarc::CLOUDEVENTS_MODE && v.starts_with("CUSTOM_PUBSUB_")
        });
        let body = match &push.wrapper {
            Some(Wrapper::NoWrapper(no)) if !cloudevent => {
                if no.write_metadata {
                    headers.extend(self.metadata_headers());
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
                if let Ok(value) = HeaderValue::try_from(value) {
                    headers.push((HeaderName::from_static(name), value));
                }
            }
        }
        let token =
            push.authentication_method
                .as_ref()
                .map(|AuthenticationMethod::OidcToken(oidc)| Token::Oidc {
                    account: oidc.service_account_email.clone(),
                    audience: oidc.audience.clone(),
                });
        let oidc = super::as_whom(token.as_ref());
        let attempt = self.message.attempt;
        let short = crate::broker::short(&self.subscription.name);
        let label = match trigger {
            Some(trigger) => format!("Eventarc trigger {trigger}{oidc}, attempt {attempt}"),
            None if cloudevent => format!(
                "Pub/Sub push as a CloudEvent, subscription {short}{oidc}, attempt {attempt}"
            ),
            None => format!("Pub/Sub push, subscription {short}{oidc}, attempt {attempt}"),
        };
        Ok(Outgoing {
            url: push.push_endpoint,
            method: Method::POST,
            headers,
            body: body.into(),
            token,
            label,
            deadline,
            deadline_name: "ack deadline",
            unanswered: "the push is given up on and the message handed back",
        })
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
    fn metadata_headers(&self) -> Vec<(HeaderName, HeaderValue)> {
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
                .filter(|(k, _)| !crate::config::headers::reserved(k))
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
}
