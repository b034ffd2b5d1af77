//! Access tokens: opaque `ya29.` strings bound in memory to the principal and scopes they
//! were issued for (SPEC §2). The metadata server issues them; the google listener's APIs
//! honour them. Bounded: the oldest grants are evicted first under a flood.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use quick_cache::sync::Cache;

use crate::iam::Principal;
use crate::tokens::ACCESS_TOKEN_PREFIX;

/// Bytes of grants kept at most: about 60,000 ordinary grants.
const CAPACITY_BYTES: u64 = 16 * 1024 * 1024;

/// A grant weighs its token, its scopes and its principal, plus a little for the map.
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<String, Arc<Grant>> for Weight {
    fn weight(&self, token: &String, grant: &Arc<Grant>) -> u64 {
        let scopes: usize = grant.scopes.iter().map(|s| s.len() + 24).sum();
        let principal = match &grant.principal {
            Principal::ServiceAccount(e) | Principal::User(e) => e.len(),
            Principal::Federated { subject, sets } => {
                subject.len() + sets.iter().map(|s| s.len() + 24).sum::<usize>()
            }
        };
        (128 + token.len() + scopes + principal) as u64
    }
}

/// The scope a Cloud Run service's identity gets when none is asked for.
pub(crate) const CLOUD_PLATFORM: &str = "https://www.googleapis.com/auth/cloud-platform";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Whom the token speaks for: a service account, or a federated identity (STS).
    pub principal: Principal,
    pub scopes: Vec<String>,
    pub exp: i64,
}

pub struct AccessTokens {
    grants: Cache<String, Arc<Grant>, Weight>,
}

impl Default for AccessTokens {
    fn default() -> Self {
        AccessTokens {
            grants: Cache::with_weighter(65_536, CAPACITY_BYTES, Weight),
        }
    }
}

impl AccessTokens {
    /// How many grants are remembered, and how many bytes they weigh.
    pub fn size(&self) -> (usize, u64) {
        (self.grants.len(), self.grants.weight())
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

#[cfg(test)]
mod weight_tests {
    use super::*;

    #[test]
    fn grants_are_bounded_in_bytes_not_count() {
        let store = AccessTokens::default();
        // Grants with 8 KiB of scopes each: about 2,000 fit in 16 MiB, not 65,536.
        let scope = "s".repeat(8 * 1024);
        for _ in 0..4000 {
            store.issue(
                Principal::ServiceAccount("a@p.iam.gserviceaccount.com".into()),
                vec![scope.clone()],
                1000,
                3600,
            );
        }
        let (n, bytes) = store.size();
        assert!(bytes <= CAPACITY_BYTES, "{bytes}");
        assert!(n < 2100, "{n}");
    }
}
