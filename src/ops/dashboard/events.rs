//! `GET /frontdoor/v1/events`: the dashboard's live feed, as server-sent events.
//!
//! One task (started by the first subscriber) looks every quarter second for the front
//! door's decisions (and IAM Credentials', on who may act as which account) recorded since
//! it last looked and for a reload, writes what it found once as
//! an event, and hands the same bytes to every subscriber. The front door itself does
//! nothing more per request than record its decision, as it always has, so a hundred open
//! dashboards cost it a quarter-second tick, not a hundred copies of every decision.
//!
//! Events: `decisions` (`{"decisions": [{"seq", "surface", "time", "allowed", "status",
//! "service", "principal", "via", "target", "code", "would_deny"}], "skipped": K}`, each decision's row, the newest
//! at most [`BATCH`] of a tick, oldest first, `skipped` saying how many more there were),
//! and `config` (`{"boot", "generation", "enforcement", "last_reload"}`) on every reload,
//! applied or refused (`boot` is new at every start of the server). A new subscriber first gets the most recent decisions and the config.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Response, header};
use serde::Serialize;
use serde_json::json;
use tokio::sync::broadcast;

use crate::decisions::{Code, Decision};
use crate::state::{AppState, Live};

/// How often the feed looks for news: a decision reaches the page within this and the
/// page's own drawing.
const TICK: Duration = Duration::from_millis(250);
/// The most decisions one event carries (200 a second); under load the page shows the
/// newest and says how many it skipped.
pub(crate) const BATCH: usize = 50;
/// How many recent decisions a new subscriber gets first.
const BACKLOG: usize = 200;
/// Events queued for a subscriber that reads slowly before it misses some (it is told).
const QUEUE: usize = 64;
/// A comment line this often keeps idle connections (and proxies) from timing out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The feed shared by every subscriber of one google listener.
pub(crate) struct Hub {
    sender: broadcast::Sender<Bytes>,
    started: AtomicBool,
    /// New at every start of the server, in every config event: decision numbers start
    /// again from 1 after a restart, and a page that reconnects must know to forget its own.
    boot: String,
}

impl Default for Hub {
    fn default() -> Hub {
        Hub {
            sender: broadcast::channel(QUEUE).0,
            started: AtomicBool::new(false),
            boot: format!("{:032x}", fastrand::u128(..)),
        }
    }
}

/// What the feed says of a decision: enough for its row and the filters. The page asks
/// `GET /frontdoor/v1/decisions/SEQ` for the rest (the chain, the token) when it is opened,
/// so that a busy feed stays small for every open page.
#[derive(Serialize)]
struct Row<'d> {
    seq: u64,
    surface: crate::decisions::Surface,
    time: i64,
    allowed: bool,
    status: u16,
    service: Option<&'d str>,
    principal: Option<&'d str>,
    /// The Google-managed caller that made it (a Pub/Sub push), if one did.
    #[serde(skip_serializing_if = "Option::is_none")]
    via: Option<&'d str>,
    /// The account an IAM Credentials decision was about.
    #[serde(skip_serializing_if = "Option::is_none")]
    target: Option<&'d str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    code: Option<Code>,
    #[serde(skip_serializing_if = "Option::is_none")]
    would_deny: Option<u16>,
}

fn event(name: &str, data: &serde_json::Value) -> Bytes {
    // serde_json writes no raw line breaks, so the data is one `data:` line.
    Bytes::from(format!("event: {name}\ndata: {data}\n\n"))
}

fn decisions_event(list: &[(u64, Decision)], skipped: usize) -> Bytes {
    let numbered: Vec<Row<'_>> = list
        .iter()
        .map(|(seq, d)| Row {
            seq: *seq,
            surface: d.surface,
            time: d.time,
            allowed: d.allowed,
            status: d.status,
            service: d.service.as_deref(),
            principal: d.principal.as_deref(),
            via: d.via.as_deref(),
            target: d.target.as_deref(),
            code: d.code,
            would_deny: d.would_deny,
        })
        .collect();
    event(
        "decisions",
        &json!({"decisions": numbered, "skipped": skipped}),
    )
}

/// What the page shows of the configuration's state: its generation, its enforcement
/// and how the last reload went.
fn config_event(state: &AppState, boot: &str) -> (Bytes, String) {
    let reload = state.reloads().snapshot();
    let data = json!({
        "boot": boot,
        "generation": reload.generation,
        "enforcement": state.config().enforcement.as_str(),
        "last_reload": reload.last,
    });
    let key = data.to_string();
    (event("config", &data), key)
}

impl Hub {
    /// A subscriber's stream: the backlog and the config, then every event the feed writes.
    pub(crate) fn subscribe(self: &Arc<Hub>, live: Live) -> Response<Body> {
        let receiver = self.sender.subscribe();
        if !self.started.swap(true, Ordering::AcqRel) {
            tokio::spawn(feed(self.clone(), live.clone()));
        }
        let state = live.get();
        let closing = state.closing();
        let backlog = state.decisions().shown_since(0, BACKLOG);
        let first = vec![
            config_event(&state, &self.boot).0,
            decisions_event(&backlog.decisions, backlog.more),
        ];
        // Ends when shutdown begins, so that an open page never holds the drain.
        let stream = futures_util::stream::unfold(
            (first.into_iter(), receiver, closing),
            |(mut first, mut receiver, mut closing)| async move {
                if let Some(bytes) = first.next() {
                    return Some((Ok::<_, Infallible>(bytes), (first, receiver, closing)));
                }
                if *closing.borrow() {
                    return None;
                }
                let next = tokio::select! {
                    next = tokio::time::timeout(KEEP_ALIVE, receiver.recv()) => next,
                    _ = closing.changed() => return None,
                };
                let bytes = match next {
                    Ok(Ok(bytes)) => bytes,
                    Ok(Err(broadcast::error::RecvError::Lagged(n))) => {
                        event("lagged", &json!({ "missed_events": n }))
                    }
                    Ok(Err(broadcast::error::RecvError::Closed)) => return None,
                    Err(_) => Bytes::from_static(b": keep-alive\n\n"),
                };
                Some((Ok(bytes), (first, receiver, closing)))
            },
        );
        Response::builder()
            .header(header::CONTENT_TYPE, "text/event-stream")
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::from_stream(stream))
            .unwrap_or_default()
    }
}

/// Every tick while anyone listens: the decisions since the last tick, and the config if
/// a reload changed it.
async fn feed(hub: Arc<Hub>, live: Live) {
    let mut interval = tokio::time::interval(TICK);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let state = live.get();
    let mut seen = state.decisions().shown_since(u64::MAX, 0).last;
    let mut config_key = config_event(&state, &hub.boot).1;
    loop {
        interval.tick().await;
        if hub.sender.receiver_count() == 0 {
            continue;
        }
        let state = live.get();
        let news = state.decisions().shown_since(seen, BATCH);
        if !news.decisions.is_empty() {
            let _ = hub.sender.send(decisions_event(&news.decisions, news.more));
        }
        seen = news.last;
        let (event, key) = config_event(&state, &hub.boot);
        if key != config_key {
            config_key = key;
            let _ = hub.sender.send(event);
        }
    }
}
