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

impl DecisionLog {
    pub fn record(&self, decision: Decision) {
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
