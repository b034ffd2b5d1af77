//! JWTs a service account signs itself with a key frontdoor issued (`frontdoor keys
//! create`): the assertion of the jwt-bearer grant, and the self-signed bearer token Google's
//! APIs accept in place of an access token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use crate::config::ServiceAccount;
use crate::state::AppState;
use crate::tokens::{Claims, LIFETIME, SKEW};

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

fn part(s: &str) -> Option<serde_json::Map<String, Value>> {
    match serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).ok()?).ok()? {
        Value::Object(m) => Some(m),
        _ => None,
    }
}

/// Verifies `jwt` as signed by a key of the service account named in its `iss`, and its
/// lifetime: at most an hour, not expired, not issued in the future (with skew).
pub(crate) fn verify<'s>(
    state: &'s AppState,
    jwt: &str,
) -> Result<(&'s ServiceAccount, Claims), AssertionError> {
    let mut it = jwt.split('.');
    let (Some(h), Some(p), Some(sig), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(AssertionError::Malformed);
    };
    let header = part(h).ok_or(AssertionError::Malformed)?;
    let claims = part(p).ok_or(AssertionError::Malformed)?;
    if header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return Err(AssertionError::Signature);
    }
    let email = claims
        .get("iss")
        .and_then(Value::as_str)
        .ok_or(AssertionError::UnknownAccount)?;
    let account = state
        .config
        .service_account(email)
        .ok_or(AssertionError::UnknownAccount)?;
    let signature = URL_SAFE_NO_PAD
        .decode(sig)
        .map_err(|_| AssertionError::Signature)?;
    let signed = &jwt.as_bytes()[..h.len() + 1 + p.len()];
    // The account's Google-managed key (what `signJwt`/`signBlob` sign with) counts as
    // its own, as on Google: `compute_engine.IDTokenCredentials` signs its assertion with
    // signBlob. Some clients send no `kid`; then any of the account's keys may have signed it.
    let system = state.system_keys.existing(&account.email);
    let by_system = |kid: Option<&str>| {
        system.as_ref().is_some_and(|key| {
            kid.is_none_or(|kid| kid == key.kid()) && key.verify(signed, &signature)
        })
    };
    let kid = header.get("kid").and_then(Value::as_str);
    let verified = by_system(kid)
        || match kid {
            Some(kid) => state
                .state_dir
                .account_key(&account.email, kid)
                .ok()
                .flatten()
                .is_some_and(|key| key.verify(signed, &signature)),
            None => state
                .state_dir
                .account_keys(&account.email)
                .unwrap_or_default()
                .iter()
                .any(|(_, key, _)| key.verify(signed, &signature)),
        };
    if !verified {
        return Err(AssertionError::Signature);
    }
    let now = state.now();
    let (Some(iat), Some(exp)) = (
        claims.get("iat").and_then(Value::as_i64),
        claims.get("exp").and_then(Value::as_i64),
    ) else {
        return Err(AssertionError::Lifetime);
    };
    // Attacker-chosen integers: compared in i128, where no difference of two i64 overflows.
    let (exp, iat, now) = (i128::from(exp), i128::from(iat), i128::from(now));
    let skew = i128::from(SKEW);
    if exp - iat > i128::from(LIFETIME) || exp + skew < now || iat > now + skew {
        return Err(AssertionError::Lifetime);
    }
    Ok((account, claims))
}
