//! What the front door keeps between requests, apart from HTTP: which service each host
//! names (built once per generation from the configuration) and the tokens already
//! verified (kept across generations). `state` holds one per generation; the front door's
//! listeners read it.

use std::collections::HashMap;
use std::sync::Arc;

use crate::config::Config;
use crate::keys::KeySet;
use crate::tokens::verified::VerifiedTokens;
use crate::tokens::{TokenError, Verified};

/// What the front door keeps between requests.
pub struct FrontDoor {
    /// Host (lowercase, no port) → index into `config.services`.
    hosts: HashMap<String, usize>,
    /// Shared by every generation: a reload keeps what was verified.
    tokens: Arc<VerifiedTokens>,
}

impl FrontDoor {
    /// How many verified tokens are remembered, and about how many bytes they take.
    pub fn verified_tokens(&self) -> (usize, u64) {
        (self.tokens.len(), self.tokens.bytes())
    }

    /// Routes for `config`, verifying through `tokens` (which outlives generations).
    pub(crate) fn new(config: &Config, tokens: Arc<VerifiedTokens>) -> FrontDoor {
        let mut hosts = HashMap::new();
        for (i, s) in config.services.iter().enumerate() {
            for h in s.hosts() {
                hosts.insert(h.to_ascii_lowercase(), i);
            }
        }
        FrontDoor { hosts, tokens }
    }

    /// Every host a service answers to (lowercase, no port).
    pub(crate) fn known_hosts(&self) -> impl Iterator<Item = &str> {
        self.hosts.keys().map(String::as_str)
    }

    /// `tokens::verify`, remembered across requests and generations.
    pub(crate) fn verify(
        &self,
        keys: &KeySet,
        token: &str,
        issuer: &str,
        now: i64,
    ) -> Result<Arc<Verified>, TokenError> {
        self.tokens.verify(keys, token, issuer, now)
    }

    /// The service `host` (with or without a port) names, as an index into
    /// `config.services`.
    pub(crate) fn route(&self, host: &str) -> Option<usize> {
        let host = host
            .rsplit_once(':')
            .filter(|(_, port)| port.bytes().all(|b| b.is_ascii_digit()))
            .map_or(host, |(h, _)| h);
        if let Some(i) = self.hosts.get(host) {
            return Some(*i);
        }
        self.hosts.get(&host.to_ascii_lowercase()).copied()
    }
}
