//! Revision numbers that never go back, as Cloud Run's never do: each service's last
//! number, with a digest of the settings it had, is kept in the state directory
//! (`revisions.json`). A start finds a service whose settings are unchanged at the same
//! revision, and a changed one at the next; before, every start began again at 00001.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::config::{Config, Service};
use crate::keys::StateDir;

pub(super) const FILE: &str = "revisions.json";

/// What is kept of one service's revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Kept {
    pub(super) number: u32,
    /// SHA-256 of the service's settings as frontdoor holds them (their `Debug` form:
    /// every field, in order; a new frontdoor that adds a field starts a new revision).
    pub(super) settings: String,
}

pub(super) fn settings_digest(service: &Service) -> String {
    // Where the settings are kept is no setting: a fold makes no new revision.
    let settings = Service {
        elsewhere: Default::default(),
        ..service.clone()
    };
    let text = format!("{settings:?}");
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        text.as_bytes(),
    ))
}

/// What the state directory keeps; nothing when there is no file, or one this version
/// cannot read (it is rewritten at the next generation).
pub(super) fn read(state_dir: &StateDir) -> BTreeMap<String, Kept> {
    match state_dir.read_file(FILE) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            tracing::warn!(file = FILE, error = %e, "cannot read the kept revision numbers; services start again at revision 1");
            BTreeMap::new()
        }),
        Err(_) => BTreeMap::new(),
    }
}

/// The number `service` has when nothing ran before it in this process: the kept one if
/// its settings are unchanged, the next if they changed, else 1.
pub(super) fn first_number(kept: &BTreeMap<String, Kept>, service: &Service) -> u32 {
    match kept.get(&service.name) {
        Some(k) if k.settings == settings_digest(service) => k.number,
        Some(k) => k.number.saturating_add(1),
        None => 1,
    }
}

/// Keeps each service's number and settings (those of `config` alone: a removed service,
/// like one deleted on Cloud Run, starts again at 1). A failure is logged: the numbers then
/// start again at the next start, as before this file existed.
pub(super) fn write(state_dir: &StateDir, config: &Config, numbers: &BTreeMap<String, u32>) {
    let kept: BTreeMap<&str, Kept> = config
        .services
        .iter()
        .filter_map(|s| {
            let number = *numbers.get(&s.name)?;
            Some((
                s.name.as_str(),
                Kept {
                    number,
                    settings: settings_digest(s),
                },
            ))
        })
        .collect();
    let text = serde_json::to_vec_pretty(&kept).unwrap_or_default();
    if let Err(e) = state_dir.write_file(FILE, &text) {
        tracing::warn!(file = FILE, error = %e, "cannot keep the revision numbers");
    }
}
