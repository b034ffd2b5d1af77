//! Access tokens: opaque `ya29.` strings bound in memory to the principal and scopes they
//! were issued for (SPEC §2). The metadata server issues them; the google listener's APIs
//! honour them. Bounded: the oldest grants are evicted first under a flood.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use quick_cache::sync::Cache;

use crate::iam::Principal;
use crate::tokens::ACCESS_TOKEN_PREFIX;

/// Grants kept at most.
const CAPACITY: usize = 65_536;

/// The scope a Cloud Run service's identity gets when none is asked for.
pub const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Whom the token speaks for: a service account, or a federated identity (STS).
    pub principal: Principal,
    pub scopes: Vec<String>,
    pub exp: i64,
}

pub struct AccessTokens {
    grants: Cache<String, Arc<Grant>>,
}

impl Default for AccessTokens {
    fn default() -> Self {
        AccessTokens {
            grants: Cache::new(CAPACITY),
        }
    }
}

impl AccessTokens {
    /// How many grants are remembered.
    pub fn entries(&self) -> usize {
        self.grants.len()
    }

    /// A new token for `principal` with `scopes`, valid for `lifetime` seconds from `now`.
    pub fn issue(
        &self,
        principal: Principal,
        scopes: Vec<String>,
        now: i64,
        lifetime: i64,
    ) -> (String, Arc<Grant>) {
        let mut random = [0u8; 48];
        // The token is a bearer secret, so it comes from the system's CSPRNG.
        aws_lc_rs::rand::fill(&mut random).expect("the system random source is available");
        let token = format!("{ACCESS_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
        let grant = Arc::new(Grant {
            principal,
            scopes,
            exp: now + lifetime,
        });
        self.grants.insert(token.clone(), grant.clone());
        (token, grant)
    }

    /// The grant behind `token`, if it was issued here and has not expired.
    pub fn lookup(&self, token: &str, now: i64) -> Option<Arc<Grant>> {
        self.grants.get(token).filter(|g| now < g.exp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::LIFETIME;

    fn sa() -> Principal {
        Principal::ServiceAccount("a@p.iam.gserviceaccount.com".into())
    }

    #[test]
    fn tokens_are_opaque_bound_and_expire() {
        let store = AccessTokens::default();
        let (a, grant) = store.issue(sa(), vec![CLOUD_PLATFORM.into()], 1000, LIFETIME);
        let (b, _) = store.issue(sa(), vec![CLOUD_PLATFORM.into()], 1000, LIFETIME);
        assert!(a.starts_with("ya29.") && a.len() > 60);
        assert_ne!(a, b);
        assert_eq!(grant.exp, 4600);
        assert_eq!(store.lookup(&a, 4599).unwrap().principal, sa());
        assert!(store.lookup(&a, 4600).is_none());
        assert!(store.lookup("ya29.made-up", 1000).is_none());
    }
}
