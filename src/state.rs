//! What every listener shares, as two layers:
//!
//! - `AppState`: one generation — the configuration in force and what is derived from it
//!   (routes) — together with the parts that outlive every reload (keys, the decision log,
//!   issued tokens, caches). Immutable; cheap to clone. A request works on one `AppState`
//!   from start to end, so a reload never changes the rules under it.
//! - `Live`: the handle listeners hold. Each request takes the current generation from it;
//!   a reload swaps in the next.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use sha2::Digest;

use arc_swap::ArcSwap;
use axum::extract::FromRef;
use serde::Serialize;

use crate::access::AccessTokens;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::decisions::DecisionLog;
use crate::keys::{KeySet, StateDir, SystemKeys};
use crate::routing::FrontDoor;
use crate::tokens::minted::MetadataTokens;
use crate::upstream::Supervisor;

/// What `GET /frontdoor/v1/status` reports about reloads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// 1 at start, one more for every configuration applied.
    pub generation: u64,
    pub last: Option<LastReload>,
    /// How many times the watcher has read the file, changed or not, so that "nothing
    /// changed" can be told from "not looked yet": a change is applied before the next
    /// read, so four reads after a write (one may have begun before it, two see it and
    /// settle, one follows the apply) mean the write was seen and dealt with.
    pub checks: u64,
    /// Changes applied and refused since start, for `/metrics`.
    #[serde(skip)]
    pub applied: u64,
    #[serde(skip)]
    pub refused: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastReload {
    /// Seconds since the Unix epoch.
    pub time: i64,
    pub ok: bool,
    /// Why it was refused: the file, the field and the reason.
    pub error: Option<String>,
}

#[derive(Clone)]
pub struct AppState(Arc<Shared>);

pub struct Shared {
    pub config: Config,
    /// 1 at start, one more for every configuration applied.
    pub generation: u64,
    /// How the last reload went, shared by every generation.
    pub reload: Arc<Mutex<ReloadStatus>>,
    /// Each service's revision: number 1 at start, bumped when a reload changes it. The
    /// name is made once per generation; every decision reads it.
    pub revisions: BTreeMap<String, Revision>,
    pub keys: Arc<KeySet>,
    /// Each service account's own key, for `signJwt` and `signBlob`.
    pub system_keys: Arc<SystemKeys>,
    /// Where service-account keys and the external issuer's key live.
    pub state_dir: StateDir,
    pub clock: SharedClock,
    pub decisions: Arc<DecisionLog>,
    pub frontdoor: FrontDoor,
    pub access_tokens: Arc<AccessTokens>,
    pub metadata_tokens: Arc<MetadataTokens>,
    /// The processes of `command` services, across generations.
    pub supervisor: Arc<Supervisor>,
    /// Whether listeners may bind other interfaces than loopback (`--bind-all`).
    pub bind_all: bool,
}

impl AppState {
    pub fn new(config: Config, keys: KeySet, state_dir: StateDir, clock: SharedClock) -> AppState {
        AppState(Arc::new(Shared {
            frontdoor: FrontDoor::new(&config, None),
            revisions: config
                .services
                .iter()
                .map(|s| (s.name.clone(), Revision::new(&s.name, 1)))
                .collect(),
            config,
            generation: 1,
            reload: Arc::new(Mutex::new(ReloadStatus {
                generation: 1,
                ..ReloadStatus::default()
            })),
            keys: Arc::new(keys),
            system_keys: Arc::new(SystemKeys::new(state_dir.clone())),
            state_dir,
            clock,
            decisions: Arc::default(),
            access_tokens: Arc::default(),
            metadata_tokens: Arc::default(),
            supervisor: Arc::default(),
            bind_all: false,
        }))
    }

    /// The next generation: `config` in force, every key, token and log kept.
    pub fn reconfigured(&self, config: Config) -> AppState {
        let revisions = config
            .services
            .iter()
            .map(|s| {
                let n = match (self.config.service(&s.name), self.revisions.get(&s.name)) {
                    (Some(before), Some(r)) if before == s => r.number,
                    (Some(_), Some(r)) => r.number + 1,
                    _ => 1,
                };
                (s.name.clone(), Revision::new(&s.name, n))
            })
            .collect();
        AppState(Arc::new(Shared {
            frontdoor: FrontDoor::new(&config, Some(&self.frontdoor)),
            revisions,
            config,
            generation: self.generation + 1,
            reload: self.reload.clone(),
            keys: self.keys.clone(),
            system_keys: self.system_keys.clone(),
            state_dir: self.state_dir.clone(),
            clock: self.clock.clone(),
            decisions: self.decisions.clone(),
            access_tokens: self.access_tokens.clone(),
            metadata_tokens: self.metadata_tokens.clone(),
            supervisor: self.supervisor.clone(),
            bind_all: self.bind_all,
        }))
    }

    /// Allows listeners on other interfaces than loopback (`serve --bind-all`); for a
    /// state not yet shared.
    pub fn binding_all_interfaces(mut self) -> AppState {
        if let Some(shared) = Arc::get_mut(&mut self.0) {
            shared.bind_all = true;
        }
        self
    }

    pub fn now(&self) -> i64 {
        self.0.clock.now()
    }

    /// While the last change to the configuration file stands refused, the note every
    /// refusal ends with, so that a user wondering why an edit "did nothing" is told where
    /// they look: the reason header, the decisions and the log (issue 9).
    pub fn refused_change_note(&self) -> Option<String> {
        let status = self.reload.lock().unwrap_or_else(|p| p.into_inner());
        let last = status.last.as_ref().filter(|l| !l.ok)?;
        let file = self.config.file.file_name().map_or_else(
            || self.config.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Some(format!(
            "note: the last change to {file} was refused, so the configuration before it is still in force: {}",
            last.error.as_deref().unwrap_or("(no reason recorded)")
        ))
    }

    /// `SERVICE-0000N-xyz`, the `K_REVISION` of `service` in this generation.
    pub fn revision(&self, service: &str) -> Option<&str> {
        self.revisions.get(service).map(|r| r.name.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    pub number: u32,
    pub name: String,
}

impl Revision {
    fn new(service: &str, number: u32) -> Revision {
        Revision {
            number,
            name: revision_name(service, number),
        }
    }
}

/// A revision's name as Cloud Run forms it: the service, a five-digit generation and a
/// three-letter suffix (ours is derived from the first two, so names are stable).
pub fn revision_name(service: &str, n: u32) -> String {
    let digest = sha2::Sha256::digest(format!("{service}/{n}").as_bytes());
    let suffix: String = digest
        .iter()
        .take(3)
        .map(|b| (b'a' + b % 26) as char)
        .collect();
    format!("{service}-{n:05}-{suffix}")
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
