//! The jobs Cloud Scheduler's API made, as the layer keeps them (`google::kept`): each as
//! Google's REST API shows it without its name and what the store says of its runs, its
//! state kept; read back as a create's body is, with the create's checks.

use std::collections::BTreeMap;
use std::time::SystemTime;

use googleapis_tonic_google_cloud_scheduler_v1::google::cloud::scheduler::v1 as pb;
use serde_json::Value;

use super::json::{JobIn, job_out};
use crate::google::kept::{Part, Refused};
use crate::state::AppState;

pub(crate) const KEPT: Part = Part {
    what: "Cloud Scheduler job",
    revision,
    encode,
    readable,
    of: |layer| &mut layer.scheduler,
    restore,
};

fn revision(state: &AppState) -> u64 {
    state.scheduler().revision()
}

/// What a job's JSON says of its runs, which a restart does not keep.
const RUNS: [&str; 5] = [
    "name",
    "scheduleTime",
    "lastAttemptTime",
    "userUpdateTime",
    "status",
];

fn encode(state: &AppState) -> BTreeMap<String, Value> {
    state
        .scheduler()
        .made_by_api()
        .iter()
        .map(|j| {
            let mut v = job_out(j);
            if let Value::Object(map) = &mut v {
                for key in RUNS {
                    map.remove(key);
                }
            }
            (j.name.clone(), v)
        })
        .collect()
}

fn decode(name: &str, value: &Value) -> Result<pb::Job, String> {
    super::parse_job(name).map_err(|e| e.message().to_owned())?;
    let mut job = serde_json::from_value::<JobIn>(value.clone())
        .map_err(|e| e.to_string())?
        .into_job(Some(name))
        .map_err(|e| e.message().to_owned())?;
    crate::config::scheduler::sanitize(&mut job)?;
    crate::config::scheduler::check_job(&job)?;
    if value["state"] == "PAUSED" {
        job.state = pb::job::State::Paused as i32;
    }
    Ok(job)
}

/// What the layer keeps, read back, by name (or why it cannot be): what `frontdoor fold`
/// writes.
pub(crate) fn read_back(
    kept: &BTreeMap<String, Value>,
) -> BTreeMap<String, Result<pb::Job, String>> {
    crate::google::kept::read_each(kept, decode)
}

fn readable(name: &str, value: &Value) -> bool {
    decode(name, value).is_ok()
}

fn restore(state: &AppState, kept: &BTreeMap<String, Value>) -> Refused {
    let (jobs, mut refused) = crate::google::kept::decode_each(kept, decode);
    refused.extend(state.scheduler().restore(jobs, SystemTime::now()));
    refused
}
