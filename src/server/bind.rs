//! Binding every listener before anything serves: a port conflict fails start-up whole,
//! with the listener named; and where each listener ended up.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use serde::Serialize;
use tokio::net::TcpListener;

use super::listeners::{self, BindError, Ports, Registry, ServiceAddresses, listen, local};
use crate::config::Config;

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
    /// The state directory, absolute: the local CA's files are in it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_dir: Option<std::path::PathBuf>,
}

pub struct Bound {
    pub(super) frontdoor: TcpListener,
    pub(super) google: TcpListener,
    pub(super) metadata: TcpListener,
    pub(super) services: Registry,
    pub(super) fresh: Vec<listeners::Fresh>,
}

/// Binds every listener the configuration asks for. Every service gets its own metadata
/// listener: at its `metadata` address, or on a port the OS picks (every listener does with
/// `Ports::Ephemeral`).
pub async fn bind(config: &Config, ports: Ports) -> Result<Bound, BindError> {
    let services = Registry::new(ports);
    let fresh = services.bind_missing(config).await?;
    Ok(Bound {
        frontdoor: listen(config.listen.frontdoor, "the front door", ports).await?,
        google: listen(config.listen.google, "the google APIs listener", ports).await?,
        metadata: listen(config.listen.metadata, "the default metadata server", ports).await?,
        services,
        fresh,
    })
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
            state_dir: None,
        }
    }
}
