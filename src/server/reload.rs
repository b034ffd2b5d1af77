//! Live reconfiguration: the configuration file is watched, and a change that resolves is
//! applied whole; one that does not is refused whole, the running configuration stays, and
//! the status says why.
//!
//! The file is polled rather than watched through inotify: editors replace, truncate or
//! rewrite files in every way there is, and a poll that waits for the content to settle
//! treats them all alike (a half-written file that fails to parse is simply tried again
//! once the write completes).

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

const POLL: Duration = Duration::from_millis(250);
/// The content must be the same this much later to count as written.
const SETTLE: Duration = Duration::from_millis(150);

/// What `GET /frontdoor/v1/status` reports about reloads.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ReloadStatus {
    /// 1 at start, one more for every configuration applied.
    pub generation: u64,
    pub last: Option<LastReload>,
    /// Changes applied and refused since start, for `/metrics`.
    #[serde(skip)]
    pub applied: u64,
    #[serde(skip)]
    pub refused: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastReload {
    /// Seconds since the Unix epoch.
    pub time: i64,
    pub ok: bool,
    /// Why it was refused: the file, the field and the reason.
    pub error: Option<String>,
}

pub(super) struct Watcher {
    path: PathBuf,
    /// The content last applied or tried.
    seen: Option<Vec<u8>>,
}

impl Watcher {
    /// Nothing counts as seen at first: the file may have changed between loading the
    /// configuration and starting to watch, and a first read that resolves to the
    /// configuration in force is recognised as no change.
    pub(super) fn new(path: PathBuf) -> Watcher {
        Watcher { path, seen: None }
    }

    /// The next settled content that differs from what was seen. Cancel-safe: nothing is
    /// recorded until it returns.
    pub(super) async fn next_change(&mut self) -> Vec<u8> {
        loop {
            tokio::time::sleep(POLL).await;
            let Ok(first) = tokio::fs::read(&self.path).await else {
                continue;
            };
            if self.seen.as_ref() == Some(&first) {
                continue;
            }
            tokio::time::sleep(SETTLE).await;
            if tokio::fs::read(&self.path).await.ok().as_ref() == Some(&first) {
                self.seen = Some(first.clone());
                return first;
            }
        }
    }
}
