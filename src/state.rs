//! What every listener shares: the configuration, the keys and the clock, behind one
//! cheap-to-clone handle.

use std::sync::Arc;

use crate::clock::SharedClock;
use crate::config::Config;
use crate::keys::KeySet;

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Config,
    pub keys: KeySet,
    pub clock: SharedClock,
}

impl AppState {
    pub fn new(config: Config, keys: KeySet, clock: SharedClock) -> AppState {
        AppState(Arc::new(Shared {
            config,
            keys,
            clock,
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
