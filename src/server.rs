//! Runs frontdoor: binds every listener first (`bind`), then serves each through `accept`
//! (the front door on one runtime per core, `per_core`), keeps the command services'
//! processes in step (`commands`) and applies changes to the configuration (`reload`),
//! until shutdown.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

mod accept;
mod bind;
mod commands;
mod listeners;
mod per_core;
mod reload;

pub use bind::{Addresses, Bound, bind};
pub use commands::start_commands;
use listeners::Registry;
pub use listeners::{BindError, Ports, ServiceAddresses};
use per_core::serve_per_core;

use crate::state::{AppState, Live};

/// How long in-flight requests may run on after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(10);

/// The google listener's app: Google's APIs, and frontdoor's own surfaces (`ops`) beside
/// them, each mounted once.
pub fn google_listener(live: Live) -> axum::Router {
    crate::google::app(live.clone()).merge(crate::ops::app(live))
}

/// Serves every bound listener until `shutdown` completes, applying changes to the
/// configuration file as they are saved; then lets in-flight requests finish for up to
/// `DRAIN`.
pub async fn serve(
    bound: Bound,
    live: Live,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The local CA's files exist before any client is pointed at them. Loading or making
    // them is file I/O and key generation: off the runtime's threads, once, so that every
    // later `ca()` (each egress proxy) finds it made.
    let state = live.get();
    let ca = tokio::task::spawn_blocking(move || state.ca().map(drop)).await;
    if let Err(e) = ca
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()))
    {
        tracing::error!(error = %e, "cannot load or make the local CA; the egress proxy will refuse TLS hosts");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    // Commands first: a request that arrives the moment a listener serves finds its
    // instance starting, and waits for it, rather than finding none.
    start_commands(&live.get(), &bound.addresses());
    let shared = Addresses {
        services: BTreeMap::new(),
        ..bound.addresses()
    };
    // Connected before any listener serves: an Admin API change always goes through this
    // loop (new listeners bound, commands started), never around it.
    let mut changes = live.get().changes().connect();
    // What Pub/Sub's API made before this start is back before anyone can ask, and kept
    // from now on.
    crate::google::pubsub::persist::restore(&live.get());
    // Cloud Tasks' queues and Cloud Scheduler's jobs the same way.
    crate::google::kept::restore(&live.get());
    // Stopped at shutdown, before the last writes: they would otherwise outlive this
    // server, holding its state.
    let keepers = [
        tokio::spawn(crate::google::pubsub::persist::keep(live.clone())),
        tokio::spawn(crate::google::kept::keep(live.clone())),
    ];
    // Pub/Sub's push deliveries, for as long as the process runs.
    crate::managed::start(&live);
    let google = google_listener(live.clone());
    tasks.spawn(serve_one(bound.google, google, stop_rx.clone()));
    let frontdoor = crate::frontdoor::app(live.clone(), None);
    tasks.spawn(serve_per_core(bound.frontdoor, frontdoor, stop_rx.clone()));
    let metadata = crate::egress::app(crate::metadata::app(live.clone(), None), live.clone(), None);
    tasks.spawn(serve_one(bound.metadata, metadata, stop_rx.clone()));
    let mut services = bound.services;
    services.adopt(bound.fresh, &live, &mut tasks);
    let state = live.get();
    publish(&state, &shared, &services);

    let mut watcher = reload::Watcher::new(state.config().file.clone(), state.reloads().clone());
    let layer_file = state.state_dir().path().join(crate::config::layer::FILE);
    drop(state);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // Read each round: a reload may name other files. The Admin APIs' layer is watched
        // too, so that removing it takes effect.
        let mut named = live.get().config().named_files.clone();
        named.push(layer_file.clone());
        tokio::select! {
            Some((config, reply)) = changes.recv() => {
                let result = reload::apply_change(config, &live, &shared, &mut services, &mut tasks).await;
                let _ = reply.send(result);
            }
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
    // An Admin API change still waiting for this loop is told frontdoor is stopping (and
    // lets go of the change lock the last write below takes).
    drop(changes);
    live.get().close_streams();
    services.stop_all();
    live.get().supervisor().stop_all().await;
    let drained = tokio::time::timeout(DRAIN, async {
        while let Some(result) = tasks.join_next().await {
            result.map_err(std::io::Error::other)??;
        }
        Ok::<(), std::io::Error>(())
    })
    .await;
    for keeper in &keepers {
        keeper.abort();
    }
    // What Pub/Sub's API changed last, the requests drained included, may not have settled
    // into the layer yet. Bounded: a stop never waits on it for long.
    let kept =
        tokio::time::timeout(DRAIN, crate::google::pubsub::persist::write(&live.get())).await;
    match kept {
        Ok(Ok(())) => {}
        Ok(Err(why)) => tracing::warn!(
            reason = why,
            "Pub/Sub's topics and subscriptions were not kept"
        ),
        Err(_) => tracing::warn!(
            "Pub/Sub's topics and subscriptions were not kept: the state directory did not answer"
        ),
    }
    if tokio::time::timeout(DRAIN, crate::google::kept::write_all(&live.get()))
        .await
        .is_err()
    {
        tracing::warn!(
            "Cloud Tasks' queues and Cloud Scheduler's jobs were not kept: the state directory did not answer"
        );
    }
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
        state_dir: std::path::absolute(state.state_dir().path()).ok(),
        ..shared.clone()
    };
    if let Ok(text) = serde_json::to_string_pretty(&addresses)
        && let Err(e) = state
            .state_dir()
            .write_file("addresses.json", text.as_bytes())
    {
        tracing::warn!(error = %e, "cannot record the listeners' addresses");
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

/// A server running in the background: the shape tests and embedders use.
pub struct Running {
    pub addresses: Addresses,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// Binds and starts serving in a background task.
    pub async fn start(state: AppState) -> Result<Running, BindError> {
        let bound = bind(state.config(), Ports::AsConfigured).await?;
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
