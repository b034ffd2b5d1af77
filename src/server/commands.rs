//! The processes of `command` services, started to match the generation in force.

use super::Addresses;
use crate::state::AppState;
use crate::upstream::supervisor::Contract;

/// Starts (or keeps) the process of every `command` service at its revision in `state`,
/// and stops those of services that are gone.
pub fn start_commands(state: &AppState, addresses: &Addresses) {
    // Its environment names the local CA's files: `serve` made them before this runs.
    let state_dir = std::path::absolute(state.state_dir().path())
        .unwrap_or_else(|_| state.state_dir().path().to_owned());
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
            region: state.config().project.region.clone(),
            metadata: own.metadata,
            google: addresses.google,
            state_dir: state_dir.clone(),
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
