//! The queues Cloud Tasks' API made, as the layer keeps them (`google::kept`): each as
//! Google's REST API shows it without its name, its state kept; read back as a create's
//! body is, with the create's checks.

use std::collections::BTreeMap;

use googleapis_tonic_google_cloud_tasks_v2::google::cloud::tasks::v2 as pb;
use serde_json::Value;

use super::json::{QueueIn, queue_out};
use crate::google::kept::{Part, Refused};
use crate::google::protojson::duration_out;
use crate::state::AppState;

pub(crate) const KEPT: Part = Part {
    what: "Cloud Tasks queue",
    revision,
    encode,
    readable,
    of: |layer| &mut layer.tasks,
    restore,
};

fn revision(state: &AppState) -> u64 {
    state.tasks().revision()
}

fn encode(state: &AppState) -> BTreeMap<String, Value> {
    state
        .tasks()
        .made_by_api()
        .iter()
        .map(|q| {
            let mut v = queue_out(q);
            if let Value::Object(map) = &mut v {
                map.remove("name");
                // When it was last purged is what it did, not what it is.
                map.remove("purgeTime");
            }
            // Every duration set, `0s` too (which a GET leaves out): read back without
            // it, a default would take its place.
            if let Some(retry) = &q.retry_config {
                for (key, d) in [
                    ("maxRetryDuration", retry.max_retry_duration),
                    ("minBackoff", retry.min_backoff),
                    ("maxBackoff", retry.max_backoff),
                ] {
                    if let Some(d) = d {
                        v["retryConfig"][key] = Value::from(duration_out(d));
                    }
                }
            }
            (q.name.clone(), v)
        })
        .collect()
}

fn decode(name: &str, value: &Value) -> Result<pb::Queue, String> {
    super::parse_queue(name).map_err(|e| e.message().to_owned())?;
    let mut queue = serde_json::from_value::<QueueIn>(value.clone())
        .map_err(|e| e.to_string())?
        .into_queue(Some(name))
        .map_err(|e| e.message().to_owned())?;
    crate::config::tasks::check_queue(&queue)?;
    if value["state"] == "PAUSED" {
        queue.state = pb::queue::State::Paused as i32;
    }
    Ok(queue)
}

/// What the layer keeps, read back, by name (or why it cannot be): what `frontdoor fold`
/// writes.
pub(crate) fn read_back(
    kept: &BTreeMap<String, Value>,
) -> BTreeMap<String, Result<pb::Queue, String>> {
    crate::google::kept::read_each(kept, decode)
}

fn readable(name: &str, value: &Value) -> bool {
    decode(name, value).is_ok()
}

fn restore(state: &AppState, kept: &BTreeMap<String, Value>) -> Refused {
    let (queues, mut refused) = crate::google::kept::decode_each(kept, decode);
    refused.extend(state.tasks().restore(queues));
    refused
}
