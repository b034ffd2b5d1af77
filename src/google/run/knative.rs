//! A service as Cloud Run's v1 (Knative) API shows it, and a Knative `Service` document
//! sent by `gcloud run services update|replace` read back into a change.

use serde_json::{Map, Value, json};

use crate::config::layer::ServiceChange;
use crate::config::{CUSTOM_AUDIENCES_LIMIT, Config, H2C, Service, Upstream};
use crate::state::AppState;

pub(super) const API_VERSION: &str = "serving.knative.dev/v1";
const CUSTOM_AUDIENCES: &str = "run.googleapis.com/custom-audiences";
const INGRESS: &str = "run.googleapis.com/ingress";
const INGRESS_STATUS: &str = "run.googleapis.com/ingress-status";
const INVOKER_IAM_DISABLED: &str = "run.googleapis.com/invoker-iam-disabled";
/// Where the upstream frontdoor proxies to is shown, read only: `services.yaml` says it.
const UPSTREAM: &str = "frontdoor/upstream";
const LAST_MODIFIER: &str = "serving.knative.dev/lastModifier";
const LOCATION_LABEL: &str = "cloud.googleapis.com/location";
/// Set by the server on every object; a document sent back keeps none of them.
const SERVER_SET: [&str; 6] = [
    "generation",
    "resourceVersion",
    "uid",
    "selfLink",
    "creationTimestamp",
    "namespace",
];

/// A Knative list of `kind` (`ServiceList`, `RevisionList`).
pub(super) fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": API_VERSION, "kind": kind, "metadata": {}, "items": items})
}

/// `service` as `GET …/namespaces/NS/services/NAME` answers: the document last sent for it
/// (if any), with every field frontdoor honours written from the configuration in force,
/// and the `status` gcloud waits on.
pub(super) fn render(state: &AppState, service: &Service) -> Value {
    let config = state.config();
    let generation = state.revision_number(&service.name).unwrap_or(1);
    let revision = state.revision(&service.name).unwrap_or_default().to_owned();
    let mut doc = service
        .knative
        .clone()
        .filter(Value::is_object)
        .unwrap_or_else(|| json!({}));
    let now = rfc3339(state.now());

    let root = object(&mut doc);
    root.insert("apiVersion".into(), API_VERSION.into());
    root.insert("kind".into(), "Service".into());
    let metadata = object(root.entry("metadata").or_insert_with(|| json!({})));
    metadata.insert("name".into(), service.name.clone().into());
    metadata.insert("namespace".into(), config.project.number.clone().into());
    metadata.insert(
        "selfLink".into(),
        format!(
            "/apis/{API_VERSION}/namespaces/{}/services/{}",
            config.project.number, service.name
        )
        .into(),
    );
    metadata.insert(
        "uid".into(),
        crate::config::unique_id_for(&format!("service/{}", service.name)).into(),
    );
    // Changes exactly when the service does: a new revision is made for every change.
    metadata.insert("resourceVersion".into(), generation.to_string().into());
    metadata.insert("generation".into(), generation.into());
    metadata
        .entry("creationTimestamp")
        .or_insert_with(|| now.clone().into());
    let labels = object(metadata.entry("labels").or_insert_with(|| json!({})));
    labels.insert(LOCATION_LABEL.into(), config.project.region.clone().into());
    let annotations = object(metadata.entry("annotations").or_insert_with(|| json!({})));
    annotations.insert(INGRESS.into(), service.ingress.as_str().into());
    annotations.insert(INGRESS_STATUS.into(), service.ingress.as_str().into());
    if service.custom_audiences.is_empty() {
        annotations.remove(CUSTOM_AUDIENCES);
    } else {
        annotations.insert(
            CUSTOM_AUDIENCES.into(),
            serde_json::to_string(&service.custom_audiences)
                .unwrap_or_default()
                .into(),
        );
    }
    if service.invoker_iam_disabled {
        annotations.insert(INVOKER_IAM_DISABLED.into(), "true".into());
    } else {
        annotations.remove(INVOKER_IAM_DISABLED);
    }
    annotations.insert(UPSTREAM.into(), upstream(&service.upstream).into());

    let spec = object(root.entry("spec").or_insert_with(|| json!({})));
    let template = object(spec.entry("template").or_insert_with(|| json!({})));
    let template_spec = object(template.entry("spec").or_insert_with(|| json!({})));
    template_spec.insert(
        "serviceAccountName".into(),
        service.service_account.clone().into(),
    );
    template_spec.insert("timeoutSeconds".into(), service.timeout.as_secs().into());
    template_spec
        .entry("containerConcurrency")
        .or_insert_with(|| 80.into());
    let containers = template_spec
        .entry("containers")
        .or_insert_with(|| json!([{"image": "frontdoor/upstream"}]));
    if containers.as_array().is_none_or(|c| c.is_empty()) {
        *containers = json!([{"image": "frontdoor/upstream"}]);
    }
    if let Some(first) = containers.get_mut(0) {
        port_names_protocol(object(first), service.use_http2);
    }
    let mut traffic = vec![json!({"percent": 100, "latestRevision": true})];
    traffic.extend(
        service
            .tags
            .iter()
            .map(|t| json!({"tag": t, "latestRevision": true})),
    );
    spec.insert("traffic".into(), Value::Array(traffic));

    let mut status_traffic = vec![json!({
        "revisionName": revision,
        "percent": 100,
        "latestRevision": true,
    })];
    let legacy_host = service.legacy_url.trim_start_matches("https://");
    status_traffic.extend(service.tags.iter().map(|t| {
        json!({
            "tag": t,
            "revisionName": revision,
            "latestRevision": true,
            "url": format!("https://{t}---{legacy_host}"),
        })
    }));
    let condition = |kind: &str| json!({"type": kind, "status": "True", "lastTransitionTime": now});
    root.insert(
        "status".into(),
        json!({
            "observedGeneration": generation,
            "conditions": [condition("Ready"), condition("ConfigurationsReady"), condition("RoutesReady")],
            "latestReadyRevisionName": revision,
            "latestCreatedRevisionName": revision,
            "traffic": status_traffic,
            "url": service.url,
            "address": {"url": service.url},
        }),
    );
    doc
}

/// The revision in force of `service`: the template of its document, its labels and
/// annotations carried over, named and numbered as frontdoor numbers revisions.
pub(super) fn render_revision(state: &AppState, service: &Service) -> Value {
    let doc = render(state, service);
    let template = &doc["spec"]["template"];
    let mut labels = template["metadata"]["labels"].clone();
    let labels_map = object(&mut labels);
    labels_map.insert(
        "serving.knative.dev/service".into(),
        service.name.clone().into(),
    );
    labels_map.insert(
        "serving.knative.dev/configuration".into(),
        service.name.clone().into(),
    );
    labels_map.insert(
        LOCATION_LABEL.into(),
        state.config().project.region.clone().into(),
    );
    let generation = doc["metadata"]["generation"].clone();
    let now = rfc3339(state.now());
    json!({
        "apiVersion": API_VERSION,
        "kind": "Revision",
        "metadata": {
            "name": doc["status"]["latestReadyRevisionName"],
            "namespace": state.config().project.number,
            "labels": labels,
            "annotations": template["metadata"]["annotations"].clone(),
            "generation": 1,
            "creationTimestamp": now,
        },
        "spec": template["spec"].clone(),
        "status": {
            "observedGeneration": 1,
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": now},
                {"type": "ContainerHealthy", "status": "True", "lastTransitionTime": now},
                {"type": "ResourcesAvailable", "status": "True", "lastTransitionTime": now},
            ],
            "serviceGeneration": generation,
        },
    })
}

/// Writes HTTP/2 end to end as Cloud Run does, in the name of the container's first port:
/// `h2c`, or `http1` for a port named `h2c` or not named at all. A container with no port
/// gets one only for `h2c` (Cloud Run's default port is 8080).
fn port_names_protocol(container: &mut Map<String, Value>, use_http2: bool) {
    let ports = container.entry("ports").or_insert_with(|| json!([]));
    if !ports.is_array() {
        *ports = json!([]);
    }
    let ports = ports.as_array_mut().expect("made an array above");
    match (ports.first_mut().and_then(Value::as_object_mut), use_http2) {
        (Some(port), true) => {
            port.insert("name".into(), H2C.into());
        }
        (Some(port), false) => {
            // `--no-use-http2` sends the port with no name; Cloud Run names it `http1`.
            match port.get("name").and_then(Value::as_str) {
                None | Some(H2C) => {
                    port.insert("name".into(), "http1".into());
                }
                Some(_) => {}
            }
        }
        (None, true) => ports.push(json!({"name": H2C, "containerPort": 8080})),
        (None, false) => {
            container.remove("ports");
        }
    }
}

/// `KEY = VALUE, KEY2=VALUE2` (Kubernetes' equality selectors, the only kind gcloud sends).
pub(super) fn label_selector(selector: &str) -> Result<Vec<(String, String)>, String> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|term| {
            let (k, v) = term
                .split_once("==")
                .or_else(|| term.split_once('='))
                .ok_or_else(|| {
                    format!("labelSelector term `{}`: expected KEY = VALUE", clip(term))
                })?;
            Ok((k.trim().to_owned(), v.trim().to_owned()))
        })
        .collect()
}

pub(super) fn has_labels(object: &Value, wanted: &[(String, String)]) -> bool {
    wanted
        .iter()
        .all(|(k, v)| object["metadata"]["labels"][k].as_str() == Some(v))
}

/// Reads a document sent for `name` into the change it makes: every field frontdoor
/// honours, each set (a field left out is its default, since the document replaces the
/// service whole), and the document itself kept for the rest.
pub(super) fn read(config: &Config, name: &str, mut doc: Value) -> Result<ServiceChange, String> {
    let depth = depth(&doc);
    if depth > MAX_DEPTH {
        return Err(format!(
            "the document nests {depth} levels deep; a Knative Service needs about ten, and frontdoor keeps at most {MAX_DEPTH}"
        ));
    }
    let Some(root) = doc.as_object_mut() else {
        return Err("the body is not a JSON object (a Knative Service)".into());
    };
    let api_version = root.get("apiVersion").and_then(Value::as_str);
    let kind = root.get("kind").and_then(Value::as_str);
    if api_version != Some(API_VERSION) || kind != Some("Service") {
        return Err(format!(
            "expected apiVersion {API_VERSION} and kind Service, found {} {}",
            api_version.unwrap_or("(none)"),
            kind.unwrap_or("(none)")
        ));
    }
    root.remove("status");
    let metadata = root
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .ok_or("metadata: missing; a Service names itself in metadata.name")?;
    match metadata.get("name").and_then(Value::as_str) {
        Some(n) if n == name => {}
        other => {
            return Err(format!(
                "metadata.name is `{}`, but the request is for service `{name}`; a replace cannot rename a service",
                other.unwrap_or("(none)")
            ));
        }
    }
    if let Some(ns) = metadata.get("namespace") {
        let project = &config.project;
        if ns.as_str() != Some(&project.id) && ns.as_str() != Some(&project.number) {
            return Err(format!(
                "metadata.namespace is {ns}, not this project ({} or {}); a replace cannot move a service to another project",
                project.id, project.number
            ));
        }
    }
    for field in SERVER_SET {
        metadata.remove(field);
    }
    let annotations = metadata
        .get("annotations")
        .map(|a| {
            a.as_object()
                .ok_or("metadata.annotations: expected an object of strings")
        })
        .transpose()?;
    let annotation = |key: &str| -> Result<Option<&str>, String> {
        match annotations.and_then(|a| a.get(key)) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(format!(
                "metadata.annotations.{key}: expected a string, found {other}"
            )),
        }
    };
    let custom_audiences = match annotation(CUSTOM_AUDIENCES)? {
        None => Vec::new(),
        Some(text) => {
            if text.chars().count() > CUSTOM_AUDIENCES_LIMIT {
                return Err(format!(
                    "metadata.annotations.{CUSTOM_AUDIENCES}: {} characters, over Cloud Run's limit of {CUSTOM_AUDIENCES_LIMIT} for the JSON of the custom audiences",
                    text.chars().count()
                ));
            }
            serde_json::from_str::<Vec<String>>(text).map_err(|_| {
                format!(
                    "metadata.annotations.{CUSTOM_AUDIENCES}: must be a JSON array of strings, such as [\"https://api.example.com\"]; found {}",
                    clip(text)
                )
            })?
        }
    };
    let ingress = annotation(INGRESS)?.unwrap_or("all").to_owned();
    let invoker_iam_disabled = match annotation(INVOKER_IAM_DISABLED)? {
        None | Some("false") => false,
        Some("true") => true,
        Some(other) => {
            return Err(format!(
                "metadata.annotations.{INVOKER_IAM_DISABLED}: expected \"true\" or \"false\", found `{}`",
                clip(other)
            ));
        }
    };
    let spec = root.get("spec");
    let template_spec = spec
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("spec"));
    let service_account = match template_spec.and_then(|t| t.get("serviceAccountName")) {
        None => config.project.compute_default_account(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => {
            return Err(format!(
                "spec.template.spec.serviceAccountName: expected a string, found {other}"
            ));
        }
    };
    let timeout_seconds = match template_spec.and_then(|t| t.get("timeoutSeconds")) {
        None => crate::config::DEFAULT_TIMEOUT.as_secs(),
        Some(v) => v.as_u64().ok_or_else(|| {
            format!("spec.template.spec.timeoutSeconds: expected a whole number, found {v}")
        })?,
    };
    let first_port = template_spec
        .and_then(|t| t.get("containers"))
        .and_then(|c| c.get(0))
        .and_then(|c| c.get("ports"))
        .and_then(|p| p.get(0));
    if let Some(port) = first_port.filter(|p| !p.is_object()) {
        return Err(format!(
            "spec.template.spec.containers[0].ports[0]: expected an object such as {{\"name\": \"h2c\", \"containerPort\": 8080}}, found {}",
            clip(&port.to_string())
        ));
    }
    let use_http2 = match first_port.and_then(|p| p.get("name")) {
        None => false,
        Some(Value::String(name)) => name == H2C,
        Some(other) => {
            return Err(format!(
                "spec.template.spec.containers[0].ports[0].name: expected a string such as \"h2c\" or \"http1\", found {}",
                clip(&other.to_string())
            ));
        }
    };
    let tags = match spec.and_then(|s| s.get("traffic")) {
        None => Vec::new(),
        Some(Value::Array(targets)) => targets
            .iter()
            .filter_map(|t| t.get("tag"))
            .map(|t| {
                t.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| format!("spec.traffic[].tag: expected a string, found {t}"))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(format!("spec.traffic: expected a list, found {other}")),
    };
    Ok(ServiceChange {
        service_account: Some(service_account),
        custom_audiences: Some(custom_audiences),
        ingress: Some(ingress),
        invoker_iam_disabled: Some(invoker_iam_disabled),
        use_http2: Some(use_http2),
        timeout_seconds: Some(timeout_seconds),
        tags: Some(tags),
        iam_policy: None,
        knative: Some(doc),
    })
}

/// Records who sent `doc` (an email, as Cloud Run's `lastModifier` annotation has it; a
/// federated identity's subject).
pub(super) fn modified_by(doc: &mut Value, principal: &crate::iam::Principal) {
    let who = principal.id();
    let metadata = object(object(doc).entry("metadata").or_insert_with(|| json!({})));
    let annotations = object(metadata.entry("annotations").or_insert_with(|| json!({})));
    annotations.insert(LAST_MODIFIER.into(), who.into());
}

/// How deeply a sent document may nest. Kept in `changes.json` several levels down, it must
/// stay well inside what serde_json reads back (128).
const MAX_DEPTH: usize = 32;

/// How many levels of arrays and objects `v` nests (a scalar is 0), without recursion.
fn depth(v: &Value) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(v, 0)];
    while let Some((v, level)) = stack.pop() {
        let inner = level + 1;
        match v {
            Value::Array(items) => stack.extend(items.iter().map(|c| (c, inner))),
            Value::Object(fields) => stack.extend(fields.values().map(|c| (c, inner))),
            _ => continue,
        }
        deepest = deepest.max(inner);
    }
    deepest
}

fn object(v: &mut Value) -> &mut Map<String, Value> {
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("made an object above")
}

fn upstream(u: &Upstream) -> String {
    match u {
        Upstream::Command(c) => format!("command: {}", c.argv.join(" ")),
        other => other.to_string(),
    }
}

fn rfc3339(secs: i64) -> String {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.max(0).unsigned_abs());
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A value quoted in an error, at most 200 characters of it.
fn clip(s: &str) -> String {
    match s.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_arrays_and_objects_empty_or_not() {
        assert_eq!(depth(&json!("x")), 0);
        assert_eq!(depth(&json!({})), 1);
        assert_eq!(depth(&json!({"a": [1, {"b": {}}], "c": 2})), 4);
        let mut deep = json!(0);
        for _ in 0..1000 {
            deep = json!([deep]);
        }
        assert_eq!(depth(&deep), 1000);
    }
}
