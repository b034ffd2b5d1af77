//! Every listener a service has (its front door, its metadata server), kept by service name
//! so that a reload can open the ones a new configuration asks for and move those whose
//! address changed. A listener whose service a reload removed stays open and answers 404,
//! as Cloud Run does for a deleted service, until frontdoor stops.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::{serve_one, serve_per_core};
use crate::config::{Config, Service};
use crate::state::Live;

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for {what}")]
pub struct BindError {
    what: String,
    addr: SocketAddr,
    pub(super) source: std::io::Error,
}

/// Which ports the listeners take: the configuration's, or ones the OS picks (`serve
/// --ephemeral-ports`, for servers of one configuration side by side).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ports {
    AsConfigured,
    Ephemeral,
}

impl Ports {
    /// Where to bind for a listener the configuration puts at `addr`.
    fn at(self, addr: SocketAddr) -> SocketAddr {
        match self {
            Ports::AsConfigured => addr,
            Ports::Ephemeral => SocketAddr::new(addr.ip(), 0),
        }
    }
}

pub(super) async fn listen(
    addr: SocketAddr,
    what: &str,
    ports: Ports,
) -> Result<TcpListener, BindError> {
    let addr = ports.at(addr);
    TcpListener::bind(addr).await.map_err(|source| BindError {
        what: what.to_owned(),
        addr,
        source,
    })
}

pub(super) fn local(listener: &TcpListener) -> SocketAddr {
    listener
        .local_addr()
        .expect("a bound listener has an address")
}

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ServiceAddresses {
    /// The service's dedicated front-door listener, if it has one.
    pub listen: Option<SocketAddr>,
    /// The service's own metadata server.
    pub metadata: SocketAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    FrontDoor,
    Metadata,
}

impl Kind {
    /// The address `service` asks for, if it has a listener of this kind: every service has
    /// a metadata server (on a port the OS picks unless set); a front door only if `listen`.
    fn wanted(self, service: &Service) -> Option<SocketAddr> {
        match self {
            Kind::FrontDoor => service.listen,
            Kind::Metadata => Some(
                service
                    .metadata
                    .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
            ),
        }
    }

    fn what(self, service: &str) -> String {
        match self {
            Kind::FrontDoor => format!("service `{service}`'s front door"),
            Kind::Metadata => format!("service `{service}`'s metadata server"),
        }
    }
}

/// A listener bound but not yet serving.
pub(super) struct Fresh {
    name: String,
    kind: Kind,
    wanted: SocketAddr,
    listener: TcpListener,
}

impl Fresh {
    /// (service, kind, the address it actually has).
    pub(super) fn service_address(&self) -> (String, Kind, SocketAddr) {
        (self.name.clone(), self.kind, local(&self.listener))
    }
}

struct Entry {
    wanted: SocketAddr,
    actual: SocketAddr,
    stop: watch::Sender<bool>,
}

pub(super) struct Registry {
    entries: HashMap<(String, Kind), Entry>,
    /// Kept for every reload's new listeners. `wanted` stays the configuration's address,
    /// so that a reload moves a listener only when the configuration moved it.
    ports: Ports,
}

impl Registry {
    pub(super) fn new(ports: Ports) -> Registry {
        Registry {
            entries: HashMap::new(),
            ports,
        }
    }

    /// Binds what `config` needs that is not open at the address it asks for. Nothing is
    /// served yet, so a failure leaves everything as it was.
    pub(super) async fn bind_missing(&self, config: &Config) -> Result<Vec<Fresh>, BindError> {
        let mut fresh = Vec::new();
        for service in &config.services {
            for kind in [Kind::FrontDoor, Kind::Metadata] {
                let Some(wanted) = kind.wanted(service) else {
                    continue;
                };
                let open = self.entries.get(&(service.name.clone(), kind));
                if open.is_some_and(|e| e.wanted == wanted) {
                    continue;
                }
                let listener = listen(wanted, &kind.what(&service.name), self.ports).await?;
                fresh.push(Fresh {
                    name: service.name.clone(),
                    kind,
                    wanted,
                    listener,
                });
            }
        }
        Ok(fresh)
    }

    /// Serves `fresh` listeners; an older listener of the same service and kind is closed
    /// (gracefully: requests on it finish).
    pub(super) fn adopt(
        &mut self,
        fresh: Vec<Fresh>,
        live: &Live,
        tasks: &mut JoinSet<std::io::Result<()>>,
    ) {
        for f in fresh {
            let (stop, stop_rx) = watch::channel(false);
            let actual = local(&f.listener);
            let name = Some(f.name.clone());
            match f.kind {
                Kind::FrontDoor => {
                    tasks.spawn(serve_per_core(
                        f.listener,
                        crate::frontdoor::app(live.clone(), name),
                        stop_rx,
                    ));
                }
                Kind::Metadata => {
                    tasks.spawn(serve_one(
                        f.listener,
                        crate::egress::app(
                            crate::metadata::app(live.clone(), name.clone()),
                            live.clone(),
                            name,
                        ),
                        stop_rx,
                    ));
                }
            }
            let entry = Entry {
                wanted: f.wanted,
                actual,
                stop,
            };
            if let Some(old) = self.entries.insert((f.name, f.kind), entry) {
                old.stop.send_replace(true);
            }
        }
    }

    /// The addresses of the services in `config`.
    pub(super) fn addresses(&self, config: &Config) -> BTreeMap<String, ServiceAddresses> {
        let at = |name: &str, kind| self.entries.get(&(name.to_owned(), kind)).map(|e| e.actual);
        config
            .services
            .iter()
            .filter_map(|s| {
                let metadata = at(&s.name, Kind::Metadata)?;
                let listen = s.listen.and(at(&s.name, Kind::FrontDoor));
                Some((s.name.clone(), ServiceAddresses { listen, metadata }))
            })
            .collect()
    }

    pub(super) fn stop_all(&self) {
        for e in self.entries.values() {
            e.stop.send_replace(true);
        }
    }
}
