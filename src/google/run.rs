//! The Cloud Run Admin API as gcloud calls it, on `REGION-run.googleapis.com` (through the
//! egress proxy) and on the google listener: the v1 (Knative) services — list, get, replace
//! (what `update` and `replace` send) — and each service's IAM policy. The deployer is
//! checked by IAM (`admin::authorize`); every change is a new revision, in force before
//! the answer (`admin::change`).

mod knative;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use serde_json::{Value, json};

use super::admin::{
    act_as, answer, answered, authenticate, authorized, authorized_as, authorized_project, change,
    check_project, permit, set_policy, split_method,
};
use super::errors::ApiError;
use super::policy;
use super::resource::Resource;
use crate::config::Service;
use crate::config::layer::ServiceChange;
use crate::decisions::Explanation;
use crate::iam::{self, Principal};
use crate::state::{AppState, Live};

pub(super) fn routes() -> Router<Live> {
    Router::new()
        .route(
            "/apis/serving.knative.dev/v1/namespaces/{namespace}/services",
            get(list),
        )
        .route(
            "/apis/serving.knative.dev/v1/namespaces/{namespace}/services/{name}",
            get(describe).put(replace),
        )
        .route(
            "/apis/serving.knative.dev/v1/namespaces/{namespace}/revisions",
            get(revisions),
        )
        .route(
            "/apis/serving.knative.dev/v1/namespaces/{namespace}/revisions/{name}",
            get(revision),
        )
        .route(
            "/v1/projects/{project}/locations/{region}/services",
            get(list_in_region),
        )
        .route(
            "/v1/projects/{project}/locations/{region}/services/{name_and_method}",
            get(get_policy).post(set_or_test),
        )
}

fn find_service<'a>(state: &'a AppState, name: &str) -> Result<&'a Service, ApiError> {
    state.config().service(name).ok_or_else(|| {
        let known = state.config().services.iter().map(|s| s.name.as_str());
        ApiError::NotFound(format!(
            "Resource 'namespaces/{}/services/{name}' was not found{}",
            state.config().project.id,
            crate::suggest::did_you_mean(name, known)
        ))
    })
}

/// Service `name` of `project`, once the caller is known to hold `permission` on it (or on
/// the project): what every service method checks first.
fn authorized_service<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    project: &str,
    name: &str,
    permission: &'static str,
    explained: &mut Explanation,
) -> Result<(Principal, &'a Service), ApiError> {
    authorized_as(state, headers, permission, explained, || {
        check_project(state, project)?;
        let service = find_service(state, name)?;
        Ok((service, Resource::Service(service)))
    })
}

/// `gcloud run services list` with no region set lists every region (`locations/-`).
async fn list_in_region(
    State(state): State<AppState>,
    Path((project, region)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if region != "-"
        && let Err(e) = check_region(&state, &region)
    {
        return answer(Err(e), Explanation::default());
    }
    list(State(state), Path(project), headers).await
}

async fn list(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    headers: HeaderMap,
) -> Response {
    let explained = Explanation::default();
    answered(explained, |explained| {
        authorized_project(&state, &headers, &namespace, iam::RUN_LIST, explained)?;
        let items: Vec<Value> = state
            .config()
            .services
            .iter()
            .map(|s| knative::render(&state, s))
            .collect();
        Ok(knative::list("ServiceList", items))
    })
}

#[derive(serde::Deserialize)]
struct RevisionQuery {
    #[serde(rename = "labelSelector")]
    label_selector: Option<String>,
}

/// The revision in force of every service (frontdoor keeps no older ones), those whose
/// labels match `labelSelector` (`KEY = VALUE`, comma-separated): gcloud finds the
/// revision its `update` made by the nonce label it put on the template.
async fn revisions(
    State(state): State<AppState>,
    Path(namespace): Path<String>,
    Query(query): Query<RevisionQuery>,
    headers: HeaderMap,
) -> Response {
    let explained = Explanation::default();
    answered(explained, |explained| {
        authorized_project(&state, &headers, &namespace, iam::RUN_LIST, explained)?;
        let wanted = knative::label_selector(query.label_selector.as_deref().unwrap_or(""))
            .map_err(ApiError::InvalidArgument)?;
        let items: Vec<Value> = state
            .config()
            .services
            .iter()
            .map(|s| knative::render_revision(&state, s))
            .filter(|r| knative::has_labels(r, &wanted))
            .collect();
        Ok(knative::list("RevisionList", items))
    })
}

async fn revision(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let explained = Explanation {
        target: Some(name.clone()),
        ..Explanation::default()
    };
    answered(explained, |explained| {
        let service = authorized(&state, &headers, iam::RUN_GET, explained, || {
            check_project(&state, &namespace)?;
            let service = state
                .config()
                .services
                .iter()
                .find(|s| state.revision(&s.name) == Some(name.as_str()))
                .ok_or_else(|| {
                    ApiError::NotFound(format!(
                        "Resource 'namespaces/{namespace}/revisions/{name}' was not found: frontdoor keeps only each service's revision in force"
                    ))
                })?;
            Ok((service, Resource::Service(service)))
        })?;
        Ok(knative::render_revision(&state, service))
    })
}

async fn describe(
    State(state): State<AppState>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let explained = Explanation {
        target: Some(name.clone()),
        ..Explanation::default()
    };
    answered(explained, |explained| {
        let (_, service) =
            authorized_service(&state, &headers, &namespace, &name, iam::RUN_GET, explained)?;
        Ok(knative::render(&state, service))
    })
}

async fn replace(
    State(live): State<Live>,
    Path((namespace, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut explained = Explanation {
        target: Some(name.clone()),
        ..Explanation::default()
    };
    let result = async {
        let state = live.get();
        // Checked here, before the body is read, so that a caller without the permission
        // learns nothing more; and again under the change lock, with every field.
        let (who, _) = authorized_service(
            &state,
            &headers,
            &namespace,
            &name,
            iam::RUN_UPDATE,
            &mut explained,
        )?;
        let doc: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::InvalidArgument(format!("the body is not JSON: {e}")))?;
        let mut sent =
            knative::read(state.config(), &name, doc).map_err(ApiError::InvalidArgument)?;
        if let Some(doc) = sent.knative.as_mut() {
            knative::modified_by(doc, &who);
        }
        let next = change(&live, |layer, now| {
            // Against the service and policies in force now, not as they were before the
            // lock: a change that landed meanwhile (the invoker check turned back on, an
            // actAs grant revoked) is what this one is judged by.
            authorize_replace(now, &who, &name, &sent, &mut explained)?;
            let entry = layer.services.entry(name.clone()).or_default();
            // The IAM policy is not part of the document: it stays as it was.
            sent.iam_policy = entry.iam_policy.take();
            *entry = sent;
            Ok(())
        })
        .await?;
        let service = find_service(&next, &name)?;
        explained.did(format!(
            "replaced service `{name}`; revision {} is in force",
            next.revision(&name).unwrap_or("?")
        ));
        Ok(knative::render(&next, service))
    }
    .await;
    answer(result, explained)
}

/// Whether `who` may replace service `name` with `sent`, each field checked as Google
/// checks it (`docs/deployer.md`'s table of the Admin API's permissions lists them all):
/// - every field frontdoor honours (custom audiences, ingress, timeout, tags) and the rest
///   of the document: `run.services.update`, on the service or the project;
/// - the invoker IAM check turned off or on: `run.services.setIamPolicy` besides, since it
///   decides who may call the service as a policy does;
/// - the account the service runs as: `iam.serviceAccounts.actAs` on that account, on every
///   deploy (Google's rule: a revision runs as the account, and its metadata server hands
///   out the account's tokens to the code the deployer put there).
fn authorize_replace(
    state: &AppState,
    who: &Principal,
    name: &str,
    sent: &ServiceChange,
    explained: &mut Explanation,
) -> Result<(), ApiError> {
    let service = find_service(state, name)?;
    let resource = Resource::Service(service);
    permit(state, who, iam::RUN_UPDATE, resource, explained)?;
    if sent
        .invoker_iam_disabled
        .is_some_and(|disabled| disabled != service.invoker_iam_disabled)
    {
        permit(state, who, iam::RUN_SET_IAM_POLICY, resource, explained)?;
    }
    if let Some(account) = sent.service_account.as_deref() {
        act_as(state, who, account, explained)?;
    }
    // Allowed, the decision is the replace's (its reason is what it did).
    explained.permission = Some(iam::RUN_UPDATE);
    Ok(())
}

fn check_region(state: &AppState, region: &str) -> Result<(), ApiError> {
    let ours = &state.config().project.region;
    if region == ours {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!(
            "no services in region `{region}`: frontdoor emulates {ours} (`project.region`)"
        )))
    }
}

async fn get_policy(
    State(state): State<AppState>,
    Path((project, region, name_and_method)): Path<(String, String, String)>,
    Query(options): Query<policy::Options>,
    headers: HeaderMap,
) -> Response {
    let explained = Explanation::default();
    answered(explained, |explained| {
        let (name, _) = split_method(&name_and_method, &["getIamPolicy"])?;
        explained.target = Some(name.to_owned());
        check_region(&state, &region)?;
        options.check()?;
        let (_, service) = authorized_service(
            &state,
            &headers,
            &project,
            name,
            iam::RUN_GET_IAM_POLICY,
            explained,
        )?;
        Ok(policy::render(&service.policy))
    })
}

async fn set_or_test(
    State(live): State<Live>,
    Path((project, region, name_and_method)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut explained = Explanation::default();
    let result = async {
        let (name, method) =
            split_method(&name_and_method, &["setIamPolicy", "testIamPermissions"])?;
        explained.target = Some(name.to_owned());
        let state = live.get();
        check_region(&state, &region)?;
        if method == "testIamPermissions" {
            let who = authenticate(&state, &headers, &mut explained)?;
            check_project(&state, &project)?;
            let service = find_service(&state, name)?;
            return test_permissions(&state, service, &who, &body, &mut explained);
        }
        authorized_service(
            &state,
            &headers,
            &project,
            name,
            iam::RUN_SET_IAM_POLICY,
            &mut explained,
        )?;
        let next = set_policy(
            &live,
            &body,
            |now| Ok(find_service(now, name)?.policy.clone()),
            |layer, sent| {
                layer
                    .services
                    .entry(name.to_owned())
                    .or_default()
                    .iam_policy = Some(sent);
            },
        )
        .await?;
        let service = find_service(&next, name)?;
        explained.did(format!(
            "set the IAM policy of service `{name}`: {}",
            service.policy.describe()
        ));
        Ok(policy::render(&service.policy))
    }
    .await;
    answer(result, explained)
}

/// How many permissions one `testIamPermissions` may ask about (each is checked with a
/// reason made, so the list is bounded well below what the body limit allows).
const MAX_PERMISSIONS_ASKED: usize = 1000;

/// Which of the permissions asked about the caller holds on the service; asking needs none.
fn test_permissions(
    state: &AppState,
    service: &Service,
    who: &crate::iam::Principal,
    body: &[u8],
    explained: &mut Explanation,
) -> Result<Value, ApiError> {
    #[derive(serde::Deserialize)]
    struct TestRequest {
        #[serde(default)]
        permissions: Vec<String>,
    }
    let request: TestRequest = serde_json::from_slice(body).map_err(|e| {
        ApiError::InvalidArgument(format!("the body is not a testIamPermissions request: {e}"))
    })?;
    if request.permissions.len() > MAX_PERMISSIONS_ASKED {
        return Err(ApiError::InvalidArgument(format!(
            "{} permissions asked about; at most {MAX_PERMISSIONS_ASKED} at once",
            request.permissions.len()
        )));
    }
    let scopes = Resource::Service(service).scopes(state.config());
    let held: Vec<&String> = request
        .permissions
        .iter()
        .filter(|p| iam::check(p, Some(who), &scopes, &state.config().groups).allowed)
        .collect();
    explained.reason = Some(format!(
        "{who} holds {} of the {} permissions asked about on service `{}`",
        held.len(),
        request.permissions.len(),
        service.name
    ));
    Ok(if held.is_empty() {
        json!({})
    } else {
        json!({ "permissions": held })
    })
}
