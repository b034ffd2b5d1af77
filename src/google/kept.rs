//! What Cloud Tasks' and Cloud Scheduler's APIs made outlives a restart, as Pub/Sub's does
//! (`pubsub::persist`): the queues and jobs they made go into the layer in the state
//! directory (`config::layer`, its `tasks` and `scheduler` parts), each as Google's REST
//! API shows it, a moment after each change, under the same lock as the Admin APIs'
//! changes; and are put back when frontdoor starts. Each API says what it keeps in a
//! [`Part`]. What the file declares is the file's and is not written (an API change to a
//! declared queue or job lasts until the next start), and neither is what runs: tasks and
//! runs start afresh, as Pub/Sub's messages do. Nothing resolves from these parts, so the
//! layer watcher finds the configuration unchanged.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::config::Layer;
use crate::state::{AppState, Live};

/// How often the stores' revisions are looked at: a change is written within this.
const LOOK: Duration = Duration::from_millis(100);
/// How long after a failed write it is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// What could not be put back, by name, with why.
pub(crate) type Refused = Vec<(String, String)>;

/// Each entry `kept` holds, read back by `decode`, or why it cannot be: what `frontdoor
/// fold` writes.
pub(crate) fn read_each<T>(
    kept: &BTreeMap<String, Value>,
    decode: fn(&str, &Value) -> Result<T, String>,
) -> BTreeMap<String, Result<T, String>> {
    kept.iter()
        .map(|(name, value)| (name.clone(), decode(name, value)))
        .collect()
}

/// What `kept` holds that `decode` reads back, to put back; what it cannot, said as left
/// in the layer.
pub(crate) fn decode_each<T>(
    kept: &BTreeMap<String, Value>,
    decode: fn(&str, &Value) -> Result<T, String>,
) -> (Vec<T>, Refused) {
    let mut read = Vec::new();
    let mut refused = Vec::new();
    for (name, value) in kept {
        match decode(name, value) {
            Ok(item) => read.push(item),
            Err(why) => refused.push((
                name.clone(),
                format!("{why}; it is left in changes.json, unused"),
            )),
        }
    }
    (read, refused)
}

/// What one API keeps in the layer.
pub(crate) struct Part {
    /// What it keeps, for the log (`Cloud Tasks queue`).
    pub(crate) what: &'static str,
    /// The store's count of changes to what it keeps.
    pub(crate) revision: fn(&AppState) -> u64,
    /// What the API made, by name, as the layer keeps it.
    pub(crate) encode: fn(&AppState) -> BTreeMap<String, Value>,
    /// Whether an entry kept reads back; one that does not stays in the layer as it is.
    pub(crate) readable: fn(&str, &Value) -> bool,
    /// Its part of the layer.
    pub(crate) of: fn(&mut Layer) -> &mut BTreeMap<String, Value>,
    /// Puts back what the layer keeps; what cannot be put back, by name, with why.
    pub(crate) restore: fn(&AppState, &BTreeMap<String, Value>) -> Refused,
}

fn parts() -> [&'static Part; 2] {
    [&super::tasks::KEPT, &super::scheduler::KEPT]
}

/// Puts back what the APIs made before this start; what cannot be read back is said, and
/// left in the layer.
pub(crate) fn restore(state: &AppState) {
    let mut layer = match Layer::read(state.state_dir().path()) {
        Ok(layer) => layer,
        // Said when the configuration was loaded: it could not start without it.
        Err(_) => return,
    };
    for part in parts() {
        for (name, why) in (part.restore)(state, (part.of)(&mut layer)) {
            tracing::warn!(
                name,
                reason = why,
                file = crate::config::layer::FILE,
                "a {} kept in the state directory is not put back",
                part.what
            );
        }
    }
}

/// Writes what the APIs made into the layer each time it changes, for as long as
/// frontdoor runs.
pub(crate) async fn keep(live: Live) {
    let mut written: [Option<u64>; 2] = [None; 2];
    // A write that failed is tried again, not at every look.
    let mut retry_at = [tokio::time::Instant::now(); 2];
    loop {
        tokio::time::sleep(LOOK).await;
        let state = live.get();
        let parts = parts()
            .into_iter()
            .zip(written.iter_mut().zip(retry_at.iter_mut()));
        for (part, (written, retry_at)) in parts {
            let revision = (part.revision)(&state);
            if *written == Some(revision) || tokio::time::Instant::now() < *retry_at {
                continue;
            }
            match write(&state, part).await {
                Ok(()) => *written = Some(revision),
                Err(why) => {
                    tracing::warn!(reason = why, "the API's {}s were not kept", part.what);
                    *retry_at = tokio::time::Instant::now() + RETRY;
                }
            }
        }
    }
}

/// Writes every part now (at shutdown).
pub(crate) async fn write_all(state: &AppState) {
    for part in parts() {
        if let Err(why) = write(state, part).await {
            tracing::warn!(reason = why, "the API's {}s were not kept", part.what);
        }
    }
}

/// Writes what the API made into its part of the layer now, if the layer says otherwise.
/// The entries of the layer that cannot be read back stay, unless the API has made one of
/// that name.
async fn write(state: &AppState, part: &'static Part) -> Result<(), String> {
    let _serial = state.changes().begin().await;
    // Taken under the lock: what is written is no older than any change before it.
    let mut made = (part.encode)(state);
    let dir = state.state_dir().clone();
    tokio::task::spawn_blocking(move || {
        let mut layer = Layer::read(dir.path()).map_err(|e| e.to_string())?;
        let kept = (part.of)(&mut layer);
        for (name, value) in kept.iter() {
            if !(part.readable)(name, value) && !made.contains_key(name) {
                made.insert(name.clone(), value.clone());
            }
        }
        if *kept == made {
            return Ok(());
        }
        *kept = made;
        if layer.is_empty() {
            return match std::fs::remove_file(dir.path().join(crate::config::layer::FILE)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            };
        }
        let text = layer.to_json()?;
        dir.write_file(crate::config::layer::FILE, text.as_bytes())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}
