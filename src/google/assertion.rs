//! JWTs a service account signs itself with a key frontdoor issued (`frontdoor keys
//! create`): the assertion of the jwt-bearer grant, and the self-signed bearer token Google's
//! APIs accept in place of an access token.

use serde_json::Value;

use crate::config::ServiceAccount;
use crate::keys::PublicKey;
use crate::state::AppState;
use crate::tokens::jws::{Audience, Jws, KidRule, Rules};
use crate::tokens::{Claims, LIFETIME, TokenError};

/// Why an assertion was refused, with the description Google's token endpoint gives.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AssertionError {
    #[error("Invalid JWT Signature.")]
    Signature,
    #[error("Invalid grant: account not found")]
    UnknownAccount,
    #[error(
        "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim."
    )]
    Lifetime,
    #[error("Invalid JWT: the assertion is not a JWT signed with RS256.")]
    Malformed,
}

/// Verifies `jwt` as signed by a key of the service account named in its `iss`, and its
/// lifetime: at most an hour, not expired, not issued in the future (with skew). The
/// audience is the caller's to check.
pub(crate) fn verify<'s>(
    state: &'s AppState,
    jwt: &str,
) -> Result<(&'s ServiceAccount, Claims), AssertionError> {
    let jws = Jws::parse(jwt).map_err(|e| match e {
        TokenError::Algorithm(_) | TokenError::CriticalExtensions(_) => AssertionError::Signature,
        _ => AssertionError::Malformed,
    })?;
    let claims = jws
        .unverified_claims()
        .map_err(|_| AssertionError::Malformed)?;
    let iss = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(AssertionError::UnknownAccount)?;
    let account = state
        .config()
        .service_account(iss)
        .ok_or(AssertionError::UnknownAccount)?;
    // The issuer as sent: accounts are found whatever the case of their email.
    let rules = Rules {
        issuer: iss,
        audience: Audience::Unchecked,
        kid: KidRule::Optional,
        max_lifetime: LIFETIME,
    };
    let now = state.now();
    let unsigned = |e: &TokenError| {
        matches!(
            e,
            TokenError::UnknownKid(_) | TokenError::BadSignature(_) | TokenError::NoKeyVerifies(_)
        )
    };
    // The account's Google-managed key (what `signJwt`/`signBlob` sign with) counts as
    // its own, as on Google: `compute_engine.IDTokenCredentials` signs its assertion with
    // signBlob. It is in memory and tried first; the keys issued with `keys create` are
    // read from disk only when it did not sign.
    let mut outcome = Err(TokenError::NoKeyVerifies(0));
    if let Some(key) = state.system_keys().existing(&account.email) {
        outcome = jws.verify([(Some(key.kid()), &*key)], &rules, now);
    }
    if outcome.as_ref().is_err_and(unsigned) {
        // A named key is read alone (one unreadable file elsewhere in the account's folder
        // does not stop it); with no `kid` (some clients send none), every key of the
        // account is a candidate.
        let issued: Vec<(String, PublicKey)> = match jws.kid() {
            Some(kid) => (state.state_dir().account_key(&account.email, kid).ok())
                .flatten()
                .map(|key| vec![(kid.to_owned(), key)])
                .unwrap_or_default(),
            None => (state.state_dir().account_keys(&account.email))
                .unwrap_or_default()
                .into_iter()
                .map(|(kid, key, _)| (kid, key))
                .collect(),
        };
        outcome = jws.verify(
            issued.iter().map(|(kid, key)| (Some(kid.as_str()), key)),
            &rules,
            now,
        );
    }
    match outcome {
        Ok(checked) => Ok((account, checked.claims)),
        Err(e) if unsigned(&e) || e == TokenError::NotBase64("signature") => {
            Err(AssertionError::Signature)
        }
        Err(TokenError::NotBase64(_) | TokenError::NotJsonObject(_)) => {
            Err(AssertionError::Malformed)
        }
        Err(_) => Err(AssertionError::Lifetime),
    }
}
