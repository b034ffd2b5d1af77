//! `frontdoor fold`: the Admin APIs' layer (`layer`) written into `services.yaml` itself,
//! every comment, blank line and unrelated entry kept (`yaml_edit` edits the parsed tree
//! in place; only the fields the layer sets are replaced or added).
//!
//! What cannot be folded stays in the layer, and the result is checked before anything is
//! written: the folded file with what is left of the layer must resolve to exactly the
//! configuration in force, or nothing is written.

use std::path::Path;
use std::str::FromStr;

use yaml_edit::{Document, Mapping, YamlValue};

mod eventarc;
mod managed;
mod pubsub;
pub use pubsub::Made as PubsubMade;

use googleapis_tonic_google_cloud_scheduler_v1::google::cloud::scheduler::v1 as jobs;
use googleapis_tonic_google_cloud_tasks_v2::google::cloud::tasks::v2 as tasks;

/// What the APIs made, read back by their own readers (the command line calls them):
/// Pub/Sub's resources; Cloud Tasks' queues and Cloud Scheduler's jobs by name, or why one
/// cannot be read back (it then stays in the layer).
#[derive(Debug, Clone, Default)]
pub struct Made {
    pub pubsub: PubsubMade,
    pub queues: std::collections::BTreeMap<String, Result<tasks::Queue, String>>,
    pub jobs: std::collections::BTreeMap<String, Result<jobs::Job, String>>,
}

use super::layer::{Layer, PolicyText, ServiceChange};
use super::{Config, ConfigError, Service, parse_layered};

/// The file's new text, what stays in the layer, and one line per thing folded or kept.
#[derive(Debug)]
pub struct Folded {
    pub text: String,
    pub rest: Layer,
    pub report: Vec<String>,
}

/// `text` (the configuration file `file`) with `layer` written into it; `want` is the
/// configuration they resolve to together (the one in force), and `made` the layer's
/// Pub/Sub resources as the API reads them back.
pub fn fold(
    text: &str,
    file: &Path,
    layer: &Layer,
    want: &Config,
    made: &Made,
) -> Result<Folded, ConfigError> {
    let refuse = |reason: String| ConfigError::Invalid {
        file: file.to_owned(),
        path: "(top level)".into(),
        reason,
    };
    let doc = Document::from_str(text)
        .map_err(|e| refuse(format!("cannot edit the file in place: {e}")))?;
    let root = doc
        .as_mapping()
        .ok_or_else(|| refuse("the file is not a mapping".into()))?;
    let mut rest = Layer::default();
    let mut report = Vec::new();

    let plain = super::parse(text, file).ok();
    if let Some(policy) = &layer.project_policy {
        root.set("iam_policy", policy_yaml(policy));
        report.push("project: IAM policy → iam_policy".to_owned());
    }

    for (email, policy) in &layer.account_policies {
        // As for services below: nothing to write where the file already says it.
        let in_file = plain
            .as_ref()
            .and_then(|c| c.service_account(email))
            .map(|a| &a.policy);
        if in_file.is_some() && in_file == want.service_account(email).map(|a| &a.policy) {
            continue;
        }
        let declared = root.get_sequence("service_accounts").and_then(|accounts| {
            accounts.values().enumerate().find_map(|(i, item)| {
                let m = item.as_mapping()?;
                text_of(m, "email")
                    .is_some_and(|e| e.eq_ignore_ascii_case(email))
                    .then(|| (i, m.clone()))
            })
        });
        match declared {
            Some((i, m)) => {
                m.set("iam_policy", policy_yaml(policy));
                report.push(format!(
                    "service account {email}: IAM policy → service_accounts[{i}].iam_policy"
                ));
            }
            None => {
                rest.account_policies.insert(email.clone(), policy.clone());
                report.push(format!(
                    "service account {email}: IAM policy kept in {} (the file does not declare the account; declare it under service_accounts to fold it)",
                    super::layer::FILE
                ));
            }
        }
    }

    let entries: Vec<Mapping> = root
        .get_sequence("services")
        .map(|s| s.values().filter_map(|v| v.as_mapping().cloned()).collect())
        .unwrap_or_default();
    for (name, change) in &layer.services {
        // Entries resolve in file order, one service each.
        let entry = want
            .services
            .iter()
            .position(|s| &s.name == name)
            .and_then(|i| Some((i, entries.get(i)?)));
        let Some((i, entry)) = entry else {
            rest.services.insert(name.clone(), change.clone());
            report.push(format!(
                "service {name}: kept in {} (the file no longer describes it)",
                super::layer::FILE
            ));
            continue;
        };
        // A field the file alone already resolves to the value in force needs no writing:
        // `update` sends the whole service, so the layer holds every field it maps.
        let plain = plain.as_ref().and_then(|c| c.service(name));
        let change = &without_redundant(change, plain, &want.services[i]);
        let kept = fold_service(entry, change);
        let unfolded = kept.fields();
        let folded: Vec<&str> = change
            .fields()
            .into_iter()
            .filter(|f| f.0 != "knative" && !unfolded.contains(f))
            .map(|(key, _)| key)
            .collect();
        if !folded.is_empty() {
            report.push(format!(
                "service {name}: {} → services[{i}]",
                folded.join(", ")
            ));
        }
        if !unfolded.is_empty() {
            let why = if unfolded.iter().all(|f| f.0 == "knative") {
                "the Knative document gcloud sent, which `describe` shows; it sets nothing frontdoor obeys"
            } else {
                "the entry names a Knative file, which gives those fields and which fold does not rewrite"
            };
            let line = format!("service {name}: {}", kept.words());
            report.push(format!("{line}: kept in {} ({why})", super::layer::FILE));
            rest.services.insert(name.clone(), kept);
        }
    }

    let text = doc.to_string();
    // Pub/Sub last, one resource at a time, against the file as folded so far.
    let pubsub = pubsub::fold(
        text,
        file,
        &rest,
        &want.pubsub,
        &want.project.id,
        &layer.pubsub,
        &made.pubsub,
    );
    report.extend(pubsub.report);
    rest.pubsub = pubsub.kept;
    let mut text = pubsub.text;
    // Then Cloud Tasks' queues and Cloud Scheduler's jobs, one at a time.
    let region = &want.project.region;
    let mut queues = Vec::new();
    for (name, value) in &layer.tasks {
        let outcome = match made.queues.get(name) {
            Some(Ok(q)) => managed::fold_queue(&text, file, &rest, region, q).map(|t| (t, q)),
            Some(Err(why)) => Err(format!("it cannot be read back: {why}")),
            None => Err("it cannot be read back".to_owned()),
        };
        match outcome {
            Ok((new, q)) => {
                text = new;
                report.push(format!("Cloud Tasks queue {name}: → tasks.queues"));
                queues.push(tasks::Queue {
                    state: 0,
                    ..q.clone()
                });
            }
            Err(why) => {
                rest.tasks.insert(name.clone(), value.clone());
                report.push(format!(
                    "Cloud Tasks queue {name}: kept in {} ({why})",
                    super::layer::FILE
                ));
            }
        }
    }
    let mut jobs = Vec::new();
    for (name, value) in &layer.scheduler {
        let outcome = match made.jobs.get(name) {
            Some(Ok(j)) => managed::fold_job(&text, file, &rest, region, j).map(|t| (t, j)),
            Some(Err(why)) => Err(format!("it cannot be read back: {why}")),
            None => Err("it cannot be read back".to_owned()),
        };
        match outcome {
            Ok((new, j)) => {
                text = new;
                report.push(format!("Cloud Scheduler job {name}: → scheduler.jobs"));
                jobs.push(jobs::Job {
                    state: 0,
                    ..j.clone()
                });
            }
            Err(why) => {
                rest.scheduler.insert(name.clone(), value.clone());
                report.push(format!(
                    "Cloud Scheduler job {name}: kept in {} ({why})",
                    super::layer::FILE
                ));
            }
        }
    }
    let got = parse_layered(&text, file, &rest)?;
    // What the file declares now is what it declared before and what was folded, the
    // API's settings winning where it had changed a declared subscription.
    let mut expected = want.pubsub.clone();
    for topic in pubsub.topics {
        expected.topics.push(topic);
    }
    for s in pubsub.subscriptions {
        match expected.subscriptions.iter_mut().find(|x| x.name == s.name) {
            Some(declared) => *declared = s,
            None => expected.subscriptions.push(s),
        }
    }
    let sorted = |p: &crate::config::pubsub::Pubsub| {
        let mut p = p.clone();
        p.topics.sort_by(|a, b| a.name.cmp(&b.name));
        p.subscriptions.sort_by(|a, b| a.name.cmp(&b.name));
        p
    };
    if sorted(&expected) != sorted(&got.pubsub) {
        return Err(refuse(
            "folding would change Pub/Sub's declared topics or subscriptions, so nothing was written; please report this".into(),
        ));
    }
    // The file declares the queues and jobs it declared before, and those folded.
    let mut expected_queues = want.tasks.queues.clone();
    expected_queues.extend(queues);
    let mut expected_jobs = want.scheduler.jobs.clone();
    expected_jobs.extend(jobs);
    let mut got_queues = got.tasks.queues.clone();
    let mut got_jobs = got.scheduler.jobs.clone();
    expected_queues.sort_by(|a, b| a.name.cmp(&b.name));
    got_queues.sort_by(|a, b| a.name.cmp(&b.name));
    expected_jobs.sort_by(|a, b| a.name.cmp(&b.name));
    got_jobs.sort_by(|a, b| a.name.cmp(&b.name));
    if expected_queues != got_queues || expected_jobs != got_jobs {
        return Err(refuse(
            "folding would change the declared queues or jobs, so nothing was written; please report this".into(),
        ));
    }
    let got = Config {
        pubsub: want.pubsub.clone(),
        tasks: want.tasks.clone(),
        scheduler: want.scheduler.clone(),
        ..got
    };
    if let Some(what) = first_difference(want, &got) {
        return Err(refuse(format!(
            "folding would change {what}, so nothing was written; please report this"
        )));
    }
    Ok(Folded { text, rest, report })
}

/// Writes `change` into `entry`; what it could not write. An entry that names a Knative
/// file takes only its IAM policy: the Knative file gives the other fields, and one given
/// in both places is refused.
fn fold_service(entry: &Mapping, change: &ServiceChange) -> ServiceChange {
    if let Some(policy) = &change.iam_policy {
        entry.set("iam_policy", policy_yaml(policy));
    }
    if entry.contains_key("knative") {
        return ServiceChange {
            iam_policy: None,
            ..change.clone()
        };
    }
    if let Some(account) = &change.service_account {
        entry.set("service_account", account.as_str());
    }
    if let Some(audiences) = &change.custom_audiences {
        entry.set("custom_audiences", strings(audiences));
    }
    if let Some(ingress) = &change.ingress {
        entry.set("ingress", ingress.as_str());
    }
    if let Some(disabled) = change.invoker_iam_disabled {
        entry.set("invoker_iam_disabled", disabled);
    }
    if let Some(h2) = change.use_http2 {
        entry.set("use_http2", h2);
    }
    if let Some(secs) = change.timeout_seconds {
        entry.set("timeout", secs);
    }
    if let Some(tags) = &change.tags {
        entry.set("tags", strings(tags));
    }
    ServiceChange {
        knative: change.knative.clone(),
        ..ServiceChange::default()
    }
}

/// `change` without the fields `plain` (the service as the file alone gives it) already
/// resolves as `want` (the service in force) does.
fn without_redundant(
    change: &ServiceChange,
    plain: Option<&Service>,
    want: &Service,
) -> ServiceChange {
    let Some(plain) = plain else {
        return change.clone();
    };
    let mut change = change.clone();
    macro_rules! drop_if_same {
        ($field:ident, $resolved:ident) => {
            if plain.$resolved == want.$resolved {
                change.$field = None;
            }
        };
    }
    drop_if_same!(service_account, service_account);
    drop_if_same!(custom_audiences, custom_audiences);
    drop_if_same!(ingress, ingress);
    drop_if_same!(invoker_iam_disabled, invoker_iam_disabled);
    drop_if_same!(use_http2, use_http2);
    drop_if_same!(timeout_seconds, timeout);
    drop_if_same!(tags, tags);
    drop_if_same!(iam_policy, policy);
    change
}

fn text_of(m: &Mapping, key: &str) -> Option<String> {
    m.get(key)?.as_scalar().map(|s| s.as_string())
}

fn strings(values: &[String]) -> Vec<YamlValue> {
    values.iter().map(|v| YamlValue::from(v.as_str())).collect()
}

fn policy_yaml(policy: &PolicyText) -> YamlValue {
    let bindings = policy
        .bindings
        .iter()
        .map(|b| {
            YamlValue::Mapping(
                [
                    ("role".to_owned(), YamlValue::from(b.role.as_str())),
                    (
                        "members".to_owned(),
                        YamlValue::Sequence(strings(&b.members)),
                    ),
                ]
                .into(),
            )
        })
        .collect();
    YamlValue::Mapping([("bindings".to_owned(), YamlValue::Sequence(bindings))].into())
}

/// The first part of `want` that `got` resolves differently, for the refusal.
fn first_difference(want: &Config, got: &Config) -> Option<String> {
    if want == got {
        return None;
    }
    for (w, g) in want.services.iter().zip(&got.services) {
        if w != g {
            return Some(format!("service `{}`", w.name));
        }
    }
    for (w, g) in want.service_accounts.iter().zip(&got.service_accounts) {
        if w != g {
            return Some(format!("service account `{}`", w.email));
        }
    }
    if want.policy != got.policy {
        return Some("the project's IAM policy".into());
    }
    Some("the configuration".into())
}
