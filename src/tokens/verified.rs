//! Tokens already verified, so that a client reusing its token (every Google client library
//! does, for up to an hour) costs a hash lookup rather than an RSA verification.
//!
//! Keyed by the SHA-256 of the issuer in force and the token, never the token itself, so an
//! `issuer:` change on reload leaves the old issuer's tokens behind. Bounded: a flood of distinct
//! tokens evicts older entries rather than growing memory. Only successes are kept; an entry
//! is dropped once its token has expired.

use std::sync::Arc;

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use crate::keys::KeySet;
use crate::tokens::{self, SKEW, TokenError, Verified};

/// Bytes kept at most, weighed per entry (see [`Weight`]): about 4,000 ordinary tokens,
/// or fewer large ones.
pub(crate) const CAPACITY_BYTES: u64 = 8 * 1024 * 1024;

/// An entry's weight: what its decoded claims take, estimated when it is stored as a
/// small multiple of the token's length (a `serde_json` map is larger than its text).
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<[u8; 32], (Arc<Verified>, u32)> for Weight {
    fn weight(&self, _: &[u8; 32], value: &(Arc<Verified>, u32)) -> u64 {
        u64::from(value.1)
    }
}

pub(crate) struct VerifiedTokens {
    cache: Cache<[u8; 32], (Arc<Verified>, u32), Weight>,
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
        let digest: [u8; 32] = Sha256::new()
            .chain_update(issuer.as_bytes())
            .chain_update([0])
            .chain_update(token.as_bytes())
            .finalize()
            .into();
        if let Some((hit, _)) = self.cache.get(&digest) {
            if now <= hit.exp.saturating_add(SKEW) {
                return Ok(hit);
            }
            self.cache.remove(&digest);
        }
        let verified = Arc::new(tokens::verify(keys, token, issuer, now)?);
        // Tokens are at most MAX_TOKEN_BYTES long, so this fits in a u32.
        let weight = u32::try_from(512 + 3 * token.len()).unwrap_or(u32::MAX);
        self.cache.insert(digest, (verified.clone(), weight));
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
        // Tokens with 8 KiB audiences weigh about 34 KiB each; ordinary ones about 3 KiB.
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
