//! Binds every listener before anything serves (a port conflict fails start-up whole, with
//! the listener named), then serves them all until shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::config::Config;
use listeners::Registry;

mod accept;
mod listeners;
mod reload;

use crate::state::{AppState, Live};
use crate::upstream::supervisor::Contract;

/// How long in-flight requests may run on after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {what}")]
pub struct BindError {
    what: String,
    addr: SocketAddr,
    source: std::io::Error,
}

/// Where each listener actually is (ports chosen by the OS resolved), and which process
/// serves them from which file. Written to the state directory's `addresses.json` at start
/// and after every reload, where the CLI's `env`, `status` and `decisions` find it.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Addresses {
    pub frontdoor: SocketAddr,
    pub google: SocketAddr,
    /// The default metadata listener, for processes that are not services.
    pub metadata: SocketAddr,
    /// Service name → its own listeners.
    pub services: BTreeMap<String, ServiceAddresses>,
    /// The serving process, so that a record left by one that died can be told apart.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    /// The configuration file in force.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_file: Option<std::path::PathBuf>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ServiceAddresses {
    /// The service's dedicated front-door listener, if it has one.
    pub listen: Option<SocketAddr>,
    /// The service's own metadata server.
    pub metadata: SocketAddr,
}

pub struct Bound {
    frontdoor: TcpListener,
    google: TcpListener,
    metadata: TcpListener,
    services: Registry,
    fresh: Vec<listeners::Fresh>,
}

async fn listen(addr: SocketAddr, what: &str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        what: what.to_owned(),
        addr,
        source,
    })
}

/// Binds every listener the configuration asks for. Every service gets its own metadata
/// listener: at its `metadata` address, or on a port the OS picks.
pub async fn bind(config: &Config) -> Result<Bound, BindError> {
    let services = Registry::default();
    let fresh = services.bind_missing(config).await?;
    Ok(Bound {
        frontdoor: listen(config.listen.frontdoor, "the front door").await?,
        google: listen(config.listen.google, "the google APIs listener").await?,
        metadata: listen(config.listen.metadata, "the default metadata server").await?,
        services,
        fresh,
    })
}

fn local(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

impl Bound {
    /// Where everything listens, once served (`serve` adopts the fresh listeners).
    pub fn addresses(&self) -> Addresses {
        let services = self.fresh.iter().map(|f| f.service_address()).fold(
            BTreeMap::new(),
            |mut all: BTreeMap<String, ServiceAddresses>, (name, kind, addr)| {
                let entry = all.entry(name).or_insert(ServiceAddresses {
                    listen: None,
                    metadata: addr,
                });
                match kind {
                    listeners::Kind::FrontDoor => entry.listen = Some(addr),
                    listeners::Kind::Metadata => entry.metadata = addr,
                }
                all
            },
        );
        Addresses {
            frontdoor: local(&self.frontdoor),
            google: local(&self.google),
            metadata: local(&self.metadata),
            services,
            pid: None,
            config_file: None,
        }
    }
}

/// Serves every bound listener until `shutdown` completes, applying changes to the
/// configuration file as they are saved; then lets in-flight requests finish for up to
/// `DRAIN`.
pub async fn serve(
    bound: Bound,
    live: Live,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    // Commands first: a request that arrives the moment a listener serves finds its
    // instance starting, and waits for it, rather than finding none.
    start_commands(&live.get(), &bound.addresses());
    let shared = Addresses {
        services: BTreeMap::new(),
        ..bound.addresses()
    };
    let google = crate::google::app(live.clone());
    tasks.spawn(serve_one(bound.google, google, stop_rx.clone()));
    let frontdoor = crate::frontdoor::app(live.clone(), None);
    tasks.spawn(serve_per_core(bound.frontdoor, frontdoor, stop_rx.clone()));
    let metadata = crate::metadata::app(live.clone(), None);
    tasks.spawn(serve_one(bound.metadata, metadata, stop_rx.clone()));
    let mut services = bound.services;
    services.adopt(bound.fresh, &live, &mut tasks);
    let state = live.get();
    publish(&state, &shared, &services);

    let mut watcher = reload::Watcher::new(state.config().file.clone(), state.reloads().clone());
    drop(state);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Read each round: a reload may name other files.
        let named = live.get().config().named_files.clone();
        tokio::select! {
            () = &mut shutdown => break,
            Some(result) = tasks.join_next() => {
                // A listener that fails stops frontdoor; one closed by a reload just ends.
                result.map_err(std::io::Error::other)??;
            }
            change = watcher.next_change(&named) => match change {
                Ok(text) => reload::apply(&text, &live, &shared, &mut services, &mut tasks).await,
                Err(why) => reload::refuse(&live.get(), why),
            },
        }
    }

    stop_tx.send_replace(true);
    services.stop_all();
    live.get().supervisor().stop_all().await;
    let drained = tokio::time::timeout(DRAIN, async {
        while let Some(result) = tasks.join_next().await {
            result.map_err(std::io::Error::other)??;
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    match drained {
        Ok(result) => result,
        Err(_) => {
            tracing::warn!(
                seconds = DRAIN.as_secs(),
                "requests still running after shutdown; dropping them"
            );
            Ok(())
        }
    }
}

/// Records where everything listens (for `frontdoor env` and `decisions`) and starts the
/// commands of the generation in force.
fn publish(state: &AppState, shared: &Addresses, services: &Registry) {
    let addresses = Addresses {
        services: services.addresses(state.config()),
        pid: Some(std::process::id()),
        // Absolute: the CLI reads it from wherever it runs.
        config_file: std::path::absolute(&state.config().file).ok(),
        ..shared.clone()
    };
    if let Ok(text) = serde_json::to_string_pretty(&addresses) {
        if let Err(e) = state
            .state_dir()
            .write_file("addresses.json", text.as_bytes())
        {
            tracing::warn!(error = %e, "cannot record the listeners' addresses");
        }
    }
    start_commands(state, &addresses);
}

/// Serves one listener with the limits every listener has (see `accept`).
async fn serve_one(
    listener: TcpListener,
    app: axum::Router,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    accept::serve(listener, app, stop, accept::Limits::default()).await
}

/// Starts (or keeps) the process of every `command` service at its revision in `state`,
/// and stops those of services that are gone.
pub fn start_commands(state: &AppState, addresses: &Addresses) {
    for service in &state.config().services {
        let (crate::config::Upstream::Command(spec), Some(revision), Some(own)) = (
            &service.upstream,
            state.revision(&service.name),
            addresses.services.get(&service.name),
        ) else {
            continue;
        };
        let contract = Contract {
            service: service.name.clone(),
            revision: revision.to_owned(),
            project: state.config().project.id.clone(),
            metadata: own.metadata,
        };
        state.supervisor().run(spec, contract);
    }
    let names: Vec<&str> = state
        .config()
        .services
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    state.supervisor().retain(&names);
}

/// Serves a front-door listener from one single-threaded runtime per core, each accepting
/// on its own copy of the socket. A request, its upstream connection and both their tasks
/// then stay on one thread, with no cross-thread wake-ups: the layout nginx's workers
/// have, and measurably faster for a proxy than one work-stealing runtime (bench/README.md).
async fn serve_per_core(
    listener: TcpListener,
    app: axum::Router,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = listener.into_std()?;
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut threads = Vec::new();
    for n in 0..workers {
        let listener = listener.try_clone()?;
        let (app, stop) = (app.clone(), stop.clone());
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name(format!("frontdoor-{n}"))
            .spawn(move || {
                let result = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .and_then(|rt| {
                        rt.block_on(async move {
                            let listener = TcpListener::from_std(listener)?;
                            serve_one(listener, app, stop).await
                        })
                    });
                let _ = done_tx.send(result);
            })?;
        threads.push(done_rx);
    }
    for done in threads {
        done.await.map_err(std::io::Error::other)??;
    }
    Ok(())
}

/// A server running in the background: the shape tests and embedders use.
pub struct Running {
    pub addresses: Addresses,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Binds and starts serving in a background task.
    pub async fn start(state: AppState) -> Result<Running, BindError> {
        let bound = bind(state.config()).await?;
        let addresses = bound.addresses();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve(bound, Live::new(state), async move {
            let _ = rx.await;
        }));
        Ok(Running {
            addresses,
            stop: Some(tx),
            task,
        })
    }

    /// Stops the server and waits for it, re-raising a panic from inside it.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match (&mut self.task).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(e) => Err(std::io::Error::other(e)),
        }
    }
}
