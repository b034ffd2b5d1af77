//! Access tokens (`ya29.…`, SPEC §2): the principal, scopes and expiry they were issued
//! for, sealed with an HMAC under a key kept in the state directory. The metadata server,
//! `/token` and STS issue them; the google listener's APIs honour them.
//!
//! Sealed rather than remembered, so that they outlive a restart as Google's outlive
//! nothing at all: gcloud caches its access token for an hour, and when a request is
//! refused it fetches a new token but retries with the old one, so a token forgotten on
//! restart would lock gcloud out until its cache expired. Nothing is held per token, so
//! nothing grows with the tokens issued.

use aws_lc_rs::hmac;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::iam::Principal;
use crate::tokens::ACCESS_TOKEN_PREFIX;

/// The scope a Cloud Run service's identity gets when none is asked for.
pub(crate) const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

/// The longest access token issued, and so the longest one read: half of the 64 KiB a
/// request's headers may hold (`peer::MAX_HEADER_BYTES`, a layer below this one), so one
/// always fits in an `Authorization` header.
pub(crate) const MAX_TOKEN_BYTES: usize = 32 * 1024;

/// The sealing key's file in the state directory.
pub(crate) const KEY_FILE: &str = "access-token-key";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// Whom the token speaks for: a service account, or a federated identity (STS).
    #[serde(rename = "p")]
    pub principal: Principal,
    #[serde(rename = "s")]
    pub scopes: Vec<String>,
    #[serde(rename = "e")]
    pub exp: i64,
}

/// What is sealed: the grant, and randomness so that two grants alike are two tokens.
#[derive(Serialize, Deserialize)]
struct Sealed {
    #[serde(rename = "g")]
    grant: Grant,
    #[serde(rename = "n")]
    nonce: String,
}

pub struct AccessTokens {
    key: hmac::Key,
}

/// A grant too large to issue as a token (a flood of scopes or federated attributes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "an access token for this grant would be {0} bytes, more than the {MAX_TOKEN_BYTES} frontdoor issues; ask for fewer or shorter scopes"
)]
pub struct TooLarge(pub usize);

impl Default for AccessTokens {
    /// A key of its own, for a state that keeps none: its tokens die with it.
    fn default() -> Self {
        AccessTokens::new(&random::<32>())
    }
}

impl AccessTokens {
    pub fn new(secret: &[u8]) -> AccessTokens {
        AccessTokens {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        }
    }

    /// A new secret, as text for the state directory ([`AccessTokens::from_secret`]).
    pub fn new_secret() -> String {
        hex::encode(random::<32>())
    }

    /// The tokens sealed with a kept secret: 64 hex digits. Anything else (an empty or
    /// truncated file) is refused: an empty key would let anyone seal a token.
    pub fn from_secret(text: &str) -> Result<AccessTokens, String> {
        match hex::decode(text.trim()) {
            Ok(key) if key.len() == 32 => Ok(AccessTokens::new(&key)),
            _ => Err(format!(
                "the access-token key ({KEY_FILE} in the state directory) is not 64 hex digits; remove it to have a new one made"
            )),
        }
    }

    /// A new token for `principal` with `scopes`, valid for `lifetime` seconds from `now`;
    /// refused when it would be too long for [`AccessTokens::lookup`] to take back.
    pub fn issue(
        &self,
        principal: Principal,
        scopes: Vec<String>,
        now: i64,
        lifetime: i64,
    ) -> Result<(String, Grant), TooLarge> {
        let grant = Grant {
            principal,
            scopes,
            exp: now + lifetime,
        };
        let sealed = Sealed {
            grant: grant.clone(),
            nonce: URL_SAFE_NO_PAD.encode(random::<12>()),
        };
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&sealed).unwrap_or_default());
        let tag = hmac::sign(&self.key, payload.as_bytes());
        let token = format!(
            "{ACCESS_TOKEN_PREFIX}{payload}.{}",
            URL_SAFE_NO_PAD.encode(tag.as_ref())
        );
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TooLarge(token.len()));
        }
        Ok((token, grant))
    }

    /// The grant behind `token`, if it was sealed with this key and has not expired.
    pub fn lookup(&self, token: &str, now: i64) -> Option<Grant> {
        if token.len() > MAX_TOKEN_BYTES {
            return None;
        }
        let (payload, tag) = token.strip_prefix(ACCESS_TOKEN_PREFIX)?.split_once('.')?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        // Constant-time comparison inside `verify`.
        hmac::verify(&self.key, payload.as_bytes(), &tag).ok()?;
        let sealed: Sealed = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        (now < sealed.grant.exp).then_some(sealed.grant)
    }
}

fn random<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // Keys and nonces of bearer secrets come from the system's CSPRNG.
    aws_lc_rs::rand::fill(&mut bytes).expect("the system random source is available");
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::LIFETIME;

    fn sa() -> Principal {
        Principal::ServiceAccount("a@p.iam.gserviceaccount.com".into())
    }

    #[test]
    fn tokens_are_bound_expire_and_differ() {
        let store = AccessTokens::new(b"secret");
        let (a, grant) = store
            .issue(sa(), vec![CLOUD_PLATFORM.into()], 1000, LIFETIME)
            .unwrap();
        let (b, _) = store
            .issue(sa(), vec![CLOUD_PLATFORM.into()], 1000, LIFETIME)
            .unwrap();
        assert!(a.starts_with("ya29.") && a.len() > 60);
        assert_ne!(a, b);
        assert_eq!(grant.exp, 4600);
        assert_eq!(store.lookup(&a, 4599).unwrap().principal, sa());
        assert!(store.lookup(&a, 4600).is_none());
        assert!(store.lookup("ya29.made-up", 1000).is_none());
        assert!(store.lookup("ya29.made.up", 1000).is_none());
    }

    #[test]
    fn a_kept_secret_is_64_hex_digits_or_refused() {
        let secret = AccessTokens::new_secret();
        let (token, _) = AccessTokens::from_secret(&secret)
            .unwrap()
            .issue(sa(), vec![], 1000, LIFETIME)
            .unwrap();
        let again = AccessTokens::from_secret(&format!("{secret}\n")).unwrap();
        assert_eq!(again.lookup(&token, 1001).unwrap().principal, sa());
        for bad in ["", "\n", &secret[..40], "zz", &format!("{secret}00")] {
            assert!(AccessTokens::from_secret(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_outlive_a_restart_with_the_same_key_only() {
        let (token, _) = AccessTokens::new(b"kept")
            .issue(sa(), vec![], 1000, LIFETIME)
            .unwrap();
        assert_eq!(
            AccessTokens::new(b"kept")
                .lookup(&token, 1001)
                .unwrap()
                .principal,
            sa()
        );
        assert!(AccessTokens::new(b"other").lookup(&token, 1001).is_none());
    }

    #[test]
    fn a_token_altered_in_any_part_is_refused() {
        let store = AccessTokens::new(b"secret");
        let (token, _) = store
            .issue(sa(), vec![CLOUD_PLATFORM.into()], 1000, LIFETIME)
            .unwrap();
        let (payload, tag) = token
            .split_once('.')
            .map(|(_, rest)| rest)
            .unwrap()
            .split_once('.')
            .unwrap();
        // Another principal under the old tag.
        let forged_grant = Sealed {
            grant: Grant {
                principal: Principal::ServiceAccount("admin@p.iam.gserviceaccount.com".into()),
                scopes: vec![],
                exp: 1 << 40,
            },
            nonce: String::new(),
        };
        let forged = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&forged_grant).unwrap());
        assert!(
            store
                .lookup(&format!("ya29.{forged}.{tag}"), 1001)
                .is_none()
        );
        // A flipped character anywhere.
        for i in 5..token.len() {
            let mut bytes = token.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = String::from_utf8(bytes).unwrap();
            if altered != token {
                assert!(store.lookup(&altered, 1001).is_none(), "position {i}");
            }
        }
        assert!(!payload.is_empty());
        assert!(store.lookup(&"ya29.".repeat(5000), 1001).is_none());
    }

    /// Every token issued can be looked up again: a grant too large for that is refused
    /// when asked for, never issued as a token every API then turns away.
    #[test]
    fn a_grant_too_large_to_look_up_is_not_issued() {
        let store = AccessTokens::new(b"secret");
        let many: Vec<String> = (0..2000).map(|i| format!("s{i}")).collect();
        let (token, _) = store.issue(sa(), many, 1000, LIFETIME).unwrap();
        assert!(store.lookup(&token, 1001).is_some());
        let flood: Vec<String> = vec!["a".into(); 8 * 1024];
        let refused = store.issue(sa(), flood, 1000, LIFETIME).unwrap_err();
        assert!(refused.0 > MAX_TOKEN_BYTES, "{refused}");
    }
}
