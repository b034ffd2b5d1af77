//! What every listener shares, as two layers:
//!
//! - `AppState`: one generation — the configuration in force and what is derived from it
//!   (routes) — together with the parts that outlive every reload (keys, the decision log,
//!   issued tokens, caches). Immutable; cheap to clone. A request works on one `AppState`
//!   from start to end, so a reload never changes the rules under it.
//! - `Live`: the handle listeners hold. Each request takes the current generation from it;
//!   a reload swaps in the next.

use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::FromRef;

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
    pub keys: Arc<KeySet>,
    /// Where service-account keys and the external issuer's key live.
    pub state_dir: StateDir,
    pub clock: SharedClock,
    pub decisions: Arc<DecisionLog>,
    pub frontdoor: FrontDoor,
    pub access_tokens: Arc<AccessTokens>,
    pub metadata_tokens: Arc<MetadataTokens>,
}

impl AppState {
    pub fn new(config: Config, keys: KeySet, state_dir: StateDir, clock: SharedClock) -> AppState {
        AppState(Arc::new(Shared {
            frontdoor: FrontDoor::new(&config, None),
            config,
            keys: Arc::new(keys),
            state_dir,
            clock,
            decisions: Arc::default(),
            access_tokens: Arc::default(),
            metadata_tokens: Arc::default(),
        }))
    }

    /// The next generation: `config` in force, every key, token and log kept.
    pub fn reconfigured(&self, config: Config) -> AppState {
        AppState(Arc::new(Shared {
            frontdoor: FrontDoor::new(&config, Some(&self.frontdoor)),
            config,
            keys: self.keys.clone(),
            state_dir: self.state_dir.clone(),
            clock: self.clock.clone(),
            decisions: self.decisions.clone(),
            access_tokens: self.access_tokens.clone(),
            metadata_tokens: self.metadata_tokens.clone(),
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

/// The current generation, swapped whole on reload.
#[derive(Clone)]
pub struct Live(Arc<ArcSwap<Shared>>);

impl Live {
    pub fn new(state: AppState) -> Live {
        Live(Arc::new(ArcSwap::new(state.0)))
    }

    /// The generation in force now.
    pub fn get(&self) -> AppState {
        AppState(self.0.load_full())
    }

    pub fn set(&self, state: AppState) {
        self.0.store(state.0);
    }
}

/// Handlers take `State<AppState>`: the generation in force when the request arrived.
impl FromRef<Live> for AppState {
    fn from_ref(live: &Live) -> AppState {
        live.get()
    }
}
