//! The processes of `command` services, started to match the generation in force.

use super::Addresses;
use crate::state::AppState;
use crate::upstream::supervisor::Contract;

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
