//! Live reconfiguration: the configuration file is watched, and a change that resolves is
//! applied whole; one that does not is refused whole, the running configuration stays, and
//! the status says why.
//!
//! The file is polled rather than watched through inotify: editors replace, truncate or
//! rewrite files in every way there is, and a poll that waits for the content to settle
//! treats them all alike (a half-written file that fails to parse is simply tried again
//! once the write completes).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::state::ReloadStatus;

const POLL: Duration = Duration::from_millis(250);
/// The content must be the same this much later to count as written.
const SETTLE: Duration = Duration::from_millis(150);

pub(super) struct Watcher {
    path: PathBuf,
    /// Where each read is counted (`ReloadStatus::checks`).
    status: Arc<Mutex<ReloadStatus>>,
    /// The content last applied or tried.
    seen: Option<Vec<u8>>,
    /// Why the file could not be read, when that was last reported: said once, not every
    /// poll.
    unreadable: Option<String>,
}

impl Watcher {
    /// Nothing counts as seen at first: the file may have changed between loading the
    /// configuration and starting to watch, and a first read that resolves to the
    /// configuration in force is recognised as no change.
    pub(super) fn new(path: PathBuf, status: Arc<Mutex<ReloadStatus>>) -> Watcher {
        Watcher {
            path,
            status,
            seen: None,
            unreadable: None,
        }
    }

    /// The next settled content that differs from what was seen, or why the file can no
    /// longer be read (removed, not a regular file, too large: said once per cause).
    /// Cancel-safe: nothing is recorded until it returns.
    pub(super) async fn next_change(&mut self) -> Result<Vec<u8>, String> {
        loop {
            tokio::time::sleep(POLL).await;
            let first = match self.read().await {
                Ok(bytes) => bytes,
                Err(why) => {
                    if self.unreadable.as_ref() == Some(&why) {
                        continue;
                    }
                    // Gone for a moment, as an editor saving by rename leaves it? Look again.
                    tokio::time::sleep(SETTLE).await;
                    if let Err(again) = self.read().await {
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
            if self.read().await.ok().as_ref() == Some(&first) {
                self.seen = Some(first.clone());
                return Ok(first);
            }
        }
    }

    /// The file, read off the runtime and capped in size (`config::read_capped`), and the
    /// read counted.
    async fn read(&self) -> Result<Vec<u8>, String> {
        let path = self.path.clone();
        let read = tokio::task::spawn_blocking(move || crate::config::read_capped(&path)).await;
        self.status.lock().unwrap_or_else(|p| p.into_inner()).checks += 1;
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
