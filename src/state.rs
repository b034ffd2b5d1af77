//! What every listener shares, as two layers:
//!
//! - `AppState`: one `Generation` — the configuration in force and what is derived from it
//!   (routes, revisions) — beside the one `Lasting`: what outlives every reload (keys, the
//!   decision log, issued tokens, caches, the supervisor, the CA), which the generation
//!   holds. Immutable; one `Arc` to clone. A request works on one `AppState` from start to end, so a reload never changes
//!   the rules under it.
//! - `Live`: the handle listeners hold. Each request takes the current generation from it;
//!   a reload builds the next `Generation` whole and swaps it in.

mod changes;
mod revisions;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use axum::extract::FromRef;
use serde::Serialize;

use crate::access::AccessTokens;
use crate::clock::SharedClock;
use crate::config::Config;
use crate::decisions::DecisionLog;
use crate::keys::ca::LocalCa;
use crate::keys::{KeySet, StateDir, StoreError, SystemKeys};
use crate::routing::FrontDoor;
use crate::tokens::minted::MetadataTokens;
use crate::tokens::verified::{self, VerifiedTokens};
use crate::upstream::Supervisor;
pub use changes::{Apply, Changes};

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
    /// The SHA-256 (hex) of the configuration file's content last dealt with (applied,
    /// refused or found unchanged), once the outcome is recorded: a program that wrote the
    /// file waits for its own content's digest here, then reads `last`.
    pub handled: Option<String>,
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

/// How reloads went, shared by every generation: written by the watcher, read by the
/// status page, `/metrics` and every refusal's note.
#[derive(Debug, Default)]
pub struct Reloads(Mutex<ReloadStatus>);

impl Reloads {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReloadStatus> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn snapshot(&self) -> ReloadStatus {
        self.lock().clone()
    }

    /// The watcher read the file (changed or not).
    pub fn checked(&self) {
        self.lock().checks += 1;
    }

    /// The configuration file's content with this digest was dealt with, its outcome
    /// recorded.
    pub fn handled(&self, digest: String) {
        self.lock().handled = Some(digest);
    }

    /// The file is back to what runs: whatever failed before no longer stands.
    pub fn unchanged(&self, now: i64) {
        let mut status = self.lock();
        if status.last.as_ref().is_some_and(|l| !l.ok) {
            status.last = Some(LastReload::ok(now));
        }
    }

    pub fn applied(&self, generation: u64, now: i64) {
        let mut status = self.lock();
        status.applied += 1;
        status.generation = generation;
        status.last = Some(LastReload::ok(now));
    }

    pub fn refused(&self, error: String, now: i64) {
        let mut status = self.lock();
        status.refused += 1;
        status.last = Some(LastReload {
            time: now,
            ok: false,
            error: Some(error),
        });
    }
}

impl LastReload {
    fn ok(time: i64) -> LastReload {
        LastReload {
            time,
            ok: true,
            error: None,
        }
    }
}

/// One generation and what outlives it. Fields are private: each is reached through the
/// method that says what it is for, and handlers that need one part alone take it with
/// `State<…>` (the `FromRef` impls below).
#[derive(Clone)]
pub struct AppState(Arc<Generation>);

/// What one configuration makes: a reload builds a new one whole, and nothing else; and
/// the one [`Lasting`], which every generation shares (so that a request holds its state
/// with one reference count, not two).
struct Generation {
    lasting: Arc<Lasting>,
    config: Config,
    /// 1 at start, one more for every configuration applied.
    number: u64,
    /// Each service's revision: number 1 at start, bumped when a reload changes it. The
    /// name is made once per generation; every decision reads it.
    revisions: BTreeMap<String, Revision>,
    /// Routes of the front door (its verified tokens are [`Lasting`]'s).
    frontdoor: FrontDoor,
}

/// What outlives every reload. A cache here is keyed by whatever of a configuration its
/// entries depend on (the verified tokens by issuer, the metadata server's by issuer and
/// project), so that no generation reads another's.
struct Lasting {
    reloads: Arc<Reloads>,
    keys: Arc<KeySet>,
    /// Each service account's own key, for `signJwt` and `signBlob`.
    system_keys: Arc<SystemKeys>,
    /// Where service-account keys and the external issuer's key live.
    state_dir: StateDir,
    clock: SharedClock,
    decisions: Arc<DecisionLog>,
    /// Pub/Sub's topics, subscriptions and undelivered messages.
    pubsub: Arc<crate::broker::Broker>,
    /// Cloud Tasks' queues and their tasks.
    tasks: Arc<crate::taskqueue::TaskQueues>,
    /// Cloud Scheduler's jobs.
    scheduler: Arc<crate::cronjobs::Jobs>,
    /// What Eventarc keeps beside its triggers (which are Pub/Sub's subscriptions).
    triggers: Arc<crate::triggers::Triggers>,
    /// Tokens the front door has verified, across generations.
    verified: Arc<VerifiedTokens>,
    access_tokens: AccessTokens,
    metadata_tokens: MetadataTokens,
    /// The processes of `command` services, across generations.
    supervisor: Supervisor,
    /// Whether listeners may bind other interfaces than loopback (`--bind-all`).
    bind_all: bool,
    /// The local CA the egress proxy ends TLS with, loaded (or made) on first use.
    ca: Mutex<Option<Arc<LocalCa>>>,
    /// How changes made through the Admin APIs are serialised and applied.
    changes: Changes,
    /// True once shutdown begins: responses that never end by themselves (the dashboard's
    /// event stream) end then, rather than hold the drain.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Generation {
    /// `config`'s generation after `before` (the first if none): a service's revision
    /// number goes up when its settings changed. The first generation of a process starts
    /// from the numbers the state directory kept (`revisions`), and every generation keeps
    /// its own there.
    fn after(before: Option<&Generation>, config: Config, lasting: Arc<Lasting>) -> Generation {
        let kept = match before {
            None => revisions::read(&lasting.state_dir),
            Some(_) => BTreeMap::new(),
        };
        let revisions: BTreeMap<String, Revision> = config
            .services
            .iter()
            .map(|s| {
                let before = before
                    .and_then(|b| Some((b.config.service(&s.name)?, b.revisions.get(&s.name)?)));
                let n = match before {
                    Some((service, r)) if service == s => r.number,
                    Some((_, r)) => r.number.saturating_add(1),
                    None => revisions::first_number(&kept, s),
                };
                (s.name.clone(), Revision::new(&s.name, n))
            })
            .collect();
        let numbers = revisions
            .iter()
            .map(|(name, r)| (name.clone(), r.number))
            .collect();
        revisions::write(&lasting.state_dir, &config, &numbers);
        Generation {
            frontdoor: FrontDoor::new(&config, lasting.verified.clone()),
            lasting,
            revisions,
            config,
            number: before.map_or(1, |b| b.number + 1),
        }
    }
}

impl AppState {
    pub fn new(config: Config, keys: KeySet, state_dir: StateDir, clock: SharedClock) -> AppState {
        let lasting = Lasting {
            reloads: Arc::new(Reloads(Mutex::new(ReloadStatus {
                generation: 1,
                ..ReloadStatus::default()
            }))),
            keys: Arc::new(keys),
            system_keys: Arc::new(SystemKeys::new(state_dir.clone())),
            access_tokens: access_tokens(&state_dir),
            state_dir,
            clock,
            decisions: Arc::default(),
            pubsub: Arc::new(crate::broker::Broker::new()),
            tasks: Arc::default(),
            scheduler: Arc::default(),
            triggers: Arc::default(),
            verified: Arc::new(VerifiedTokens::new(verified::CAPACITY_BYTES)),
            metadata_tokens: MetadataTokens::default(),
            supervisor: Supervisor::default(),
            bind_all: false,
            ca: Mutex::default(),
            changes: Changes::default(),
            closing: tokio::sync::watch::Sender::new(false),
        };
        lasting.pubsub.declare(&config.pubsub);
        lasting.tasks.declare(&config.tasks.queues);
        lasting
            .scheduler
            .declare(&config.scheduler.jobs, std::time::SystemTime::now());
        AppState(Arc::new(Generation::after(None, config, Arc::new(lasting))))
    }

    /// The next generation: `config` in force, everything lasting kept.
    pub fn reconfigured(&self, config: Config) -> AppState {
        let lasting = self.0.lasting.clone();
        lasting.pubsub.declare(&config.pubsub);
        lasting.tasks.declare(&config.tasks.queues);
        lasting
            .scheduler
            .declare(&config.scheduler.jobs, std::time::SystemTime::now());
        AppState(Arc::new(Generation::after(Some(&self.0), config, lasting)))
    }

    /// Allows listeners on other interfaces than loopback (`serve --bind-all`); for a
    /// state not yet shared.
    pub fn binding_all_interfaces(mut self) -> AppState {
        let generation = Arc::get_mut(&mut self.0);
        if let Some(lasting) = generation.and_then(|g| Arc::get_mut(&mut g.lasting)) {
            lasting.bind_all = true;
        }
        self
    }

    pub fn now(&self) -> i64 {
        self.0.lasting.clock.now()
    }

    /// The configuration in force in this generation.
    pub fn config(&self) -> &Config {
        &self.0.config
    }

    /// 1 at start, one more for every configuration applied.
    pub fn generation(&self) -> u64 {
        self.0.number
    }

    pub fn reloads(&self) -> &Arc<Reloads> {
        &self.0.lasting.reloads
    }

    /// The issuer's keys: the one that signs ID tokens now and the next.
    pub fn keys(&self) -> &KeySet {
        &self.0.lasting.keys
    }

    /// Each service account's own key, for `signJwt` and `signBlob`.
    pub fn system_keys(&self) -> &Arc<SystemKeys> {
        &self.0.lasting.system_keys
    }

    /// Where service-account keys and the external issuer's key live.
    pub fn state_dir(&self) -> &StateDir {
        &self.0.lasting.state_dir
    }

    pub fn decisions(&self) -> &DecisionLog {
        &self.0.lasting.decisions
    }

    /// Routes and verified tokens of the front door in this generation.
    pub(crate) fn pubsub(&self) -> &Arc<crate::broker::Broker> {
        &self.0.lasting.pubsub
    }

    pub(crate) fn tasks(&self) -> &Arc<crate::taskqueue::TaskQueues> {
        &self.0.lasting.tasks
    }

    pub(crate) fn scheduler(&self) -> &Arc<crate::cronjobs::Jobs> {
        &self.0.lasting.scheduler
    }

    pub(crate) fn triggers(&self) -> &crate::triggers::Triggers {
        &self.0.lasting.triggers
    }

    pub fn frontdoor(&self) -> &FrontDoor {
        &self.0.frontdoor
    }

    pub fn access_tokens(&self) -> &AccessTokens {
        &self.0.lasting.access_tokens
    }

    pub fn metadata_tokens(&self) -> &MetadataTokens {
        &self.0.lasting.metadata_tokens
    }

    /// The processes of `command` services, across generations.
    pub fn supervisor(&self) -> &Supervisor {
        &self.0.lasting.supervisor
    }

    /// The local CA (`keys::ca`), loaded from the state directory or made there on first
    /// use, then kept.
    pub fn ca(&self) -> Result<Arc<LocalCa>, StoreError> {
        let mut ca = self.0.lasting.ca.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ca) = ca.as_ref() {
            return Ok(ca.clone());
        }
        let loaded = Arc::new(LocalCa::load_or_create(&self.0.lasting.state_dir)?);
        *ca = Some(loaded.clone());
        Ok(loaded)
    }

    /// How changes made through the Admin APIs are serialised and applied.
    pub fn changes(&self) -> &Changes {
        &self.0.lasting.changes
    }

    /// Says that shutdown has begun, to every [`AppState::closing`] receiver.
    pub fn close_streams(&self) {
        self.0.lasting.closing.send_replace(true);
    }

    /// Changes to true when shutdown begins.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.lasting.closing.subscribe()
    }

    /// Whether listeners may bind other interfaces than loopback (`--bind-all`).
    pub fn binds_all_interfaces(&self) -> bool {
        self.0.lasting.bind_all
    }

    /// While the last change to the configuration file stands refused, the note every
    /// refusal ends with, so that a user wondering why an edit "did nothing" is told where
    /// they look: the reason header, the decisions and the log (issue 9).
    pub fn refused_change_note(&self) -> Option<String> {
        let status = self.0.lasting.reloads.snapshot();
        let last = status.last.as_ref().filter(|l| !l.ok)?;
        let file = self.0.config.file.file_name().map_or_else(
            || self.0.config.file.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        Some(format!(
            "note: the last change to {file} was refused, so the configuration before it is still in force: {}",
            last.error.as_deref().unwrap_or("(no reason recorded)")
        ))
    }

    /// The number of `service`'s revision in this generation: its Knative `generation`.
    pub fn revision_number(&self, service: &str) -> Option<u32> {
        self.0.revisions.get(service).map(|r| r.number)
    }

    /// `SERVICE-0000N-xyz`, the `K_REVISION` of `service` in this generation.
    pub fn revision(&self, service: &str) -> Option<&str> {
        self.0.revisions.get(service).map(|r| r.name.as_str())
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
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        format!("{service}/{n}").as_bytes(),
    );
    let suffix: String = digest
        .as_ref()
        .iter()
        .take(3)
        .map(|b| (b'a' + b % 26) as char)
        .collect();
    format!("{service}-{n:05}-{suffix}")
}

/// Access tokens sealed with the state directory's key, so that they outlive a restart; a
/// key of their own (and a warning) when the directory cannot keep one.
fn access_tokens(state_dir: &StateDir) -> AccessTokens {
    let kept = state_dir
        .private_text(crate::access::KEY_FILE, || Ok(AccessTokens::new_secret()))
        .map_err(|e| e.to_string())
        .and_then(|text| AccessTokens::from_secret(&text));
    match kept {
        Ok(tokens) => tokens,
        Err(why) => {
            tracing::warn!(error = %why, "cannot keep the access-token key; access tokens will not outlive this run");
            AccessTokens::default()
        }
    }
}

/// The current generation (and with it what outlives it), swapped whole on reload.
#[derive(Clone)]
pub struct Live(Arc<ArcSwap<Generation>>);

impl Live {
    pub fn new(state: AppState) -> Live {
        Live(Arc::new(ArcSwap::new(state.0)))
    }

    /// The generation in force now.
    pub fn get(&self) -> AppState {
        AppState(self.0.load_full())
    }

    /// Puts `state`'s generation in force: one made from this `Live`'s (by
    /// [`AppState::reconfigured`]).
    pub fn set(&self, state: AppState) {
        debug_assert!(Arc::ptr_eq(&state.0.lasting, &self.0.load().lasting));
        self.0.store(state.0);
    }
}

/// Handlers take `State<AppState>`: the generation in force when the request arrived.
impl FromRef<Live> for AppState {
    fn from_ref(live: &Live) -> AppState {
        live.get()
    }
}

/// For handlers that publish the issuer's keys and nothing else.
impl FromRef<Live> for Arc<KeySet> {
    fn from_ref(live: &Live) -> Arc<KeySet> {
        live.0.load().lasting.keys.clone()
    }
}

/// For handlers that read the decision log and nothing else.
impl FromRef<Live> for Arc<DecisionLog> {
    fn from_ref(live: &Live) -> Arc<DecisionLog> {
        live.0.load().lasting.decisions.clone()
    }
}
