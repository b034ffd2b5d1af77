//! Services described by Knative `Service` documents, as
//! `gcloud run services describe --format export` writes them.

use std::path::Path;

use super::raw::{KnativeService, RawService};
use super::{At, ConfigError, parse_yaml};

pub(crate) const CUSTOM_AUDIENCES: &str = "run.googleapis.com/custom-audiences";
pub(crate) const INGRESS: &str = "run.googleapis.com/ingress";
const INVOKER_IAM_DISABLED: &str = "run.googleapis.com/invoker-iam-disabled";
/// The name of a container port that speaks HTTP/2 without TLS (Knative's and Cloud Run's).
pub(crate) const H2C: &str = "h2c";

/// Fills `entry` from the Knative file it names. A field given both in the file and in the
/// entry is refused rather than silently picking one.
pub(super) fn merge(
    mut entry: RawService,
    file: &Path,
    path: &str,
    at: &At<'_>,
) -> Result<(RawService, Vec<&'static str>), ConfigError> {
    let text = at.named.text(file, at, format!("{path}.knative"))?;
    let doc: KnativeService = parse_yaml(text, file)?;
    let in_file = At {
        file,
        named: at.named,
        layer: at.layer,
    };
    if doc.api_version != "serving.knative.dev/v1" || doc.kind != "Service" {
        return Err(in_file.err(
            "(top level)",
            format!(
                "expected apiVersion serving.knative.dev/v1 and kind Service, found {} {}",
                doc.api_version, doc.kind
            ),
        ));
    }
    let annotations = &doc.metadata.annotations;

    let custom_audiences = annotations
        .get(CUSTOM_AUDIENCES)
        .map(|s| {
            serde_json::from_str::<Vec<String>>(s).map_err(|_| {
                in_file.err(
                    format!("metadata.annotations.{CUSTOM_AUDIENCES}"),
                    format!("the annotation must be a JSON array of strings inside a string, such as '[\"https://api.example.com\"]'; found {s}"),
                )
            })
        })
        .transpose()?;
    let invoker_iam_disabled = annotations
        .get(INVOKER_IAM_DISABLED)
        .map(|s| match s.as_str() {
            "true" => Ok(true),
            "false" => Ok(false),
            _ => Err(in_file.err(
                format!("metadata.annotations.{INVOKER_IAM_DISABLED}"),
                format!("expected \"true\" or \"false\", found `{s}`"),
            )),
        })
        .transpose()?;
    let tags: Vec<String> = doc
        .spec
        .traffic
        .iter()
        .filter_map(|t| t.tag.clone())
        .collect();

    // Cloud Run's HTTP/2 end to end is the container port's name; gcloud writes `http1`
    // for the default, and a port with no name is HTTP/1 too.
    let use_http2 = doc
        .spec
        .template
        .spec
        .containers
        .first()
        .and_then(|c| c.ports.first())
        .and_then(|p| p.name.as_deref())
        .map(|name| name == H2C);

    let from_file = RawService {
        name: doc.metadata.name,
        service_account: doc.spec.template.spec.service_account_name,
        custom_audiences,
        ingress: annotations.get(INGRESS).cloned(),
        invoker_iam_disabled,
        use_http2,
        tags: (!tags.is_empty()).then_some(tags),
        timeout: doc
            .spec
            .template
            .spec
            .timeout_seconds
            .map(super::raw::StringOrNumber::Number),
        ..RawService::default()
    };

    // The fields the Knative file gives, as `services.yaml` names them.
    let mut given = Vec::new();
    macro_rules! take {
        ($field:ident) => {
            if from_file.$field.is_some() {
                given.push(stringify!($field));
            }
            match (from_file.$field, entry.$field.take()) {
                (Some(_), Some(_)) => {
                    return Err(at.err(
                        format!("{path}.{}", stringify!($field)),
                        format!(
                            "`{}` is given both here and in the Knative file {}; keep one",
                            stringify!($field),
                            file.display()
                        ),
                    ));
                }
                (a, b) => entry.$field = a.or(b),
            }
        };
    }
    take!(name);
    take!(service_account);
    take!(custom_audiences);
    take!(ingress);
    take!(invoker_iam_disabled);
    take!(use_http2);
    take!(tags);
    take!(timeout);
    Ok((entry, given))
}
