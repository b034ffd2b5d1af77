//! Tokens the metadata server has minted, kept by what was asked for (audience, format,
//! scopes, listener) so that a client polling for the same token gets the same one until it
//! nears expiry. Bounded in bytes. No HTTP here: the state holds it, the metadata server
//! fills it.

use quick_cache::sync::Cache;

use crate::config::Config;

/// A cached token is handed out again until it is this close to expiry, as the real
/// server does.
const REFRESH_BEFORE_EXPIRY: i64 = 300;
/// Bytes of tokens cached at most (keys, which hold the audience or scopes, and tokens).
const CACHE_BYTES: u64 = 4 * 1024 * 1024;

/// An entry weighs its key and its token, plus a little for the map.
#[derive(Clone)]
struct Weight;

impl quick_cache::Weighter<String, (String, i64)> for Weight {
    fn weight(&self, key: &String, value: &(String, i64)) -> u64 {
        (64 + key.len() + value.0.len()) as u64
    }
}

/// Tokens the metadata server has minted, by what was asked for.
pub struct MetadataTokens {
    cache: Cache<String, (String, i64), Weight>,
}

impl Default for MetadataTokens {
    fn default() -> Self {
        MetadataTokens {
            cache: Cache::with_weighter(4096, CACHE_BYTES, Weight),
        }
    }
}

impl MetadataTokens {
    /// How many tokens are cached, and how many bytes they weigh.
    pub fn size(&self) -> (usize, u64) {
        (self.cache.len(), self.cache.weight())
    }

    /// The cached token for what was `asked` under `config` while it has more than five
    /// minutes left, else a new one from `mint` (which returns the token and its expiry, or
    /// why it cannot); and whether it was minted now. The cache outlives a reload, so its
    /// key holds what of `config` every token names (the issuer, the project), whatever the
    /// caller put in `asked` (issue 26: after an `issuer:` change it handed out tokens
    /// naming the old one).
    pub(crate) fn get_or_mint<E>(
        &self,
        config: &Config,
        asked: &str,
        now: i64,
        mint: impl FnOnce() -> Result<(String, i64), E>,
    ) -> Result<(String, i64, bool), E> {
        let project = &config.project;
        let key = format!(
            "{}\0{}\0{}\0{}\0{asked}",
            config.issuer, project.id, project.number, project.region
        );
        if let Some((token, exp)) = self.cache.get(&key)
            && now < exp - REFRESH_BEFORE_EXPIRY
        {
            return Ok((token, exp, false));
        }
        let (token, exp) = mint()?;
        self.cache.insert(key, (token.clone(), exp));
        Ok((token, exp, true))
    }
}
