//! Ranked fixes for a front-door refusal (issue 33), computed from the configuration in
//! force, least privilege first: what the caller should do differently (the audience it
//! minted for, the account it acts as) comes before a change to a policy; a group's
//! roster before a grant to one principal; a guess that the caller meant another service
//! after the grant; a change that lets in more than the principal refused is labelled as
//! widening and comes last. `allUsers`, `allAuthenticatedUsers`
//! and turning a check off are never offered.
//!
//! The same list is in `frontdoor explain`, `frontdoor decisions --json`
//! (`GET /frontdoor/v1/decisions`, each refusal's `fixes`) and the dashboard.

mod audience;
mod creator;
mod invoker;

use serde::Serialize;

use crate::config::{Config, Service};
use crate::decisions::{Code, Decision};
use crate::iam::{Member, Policy, Principal};

/// One fix, as the three surfaces show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Fix {
    /// `caller`: change the call, nothing else; `roster`: a group's members; `policy`: a
    /// service's or an account's IAM policy; `setting`: a service's other settings.
    pub(crate) kind: &'static str,
    /// Following it lets in more principals, or more tokens, than the one refused.
    pub(crate) widens: bool,
    pub(crate) text: String,
    /// Lines of a file, merged with what it has: `file` says which, `place` where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) yaml: Option<String>,
    /// The file `yaml` goes in: `services.yaml`, or the Knative file a service names when
    /// the setting comes from there.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) file: Option<String>,
    /// Where `yaml` goes: the lines it takes the place of, or where to add it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) place: Option<String>,
    /// A command with the same effect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) command: Option<String>,
}

impl Fix {
    fn caller(text: String) -> Fix {
        Fix {
            kind: "caller",
            widens: false,
            text,
            yaml: None,
            file: None,
            place: None,
            command: None,
        }
    }

    /// A change to a setting or a policy: its lines are given with [`Fix::lines`].
    fn change(kind: &'static str, widens: bool, text: String, command: Option<String>) -> Fix {
        Fix {
            kind,
            widens,
            text,
            yaml: None,
            file: None,
            place: None,
            command,
        }
    }

    /// `yaml`, lines of `services.yaml` to put `place`, where `home` keeps what they set:
    /// - the file itself: as given;
    /// - the Admin API's layer (`changes.json`, which wins over the file): the same lines
    ///   once `frontdoor fold` has written the layer into the file (the command, where
    ///   there is one, changes the value where it is);
    /// - a Knative file: that file's `annotation` line (`services.yaml` may not give a
    ///   field the Knative file gives);
    /// - the Admin API's layer where fold would leave the value there: no lines, and the
    ///   text says to change it through the Admin API (with the command, or `how`).
    fn lines(mut self, home: Home<'_>, yaml: String, place: String) -> Fix {
        let (file, yaml, place) = match home {
            Home::File => ("services.yaml".to_owned(), yaml, place),
            Home::Admin(what) => (
                "services.yaml".to_owned(),
                yaml,
                format!(
                    "after `frontdoor fold` (the Admin API set {what}, kept in changes.json, which wins over services.yaml until folded), {place}"
                ),
            ),
            Home::AdminOnly { what, how } => {
                let how = match &self.command {
                    Some(_) => "as the command does".to_owned(),
                    None => format!("with `{how}`"),
                };
                self.text.push_str(&format!(
                    " (the Admin API set {what}, kept in changes.json, which wins over the files and which `frontdoor fold` does not write back there: change it through the Admin API, {how})"
                ));
                return self;
            }
            Home::Knative { file, annotation } => (
                file.to_owned(),
                format!("metadata:\n  annotations:\n    {annotation}"),
                format!(
                    "in place of its `{}` annotation, or added under metadata.annotations (the setting comes from this file, so services.yaml may not give it too)",
                    annotation.split(':').next().unwrap_or_default()
                ),
            ),
        };
        self.yaml = Some(yaml);
        self.file = Some(file);
        self.place = Some(place);
        self
    }
}

/// Where the value a fix changes is kept.
pub(super) enum Home<'a> {
    File,
    /// The Admin API's layer: what it set, in words.
    Admin(String),
    /// The Admin API's layer, for a value `frontdoor fold` does not write into a file (a
    /// service described by a Knative file gets its IAM policy folded, nothing else; an
    /// account the file does not declare keeps its policy in the layer): what it set, and
    /// the gcloud command that changes it.
    AdminOnly {
        what: String,
        how: String,
    },
    /// A Knative file, and the annotation line that sets the value there.
    Knative {
        file: &'a str,
        annotation: String,
    },
}

impl<'a> Home<'a> {
    /// Where `service`'s `field` (as `services.yaml` names it) is kept; `annotation`, the
    /// Knative file's line for the new value, is used if that file gives the field.
    fn of(service: &'a Service, field: &str, annotation: impl FnOnce() -> String) -> Home<'a> {
        let what = format!("{}'s `{field}`", service.name);
        if service.elsewhere.by_admin(field) {
            if service.elsewhere.knative.is_some() && field != "iam_policy" {
                Home::AdminOnly {
                    what,
                    how: format!("gcloud run services update {}", service.name),
                }
            } else {
                Home::Admin(what)
            }
        } else if let Some(file) = service.elsewhere.by_knative(field) {
            Home::Knative {
                file,
                annotation: annotation(),
            }
        } else {
            Home::File
        }
    }
}

/// What a refusal was about, as a decision or an explained verdict holds it.
#[derive(Default)]
pub(crate) struct Refusal<'a> {
    pub(crate) code: Option<Code>,
    pub(crate) service: Option<&'a str>,
    pub(crate) principal: Option<&'a str>,
    /// The token's `aud`, if it had one.
    pub(crate) audience: Option<&'a str>,
    /// The Host the request named (the front door routes by it).
    pub(crate) host: Option<&'a str>,
    /// What was asked for off the front door: IAM Credentials' target account.
    pub(crate) target: Option<&'a str>,
    /// The permission IAM checked, where one was.
    pub(crate) permission: Option<&'a str>,
}

impl<'a> Refusal<'a> {
    pub(crate) fn of(decision: &'a Decision, audience: Option<&'a str>) -> Refusal<'a> {
        Refusal {
            code: decision.code,
            service: decision.service.as_deref(),
            principal: decision.principal.as_deref(),
            audience,
            host: Some(decision.host.as_str()),
            target: decision.target.as_deref(),
            permission: decision.permission.as_deref(),
        }
    }
}

/// The fixes for `refusal`, best first; empty where there is nothing to rank (the code's
/// own fix, in the table of codes, stands).
pub(crate) fn ranked(config: &Config, refusal: &Refusal<'_>) -> Vec<Fix> {
    let Some(code) = refusal.code else {
        return Vec::new();
    };
    match code {
        Code::UnknownHost => {
            return refusal
                .host
                .map(|h| audience::unknown_host(config, h))
                .unwrap_or_default();
        }
        Code::PermissionDenied => {
            return match (
                refusal.principal.map(Member::parse),
                refusal.target,
                refusal.permission,
            ) {
                (Some(Ok(member)), Some(target), Some(permission)) => {
                    creator::token_creator(config, &member, target, permission)
                }
                _ => Vec::new(),
            };
        }
        _ => {}
    }
    let Some(service) = refusal.service.and_then(|s| config.service(s)) else {
        return Vec::new();
    };
    match code {
        Code::NoInvokerBinding => match refusal.principal.map(Member::parse) {
            Some(Ok(member)) => invoker::no_invoker(config, service, &member),
            _ => Vec::new(),
        },
        Code::AudienceNotAccepted => match refusal.audience {
            Some(aud) => audience::audience(config, service, aud),
            None => Vec::new(),
        },
        Code::TokenExpired => vec![Fix::caller(format!(
            "fetch a new token for {} and use it at once: a token lives an hour, and Google's libraries and the metadata server renew one before it ends; a token kept in a file or a variable does not renew",
            service.url
        ))],
        Code::IngressInternalOnly => vec![
            Fix::caller(format!(
                "call {} from inside: from a service frontdoor runs (`frontdoor exec SERVICE -- COMMAND` acts as one), not from outside the project's network",
                service.name
            )),
            Fix::change(
                "setting",
                true,
                format!(
                    "let everyone reach {} (`ingress: all`): IAM still decides who gets in, but the service is reachable from anywhere",
                    service.name
                ),
                Some(format!(
                    "gcloud run services update {} --ingress=all",
                    service.name
                )),
            )
            .lines(
                Home::of(service, "ingress", || {
                    format!("{}: all", crate::config::KNATIVE_INGRESS)
                }),
                "ingress: all".to_owned(),
                format!(
                    "under service `{}`, in place of its `ingress:` line",
                    service.name
                ),
            ),
        ],
        _ => Vec::new(),
    }
}

/// `text` as a YAML scalar: plain when it is made of characters that cannot change its
/// meaning, else double-quoted (JSON's quoting is YAML's). A federated principal's subject,
/// say, may hold `,`, `]` or ` #`.
fn yaml_scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@.:_/*+-".contains(&b));
    if plain { text.to_owned() } else { quoted(text) }
}

/// `text` double-quoted, as JSON and YAML both read it back: JSON's quoting, and the
/// characters YAML would not keep as they are (a line break JSON leaves alone, U+2028 say,
/// or a character YAML refuses, DEL or a C1 control) escaped too.
pub(super) fn quoted(text: &str) -> String {
    let json = serde_json::Value::String(text.to_owned()).to_string();
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        if matches!(
            c,
            '\u{7f}'..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
        ) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out
}

fn principal_of(member: &Member) -> Option<Principal> {
    match member {
        Member::ServiceAccount(e) => Some(Principal::ServiceAccount(e.clone())),
        Member::User(e) => Some(Principal::User(e.clone())),
        _ => None,
    }
}

/// An `iam_policy:` block as `services.yaml` writes it.
fn policy_yaml(policy: &Policy) -> String {
    let mut out = String::from("iam_policy:\n  bindings:\n");
    for b in &policy.bindings {
        let members: Vec<String> = b
            .members
            .iter()
            .map(|m| yaml_scalar(&m.to_string()))
            .collect();
        out.push_str(&format!(
            "    - role: {}\n      members: [{}]\n",
            b.role.name(),
            members.join(", ")
        ));
    }
    out.pop();
    out
}

#[cfg(test)]
mod tests;
