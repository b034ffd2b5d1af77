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
    ///   field the Knative file gives).
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
mod tests {
    use super::*;
    use crate::google::judge;
    use crate::iam;

    const SA: &str = "@demo-project.iam.gserviceaccount.com";

    fn config(services: &str) -> Config {
        let text = format!(
            "project: {{id: demo-project, number: \"123456789012\", region: us-central1}}\nusers: [dana@example.com, eli@example.com]\ngroups: [{{email: ops@example.com, members: [user:eli@example.com]}}]\nservice_accounts: [{{email: ci{SA}}}]\n{services}"
        );
        crate::config::parse(&text, std::path::Path::new("services.yaml")).unwrap()
    }

    fn refusal<'a>(code: Code, principal: &'a str, audience: Option<&'a str>) -> Refusal<'a> {
        Refusal {
            code: Some(code),
            service: Some("api"),
            principal: Some(principal),
            audience,
            ..Refusal::default()
        }
    }

    #[test]
    fn an_audience_the_minter_chose_never_reaches_a_command_or_the_pages_code() {
        let c = config("services: [{name: api, upstream: builtin:echo}]\n");
        for aud in [
            "https://x.example/$(rm -rf ~)",
            "a`b`c",
            "https://a.example,https://b",
        ] {
            let fixes = ranked(
                &c,
                &refusal(
                    Code::AudienceNotAccepted,
                    "user:dana@example.com",
                    Some(aud),
                ),
            );
            let widening = fixes.last().unwrap();
            assert!(
                widening.widens && widening.command.is_none(),
                "{aud}: {widening:?}"
            );
            assert!(
                fixes.iter().all(|f| !f.text.contains('`')),
                "{aud}: {fixes:?}"
            );
            // In YAML it is quoted, so it stays one audience.
            let yaml = widening.yaml.as_deref().unwrap();
            assert!(
                yaml.contains(&serde_json::Value::String(aud.to_owned()).to_string()),
                "{yaml}"
            );
        }
        // An ordinary URL gets its command.
        let fixes = ranked(
            &c,
            &refusal(
                Code::AudienceNotAccepted,
                "user:dana@example.com",
                Some("https://other.example"),
            ),
        );
        assert!(fixes.last().unwrap().command.is_some());
    }

    #[test]
    fn joining_a_group_that_holds_more_is_widening_and_ranked_after_the_grant() {
        let narrow = config(
            "services: [{name: api, upstream: builtin:echo, iam_policy: {bindings: [{role: roles/run.invoker, members: [group:ops@example.com]}]}}]\n",
        );
        let fixes = ranked(
            &narrow,
            &refusal(Code::NoInvokerBinding, "user:dana@example.com", None),
        );
        assert_eq!(
            fixes.iter().map(|f| (f.kind, f.widens)).collect::<Vec<_>>(),
            [("roster", false), ("policy", false)]
        );
        // The group also holds the invoker role on another service: joining brings that.
        let broad = config(
            "services:\n  - {name: api, upstream: builtin:echo, iam_policy: {bindings: [{role: roles/run.invoker, members: [group:ops@example.com]}]}}\n  - {name: admin, upstream: builtin:echo, iam_policy: {bindings: [{role: roles/run.invoker, members: [group:ops@example.com]}]}}\n",
        );
        let fixes = ranked(
            &broad,
            &refusal(Code::NoInvokerBinding, "user:dana@example.com", None),
        );
        assert_eq!(
            fixes.iter().map(|f| (f.kind, f.widens)).collect::<Vec<_>>(),
            [("policy", false), ("roster", true)]
        );
    }

    #[test]
    fn a_caller_that_may_call_another_service_is_told_which() {
        let c = config(&format!(
            "services:\n  - {{name: api, upstream: builtin:echo}}\n  - {{name: web, upstream: builtin:echo, iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:ci{SA}]}}]}}}}\n"
        ));
        let principal = format!("serviceAccount:ci{SA}");
        let fixes = ranked(&c, &refusal(Code::NoInvokerBinding, &principal, None));
        assert_eq!(
            fixes.iter().map(|f| f.kind).collect::<Vec<_>>(),
            ["policy", "caller"]
        );
        assert!(
            fixes[1].text.contains("may call web (https://web-"),
            "{fixes:?}"
        );
    }

    #[test]
    fn a_group_inside_a_broader_group_is_widening_to_join() {
        let text = format!(
            "project: {{id: demo-project, number: \"123456789012\", region: us-central1}}\nusers: [dana@example.com, eli@example.com]\ngroups:\n  - {{email: ops@example.com, members: [user:eli@example.com]}}\n  - {{email: platform@example.com, members: [group:ops@example.com]}}\nservice_accounts: [{{email: ci{SA}}}]\nservices:\n  - {{name: api, upstream: builtin:echo, iam_policy: {{bindings: [{{role: roles/run.invoker, members: [group:ops@example.com]}}]}}}}\n  - {{name: admin, upstream: builtin:echo, iam_policy: {{bindings: [{{role: roles/run.admin, members: [group:platform@example.com]}}]}}}}\n"
        );
        let c = crate::config::parse(&text, std::path::Path::new("services.yaml")).unwrap();
        let fixes = ranked(
            &c,
            &refusal(Code::NoInvokerBinding, "user:dana@example.com", None),
        );
        assert_eq!(
            fixes.iter().map(|f| (f.kind, f.widens)).collect::<Vec<_>>(),
            [("policy", false), ("roster", true)]
        );
    }

    #[test]
    fn a_setting_kept_elsewhere_is_changed_where_it_lives() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("web.knative.yaml"),
            "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n    run.googleapis.com/ingress: internal\n    run.googleapis.com/custom-audiences: '[\"https://web.example\"]'\nspec:\n  template:\n    spec: {}\n",
        )
        .unwrap();
        let file = dir.path().join("services.yaml");
        std::fs::write(
            &file,
            format!(
                "project: {{id: demo-project, number: \"123456789012\", region: us-central1}}\nservice_accounts: [{{email: ci{SA}}}]\nservices:\n  - {{name: api, upstream: builtin:echo}}\n  - {{knative: web.knative.yaml, upstream: builtin:echo}}\n"
            ),
        )
        .unwrap();
        let mut layer = crate::config::Layer::default();
        let admin = |bindings: &str| crate::config::layer::ServiceChange {
            iam_policy: Some(serde_json::from_str(bindings).unwrap()),
            ..Default::default()
        };
        layer.services.insert(
            "api".into(),
            admin(&format!(
                r#"{{"bindings": [{{"role": "roles/run.invoker", "members": ["serviceAccount:ci{SA}"]}}]}}"#
            )),
        );
        let c = crate::config::load_layered(&file, &layer).unwrap();
        let principal = "user:dana@example.com";

        // The Admin API set api's policy: the merged block goes in after `frontdoor fold`.
        let grant = ranked(&c, &refusal(Code::NoInvokerBinding, principal, None))
            .into_iter()
            .find(|f| f.kind == "policy")
            .unwrap();
        assert_eq!(grant.file.as_deref(), Some("services.yaml"));
        assert!(
            grant
                .place
                .as_deref()
                .unwrap()
                .starts_with("after `frontdoor fold`"),
            "{grant:?}"
        );
        assert!(
            grant
                .yaml
                .as_deref()
                .unwrap()
                .contains(&format!("serviceAccount:ci{SA}"))
        );

        // web's ingress comes from its Knative file: the annotation goes there.
        let on_web = |code, audience| {
            ranked(
                &c,
                &Refusal {
                    service: Some("web"),
                    ..refusal(code, principal, audience)
                },
            )
        };
        let open = on_web(Code::IngressInternalOnly, None).pop().unwrap();
        assert_eq!(open.file.as_deref(), Some("web.knative.yaml"), "{open:?}");
        assert_eq!(
            open.yaml.as_deref(),
            Some("metadata:\n  annotations:\n    run.googleapis.com/ingress: all")
        );
        let audience = on_web(Code::AudienceNotAccepted, Some("https://it's.example"))
            .pop()
            .unwrap();
        assert_eq!(
            audience.yaml.as_deref(),
            Some(
                "metadata:\n  annotations:\n    run.googleapis.com/custom-audiences: '[\"https://web.example\", \"https://it''s.example\"]'"
            )
        );

        // The Admin API set web's audiences: fold leaves them in changes.json (a Knative
        // file describes web), so only the command changes them.
        layer.services.insert(
            "web".into(),
            crate::config::layer::ServiceChange {
                custom_audiences: Some(vec![
                    "https://web.example".into(),
                    "https://b.example".into(),
                ]),
                ..Default::default()
            },
        );
        let c = crate::config::load_layered(&file, &layer).unwrap();
        let widening = ranked(
            &c,
            &Refusal {
                service: Some("web"),
                ..refusal(
                    Code::AudienceNotAccepted,
                    principal,
                    Some("https://other.example"),
                )
            },
        )
        .pop()
        .unwrap();
        assert!(
            widening.yaml.is_none() && widening.command.is_some(),
            "{widening:?}"
        );
        assert!(
            widening.text.contains(
                "`frontdoor fold` does not write back there: change it through the Admin API, as the command does"
            ),
            "{widening:?}"
        );
    }

    #[test]
    fn an_account_the_file_does_not_declare_is_given_an_entry() {
        let c = config("services: [{name: api, upstream: builtin:echo}]\n");
        let compute = c.project.compute_default_account();
        let fixes = ranked(
            &c,
            &Refusal {
                code: Some(Code::PermissionDenied),
                principal: Some("user:dana@example.com"),
                target: Some(&compute),
                permission: Some(iam::GET_OPENID_TOKEN),
                ..Refusal::default()
            },
        );
        let grant = fixes.last().unwrap();
        let yaml = grant.yaml.as_deref().unwrap();
        assert!(
            yaml.starts_with(&format!(
                "- email: {compute}\n  iam_policy:\n    bindings:\n"
            )),
            "{yaml}"
        );
        // As written there, it declares the account with the grant.
        let text = format!(
            "project: {{id: demo-project, number: \"123456789012\", region: us-central1}}\nusers: [dana@example.com]\nservice_accounts:\n{}\nservices: [{{name: api, upstream: builtin:echo}}]\n",
            yaml.lines()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        let fixed = crate::config::parse(&text, std::path::Path::new("services.yaml")).unwrap();
        let account = fixed.service_account(&compute).unwrap();
        assert!(account.declared);
        assert!(
            judge(
                &fixed,
                &Principal::User("dana@example.com".into()),
                iam::GET_OPENID_TOKEN,
                crate::google::Resource::Account(account)
            )
            .is_ok()
        );
    }

    #[test]
    fn a_member_needing_quotes_is_quoted_in_the_yaml() {
        assert_eq!(
            yaml_scalar("serviceAccount:ci@x.iam.gserviceaccount.com"),
            "serviceAccount:ci@x.iam.gserviceaccount.com"
        );
        assert_eq!(yaml_scalar("a, b] #c"), "\"a, b] #c\"");
        // Read back by YAML as written: no line break or refused character left raw.
        let odd = "a\u{2028}b\u{85}c\u{7f}d\u{e9}";
        let quoted = yaml_scalar(odd);
        assert_eq!(quoted, "\"a\\u2028b\\u0085c\\u007fd\u{e9}\"");
        assert_eq!(serde_json::from_str::<String>(&quoted).unwrap(), odd);
        assert_eq!(yaml_scalar(""), "\"\"");
    }
}
