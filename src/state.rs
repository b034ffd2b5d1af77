//! What every listener shares: the configuration, the keys, the clock, the decision log and
//! the front door's caches, behind one cheap-to-clone handle.

use std::sync::Arc;

use crate::access::AccessTokens;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::decisions::DecisionLog;
use crate::frontdoor::FrontDoor;
use crate::keys::{KeySet, StateDir};
use crate::metadata::MetadataTokens;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Config,
    pub keys: KeySet,
    /// Where service-account keys and the external issuer's key live.
    pub state_dir: StateDir,
    pub clock: SharedClock,
    pub decisions: DecisionLog,
    pub frontdoor: FrontDoor,
    pub access_tokens: AccessTokens,
    pub metadata_tokens: MetadataTokens,
}

impl AppState {
    pub fn new(config: Config, keys: KeySet, state_dir: StateDir, clock: SharedClock) -> AppState {
        AppState(Arc::new(Shared {
            frontdoor: FrontDoor::new(&config),
            config,
            keys,
            state_dir,
            clock,
            decisions: DecisionLog::default(),
            access_tokens: AccessTokens::default(),
            metadata_tokens: MetadataTokens::default(),
        }))
    }

    pub fn now(&self) -> i64 {
        self.0.clock.now()
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}
