//! What `serve` writes to stderr: one line per decision, plain text for people (colour only
//! on a terminal) or JSON for machines (`--log-format json`), filtered by `FRONTDOOR_LOG`
//! (`info` by default; `debug` adds each check the front door makes and every metadata
//! request).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One short line per event; a decision reads `ALLOW 200 GET host /path principal`.
    #[default]
    Text,
    /// One JSON object per line, every field of a decision its own key.
    Json,
}

static JSON: AtomicBool = AtomicBool::new(false);

/// Installs the process's log subscriber. Call once, before anything logs.
pub fn init(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FRONTDOOR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // With stderr closed (a parent that stopped reading), log lines are lost; by default
        // the subscriber would report that with eprintln!, which panics and takes the
        // server down.
        .log_internal_errors(false);
    match format {
        LogFormat::Json => {
            JSON.store(true, Ordering::Relaxed);
            builder.json().flatten_event(true).init();
        }
        LogFormat::Text => {
            let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder.with_ansi(colour).with_target(false).init();
        }
    }
}

/// Whether log lines are JSON (`--log-format json`), for events that write their fields
/// differently in each format.
pub(crate) fn json() -> bool {
    JSON.load(Ordering::Relaxed)
}
