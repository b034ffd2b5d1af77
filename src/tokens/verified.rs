//! Tokens already verified, so that a client reusing its token (every Google client library
//! does, for up to an hour) costs a hash lookup rather than an RSA verification.
//!
//! Keyed by the token itself: the cache's hasher is seeded at random, and a hit compares the
//! whole token, so no two tokens share an entry. (A SHA-256 of each token was 3% of the warm
//! path's CPU; the hash table's own hash does the same job.) A hit whose `iss` is not the
//! issuer in force is verified again, so an `issuer:` change on reload leaves the old
//! issuer's tokens behind. Bounded: a flood of distinct tokens evicts older entries rather
//! than growing memory. Only successes are kept; an entry is dropped once its token has
//! expired.

use std::sync::Arc;

use quick_cache::sync::Cache;

use crate::keys::KeySet;
use crate::tokens::{self, SKEW, TokenError, Verified};

/// Bytes kept at most, weighed per entry (see [`Weight`]): about 4,000 ordinary tokens,
/// or fewer large ones.
pub(crate) const CAPACITY_BYTES: u64 = 8 * 1024 * 1024;

/// An entry's weight, from its key: the token, and what its decoded claims take, estimated
/// as a small multiple of the token's length (a `serde_json` map is larger than its text).
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<Box<str>, Arc<Verified>> for Weight {
    fn weight(&self, token: &Box<str>, _: &Arc<Verified>) -> u64 {
        512 + 4 * token.len() as u64
    }
}

pub(crate) struct VerifiedTokens {
    cache: Cache<Box<str>, Arc<Verified>, Weight>,
}

impl VerifiedTokens {
    pub(crate) fn new(capacity_bytes: u64) -> VerifiedTokens {
        VerifiedTokens {
            // About 2 KiB an ordinary entry.
            cache: Cache::with_weighter((capacity_bytes / 2048) as usize, capacity_bytes, Weight),
        }
    }

    /// `tokens::verify`, remembered.
    pub(crate) fn verify(
        &self,
        keys: &KeySet,
        token: &str,
        issuer: &str,
        now: i64,
    ) -> Result<Arc<Verified>, TokenError> {
        if let Some(hit) = self.cache.get(token) {
            // `verify` compared `iss` with the issuer exactly, so the claim says which
            // issuer the token was verified against.
            let same_issuer = hit.claims.get("iss").and_then(|v| v.as_str()) == Some(issuer);
            if same_issuer && now <= hit.exp.saturating_add(SKEW) {
                return Ok(hit);
            }
            self.cache.remove(token);
        }
        let verified = Arc::new(tokens::verify(keys, token, issuer, now)?);
        self.cache.insert(token.into(), verified.clone());
        Ok(verified)
    }

    /// About how many bytes the remembered tokens take.
    pub(crate) fn bytes(&self) -> u64 {
        self.cache.weight()
    }

    pub(crate) fn len(&self) -> usize {
        self.cache.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServiceAccount;
    use crate::keys::testkeys;

    const ISS: &str = "https://accounts.google.com";

    fn token(keys: &KeySet, aud: &str, now: i64) -> String {
        let sa = ServiceAccount {
            email: "a@p.iam.gserviceaccount.com".into(),
            unique_id: "1".repeat(21),
            display_name: None,
            policy: Default::default(),
            policy_by_admin: Default::default(),
            declared: true,
        };
        tokens::mint(keys, &tokens::service_account_claims(ISS, &sa, aud, now))
    }

    #[test]
    fn hits_expire_with_the_token_and_failures_are_not_kept() {
        let keys = testkeys::key_set();
        let cache = VerifiedTokens::new(CAPACITY_BYTES);
        let t = token(&keys, "a", 1000);
        assert!(cache.verify(&keys, &t, ISS, 1000).is_ok());
        assert_eq!(cache.len(), 1);
        assert!(cache.verify(&keys, &t, ISS, 1000 + 3600 + SKEW).is_ok());
        assert_eq!(
            cache
                .verify(&keys, &t, ISS, 1000 + 3600 + SKEW + 1)
                .unwrap_err(),
            TokenError::Expired {
                exp: 4600,
                ago: SKEW + 1
            }
        );
        assert_eq!(cache.len(), 0);
        assert!(cache.verify(&keys, "x.y.z", ISS, 1000).is_err());
        assert_eq!(cache.len(), 0);
        // One character more is another token: it is verified, and fails.
        assert!(cache.verify(&keys, &format!("{t}x"), ISS, 1000).is_err());
        // Once the issuer changes, a remembered token is checked again, and fails.
        assert!(cache.verify(&keys, &t, ISS, 1000).is_ok());
        assert_eq!(
            cache
                .verify(&keys, &t, "https://other.example.com", 1000)
                .unwrap_err(),
            TokenError::WrongIssuer {
                expected: "https://other.example.com".into(),
                found: format!("`{ISS}`")
            }
        );
    }

    #[test]
    fn a_flood_of_distinct_tokens_stays_bounded_in_bytes() {
        let keys = testkeys::key_set();
        let cache = VerifiedTokens::new(256 * 1024);
        // Tokens with 8 KiB audiences weigh about 45 KiB each; ordinary ones about 4 KiB.
        for i in 0..100 {
            let aud = format!("{i}-{}", "a".repeat(8 * 1024));
            cache
                .verify(&keys, &token(&keys, &aud, 1000), ISS, 1000)
                .unwrap();
        }
        assert!(cache.bytes() <= 256 * 1024, "{}", cache.bytes());
        assert!(cache.len() < 20, "{}", cache.len());
        // Ordinary tokens: many more fit.
        let cache = VerifiedTokens::new(256 * 1024);
        for i in 0..300 {
            cache
                .verify(&keys, &token(&keys, &format!("aud-{i}"), 1000), ISS, 1000)
                .unwrap();
        }
        assert!(
            cache.len() > 50 && cache.bytes() <= 256 * 1024,
            "{}",
            cache.len()
        );
    }
}
