//! Live reconfiguration: the configuration file is watched (`Watcher`), and a change that
//! resolves is applied whole (`apply`: new listeners bound, revisions bumped, commands
//! started, the generation swapped in); one that does not is refused whole (`refuse`), the
//! running configuration stays, and the status says why.
//!
//! The file is polled rather than watched through inotify: editors replace, truncate or
//! rewrite files in every way there is, and a poll that waits for the content to settle
//! treats them all alike (a half-written file that fails to parse is simply tried again
//! once the write completes).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use super::Addresses;
use super::listeners::Registry;
use crate::state::{AppState, Live, Reloads};

const POLL: Duration = Duration::from_millis(250);
/// The content must be the same this much later to count as written.
const SETTLE: Duration = Duration::from_millis(150);

pub(super) struct Watcher {
    path: PathBuf,
    /// Where each read is counted (`ReloadStatus::checks`).
    status: Arc<Reloads>,
    /// The content last applied or tried.
    seen: Option<Snapshot>,
    /// Why the file could not be read, when that was last reported: said once, not every
    /// poll.
    unreadable: Option<String>,
}

impl Watcher {
    /// Nothing counts as seen at first: the file may have changed between loading the
    /// configuration and starting to watch, and a first read that resolves to the
    /// configuration in force is recognised as no change.
    pub(super) fn new(path: PathBuf, status: Arc<Reloads>) -> Watcher {
        Watcher {
            path,
            status,
            seen: None,
            unreadable: None,
        }
    }

    /// The configuration file's content once it, or a file it names (`named`: a Knative
    /// export, a JWKS), has settled different from what was seen; or why the file can no
    /// longer be read (removed, not a regular file, too large: said once per cause).
    /// Cancel-safe: nothing is recorded until it returns.
    pub(super) async fn next_change(&mut self, named: &[PathBuf]) -> Result<Vec<u8>, String> {
        loop {
            tokio::time::sleep(POLL).await;
            let first = match self.read(named).await {
                Ok(bytes) => bytes,
                Err(why) => {
                    if self.unreadable.as_ref() == Some(&why) {
                        continue;
                    }
                    // Gone for a moment, as an editor saving by rename leaves it? Look again.
                    tokio::time::sleep(SETTLE).await;
                    if let Err(again) = self.read(named).await {
                        self.unreadable = Some(again.clone());
                        // Whatever comes back next is news, even what was there before.
                        self.seen = None;
                        return Err(again);
                    }
                    continue;
                }
            };
            self.unreadable = None;
            if self.seen.as_ref() == Some(&first) {
                continue;
            }
            tokio::time::sleep(SETTLE).await;
            if self.read(named).await.ok().as_ref() == Some(&first) {
                let main = first.main.clone();
                self.seen = Some(first);
                return Ok(main);
            }
        }
    }

    /// The files, read off the runtime and capped in size (`config::read_capped`), and the
    /// read counted. A named file that cannot be read is part of the snapshot, not an
    /// error here: resolving blames it on the field that names it.
    async fn read(&self, named: &[PathBuf]) -> Result<Snapshot, String> {
        let path = self.path.clone();
        let named = named.to_vec();
        let read = tokio::task::spawn_blocking(move || {
            let main = crate::config::read_capped(&path)?;
            let named = named
                .iter()
                .map(|p| crate::config::read_capped(p).ok())
                .collect();
            Ok::<_, std::io::Error>(Snapshot { main, named })
        })
        .await;
        self.status.checked();
        read.map_err(|e| e.to_string())?.map_err(|e| {
            let why = if e.kind() == std::io::ErrorKind::NotFound {
                "it was removed".to_owned()
            } else {
                e.to_string()
            };
            format!(
                "{}: cannot read the configuration file: {why}; the configuration in force stays",
                self.path.display()
            )
        })
    }
}

/// What the watcher compares: the configuration file's bytes and each named file's.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Snapshot {
    main: Vec<u8>,
    named: Vec<Option<Vec<u8>>>,
}

/// Applies a changed configuration whole, or refuses it whole. The changes made through
/// the Admin APIs (`config::layer`, read from the state directory) apply over the file.
pub(super) async fn apply(
    text: &[u8],
    live: &Live,
    shared: &Addresses,
    services: &mut Registry,
    tasks: &mut JoinSet<std::io::Result<()>>,
) {
    let current = live.get();
    let file = current.config().file.clone();
    let dir = current.state_dir().path().to_owned();
    let digest = hex::encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text));
    let text = text.to_vec();
    let resolved = async {
        let text = String::from_utf8(text)
            .map_err(|_| format!("{}: the file is not UTF-8", file.display()))?;
        // Off the runtime: resolving reads the files the configuration names.
        let path = file.clone();
        tokio::task::spawn_blocking(move || {
            let layer = crate::config::Layer::read(&dir)?;
            crate::config::parse_layered(&text, &path, &layer)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }
    .await;
    let result = match resolved {
        Ok(config) => put_in_force(config, live, shared, services, tasks).await,
        Err(error) => Err(error),
    };
    record(&current, result);
    current.reloads().handled(digest);
}

/// Puts a change made through the Admin APIs in force, as a saved file would be; the
/// generation it made (or the one in force, when it changed nothing that matters), or why
/// not.
pub(super) async fn apply_change(
    config: crate::config::Config,
    live: &Live,
    shared: &Addresses,
    services: &mut Registry,
    tasks: &mut JoinSet<std::io::Result<()>>,
) -> Result<u64, String> {
    let current = live.get();
    let result = put_in_force(config, live, shared, services, tasks).await;
    let answer = match &result {
        Ok(Some(next)) => Ok(next.generation()),
        Ok(None) => Ok(current.generation()),
        Err(e) => Err(e.clone()),
    };
    record(&current, result);
    answer
}

async fn put_in_force(
    config: crate::config::Config,
    live: &Live,
    shared: &Addresses,
    services: &mut Registry,
    tasks: &mut JoinSet<std::io::Result<()>>,
) -> Result<Option<AppState>, String> {
    let current = live.get();
    let file = &current.config().file;
    if config == *current.config() && config.same_homes(current.config()) {
        // Saved without a change that matters (a comment, spacing): nothing to do. (A
        // fold changes where values are kept, which the ranked fixes say: a generation.)
        return Ok(None);
    }
    config
        .check_exposure(current.binds_all_interfaces())
        .map_err(|e| e.to_string())?;
    if config.listen != current.config().listen {
        return Err(format!(
            "{}: listen: the shared listeners' addresses changed; that takes a restart (the rest of the change was not applied either)",
            file.display()
        ));
    }
    let fresh = services
        .bind_missing(&config)
        .await
        .map_err(|e| format!("{e}: {}", e.source))?;
    let next = current.reconfigured(config);
    services.adopt(fresh, live, tasks);
    // Commands first, so no request under the new generation finds its instance missing.
    super::publish(&next, shared, services);
    live.set(next.clone());
    Ok(Some(next))
}

fn record(current: &AppState, result: Result<Option<AppState>, String>) {
    let now = current.now();
    match result {
        Ok(None) => current.reloads().unchanged(now),
        Ok(Some(next)) => {
            current.reloads().applied(next.generation(), now);
            let revisions: Vec<&str> = next
                .config()
                .services
                .iter()
                .filter_map(|s| next.revision(&s.name))
                .collect();
            tracing::info!(generation = next.generation(), revisions = %revisions.join(", "), "configuration reloaded");
            if next.config().enforcement == crate::config::Enforcement::Audit {
                tracing::warn!(
                    "AUDIT MODE (enforcement: audit): nothing is enforced; every request passes the front door, and what would be refused is logged as AUDIT … would deny"
                );
            }
        }
        Err(error) => refuse(current, error),
    }
}

/// Records a change that cannot be applied (or a file that cannot be read): the
/// configuration in force stays, and the status and every refusal say why.
pub(super) fn refuse(current: &AppState, error: String) {
    tracing::error!(%error, "configuration change refused; the running configuration stays");
    current.reloads().refused(error, current.now());
}
