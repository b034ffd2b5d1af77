//! Which running server a CLI command talks to (issue 9): the one named by `--state-dir`
//! or `FRONTDOOR_STATE_DIR`; else the one beside an explicit `--config`; else the nearest
//! `.frontdoor/addresses.json` from the current directory up; else the newest of the servers
//! this user started that still runs (each notes its state directory under
//! `$XDG_STATE_HOME/frontdoor/servers/`, so one stopping never hides another). A record
//! whose process is gone or whose port is closed is stale: it is reported, never used.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::keys::StateDir;
use crate::server::Addresses;

use super::ConfigArgs;

const RECORD: &str = "addresses.json";

#[derive(Debug, thiserror::Error)]
pub(crate) enum LocateError {
    #[error("no running frontdoor found; looked for {RECORD} in {}", looked(.0))]
    NotFound(Vec<String>),
    #[error(
        "the frontdoor recorded in {} is not running ({why}); start it with `frontdoor serve`{}",
        .file.display(),
        others(.looked)
    )]
    Stale {
        file: PathBuf,
        why: String,
        looked: Vec<String>,
    },
    #[error("cannot read {}", .0.display())]
    Unreadable(PathBuf, #[source] anyhow::Error),
}

fn looked(places: &[String]) -> String {
    places.join("; ")
}

fn others(places: &[String]) -> String {
    if places.len() > 1 {
        format!(" (looked in {})", looked(places))
    } else {
        String::new()
    }
}

/// Where this user's servers note their state directories, one file each:
/// `$XDG_STATE_HOME/frontdoor/servers/`, else `~/.local/state/frontdoor/servers/`.
pub(crate) fn notes_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("frontdoor/servers"))
}

/// The note of the server serving from `state_dir` (named by a digest of its absolute path).
fn note_of(state_dir: &Path) -> Option<PathBuf> {
    let dir = std::path::absolute(state_dir).ok()?;
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        dir.as_os_str().as_encoded_bytes(),
    );
    Some(notes_dir()?.join(&hex::encode(digest.as_ref())[..16]))
}

/// Notes `state_dir` as one of this user's running servers. Best effort: the server runs
/// without it.
pub(crate) fn remember(state_dir: &Path) {
    let (Some(note), Ok(dir)) = (note_of(state_dir), std::path::absolute(state_dir)) else {
        return;
    };
    let Some(parent) = note.parent() else {
        return;
    };
    let _ = std::fs::create_dir_all(parent);
    // Whole or not at all (a temporary file renamed), so that a CLI reading it meanwhile
    // never sees it empty; the path's own bytes, whatever they are.
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut tmp = tempfile::NamedTempFile::new_in(parent)?;
        tmp.write_all(dir.as_os_str().as_encoded_bytes())?;
        tmp.persist(&note).map_err(|e| e.error)?;
        Ok(())
    };
    let _ = write();
}

/// On a clean stop: removes the server's record and its note.
pub(crate) fn forget(state_dir: &StateDir) {
    let _ = std::fs::remove_file(state_dir.path().join(RECORD));
    if let Some(note) = note_of(state_dir.path()) {
        let _ = std::fs::remove_file(note);
    }
}

/// The noted servers' state directories, newest note first: the newest [`MAX_NOTES`] of
/// the first [`MAX_ENTRIES`] entries (the directory is this user's, but a killed server's
/// note stays, and a crash-looping script could pile them up). A note that is not an
/// absolute path is not one frontdoor wrote, and is passed over.
fn noted() -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let Some(dir) = notes_dir() else {
        return Vec::new();
    };
    let mut notes: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .take(MAX_ENTRIES)
        // A dot file is a note being written (its temporary name), not a note.
        .filter(|entry| !entry.file_name().as_encoded_bytes().starts_with(b"."))
        .filter_map(|entry| Some((entry.metadata().ok()?.modified().ok()?, entry.path())))
        .collect();
    notes.sort_by_key(|(modified, _)| std::cmp::Reverse(*modified));
    notes
        .into_iter()
        .take(MAX_NOTES)
        .filter_map(|(_, note)| {
            let bytes = std::fs::read(note).ok()?;
            let path = PathBuf::from(std::ffi::OsStr::from_bytes(&bytes));
            path.is_absolute().then_some(path)
        })
        .collect()
}

const MAX_NOTES: usize = 64;
const MAX_ENTRIES: usize = 4096;

/// The server serving from `dir` now, if its record names one that runs.
pub(crate) fn live_server(dir: &StateDir) -> Option<Addresses> {
    check(dir).ok().flatten().and_then(Result::ok)
}

/// The running server the command should talk to, as it recorded itself.
pub(crate) fn running(args: &ConfigArgs) -> Result<Addresses, LocateError> {
    let explicit = match (&args.state_dir, &args.config) {
        (Some(dir), _) => Some((
            StateDir::new(dir),
            "the state directory given (--state-dir or FRONTDOOR_STATE_DIR)",
        )),
        (None, Some(config)) => Some((StateDir::beside(config), "beside the --config given")),
        (None, None) => None,
    };
    if let Some((dir, how)) = explicit {
        let place = format!("{} ({how})", dir.path().display());
        return match check(&dir)? {
            Some(Ok(addresses)) => Ok(addresses),
            Some(Err(why)) => Err(LocateError::Stale {
                file: dir.path().join(RECORD),
                why,
                looked: vec![place],
            }),
            None => Err(LocateError::NotFound(vec![place])),
        };
    }

    // The current directory and each one above it, then the servers this user started,
    // newest first.
    let mut candidates: Vec<StateDir> = Vec::new();
    let mut looked: Vec<String> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        candidates.extend(
            cwd.ancestors()
                .map(|dir| StateDir::new(dir.join(".frontdoor"))),
        );
        looked.push(format!(
            "{}/.frontdoor and each directory above it",
            cwd.display()
        ));
    }
    let servers = noted();
    match notes_dir() {
        Some(dir) if servers.is_empty() => {
            looked.push(format!("{} (no server noted there)", dir.display()));
        }
        Some(dir) => looked.push(format!(
            "the {} servers noted in {}",
            servers.len(),
            dir.display()
        )),
        None => {}
    }
    candidates.extend(servers.into_iter().map(StateDir::new));
    let mut stale = None;
    for dir in candidates {
        // A record that cannot be read is one more stale place, not the end of the search:
        // a server after it may run.
        match check(&dir) {
            Ok(Some(Ok(addresses))) => return Ok(addresses),
            Ok(Some(Err(why))) => {
                stale.get_or_insert((dir.path().join(RECORD), why));
            }
            Ok(None) => {}
            Err(e) => {
                stale.get_or_insert((dir.path().join(RECORD), format!("{e:#}")));
            }
        }
    }
    match stale {
        Some((file, why)) => Err(LocateError::Stale { file, why, looked }),
        None => Err(LocateError::NotFound(looked)),
    }
}

/// `None`: no record there. `Some(Err(why))`: a record of a server that is gone.
fn check(dir: &StateDir) -> Result<Option<Result<Addresses, String>>, LocateError> {
    let file = dir.path().join(RECORD);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => return Ok(None),
        Err(e) => return Err(LocateError::Unreadable(file, e.into())),
    };
    let addresses: Addresses =
        serde_json::from_str(&text).map_err(|e| LocateError::Unreadable(file, e.into()))?;
    if let Some(pid) = addresses.pid
        && !process_exists(pid)
    {
        return Ok(Some(Err(format!("its process {pid} is gone"))));
    }
    if std::net::TcpStream::connect_timeout(&addresses.google, Duration::from_millis(500)).is_err()
    {
        return Ok(Some(Err(format!(
            "nothing answers at its google listener {}",
            addresses.google
        ))));
    }
    Ok(Some(Ok(addresses)))
}

fn process_exists(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // Signal 0 checks that the process exists without sending anything; EPERM means it
    // exists but belongs to someone else.
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None) {
        Ok(()) => true,
        Err(e) => e == nix::errno::Errno::EPERM,
    }
}
