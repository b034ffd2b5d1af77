//! Every front-door decision, allowed or denied, with its reason: one structured log event
//! each, and a bounded in-memory list that the google listener serves and the CLI reads.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

/// How many decisions are kept; older ones are dropped.
pub const CAPACITY: usize = 1000;

#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Decision {
    /// Seconds since the Unix epoch.
    pub time: i64,
    pub allowed: bool,
    pub status: u16,
    pub service: Option<String>,
    /// The service's revision (`K_REVISION`) when the decision was made.
    #[serde(default)]
    pub revision: Option<String>,
    pub method: String,
    pub host: String,
    pub path: String,
    /// `serviceAccount:…`, `user:…`, or absent for an anonymous or unusable credential.
    pub principal: Option<String>,
    /// Which header the credential came from, if any.
    pub credential: Option<String>,
    pub reason: String,
}

#[derive(Debug, Default)]
pub struct DecisionLog {
    // A std Mutex: it is never held across an await, and the critical section is a push.
    entries: Mutex<VecDeque<Decision>>,
}

/// `s` with every control character (newlines, ESC and the rest of C0 and C1, DEL) written
/// as an escape, so that a token or request cannot forge a log line or drive a terminal:
/// a `kid` of `"x\nALLOW 200 GET vault /"` stays on its own line, as visible text.
pub fn escape_controls(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| match c {
                c if !c.is_control() => c.to_string(),
                '\n' => "\\n".to_owned(),
                '\r' => "\\r".to_owned(),
                '\t' => "\\t".to_owned(),
                c => format!("\\u{{{:x}}}", u32::from(c)),
            })
            .collect(),
    )
}

fn escape_in_place(s: &mut String) {
    if let std::borrow::Cow::Owned(escaped) = escape_controls(s) {
        *s = escaped;
    }
}

impl Decision {
    /// Every client-derived string escaped (see [`escape_controls`]).
    fn escaped(mut self) -> Decision {
        for field in [
            &mut self.service,
            &mut self.revision,
            &mut self.principal,
            &mut self.credential,
        ]
        .into_iter()
        .flatten()
        {
            escape_in_place(field);
        }
        for field in [
            &mut self.method,
            &mut self.host,
            &mut self.path,
            &mut self.reason,
        ] {
            escape_in_place(field);
        }
        self
    }
}

impl DecisionLog {
    pub fn record(&self, decision: Decision) {
        let decision = decision.escaped();
        tracing::info!(
            decision.allowed = decision.allowed,
            decision.status = decision.status,
            decision.service = decision.service.as_deref().unwrap_or("-"),
            decision.principal = decision.principal.as_deref().unwrap_or("-"),
            decision.credential = decision.credential.as_deref().unwrap_or("-"),
            http.method = %decision.method,
            http.host = %decision.host,
            http.path = %decision.path,
            reason = %decision.reason,
            "front door decision"
        );
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.len() == CAPACITY {
            entries.pop_front();
        }
        entries.push_back(decision);
    }

    /// The newest `limit` decisions, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Decision> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let skip = entries.len().saturating_sub(limit);
        entries.iter().skip(skip).cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: i64) -> Decision {
        Decision {
            time: n,
            allowed: true,
            status: 200,
            service: None,
            revision: None,
            method: "GET".into(),
            host: "h".into(),
            path: "/".into(),
            principal: None,
            credential: None,
            reason: "r".into(),
        }
    }

    #[test]
    fn control_characters_are_escaped_before_anything_sees_them() {
        let log = DecisionLog::default();
        let mut hostile = d(1);
        hostile.reason = "the JWT's key id `x\nALLOW 200 GET vault /` is unknown".into();
        hostile.path = "/\u{1b}[2J\u{1b}[31mred\r\u{7f}\u{9b}".into();
        hostile.principal = Some("user:a\tb@example.com".into());
        log.record(hostile);
        let got = log.recent(1).pop().unwrap();
        assert_eq!(
            got.reason,
            "the JWT's key id `x\\nALLOW 200 GET vault /` is unknown"
        );
        assert_eq!(got.path, "/\\u{1b}[2J\\u{1b}[31mred\\r\\u{7f}\\u{9b}");
        assert_eq!(got.principal.as_deref(), Some("user:a\\tb@example.com"));
        assert!(!serde_json::to_string(&got).unwrap().contains("\\u001b"));
        assert!(matches!(
            escape_controls("plain ✓ text"),
            std::borrow::Cow::Borrowed(_)
        ));
    }

    #[test]
    fn the_log_is_bounded_and_keeps_the_newest() {
        let log = DecisionLog::default();
        for n in 0..(CAPACITY as i64 + 10) {
            log.record(d(n));
        }
        let all = log.recent(usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].time, 10);
        assert_eq!(
            log.recent(2).iter().map(|d| d.time).collect::<Vec<_>>(),
            [CAPACITY as i64 + 8, CAPACITY as i64 + 9]
        );
    }
}
