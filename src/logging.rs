//! What `serve` writes to stderr: one line per decision, plain text for people (colour only
//! on a terminal) or JSON for machines (`--log-format json`), filtered by `FRONTDOOR_LOG`
//! (`info` by default; `debug` adds each check the front door makes and every metadata
//! request).

use std::fmt;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::decisions::{Decision, FRONT_DOOR};

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

/// Logs a decision: in text, one compact line (the full reason only on refusals); in JSON,
/// every field. Every string in it was escaped when the decision was recorded. The tokens
/// the metadata server hands out are `debug` (every client library polls it); everything
/// else is `info`.
pub(crate) fn decision(decision: &Decision) {
    macro_rules! at {
        ($level:expr) => {
            if JSON.load(Ordering::Relaxed) {
                tracing::event!(
                    $level,
                    surface = %decision.surface,
                    allowed = decision.allowed,
                    status = decision.status,
                    service = decision.service.as_deref(),
                    principal = decision.principal.as_deref(),
                    credential = decision.credential.as_deref(),
                    method = %decision.method,
                    host = %decision.host,
                    path = %decision.path,
                    target = decision.target.as_deref(),
                    permission = decision.permission.as_deref(),
                    latency_us = decision.latency_us,
                    reason = %decision.reason,
                    "decision"
                );
            } else {
                tracing::event!($level, "{}", Compact(decision));
            }
        };
    }
    if decision.surface == "metadata" && decision.allowed {
        at!(tracing::Level::DEBUG);
    } else {
        at!(tracing::Level::INFO);
    }
}

/// `ALLOW 200 GET search /path as login@…` or `DENY 403 GET search /path as …: reason`.
struct Compact<'d>(&'d Decision);

impl fmt::Display for Compact<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        let verdict = if d.allowed { "ALLOW" } else { "DENY" };
        write!(f, "{verdict} {} ", d.status)?;
        if d.surface != FRONT_DOOR {
            write!(f, "{} ", d.surface)?;
        }
        write!(f, "{} ", d.method)?;
        match &d.service {
            Some(service) => write!(f, "{service} ")?,
            None => write!(f, "{} ", d.host)?,
        }
        write!(f, "{}", d.path)?;
        if let Some(principal) = &d.principal {
            write!(f, " as {principal}")?;
        }
        if let Some(target) = &d.target {
            write!(f, " for {target}")?;
        }
        if !d.allowed {
            write!(f, ": {}", d.reason)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_one_short_line_with_the_reason_only_when_refused() {
        let allowed = Decision {
            status: 200,
            allowed: true,
            service: Some("search".into()),
            principal: Some("serviceAccount:login@demo.iam.gserviceaccount.com".into()),
            reason: "a long reason that an allowed line leaves out".into(),
            ..Decision::about(FRONT_DOOR, 0, "GET", "search-1.run.app", "/q")
        };
        assert_eq!(
            Compact(&allowed).to_string(),
            "ALLOW 200 GET search /q as serviceAccount:login@demo.iam.gserviceaccount.com"
        );
        let refused = Decision {
            status: 401,
            allowed: false,
            service: None,
            principal: None,
            reason: "no such service".into(),
            ..allowed
        };
        assert_eq!(
            Compact(&refused).to_string(),
            "DENY 401 GET search-1.run.app /q: no such service"
        );
        let minted = Decision {
            status: 200,
            allowed: true,
            target: Some("https://search-1.run.app".into()),
            surface: "iamcredentials".into(),
            ..refused
        };
        assert_eq!(
            Compact(&minted).to_string(),
            "ALLOW 200 iamcredentials GET search-1.run.app /q for https://search-1.run.app"
        );
    }
}
