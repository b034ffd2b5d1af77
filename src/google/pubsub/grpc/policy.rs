//! `google.iam.v1.IAMPolicy` on Pub/Sub's topics and subscriptions: what the client
//! libraries call for `get_iam_policy`, `set_iam_policy` and `test_iam_permissions`, on the
//! same channel as Pub/Sub's own methods. A policy crosses as the REST API's JSON does, so
//! that both transports check a sent policy by the same `SetRequest::checked`.

use axum::extract::{Path, Request, State};
use axum::response::Response;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE;
use googleapis_tonic_google_iam_v1::google::iam::v1 as iam_pb;
use serde_json::json;

use super::{Call, unary, unimplemented};
use crate::google::emulated::grpc_who as who;
use crate::google::errors::ApiError;
use crate::google::policy;
use crate::state::Live;

pub(super) async fn methods(
    State(live): State<Live>,
    Path(method): Path<String>,
    req: Request,
) -> Response {
    let state = live.get();
    let who = match who(&state, &req) {
        Ok(who) => who,
        Err(refused) => return refused,
    };
    match method.as_str() {
        "GetIamPolicy" => {
            unary(state, who, req, |call, r: iam_pb::GetIamPolicyRequest| {
                Ok(to_pb(&call.get_iam_policy(&r.resource)?))
            })
            .await
        }
        "SetIamPolicy" => unary(state, who, req, set).await,
        "TestIamPermissions" => {
            unary(
                state,
                who,
                req,
                |call, r: iam_pb::TestIamPermissionsRequest| {
                    Ok(iam_pb::TestIamPermissionsResponse {
                        permissions: call.test_iam_permissions(&r.resource, r.permissions)?,
                    })
                },
            )
            .await
        }
        other => unimplemented("IAMPolicy", other),
    }
}

fn set(call: &mut Call, r: iam_pb::SetIamPolicyRequest) -> Result<iam_pb::Policy, ApiError> {
    let sent = r.policy.unwrap_or_default();
    let bindings: Vec<_> = sent
        .bindings
        .iter()
        .map(|b| {
            let mut binding = json!({"role": b.role, "members": b.members});
            if b.condition.is_some() {
                // Refused by the check, with the REST API's words.
                binding["condition"] = json!({});
            }
            binding
        })
        .collect();
    let mut request = json!({"policy": {"version": sent.version, "bindings": bindings}});
    if !sent.etag.is_empty() {
        request["policy"]["etag"] = json!(URL_SAFE.encode(&sent.etag));
    }
    if let Some(mask) = r.update_mask {
        request["updateMask"] = json!(mask.paths.join(","));
    }
    let request: policy::SetRequest = serde_json::from_value(request)
        .map_err(|e| ApiError::InvalidArgument(format!("the policy cannot be read: {e}")))?;
    let (text, etag) = request.checked().map_err(ApiError::InvalidArgument)?;
    Ok(to_pb(&call.set_iam_policy(&r.resource, text, etag)?))
}

/// `policy` as gRPC carries it: the etag as the bytes the REST API's base64 stands for.
fn to_pb(policy: &crate::iam::Policy) -> iam_pb::Policy {
    let text = crate::config::layer::PolicyText::from(policy);
    iam_pb::Policy {
        version: 1,
        etag: URL_SAFE.decode(policy::etag(&text)).unwrap_or_default(),
        bindings: text
            .bindings
            .into_iter()
            .map(|b| iam_pb::Binding {
                role: b.role,
                members: b.members,
                condition: None,
            })
            .collect(),
        audit_configs: Vec::new(),
    }
}
