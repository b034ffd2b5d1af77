//! `frontdoor token`: an ID token for a service account (`--impersonate-service-account`,
//! judged as IAM Credentials judges the `--as` caller) or a declared user, asked of the
//! running server when one runs from the file's state directory (which logs the
//! decision), else minted from the file and the state directory's keys.

use anyhow::{Context, bail};

use super::{ConfigArgs, ask, credentials, locate, print_token};
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config};
use crate::iam::{self, Member};
use crate::tokens;

pub(super) async fn token(
    config: ConfigArgs,
    impersonate_service_account: Option<String>,
    user: Option<String>,
    audiences: Option<String>,
    caller: Option<String>,
) -> anyhow::Result<()> {
    // The server running from this file's state directory mints from the
    // configuration in force (the file may hold a live edit it refused) and logs
    // the decision; without one, the file and the state directory's keys are enough.
    if let Some(addresses) = locate::live_server(&config.state()) {
        let token = token_from_server(
            addresses.google,
            impersonate_service_account.as_deref(),
            user.as_deref(),
            audiences.as_deref(),
            caller.as_deref(),
        )
        .await?;
        print_token(&token);
        return Ok(());
    }
    let (config, state) = config.load()?;
    let keys = state.signing_keys()?;
    let now = SystemClock.now();
    let claims = match (impersonate_service_account, user) {
        (Some(email), _) => {
            let sa = credentials::declared(&config, &email)?;
            may_impersonate(&config, sa, caller.as_deref())?;
            let audience = audiences.as_deref().unwrap_or(tokens::GCLOUD_CLIENT_ID);
            tokens::service_account_claims(&config.issuer, sa, audience, now)
        }
        (None, Some(email)) => {
            let user = config.user(&email).with_context(|| {
                format!(
                    "user `{email}` is not declared under `users:` in {}",
                    config.file.display()
                )
            })?;
            tokens::user_claims(&config.issuer, user, audiences.as_deref(), now)
        }
        (None, None) => bail!("give --impersonate-service-account EMAIL or --user EMAIL"),
    };
    print_token(&tokens::mint(&keys, &claims));
    Ok(())
}

/// `frontdoor token`, asked of the running server (`POST /frontdoor/v1/token`), which judges
/// `--as` as IAM Credentials does and logs the decision.
async fn token_from_server(
    google: std::net::SocketAddr,
    service_account: Option<&str>,
    user: Option<&str>,
    audience: Option<&str>,
    caller: Option<&str>,
) -> anyhow::Result<String> {
    if service_account.is_none() && user.is_none() {
        bail!("give --impersonate-service-account EMAIL or --user EMAIL");
    }
    let question = serde_json::json!({
        "service_account": service_account,
        "user": user,
        "audience": audience,
        "as": caller,
    });
    let (status, headers, body) = ask(google, "/frontdoor/v1/token", Some(&question)).await?;
    let answer: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if status.is_success()
        && let Some(token) = answer["token"].as_str()
    {
        if let (Some(email), None) = (service_account, caller) {
            eprintln!(
                "frontdoor token: minted with the issuer's key as an administrator would: no IAM check was made. Give --as serviceAccount:EMAIL (or user:EMAIL) to be checked as IAM Credentials checks the caller (iam.serviceAccounts.getOpenIdToken on {email})."
            );
        }
        return Ok(token.to_owned());
    }
    Err(refusal(status, &headers, &body, &answer))
}

/// A refusal from one of frontdoor's own endpoints that answer as Google's APIs do:
/// Google's error, then IAM's reason, which frontdoor puts in a header of its own.
pub(super) fn refusal(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
    answer: &serde_json::Value,
) -> anyhow::Error {
    let message = answer["error"]["message"]
        .as_str()
        .map_or_else(|| String::from_utf8_lossy(body).into_owned(), str::to_owned);
    let kind = answer["error"]["status"]
        .as_str()
        .map_or_else(|| status.to_string(), str::to_owned);
    let escape = crate::decisions::escape_controls;
    let why = headers
        .get("x-frontdoor-reason")
        .and_then(|v| v.to_str().ok())
        .map(|w| format!("\n{}", escape(w)))
        .unwrap_or_default();
    anyhow::anyhow!("{}: {}{why}", escape(&kind), escape(&message))
}

/// Whether `caller` (a member, `--as`) may mint `sa`'s ID tokens, judged as IAM
/// Credentials judges `generateIdToken`, on the configuration in the file; without a caller,
/// the minting is an administrator's, which stderr says every time.
fn may_impersonate(
    config: &Config,
    sa: &config::ServiceAccount,
    caller: Option<&str>,
) -> anyhow::Result<()> {
    let Some(caller) = caller else {
        eprintln!(
            "frontdoor token: minted with the issuer's key as an administrator would: no IAM check was made. Give --as serviceAccount:EMAIL (or user:EMAIL) to be checked as IAM Credentials checks the caller (iam.serviceAccounts.getOpenIdToken on {}).",
            sa.email
        );
        return Ok(());
    };
    judged_as(config, sa, caller, iam::GET_OPENID_TOKEN)
}

/// Whether `caller` (a member, `--as`) holds `permission` on `account`, judged as IAM
/// judges it on the configuration in the file; if not, Google's `PERMISSION_DENIED`
/// with IAM's reason.
pub(super) fn judged_as(
    config: &Config,
    account: &config::ServiceAccount,
    caller: &str,
    permission: &'static str,
) -> anyhow::Result<()> {
    let principal = match Member::parse(caller) {
        Ok(Member::ServiceAccount(email)) => iam::Principal::ServiceAccount(email),
        Ok(Member::User(email)) => iam::Principal::User(email),
        Ok(_) => bail!(
            "--as `{caller}`: give one principal, serviceAccount:EMAIL or user:EMAIL, not a group or a domain"
        ),
        Err(e) => bail!("--as `{caller}`: {e}"),
    };
    match crate::google::judge(
        config,
        &principal,
        permission,
        crate::google::Resource::Account(account),
    ) {
        Ok(_) => Ok(()),
        Err(e) => bail!(
            "PERMISSION_DENIED: Permission '{permission}' denied on resource (or it may not exist) for {principal}.\n{}",
            e.why().unwrap_or(e.message())
        ),
    }
}
