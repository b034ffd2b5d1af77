//! The IAM API's service accounts as gcloud calls them (`gcloud iam service-accounts
//! list|describe|get-iam-policy|add-iam-policy-binding`, `… keys create|list|delete`): the
//! accounts `services.yaml` declares, each one's IAM policy (who may act as it: Token
//! Creator and the like, with the Admin APIs' layer over the file), and its user-managed
//! keys, the same ones `frontdoor keys` makes.
//!
//! One path, two APIs: IAM's `POST …/serviceAccounts/EMAIL:getIamPolicy` and IAM
//! Credentials' `…/serviceAccounts/EMAIL:generateIdToken` differ only in the method after
//! the colon, so the POST is routed here and the credentials methods handed on.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::admin::{answer, answered, authorized, authorized_project, check_project};
use super::errors::ApiError;
use super::iamcredentials;
use super::policy;
use super::resource::Resource;
use crate::config::{Config, ServiceAccount};
use crate::decisions::Explanation;
use crate::iam;
use crate::keys::SigningKey;
use crate::state::{AppState, Live};

/// Google's limit on user-managed keys per service account; it also bounds what a caller
/// can make frontdoor keep on disk.
pub const MAX_KEYS_PER_ACCOUNT: usize = 10;

/// What Google gives a user-managed key as its end: none.
const NEVER: &str = "9999-12-31T23:59:59Z";

pub(super) fn routes() -> Router<Live> {
    Router::new()
        .route("/v1/projects/{project}/serviceAccounts", get(list))
        .route(
            "/v1/projects/{project}/serviceAccounts/{target}",
            get(describe).post(account_method),
        )
        .route(
            "/v1/projects/{project}/serviceAccounts/{account}/keys",
            get(list_keys).post(create_key),
        )
        .route(
            "/v1/projects/{project}/serviceAccounts/{account}/keys/{key}",
            axum::routing::delete(delete_key),
        )
}

/// The JSON key file of `key`, as `gcloud iam service-accounts keys create` writes it,
/// naming `oauth2` as its token endpoint's base and `certs` as its certificates' base.
/// `universe_domain` stays googleapis.com: another value switches Python's library to
/// another flow.
pub fn key_file(
    config: &Config,
    account: &ServiceAccount,
    key: &SigningKey,
    oauth2: &str,
    certs: &str,
) -> Value {
    json!({
        "type": "service_account",
        "project_id": config.project.id,
        "private_key_id": key.kid(),
        "private_key": key.private_key_pem(),
        "client_email": account.email,
        "client_id": account.unique_id,
        "auth_uri": "https://accounts.google.com/o/oauth2/auth",
        "token_uri": format!("{oauth2}/token"),
        "auth_provider_x509_cert_url": format!("{certs}/oauth2/v1/certs"),
        "client_x509_cert_url": format!(
            "{certs}/robot/v1/metadata/x509/{}",
            percent_encoding::utf8_percent_encode(&account.email, percent_encoding::NON_ALPHANUMERIC)
        ),
        "universe_domain": "googleapis.com",
    })
}

/// `-` (any project, as gcloud names an account by email) or the emulated project.
fn check_accounts_project(state: &AppState, project: &str) -> Result<(), ApiError> {
    if project == "-" {
        Ok(())
    } else {
        check_project(state, project)
    }
}

/// Account `name` (an email, a unique id, or `projects/P/serviceAccounts/EMAIL`).
fn find_account<'a>(state: &'a AppState, name: &str) -> Result<&'a ServiceAccount, ApiError> {
    let config = state.config();
    config.service_account_named(name).ok_or_else(|| {
        ApiError::NotFound(format!(
            "Unknown service account `{name}`{}",
            crate::suggest::did_you_mean(
                name,
                config.service_accounts.iter().map(|a| a.email.as_str())
            )
        ))
    })
}

/// Account `name` in `project`, once the caller is known to hold `permission` on it (or on
/// the project).
fn authorized_account<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
    project: &str,
    name: &str,
    permission: &'static str,
    explained: &mut Explanation,
) -> Result<&'a ServiceAccount, ApiError> {
    authorized(state, headers, permission, explained, || {
        check_accounts_project(state, project)?;
        let account = find_account(state, name)?;
        Ok((account, Resource::Account(account)))
    })
}

fn render(config: &Config, account: &ServiceAccount) -> Value {
    let mut out = json!({
        "name": format!("projects/{}/serviceAccounts/{}", config.project.id, account.email),
        "projectId": config.project.id,
        "uniqueId": account.unique_id,
        "email": account.email,
        "oauth2ClientId": account.unique_id,
        "etag": "MDEwMjE5MjA=",
    });
    if let Some(name) = &account.display_name {
        out["displayName"] = name.as_str().into();
    }
    out
}

async fn list(
    State(state): State<AppState>,
    Path(project): Path<String>,
    headers: HeaderMap,
) -> Response {
    let explained = Explanation {
        target: Some(format!("project {project}")),
        ..Explanation::default()
    };
    answered(explained, |explained| {
        authorized_project(&state, &headers, &project, iam::ACCOUNT_LIST, explained)?;
        let config = state.config();
        let accounts: Vec<Value> = config
            .service_accounts
            .iter()
            .map(|a| render(config, a))
            .collect();
        Ok(json!({ "accounts": accounts }))
    })
}

async fn describe(
    State(state): State<AppState>,
    Path((project, name)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let explained = Explanation::default();
    answered(explained, |explained| {
        let account = authorized_account(
            &state,
            &headers,
            &project,
            &name,
            iam::ACCOUNT_GET,
            explained,
        )?;
        Ok(render(state.config(), account))
    })
}

/// `POST …/serviceAccounts/NAME:METHOD`: IAM's policy methods here, IAM Credentials'
/// handed on.
async fn account_method(
    State(live): State<Live>,
    Path((project, target)): Path<(String, String)>,
    // Read only by getIamPolicy: IAM Credentials' methods take no query.
    options: Result<Query<policy::Options>, axum::extract::rejection::QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut explained = Explanation::default();
    // Every method this path answers, for the did-you-mean.
    let mut allowed = vec!["getIamPolicy", "setIamPolicy"];
    allowed.extend(iamcredentials::METHODS.iter().map(|(m, _)| *m));
    let (name, method) = match super::admin::split_method(&target, &allowed) {
        Ok(split) => split,
        Err(e) => return answer(Err(e), explained),
    };
    if let Some(permission) = iamcredentials::permission_of(method) {
        let call = iamcredentials::Call {
            project: &project,
            name,
            method,
            permission,
        };
        return iamcredentials::dispatch(live.get(), call, headers, body).await;
    }
    let result = async {
        let state = live.get();
        if method == "getIamPolicy" {
            let Query(options) = options.map_err(|e| ApiError::InvalidArgument(e.body_text()))?;
            options.check()?;
            let account = authorized_account(
                &state,
                &headers,
                &project,
                name,
                iam::ACCOUNT_GET_IAM_POLICY,
                &mut explained,
            )?;
            return Ok(policy::render(&account.policy));
        }
        let email = authorized_account(
            &state,
            &headers,
            &project,
            name,
            iam::ACCOUNT_SET_IAM_POLICY,
            &mut explained,
        )?
        .email
        .clone();
        let next = super::admin::set_policy(
            &live,
            &body,
            |now| Ok(find_account(now, &email)?.policy.clone()),
            |layer, sent| {
                layer.account_policies.insert(email.clone(), sent);
            },
        )
        .await?;
        let account = find_account(&next, &email)?;
        explained.did(format!(
            "set the IAM policy of service account {email}: {}",
            account.policy.describe()
        ));
        Ok(policy::render(&account.policy))
    }
    .await;
    answer(result, explained)
}

fn key_name(config: &Config, email: &str, kid: &str) -> String {
    format!(
        "projects/{}/serviceAccounts/{email}/keys/{kid}",
        config.project.id
    )
}

fn render_key(config: &Config, email: &str, kid: &str, created: std::time::SystemTime) -> Value {
    json!({
        "name": key_name(config, email, kid),
        "validAfterTime": humantime::format_rfc3339_seconds(created).to_string(),
        "validBeforeTime": NEVER,
        "keyAlgorithm": "KEY_ALG_RSA_2048",
        "keyOrigin": "GOOGLE_PROVIDED",
        "keyType": "USER_MANAGED",
    })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(e.to_string())
}

/// `?keyTypes=` may repeat; frontdoor lists user-managed keys only (an account's
/// Google-managed key is published at its JWKS URL), so a filter without `USER_MANAGED`
/// lists none.
async fn list_keys(
    State(state): State<AppState>,
    Path((project, name)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
) -> Response {
    let explained = Explanation::default();
    answered(explained, |explained| {
        let account =
            authorized_account(&state, &headers, &project, &name, iam::KEYS_LIST, explained)?;
        let types: Vec<&str> = query
            .iter()
            .filter(|(k, _)| k == "keyTypes")
            .map(|(_, v)| v.as_str())
            .collect();
        for t in &types {
            if !matches!(
                *t,
                "USER_MANAGED" | "SYSTEM_MANAGED" | "KEY_TYPE_UNSPECIFIED"
            ) {
                return Err(ApiError::InvalidArgument(format!(
                    "keyTypes `{t}`: one of USER_MANAGED, SYSTEM_MANAGED"
                )));
            }
        }
        if !types.is_empty() && !types.contains(&"USER_MANAGED") {
            return Ok(json!({}));
        }
        let keys: Vec<Value> = state
            .state_dir()
            .account_keys(&account.email)
            .map_err(internal)?
            .into_iter()
            .map(|(kid, _, created)| render_key(state.config(), &account.email, &kid, created))
            .collect();
        Ok(json!({ "keys": keys }))
    })
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateKey {
    #[serde(default)]
    private_key_type: Option<String>,
    #[serde(default)]
    key_algorithm: Option<String>,
}

async fn create_key(
    State(state): State<AppState>,
    Path((project, name)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let mut explained = Explanation::default();
    let result = async {
        let account = authorized_account(
            &state,
            &headers,
            &project,
            &name,
            iam::KEYS_CREATE,
            &mut explained,
        )?
        .clone();
        let request: CreateKey = if body.iter().all(u8::is_ascii_whitespace) {
            CreateKey::default()
        } else {
            serde_json::from_slice(&body).map_err(|e| {
                ApiError::InvalidArgument(format!("the body is not a key creation request: {e}"))
            })?
        };
        match request.private_key_type.as_deref() {
            None | Some("TYPE_GOOGLE_CREDENTIALS_FILE" | "TYPE_UNSPECIFIED") => {}
            Some(other) => {
                return Err(ApiError::InvalidArgument(format!(
                    "privateKeyType `{other}`: frontdoor writes JSON key files only (TYPE_GOOGLE_CREDENTIALS_FILE)"
                )));
            }
        }
        match request.key_algorithm.as_deref() {
            None | Some("KEY_ALG_RSA_2048" | "KEY_ALG_UNSPECIFIED") => {}
            Some(other) => {
                return Err(ApiError::InvalidArgument(format!(
                    "keyAlgorithm `{other}`: frontdoor makes KEY_ALG_RSA_2048 keys only"
                )));
            }
        }
        let (key, _) = new_key(&state, &account.email, "").await?;
        let config = state.config();
        let file = key_file(
            config,
            &account,
            &key,
            "https://oauth2.googleapis.com",
            "https://www.googleapis.com",
        );
        let mut out = render_key(config, &account.email, key.kid(), std::time::SystemTime::now());
        out["privateKeyType"] = "TYPE_GOOGLE_CREDENTIALS_FILE".into();
        out["privateKeyData"] = STANDARD
            .encode(serde_json::to_vec_pretty(&file).unwrap_or_default())
            .into();
        explained.did(format!(
            "made key {} of service account {}",
            key.kid(),
            account.email
        ));
        Ok(out)
    }
    .await;
    answer(result, explained)
}

/// A new key for `email`, made in the state directory under the lock every change takes,
/// unless the account holds Google's limit of keys already (`FAILED_PRECONDITION`, with
/// `hint` after Google's words); the key and how many the account holds now. The IAM
/// API's `keys create` and `frontdoor keys create` (`cli_keys`) both make keys here.
pub(super) async fn new_key(
    state: &AppState,
    email: &str,
    hint: &str,
) -> Result<(SigningKey, usize), ApiError> {
    let dir = state.state_dir().clone();
    let owned = email.to_owned();
    let _serial = state.changes().begin().await;
    tokio::task::spawn_blocking(move || {
        let held = dir.account_keys(&owned)?.len();
        if held >= MAX_KEYS_PER_ACCOUNT {
            return Ok(Err(held));
        }
        dir.create_account_key(&owned).map(|key| Ok((key, held + 1)))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?
    .map_err(|held| {
        ApiError::FailedPrecondition(format!(
            "Precondition check failed: {email} already has {held} keys, Google's limit; delete one first{hint}"
        ))
    })
}

async fn delete_key(
    State(state): State<AppState>,
    Path((project, name, kid)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> Response {
    let explained = Explanation::default();
    answered(explained, |explained| {
        let account = authorized_account(
            &state,
            &headers,
            &project,
            &name,
            iam::KEYS_DELETE,
            explained,
        )?;
        let deleted = state
            .state_dir()
            .delete_key_of(&account.email, &kid)
            .map_err(internal)?;
        if !deleted {
            return Err(ApiError::NotFound(format!(
                "Service account key {} does not exist.",
                key_name(state.config(), &account.email, &kid)
            )));
        }
        explained.did(format!(
            "deleted key {kid} of service account {}; assertions signed with it are refused from now on",
            account.email
        ));
        Ok(json!({}))
    })
}
