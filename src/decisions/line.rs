//! A decision as a log event: one compact line in text (`ALLOW 200 GET search / as …`, the
//! full reason only on refusals), every field in JSON.

use std::fmt;

use super::{Decision, Surface};

/// Logs a decision: in text, one compact line (the full reason only on refusals); in JSON,
/// every field; every string escaped first, when the line is wanted at all. The tokens the
/// metadata server hands out are `debug` (every client library polls it); everything else
/// is `info`.
pub(super) fn log(decision: &Decision) {
    let quiet = decision.surface == Surface::Metadata && decision.allowed;
    let wanted = if quiet {
        tracing::enabled!(tracing::Level::DEBUG)
    } else {
        tracing::enabled!(tracing::Level::INFO)
    };
    if !wanted {
        return;
    }
    let decision = &decision.clone().escaped();
    macro_rules! at {
        ($level:expr) => {
            if crate::logging::json() {
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
                    code = decision.code.map(super::Code::as_str),
                    would_deny = decision.would_deny,
                    via = decision.via.as_deref(),
                    "decision"
                );
            } else {
                tracing::event!($level, "{}", Compact(decision));
            }
        };
    }
    if quiet {
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
        // AUDIT: let through in audit mode, though enforcement would have refused it.
        let verdict = match (d.would_deny, d.allowed) {
            (Some(_), _) => "AUDIT",
            (None, true) => "ALLOW",
            (None, false) => "DENY",
        };
        write!(f, "{verdict} {} ", d.status)?;
        if d.surface != Surface::Frontdoor {
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
        if let Some(via) = &d.via {
            write!(f, " ({via})")?;
        }
        if let Some(status) = d.would_deny {
            write!(f, ": would deny {status}")?;
        }
        if !d.allowed || d.would_deny.is_some() {
            match d.code {
                Some(code) => write!(f, ": {code}: {}", d.reason)?,
                None => write!(f, ": {}", d.reason)?,
            }
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
            ..Decision::about(Surface::Frontdoor, 0, "GET", "search-1.run.app", "/q")
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
        let coded = Decision {
            code: Some(super::super::Code::UnknownHost),
            ..refused.clone()
        };
        assert_eq!(
            Compact(&coded).to_string(),
            "DENY 401 GET search-1.run.app /q: unknown_host: no such service"
        );
        let minted = Decision {
            status: 200,
            allowed: true,
            target: Some("https://search-1.run.app".into()),
            surface: Surface::Iamcredentials,
            ..refused
        };
        assert_eq!(
            Compact(&minted).to_string(),
            "ALLOW 200 iamcredentials GET search-1.run.app /q for https://search-1.run.app"
        );
    }
}
