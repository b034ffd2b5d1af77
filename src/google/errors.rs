//! The two error shapes of Google's APIs, each rendered in one place: the JSON error of
//! Google's REST APIs (IAM Credentials) and the OAuth2 error (token endpoints).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::decisions::{Code, Explanation};

/// An error of a Google REST API, `{"error":{"code","message","status","details"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ApiError {
    /// 401: no bearer token at all (Google's `CREDENTIALS_MISSING`).
    CredentialsMissing,
    /// 401: a bearer token that is not usable; the message says what was wrong with it.
    Unauthenticated(String),
    /// 403: the caller lacks `permission` on the resource. `why` is IAM's learner-grade
    /// reason, for the decision log and `X-Frontdoor-Reason`; Google's body does not say it.
    PermissionDenied {
        permission: &'static str,
        why: String,
    },
    /// 403: the caller may not run something as `account` (`iam.serviceAccounts.actAs`),
    /// worded as Cloud Run words it on a deploy. `why` as for `PermissionDenied`.
    ActAsDenied { account: String, why: String },
    /// 400: the request body or a parameter is wrong.
    InvalidArgument(String),
    /// 404: no such resource.
    NotFound(String),
    /// 409: a read-modify-write lost a race (a stale `etag`).
    Aborted(String),
    /// 409: the resource to create exists already (a Pub/Sub topic, say).
    AlreadyExists(String),
    /// 429: frontdoor holds as much as it will (undelivered Pub/Sub messages).
    ResourceExhausted(String),
    /// 400: the request is fine but the state it needs is not (a refused edit to the file).
    FailedPrecondition(String),
    /// 500: frontdoor itself failed (its state directory, say); never the caller's fault.
    /// The detail is logged, never shown to the caller.
    Internal(String),
}

impl ApiError {
    /// IAM's learner-grade reason for a refusal of permission (which Google's body does not
    /// give).
    pub(crate) fn why(&self) -> Option<&str> {
        match self {
            ApiError::PermissionDenied { why, .. } | ApiError::ActAsDenied { why, .. } => Some(why),
            _ => None,
        }
    }

    /// What a refusal that is not IAM's says: its message (a 404's, a 400's).
    pub(crate) fn message(&self) -> &str {
        match self {
            ApiError::CredentialsMissing => "no credential",
            ApiError::PermissionDenied { why, .. } | ApiError::ActAsDenied { why, .. } => why,
            ApiError::Unauthenticated(m)
            | ApiError::InvalidArgument(m)
            | ApiError::NotFound(m)
            | ApiError::Aborted(m)
            | ApiError::AlreadyExists(m)
            | ApiError::ResourceExhausted(m)
            | ApiError::FailedPrecondition(m) => m,
            // Its detail may name a file on the server's disk: never shown (issue 26).
            ApiError::Internal(_) => "frontdoor failed on its side",
        }
    }

    /// Its HTTP status, as Google answers it.
    pub(crate) fn status(&self) -> StatusCode {
        match self {
            ApiError::CredentialsMissing | ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::PermissionDenied { .. } | ApiError::ActAsDenied { .. } => {
                StatusCode::FORBIDDEN
            }
            ApiError::InvalidArgument(_) | ApiError::FailedPrecondition(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Aborted(_) | ApiError::AlreadyExists(_) => StatusCode::CONFLICT,
            ApiError::ResourceExhausted(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The refusal's stable code, for the decision.
    pub(crate) fn code(&self) -> Code {
        match self {
            ApiError::CredentialsMissing => Code::CredentialsMissing,
            ApiError::Unauthenticated(_) => Code::CredentialsInvalid,
            ApiError::PermissionDenied { .. } => Code::PermissionDenied,
            ApiError::ActAsDenied { .. } => Code::ActAsDenied,
            ApiError::InvalidArgument(_) => Code::InvalidArgument,
            ApiError::NotFound(_) => Code::NotFound,
            ApiError::Aborted(_) => Code::Aborted,
            ApiError::AlreadyExists(_) => Code::AlreadyExists,
            ApiError::ResourceExhausted(_) => Code::ResourceExhausted,
            ApiError::FailedPrecondition(_) => Code::FailedPrecondition,
            ApiError::Internal(_) => Code::InternalError,
        }
    }
}

impl ApiError {
    /// The refusal as gRPC gives it (Pub/Sub's transport), with Google's message, and
    /// what the decision says of it.
    pub(crate) fn into_status(self) -> (tonic::Status, Explanation) {
        use tonic::Code as G;
        let grpc = match &self {
            ApiError::CredentialsMissing | ApiError::Unauthenticated(_) => G::Unauthenticated,
            ApiError::PermissionDenied { .. } | ApiError::ActAsDenied { .. } => G::PermissionDenied,
            ApiError::InvalidArgument(_) => G::InvalidArgument,
            ApiError::NotFound(_) => G::NotFound,
            ApiError::Aborted(_) => G::Aborted,
            ApiError::AlreadyExists(_) => G::AlreadyExists,
            ApiError::ResourceExhausted(_) => G::ResourceExhausted,
            ApiError::FailedPrecondition(_) => G::FailedPrecondition,
            ApiError::Internal(_) => G::Internal,
        };
        let (refusal, reason, _, message, _) = self.parts();
        (
            tonic::Status::new(grpc, message),
            Explanation::refused(refusal, reason),
        )
    }

    /// The decision's code and reason, and Google's status, message and details.
    fn parts(self) -> (Code, String, &'static str, String, serde_json::Value) {
        let refusal = self.code();
        let why = self.why().map(str::to_owned);
        let (status, message, details) = match self {
            ApiError::CredentialsMissing => (
                "UNAUTHENTICATED",
                "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential. (send `Authorization: Bearer ACCESS_TOKEN`)".to_owned(),
                json!([{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "CREDENTIALS_MISSING",
                    "domain": "googleapis.com",
                    "metadata": {"service": "iamcredentials.googleapis.com"},
                }]),
            ),
            ApiError::Unauthenticated(why) => (
                "UNAUTHENTICATED",
                format!(
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. ({why})"
                ),
                json!([{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
                    "domain": "googleapis.com",
                    "metadata": {"service": "iamcredentials.googleapis.com"},
                }]),
            ),
            ApiError::PermissionDenied { permission, .. } => (
                "PERMISSION_DENIED",
                format!("Permission '{permission}' denied on resource (or it may not exist)."),
                json!([{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "IAM_PERMISSION_DENIED",
                    "domain": "iam.googleapis.com",
                    "metadata": {"permission": permission},
                }]),
            ),
            ApiError::ActAsDenied { account, .. } => (
                "PERMISSION_DENIED",
                // Cloud Run's own wording, the permission's name in lower case as it has it.
                format!(
                    "Permission 'iam.serviceaccounts.actAs' denied on service account {account} (or it may not exist)."
                ),
                json!([{
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "IAM_PERMISSION_DENIED",
                    "domain": "iam.googleapis.com",
                    "metadata": {"permission": crate::iam::ACT_AS},
                }]),
            ),
            ApiError::InvalidArgument(message) => (
                "INVALID_ARGUMENT",
                message,
                json!([]),
            ),
            ApiError::NotFound(message) => ("NOT_FOUND", message, json!([])),
            ApiError::Aborted(message) => ("ABORTED", message, json!([])),
            ApiError::AlreadyExists(message) => ("ALREADY_EXISTS", message, json!([])),
            ApiError::ResourceExhausted(message) => ("RESOURCE_EXHAUSTED", message, json!([])),
            ApiError::FailedPrecondition(message) => (
                "FAILED_PRECONDITION",
                message,
                json!([]),
            ),
            ApiError::Internal(detail) => {
                // The detail may name a file on the server's disk: it goes to the server's
                // log, never to the caller (issue 26).
                tracing::error!(detail = %detail, "internal error answering a Google API request");
                (
                    "INTERNAL",
                    "Internal error encountered. (frontdoor failed on its side, not because of the request; the server's log says why)".to_owned(),
                    json!([]),
                )
            }
        };
        let reason = match why {
            Some(why) => format!("{message} {why}"),
            None => message.clone(),
        };
        (refusal, reason, status, message, details)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = self.status();
        let (refusal, reason, status, message, details) = self.parts();
        let body = json!({"error": {"code": code.as_u16(), "message": message, "status": status, "details": details}});
        let mut response = (code, Json(body)).into_response();
        Explanation::refused(refusal, reason).attach(&mut response);
        response
    }
}

/// The OAuth2 errors the token endpoints answer (RFC 6749 §5.2, RFC 7662's `invalid_token`
/// for tokeninfo), each its own refusal code of the same name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OAuthError {
    InvalidRequest,
    UnsupportedGrantType,
    InvalidGrant,
    InvalidScope,
    InvalidToken,
    /// RFC 8693's, for an STS audience that names no provider.
    InvalidTarget,
}

impl OAuthError {
    fn code(self) -> Code {
        match self {
            OAuthError::InvalidRequest => Code::InvalidRequest,
            OAuthError::UnsupportedGrantType => Code::UnsupportedGrantType,
            OAuthError::InvalidGrant => Code::InvalidGrant,
            OAuthError::InvalidScope => Code::InvalidScope,
            OAuthError::InvalidToken => Code::InvalidToken,
            OAuthError::InvalidTarget => Code::InvalidTarget,
        }
    }
}

/// A token endpoint's refusal, as its judgment returns it: the OAuth2 error, Google's
/// description, and, where ours says more than Google's, the reason for the log.
#[derive(Debug)]
pub(crate) struct OAuthRefusal {
    pub(crate) error: OAuthError,
    pub(crate) description: String,
    pub(crate) reason: Option<String>,
}

impl OAuthRefusal {
    pub(crate) fn new(error: OAuthError, description: impl Into<String>) -> OAuthRefusal {
        OAuthRefusal {
            error,
            description: description.into(),
            reason: None,
        }
    }
}

impl OAuthRefusal {
    /// A refusal whose reason for the log says more than Google's `description`.
    pub(crate) fn explained(
        error: OAuthError,
        description: &str,
        reason: impl Into<String>,
    ) -> OAuthRefusal {
        OAuthRefusal {
            error,
            description: description.to_owned(),
            reason: Some(reason.into()),
        }
    }
}

impl IntoResponse for OAuthRefusal {
    fn into_response(self) -> Response {
        let reason = self.reason.as_deref().unwrap_or(&self.description);
        oauth_explained(self.error, &self.description, reason)
    }
}

/// An OAuth2 error, `{"error": CODE, "error_description": …}`, status 400, whose body says
/// what Google's says (`description`) while the decision log and `X-Frontdoor-Reason` get
/// the learner-grade `reason`.
fn oauth_explained(error: OAuthError, description: &str, reason: &str) -> Response {
    // OAuth2's error names are the codes' own.
    let code = error.code();
    let body = json!({"error": code.as_str(), "error_description": description});
    let mut response = (StatusCode::BAD_REQUEST, Json(body)).into_response();
    Explanation::refused(code, reason).attach(&mut response);
    response
}
