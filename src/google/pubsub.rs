//! Pub/Sub (issue 29): topics, subscriptions, publish, pull and streaming pull, served in
//! both of Google's transports on the google listener, gRPC (`grpc`) and REST/JSON (`rest`),
//! over one store (`store`); and the push deliveries (`push`), which call a subscription's
//! endpoint as a Google-managed caller with an ID token for its account.
//!
//! Who may call: through the egress proxy (`pubsub.googleapis.com`), or with a bearer token
//! on the google listener itself, the caller's access token names a principal whose roles
//! on the project are checked, as Google checks them. A call on the google listener with
//! no credentials at all is the emulator's (`PUBSUB_EMULATOR_HOST` points there): like
//! Google's own emulator, nothing is checked. The accounts that push subscriptions name
//! must be declared, and a caller with a principal needs `iam.serviceAccounts.actAs` on it.

mod grpc;
pub(crate) mod json;
pub(crate) mod names;
pub(crate) mod persist;
mod rest;

pub(crate) use grpc::routes as grpc_routes;
pub(crate) use rest::routes as rest_routes;

pub(crate) use super::emulated::Who;
use super::errors::ApiError;
use super::resource::{Resource, judge};
use crate::broker::{self, Broker};
use crate::decisions::Explanation;
use crate::iam;
use crate::state::AppState;
use googleapis_tonic_google_pubsub_v1::google::pubsub::v1 as pb;
use names::Kind;

/// With credentials, Pub/Sub's resources are in this frontdoor's project.
fn check_project(config: &crate::config::Config, name: &str) -> Result<(), ApiError> {
    let project = broker::split(name).0;
    if project != config.project.id && project != config.project.number {
        return Err(ApiError::NotFound(format!(
            "project `{project}` is not the one frontdoor emulates ({}); with credentials, Pub/Sub's resources are in it (PUBSUB_EMULATOR_HOST takes any project)",
            config.project.id
        )));
    }
    Ok(())
}

/// Topic or subscription `name` with its own `policy`, as IAM judges it.
fn held<'p>(name: &'p str, policy: &'p iam::Policy) -> Resource<'p> {
    Resource::Held(iam::Scope {
        kind: if name.contains("/subscriptions/") {
            "subscription"
        } else {
            "topic"
        },
        name: broker::short(name),
        policy,
    })
}

/// How many permissions one `testIamPermissions` may ask about.
const MAX_PERMISSIONS_ASKED: usize = 1000;

/// Whether a request path is one of Pub/Sub's (its REST resources, its gRPC methods).
pub(crate) fn is_path(path: &str) -> bool {
    // `/v1/projects/P/topics…` or `…/subscriptions…`: the collection is the fifth segment.
    let collection = path.split('/').nth(4).unwrap_or("");
    path.starts_with("/google.pubsub.v1.")
        || path.starts_with("/google.iam.v1.IAMPolicy/")
        || (path.starts_with("/v1/projects/") && ["topics", "subscriptions"].contains(&collection))
}

/// One call of the API: the state it reads, who is calling, and what the decision will
/// say of it.
pub(crate) struct Call {
    state: AppState,
    who: Who,
    explanation: Explanation,
}

impl super::emulated::Api for Call {
    fn new(state: AppState, who: Who) -> Call {
        Call {
            explanation: Explanation {
                principal: who.principal(),
                ..Explanation::default()
            },
            state,
            who,
        }
    }

    fn finish(&mut self, failed: bool) -> Explanation {
        let mut explanation = std::mem::take(&mut self.explanation);
        if failed {
            explanation.reason = None;
        }
        explanation
    }
}

impl Call {
    fn broker(&self) -> &Broker {
        self.state.pubsub()
    }

    /// Whether the caller holds `permission` on `name` (a topic's or subscription's own
    /// policy, then its project's); the emulator's caller holds everything. A principal's
    /// project must be this frontdoor's.
    fn allow(&mut self, permission: &'static str, name: &str) -> Result<(), ApiError> {
        self.explanation.permission = Some(permission);
        self.explanation.target = Some(name.to_owned());
        let Who::Principal(who) = &self.who else {
            self.explanation.reason = Some(format!(
                "the emulator's caller (no credentials on the google listener) may {permission} on {name}: as Google's emulator, nothing is checked"
            ));
            return Ok(());
        };
        let config = self.state.config();
        check_project(config, name)?;
        // A name not made yet (a create) has no policy of its own.
        let own = self.broker().policy(name).ok();
        let resource = match &own {
            Some(policy) => held(name, policy),
            None => Resource::Project,
        };
        let reason = judge(config, who, permission, resource)?;
        self.explanation.reason = Some(reason);
        Ok(())
    }

    /// The IAM policy of topic or subscription `name`.
    pub(crate) fn get_iam_policy(&mut self, name: &str) -> Result<iam::Policy, ApiError> {
        let kind = names::kind_of(name)?;
        self.allow(kind.permissions().0, name)?;
        Ok(self.broker().policy(name)?)
    }

    /// Sets the IAM policy of topic or subscription `name` to `text`, if `etag` (when
    /// given) is the current policy's: of two read-modify-writes, the second is told.
    pub(crate) fn set_iam_policy(
        &mut self,
        name: &str,
        text: crate::config::layer::PolicyText,
        etag: Option<String>,
    ) -> Result<iam::Policy, ApiError> {
        let kind = names::kind_of(name)?;
        if let Who::Emulator = &self.who {
            // A policy binds callers with credentials: the emulator's unchecked door must not
            // be able to change what their checks decide.
            self.explanation.permission = Some(kind.permissions().1);
            self.explanation.target = Some(name.to_owned());
            return Err(ApiError::PermissionDenied {
                permission: kind.permissions().1,
                why: "without credentials (PUBSUB_EMULATOR_HOST) nothing is checked, so nothing may set a policy that callers with credentials are checked against: call with credentials that hold it (roles/pubsub.admin or roles/owner)".to_owned(),
            });
        }
        self.allow(kind.permissions().1, name)?;
        let policy = crate::google::policy::resolved(&text).map_err(ApiError::InvalidArgument)?;
        let set = self.broker().set_policy(name, policy, |current| {
            match etag.filter(|e| !e.is_empty()) {
                Some(etag) if !crate::google::policy::etag_matches(&etag, &current.into()) => {
                    Err(ApiError::Aborted(
                        "There were concurrent policy changes. Please retry the whole read-modify-write with exponential backoff. (The etag sent is not the policy's current one.)".into(),
                    ))
                }
                _ => Ok(()),
            }
        })?;
        self.explanation
            .did(format!("set the IAM policy of {name}: {}", set.describe()));
        Ok(set)
    }

    /// Which of `permissions` the caller holds on topic or subscription `name`; asking
    /// needs none. At most [`MAX_PERMISSIONS_ASKED`].
    pub(crate) fn test_iam_permissions(
        &mut self,
        name: &str,
        permissions: Vec<String>,
    ) -> Result<Vec<String>, ApiError> {
        let kind = names::kind_of(name)?;
        if permissions.len() > MAX_PERMISSIONS_ASKED {
            return Err(ApiError::InvalidArgument(format!(
                "{} permissions asked about; at most {MAX_PERMISSIONS_ASKED}",
                permissions.len()
            )));
        }
        let prefix = match kind {
            names::Kind::Topic => "pubsub.topics.",
            names::Kind::Subscription => "pubsub.subscriptions.",
        };
        if let Some(other) = permissions.iter().find(|p| !p.starts_with(prefix)) {
            let shown: String = other.chars().take(100).collect();
            return Err(ApiError::InvalidArgument(format!(
                "Permission `{shown}` is not valid for this resource: ask about {prefix}* permissions"
            )));
        }
        self.explanation.target = Some(name.to_owned());
        let Who::Principal(who) = &self.who else {
            self.broker().policy(name)?;
            return Ok(permissions);
        };
        let config = self.state.config();
        check_project(config, name)?;
        let own = self.broker().policy(name)?;
        let scopes = held(name, &own).scopes(config);
        Ok(permissions
            .into_iter()
            .filter(|p| iam::check(p, Some(who), &scopes, &config.groups).allowed)
            .collect())
    }

    /// The push account, if any: declared, and one the caller may act as.
    fn allow_push_account(&mut self, push: Option<&pb::PushConfig>) -> Result<(), ApiError> {
        use pb::push_config::AuthenticationMethod;
        let Some(AuthenticationMethod::OidcToken(oidc)) =
            push.and_then(|p| p.authentication_method.as_ref())
        else {
            return Ok(());
        };
        super::emulated::allow_account(
            &self.state,
            &self.who,
            &mut self.explanation,
            &oidc.service_account_email,
            "of the push config's oidc_token",
        )
    }

    pub(crate) fn create_topic(&mut self, topic: pb::Topic) -> Result<pb::Topic, ApiError> {
        names::parse(&topic.name, Kind::Topic)?;
        names::check_labels(&topic.labels)?;
        self.allow(iam::TOPICS_CREATE, &topic.name)?;
        Ok(self.broker().create_topic(topic)?)
    }

    pub(crate) fn get_topic(&mut self, name: &str) -> Result<pb::Topic, ApiError> {
        names::parse(name, Kind::Topic)?;
        self.allow(iam::TOPICS_GET, name)?;
        Ok(self.broker().topic(name)?)
    }

    pub(crate) fn list_topics(
        &mut self,
        project: &str,
        page: broker::Page<'_>,
    ) -> Result<(Vec<pb::Topic>, String), ApiError> {
        names::project(project)?;
        self.allow(iam::TOPICS_LIST, project)?;
        Ok(self.broker().topics(project, page))
    }

    pub(crate) fn delete_topic(&mut self, name: &str) -> Result<(), ApiError> {
        names::parse(name, Kind::Topic)?;
        self.allow(iam::TOPICS_DELETE, name)?;
        Ok(self.broker().delete_topic(name)?)
    }

    pub(crate) fn topic_subscriptions(&mut self, topic: &str) -> Result<Vec<String>, ApiError> {
        names::parse(topic, Kind::Topic)?;
        self.allow(iam::TOPICS_GET, topic)?;
        Ok(self.broker().topic_subscriptions(topic)?)
    }

    pub(crate) fn publish(
        &mut self,
        topic: &str,
        messages: Vec<pb::PubsubMessage>,
    ) -> Result<Vec<String>, ApiError> {
        names::parse(topic, Kind::Topic)?;
        self.allow(iam::TOPICS_PUBLISH, topic)?;
        names::check_messages(&messages)?;
        let ids = self.broker().publish(topic, messages)?;
        self.explanation.reason = Some(format!(
            "{}; published {} message(s)",
            self.explanation.reason.take().unwrap_or_default(),
            ids.len()
        ));
        Ok(ids)
    }

    pub(crate) fn create_subscription(
        &mut self,
        mut subscription: pb::Subscription,
    ) -> Result<pb::Subscription, ApiError> {
        names::parse(&subscription.name, Kind::Subscription)?;
        names::parse(&subscription.topic, Kind::Topic)?;
        names::check_subscription(&mut subscription)?;
        self.allow(iam::TOPICS_ATTACH, &subscription.topic.clone())?;
        self.allow(iam::SUBSCRIPTIONS_CREATE, &subscription.name.clone())?;
        self.allow_push_account(subscription.push_config.as_ref())?;
        Ok(self.broker().create_subscription(subscription)?)
    }

    pub(crate) fn get_subscription(&mut self, name: &str) -> Result<pb::Subscription, ApiError> {
        names::parse(name, Kind::Subscription)?;
        self.allow(iam::SUBSCRIPTIONS_GET, name)?;
        Ok(self.broker().subscription(name)?)
    }

    pub(crate) fn list_subscriptions(
        &mut self,
        project: &str,
        page: broker::Page<'_>,
    ) -> Result<(Vec<pb::Subscription>, String), ApiError> {
        names::project(project)?;
        self.allow(iam::SUBSCRIPTIONS_LIST, project)?;
        Ok(self.broker().subscriptions(project, page))
    }

    pub(crate) fn delete_subscription(&mut self, name: &str) -> Result<(), ApiError> {
        names::parse(name, Kind::Subscription)?;
        self.allow(iam::SUBSCRIPTIONS_DELETE, name)?;
        Ok(self.broker().delete_subscription(name)?)
    }

    /// `UpdateSubscription` (`PATCH`): the fields `mask` names, from `update`.
    pub(crate) fn update_subscription(
        &mut self,
        update: pb::Subscription,
        mask: &[String],
    ) -> Result<pb::Subscription, ApiError> {
        let name = update.name.clone();
        names::parse(&name, Kind::Subscription)?;
        if mask.is_empty() {
            return Err(ApiError::InvalidArgument(
                "The update_mask is empty: name the fields to change.".into(),
            ));
        }
        self.allow(iam::SUBSCRIPTIONS_UPDATE, &name)?;
        if mask
            .iter()
            .any(|f| f.starts_with("push_config") || f.starts_with("pushConfig"))
        {
            self.allow_push_account(update.push_config.as_ref())?;
        }
        self.broker().update_subscription(&name, |s| {
            for field in mask {
                match field.as_str() {
                    "ack_deadline_seconds" | "ackDeadlineSeconds" => {
                        s.ack_deadline_seconds = update.ack_deadline_seconds;
                    }
                    "push_config" | "pushConfig" => s.push_config = update.push_config.clone(),
                    "retry_policy" | "retryPolicy" => s.retry_policy = update.retry_policy,
                    "dead_letter_policy" | "deadLetterPolicy" => {
                        s.dead_letter_policy = update.dead_letter_policy.clone();
                    }
                    "message_retention_duration" | "messageRetentionDuration" => {
                        s.message_retention_duration = update.message_retention_duration;
                    }
                    "retain_acked_messages" | "retainAckedMessages" => {
                        s.retain_acked_messages = update.retain_acked_messages;
                    }
                    "labels" => s.labels = update.labels.clone(),
                    other => {
                        return Err(ApiError::InvalidArgument(format!(
                            "Invalid update_mask provided in the UpdateSubscriptionRequest: `{other}` is not a field frontdoor can update (ack_deadline_seconds, push_config, retry_policy, dead_letter_policy, message_retention_duration, retain_acked_messages, labels)"
                        )));
                    }
                }
            }
            names::check_subscription(s)
        })
    }

    pub(crate) fn modify_push_config(
        &mut self,
        name: &str,
        push: Option<pb::PushConfig>,
    ) -> Result<(), ApiError> {
        names::parse(name, Kind::Subscription)?;
        self.allow(iam::SUBSCRIPTIONS_UPDATE, name)?;
        if let Some(push) = &push {
            names::check_push(push)?;
        }
        self.allow_push_account(push.as_ref())?;
        // An empty endpoint makes it a pull subscription (stored as no push config).
        let push = push.filter(|p| !p.push_endpoint.is_empty());
        self.broker()
            .update_subscription(name, |s| {
                s.push_config = push;
                Ok(())
            })
            .map(drop)
    }

    pub(crate) fn pull(
        &mut self,
        name: &str,
        max: i32,
    ) -> Result<Vec<pb::ReceivedMessage>, ApiError> {
        names::parse(name, Kind::Subscription)?;
        self.allow(iam::SUBSCRIPTIONS_CONSUME, name)?;
        if max <= 0 {
            return Err(ApiError::InvalidArgument(format!(
                "Invalid max_messages given: {max}. It must be a positive number."
            )));
        }
        let dead_lettering = self
            .broker()
            .subscription(name)?
            .dead_letter_policy
            .is_some();
        let max = usize::try_from(max).unwrap_or(0).min(broker::Page::MAX);
        let handed = self.broker().pull(name, max, None)?;
        Ok(handed
            .into_iter()
            .map(|h| received(h, dead_lettering))
            .collect())
    }

    pub(crate) fn acknowledge(&mut self, name: &str, ack_ids: &[String]) -> Result<(), ApiError> {
        names::parse(name, Kind::Subscription)?;
        self.allow(iam::SUBSCRIPTIONS_CONSUME, name)?;
        Ok(self.broker().acknowledge(name, ack_ids)?)
    }

    pub(crate) fn modify_ack_deadline(
        &mut self,
        name: &str,
        ack_ids: &[String],
        seconds: i32,
    ) -> Result<(), ApiError> {
        names::parse(name, Kind::Subscription)?;
        self.allow(iam::SUBSCRIPTIONS_CONSUME, name)?;
        Ok(self.broker().modify_ack_deadline(name, ack_ids, seconds)?)
    }
}

impl From<broker::Error> for ApiError {
    fn from(e: broker::Error) -> ApiError {
        let message = e.to_string();
        match e {
            broker::Error::NotFound(_) => ApiError::NotFound(message),
            broker::Error::AlreadyExists(_) => ApiError::AlreadyExists(message),
            broker::Error::InvalidArgument(_) => ApiError::InvalidArgument(message),
            broker::Error::ResourceExhausted(_) => ApiError::ResourceExhausted(message),
        }
    }
}

/// A handed-out message as a pull gives it; `deliveryAttempt` only when the
/// subscription dead-letters, as on Google.
fn received(handed: broker::Handed, dead_lettering: bool) -> pb::ReceivedMessage {
    pb::ReceivedMessage {
        ack_id: handed.ack_id,
        message: Some(pb::PubsubMessage::clone(&handed.message)),
        delivery_attempt: if dead_lettering { handed.attempt } else { 0 },
    }
}
