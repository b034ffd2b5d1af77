//! The log that keeps the decisions: the newest [`CAPACITY`] of them in memory (at most
//! [`CAPACITY_BYTES`]), numbered, for the google listener to serve and the dashboard to
//! follow; and the counts and latencies `/metrics` exports.

use std::collections::VecDeque;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use super::{
    CAPACITY, CAPACITY_BYTES, Decision, Surface, chain, escape_controls, line, with_grpc_status,
};

#[derive(Debug)]
pub struct DecisionLog {
    // A std Mutex: it is never held across an await, and the critical section is a push.
    entries: Mutex<Entries>,
    /// Every decision counted, for `/metrics`; the labels are bounded by the configuration
    /// (services) and by HTTP (statuses).
    counts: Family<DecisionLabels, Counter>,
    latency: Family<SurfaceLabels, Histogram, fn() -> Histogram>,
}

impl Default for DecisionLog {
    fn default() -> Self {
        DecisionLog {
            entries: Mutex::new(Entries {
                list: VecDeque::new(),
                bytes: 0,
                recorded: 0,
            }),
            counts: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
        }
    }
}

/// 50 µs to about 3 s, doubling.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

/// What [`DecisionLog::shown_since`] found.
#[derive(Debug)]
pub(crate) struct Since {
    /// Numbered, oldest first.
    pub(crate) decisions: Vec<(u64, Decision)>,
    /// How many more there were than asked for.
    pub(crate) more: usize,
    /// The number of the last decision recorded, of any surface.
    pub(crate) last: u64,
}

/// The kept decisions and their total weight in bytes (see [`Decision::bytes`]).
#[derive(Debug)]
struct Entries {
    list: VecDeque<Decision>,
    bytes: usize,
    /// How many decisions were ever recorded: the last one kept is number `recorded`.
    recorded: u64,
}

/// Labels built on every decision: static strings but for the service's name, so that a
/// request costs one allocation here, not four.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct DecisionLabels {
    surface: &'static str,
    service: String,
    outcome: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct SurfaceLabels {
    surface: &'static str,
}

impl DecisionLog {
    /// Keeps `decision` (cut to length; escaped when read) and logs it.
    /// Records `decision`, and returns its number.
    pub fn record(&self, decision: Decision) -> u64 {
        let decision = decision.cut();
        line::log(&decision);
        let surface = decision.surface.as_str();
        let service = decision.service.as_deref().unwrap_or_default();
        self.counts
            .get_or_create(&DecisionLabels {
                surface,
                service: escape_controls(service).into_owned(),
                outcome: if decision.allowed { "allow" } else { "deny" },
                status: decision.status,
            })
            .inc();
        if let Some(us) = decision.latency_us {
            self.latency
                .get_or_create(&SurfaceLabels { surface })
                .observe(us as f64 / 1e6);
        }
        let weight = decision.bytes();
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        while entries.list.len() >= CAPACITY || entries.bytes + weight > CAPACITY_BYTES {
            let Some(old) = entries.list.pop_front() else {
                break;
            };
            entries.bytes -= old.bytes();
        }
        entries.bytes += weight;
        entries.recorded += 1;
        entries.list.push_back(decision);
        entries.recorded
    }

    /// The `grpc-status` a gRPC call ended with, in its trailers after the decision was
    /// recorded as number `number`: added to the decision, and to its container step, while
    /// the log still keeps it. The decision's weight does not change (a number, in place).
    pub(crate) fn grpc_ended(&self, number: u64, code: u16) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let first = entries.recorded + 1 - entries.list.len() as u64;
        let Some(at) = number.checked_sub(first) else {
            return;
        };
        let Some(decision) = entries.list.get_mut(at as usize) else {
            return;
        };
        decision.grpc_status = Some(code);
        let said = with_grpc_status(code);
        let grown = said.len();
        match decision.steps.last_mut() {
            Some(step) if step.check == chain::Check::Container => {
                step.detail.to_mut().push_str(&said);
            }
            _ => return,
        }
        entries.bytes += grown;
    }

    /// Registers the decision counts and latencies in `registry`, for `/metrics`.
    pub fn register_metrics(&self, registry: &mut Registry) {
        registry.register(
            "frontdoor_decisions",
            "Decisions made, by surface, service, outcome and HTTP status",
            self.counts.clone(),
        );
        registry.register_with_unit(
            "frontdoor_decision_duration",
            "How long decisions took (the front door's until the response headers)",
            Unit::Seconds,
            self.latency.clone(),
        );
    }

    /// How many decisions are kept, and about how many bytes they take.
    pub fn size(&self) -> (usize, usize) {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        (entries.list.len(), entries.bytes)
    }

    /// The decisions the dashboard shows (the front door's, and IAM Credentials' on who
    /// may act as which account) numbered after `after`, at most the newest `limit` of
    /// them, oldest first, each with its number; how many more there were; and the number
    /// of the last recorded (of any surface), to ask after next time.
    pub(crate) fn shown_since(&self, after: u64, limit: usize) -> Since {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let last = entries.recorded;
        let mut decisions = Vec::new();
        let mut more = 0;
        for (d, n) in entries.list.iter().rev().zip((1..=last).rev()) {
            if n <= after {
                break;
            }
            if !matches!(d.surface, Surface::Frontdoor | Surface::Iamcredentials) {
                continue;
            }
            if decisions.len() < limit {
                decisions.push((n, d.clone().escaped()));
            } else {
                more += 1;
            }
        }
        drop(entries);
        decisions.reverse();
        Since {
            decisions,
            more,
            last,
        }
    }

    /// Decision number `seq`, while it is kept.
    pub(crate) fn numbered(&self, seq: u64) -> Option<Decision> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let first = entries.recorded - entries.list.len() as u64 + 1;
        let index = usize::try_from(seq.checked_sub(first)?).ok()?;
        entries.list.get(index).cloned().map(Decision::escaped)
    }

    /// The newest `limit` decisions, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Decision> {
        self.recent_of(limit, None)
    }

    /// The newest `limit` decisions of `surface` (of all, for `None`), oldest first.
    pub fn recent_of(&self, limit: usize, surface: Option<Surface>) -> Vec<Decision> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let mut out: Vec<Decision> = entries
            .list
            .iter()
            .rev()
            .filter(|d| surface.is_none_or(|s| d.surface == s))
            .take(limit)
            .map(|d| d.clone().escaped())
            .collect();
        out.reverse();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::MAX_FIELD_BYTES;
    use super::super::tests::d;
    use super::*;

    #[test]
    fn decisions_are_filtered_by_surface_newest_kept() {
        let log = DecisionLog::default();
        for n in 0..10 {
            let mut d = d(n);
            if n % 2 == 0 {
                d.surface = Surface::Sts;
            }
            log.record(d);
        }
        let sts: Vec<i64> = log
            .recent_of(3, Some(Surface::Sts))
            .iter()
            .map(|d| d.time)
            .collect();
        assert_eq!(sts, [4, 6, 8]);
        assert!(log.recent_of(3, Some(Surface::Metadata)).is_empty());
        assert_eq!(log.recent(2).len(), 2);
    }

    /// A surface's name is one in JSON, in `/metrics` and in `?surface=`.

    #[test]
    fn the_log_is_bounded_in_bytes_and_long_fields_are_cut() {
        let log = DecisionLog::default();
        for n in 0..(CAPACITY as i64) {
            let mut big = d(n);
            big.reason = "r".repeat(60_000);
            big.host = "h".repeat(60_000);
            log.record(big);
        }
        let (count, bytes) = log.size();
        assert!(bytes <= CAPACITY_BYTES, "{bytes}");
        assert!(count < CAPACITY / 2, "{count}");
        let newest = log.recent(1).pop().unwrap();
        assert_eq!(newest.time, CAPACITY as i64 - 1);
        assert!(
            newest.reason.len() < MAX_FIELD_BYTES + 32
                && newest
                    .reason
                    .ends_with(&format!("… ({} more bytes)", 60_000 - MAX_FIELD_BYTES)),
            "{}",
            &newest.reason[newest.reason.len() - 40..]
        );
    }

    #[test]
    fn shown_decisions_are_numbered_and_read_after_a_number() {
        let log = DecisionLog::default();
        for n in 1..=6 {
            let mut d = d(n);
            if n == 3 {
                d.surface = Surface::Sts;
            }
            if n == 5 {
                d.surface = Surface::Iamcredentials;
            }
            log.record(d);
        }
        let all = log.shown_since(0, 10);
        assert_eq!((all.last, all.more), (6, 0));
        let numbers: Vec<(u64, i64)> = all.decisions.iter().map(|(n, d)| (*n, d.time)).collect();
        assert_eq!(numbers, [(1, 1), (2, 2), (4, 4), (5, 5), (6, 6)]);
        // The newest `limit` after a number, how many more, and nothing after the last.
        let some = log.shown_since(1, 2);
        assert_eq!(
            some.decisions.iter().map(|(n, _)| *n).collect::<Vec<_>>(),
            [5, 6]
        );
        assert_eq!(some.more, 2);
        assert!(log.shown_since(6, 10).decisions.is_empty());
        assert_eq!(log.numbered(4).unwrap().time, 4);
        assert!(log.numbered(0).is_none() && log.numbered(7).is_none());
    }

    #[test]
    fn the_log_is_bounded_and_keeps_the_newest() {
        let log = DecisionLog::default();
        for n in 0..(CAPACITY as i64 + 10) {
            log.record(d(n));
        }
        // Numbered from 1: the first ten were dropped, the eleventh is kept.
        assert!(log.numbered(10).is_none());
        assert_eq!(log.numbered(11).unwrap().time, 10);
        let all = log.recent(usize::MAX);
        assert_eq!(all.len(), CAPACITY);
        assert_eq!(all[0].time, 10);
        assert_eq!(
            log.recent(2).iter().map(|d| d.time).collect::<Vec<_>>(),
            [CAPACITY as i64 + 8, CAPACITY as i64 + 9]
        );
    }
}
