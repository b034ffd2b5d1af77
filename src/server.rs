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
use crate::state::AppState;

/// How long in-flight requests may run on after shutdown is asked for.
const DRAIN: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {what}")]
pub struct BindError {
    what: String,
    addr: SocketAddr,
    source: std::io::Error,
}

/// Where each listener actually is (ports chosen by the OS resolved).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Addresses {
    pub frontdoor: SocketAddr,
    pub google: SocketAddr,
    /// Service name → its own listeners.
    pub services: BTreeMap<String, ServiceAddresses>,
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ServiceAddresses {
    /// The service's dedicated front-door listener, if it has one.
    pub listen: Option<SocketAddr>,
}

pub struct Bound {
    frontdoor: TcpListener,
    google: TcpListener,
    /// (index into `config.services`, listener) for services with their own port.
    services: Vec<(usize, String, TcpListener)>,
}

async fn listen(addr: SocketAddr, what: &str) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr).await.map_err(|source| BindError {
        what: what.to_owned(),
        addr,
        source,
    })
}

/// Binds every listener the configuration asks for.
pub async fn bind(config: &Config) -> Result<Bound, BindError> {
    let mut services = Vec::new();
    for (i, s) in config.services.iter().enumerate() {
        if let Some(addr) = s.listen {
            let what = format!("service `{}`'s front door", s.name);
            services.push((i, s.name.clone(), listen(addr, &what).await?));
        }
    }
    Ok(Bound {
        frontdoor: listen(config.listen.frontdoor, "the front door").await?,
        google: listen(config.listen.google, "the google APIs listener").await?,
        services,
    })
}

fn local(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

impl Bound {
    pub fn addresses(&self) -> Addresses {
        let services = self
            .services
            .iter()
            .map(|(_, name, l)| {
                (
                    name.clone(),
                    ServiceAddresses {
                        listen: Some(local(l)),
                    },
                )
            })
            .collect();
        Addresses {
            frontdoor: local(&self.frontdoor),
            google: local(&self.google),
            services,
        }
    }
}

/// Serves every bound listener until `shutdown` completes, then lets in-flight requests
/// finish for up to `DRAIN`.
pub async fn serve(
    bound: Bound,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut tasks = JoinSet::new();
    let google = crate::google::app(state.clone());
    tasks.spawn(serve_one(bound.google, google, stop_rx.clone()));
    let frontdoor = crate::frontdoor::app(state.clone(), None);
    tasks.spawn(serve_one(bound.frontdoor, frontdoor, stop_rx.clone()));
    for (index, _, listener) in bound.services {
        let app = crate::frontdoor::app(state.clone(), Some(index));
        tasks.spawn(serve_one(listener, app, stop_rx.clone()));
    }

    tokio::select! {
        () = shutdown => {}
        Some(result) = tasks.join_next() => {
            // A listener stopped by itself: that is an error worth stopping for.
            result.map_err(std::io::Error::other)??;
        }
    }
    let _ = stop_tx.send(true);
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

async fn serve_one(
    listener: TcpListener,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let service = app.into_make_service_with_connect_info::<SocketAddr>();
    axum::serve(listener, service)
        .with_graceful_shutdown(async move {
            let _ = stop.wait_for(|s| *s).await;
        })
        .await
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
        let bound = bind(&state.config).await?;
        let addresses = bound.addresses();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(serve(bound, state, async move {
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
