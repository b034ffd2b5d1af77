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

use serde::Serialize;

use crate::config::{Config, Service};
use crate::decisions::{Code, Decision};
use crate::google::{Resource, judge};
use crate::iam::{self, Binding, Member, Policy, Principal, Role};
use crate::tokens::GCLOUD_CLIENT_ID;

/// One fix, as the three surfaces show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Fix {
    /// `caller`: change the call, nothing else; `roster`: a group's members; `policy`: a
    /// service's or an account's IAM policy; `setting`: a service's other settings.
    pub(crate) kind: &'static str,
    /// Following it lets in more principals, or more tokens, than the one refused.
    pub(crate) widens: bool,
    pub(crate) text: String,
    /// Lines of `services.yaml`, merged with what the file has: `place` says where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) yaml: Option<String>,
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
            place: None,
            command: None,
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
                .map(|h| unknown_host(config, h))
                .unwrap_or_default();
        }
        Code::PermissionDenied => {
            return match (
                refusal.principal.map(Member::parse),
                refusal.target,
                refusal.permission,
            ) {
                (Some(Ok(member)), Some(target), Some(permission)) => {
                    token_creator(config, &member, target, permission)
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
            Some(Ok(member)) => no_invoker(config, service, &member),
            _ => Vec::new(),
        },
        Code::AudienceNotAccepted => match refusal.audience {
            Some(aud) => audience(config, service, aud),
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
            Fix {
                kind: "setting",
                widens: true,
                text: format!(
                    "let everyone reach {} (`ingress: all`): IAM still decides who gets in, but the service is reachable from anywhere",
                    service.name
                ),
                yaml: Some("ingress: all".to_owned()),
                place: Some(format!(
                    "under service `{}`, in place of its `ingress:` line",
                    service.name
                )),
                command: Some(format!(
                    "gcloud run services update {} --ingress=all",
                    service.name
                )),
            },
        ],
        _ => Vec::new(),
    }
}

/// `member` holds no invoker role on `service`.
fn no_invoker(config: &Config, service: &Service, member: &Member) -> Vec<Fix> {
    let mut fixes = Vec::new();
    let invoker_bindings: Vec<&Binding> = service
        .policy
        .bindings
        .iter()
        .filter(|b| b.role.grants(iam::INVOKE))
        .collect();
    let principal = principal_of(member);

    // The caller acts as the wrong account: another one the service admits is one the
    // caller itself, or whoever may mint the account it used, may also mint.
    if let Member::ServiceAccount(used) = member {
        let minters = minters_of(config, used);
        let mut seen: Vec<&str> = Vec::new();
        for bound in invoker_bindings.iter().flat_map(|b| &b.members) {
            let Member::ServiceAccount(admitted) = bound else {
                continue;
            };
            if admitted == used || seen.contains(&admitted.as_str()) {
                continue;
            }
            seen.push(admitted);
            let admitted_minters = minters_of(config, admitted);
            let shared: Vec<&str> = minters
                .iter()
                .filter(|m| admitted_minters.contains(m))
                .map(String::as_str)
                .collect();
            let may_itself = principal.as_ref().is_some_and(|p| {
                config.service_account(admitted).is_some_and(|acc| {
                    judge(config, p, iam::GET_OPENID_TOKEN, Resource::Account(acc)).is_ok()
                })
            });
            let why = if may_itself {
                format!("{used} may mint its ID tokens")
            } else if !shared.is_empty() {
                format!(
                    "these may mint both {used}'s tokens and its: {}",
                    shared.join(", ")
                )
            } else {
                continue;
            };
            fixes.push(Fix::caller(format!(
                "call as serviceAccount:{admitted}, which {} admits ({why}): impersonate it rather than {used}, and no policy changes",
                service.name
            )));
        }
    }

    // A group the service admits, that the caller is not in: joining it is narrowest when
    // the group holds the invoker role here and nothing else anywhere; else joining
    // brings whatever else the group holds, so it is labelled widening and ranked last.
    let mut later = Vec::new();
    let mut groups_seen: Vec<&str> = Vec::new();
    for binding in &invoker_bindings {
        for bound in &binding.members {
            let Member::Group(group) = bound else {
                continue;
            };
            let Some(members) = config.groups.get(group) else {
                continue;
            };
            if groups_seen.contains(&group.as_str()) {
                continue;
            }
            groups_seen.push(group);
            let widens =
                binding.role.name() != "roles/run.invoker" || bindings_holding(config, bound) > 1;
            let roster: Vec<String> = members.iter().map(Member::to_string).collect();
            let mut with = roster.clone();
            with.push(member.to_string());
            let fix = Fix {
                kind: "roster",
                widens,
                text: format!(
                    "add {member} to group:{group}, which {} admits (members now: {}){}",
                    service.name,
                    if roster.is_empty() {
                        "none".to_owned()
                    } else {
                        roster.join(", ")
                    },
                    if widens {
                        "; the group holds more than the invoker role here, and joining it brings all of that"
                    } else {
                        ""
                    }
                ),
                yaml: Some(format!(
                    "- email: {}\n  members: [{}]",
                    yaml_scalar(group),
                    with.iter()
                        .map(|m| yaml_scalar(m))
                        .collect::<Vec<_>>()
                        .join(", ")
                )),
                place: Some(format!(
                    "under `groups:`, in place of group `{group}`'s entry"
                )),
                command: None,
            };
            if widens {
                later.push(fix);
            } else {
                fixes.push(fix);
            }
        }
    }

    // The caller may call other services: it may have meant one of them. A guess, so it
    // comes after the grant (and before anything that widens).
    let mut meant = None;
    if let Some(p) = &principal {
        let others: Vec<&Service> = config
            .services
            .iter()
            .filter(|s| s.name != service.name)
            .filter(|s| judge(config, p, iam::INVOKE, Resource::Service(s)).is_ok())
            .take(5)
            .collect();
        if !others.is_empty() {
            meant = Some(Fix::caller(format!(
                "if you meant another service, {member} may call {}: call its URL, with a token minted for it",
                others
                    .iter()
                    .map(|s| format!("{} ({})", s.name, s.url))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }

    // Grant this principal alone, merged into the policy the service has (unless a
    // reload since the refusal granted it already).
    if invoker_bindings.iter().any(|b| b.members.contains(member)) {
        fixes.extend(meant);
        fixes.extend(later);
        return fixes;
    }
    let mut policy = service.policy.clone();
    match policy
        .bindings
        .iter_mut()
        .find(|b| b.role.name() == "roles/run.invoker")
    {
        Some(binding) => binding.members.push(member.clone()),
        None => policy.bindings.push(Binding {
            role: Role::parse("roles/run.invoker").expect("a known role"),
            members: vec![member.clone()],
        }),
    }
    fixes.push(Fix {
        kind: "policy",
        widens: false,
        text: format!(
            "grant {member} roles/run.invoker on {} ({})",
            service.name,
            if service.policy.bindings.is_empty() {
                "the service has no policy yet"
            } else {
                "merged into the service's policy: every member it has is kept"
            }
        ),
        yaml: Some(policy_yaml(&policy)),
        place: Some(if service.policy.bindings.is_empty() {
            format!("under service `{}` (it has no policy yet)", service.name)
        } else {
            format!(
                "under service `{}`, in place of its policy block (never beside it: a second one is refused)",
                service.name
            )
        }),
        command: Some(format!(
            "gcloud run services add-iam-policy-binding {} --member={member} --role=roles/run.invoker",
            service.name
        )),
    });
    fixes.extend(meant);
    fixes.extend(later);
    fixes
}

/// How many bindings, anywhere in the configuration (the project's, every service's, every
/// account's), name `member`.
/// A member of a group that is itself in other groups gets their bindings too: those
/// count, through any depth of nesting (each group once, so a cycle ends).
fn bindings_holding(config: &Config, member: &Member) -> usize {
    let mut holders = vec![member.clone()];
    let mut i = 0;
    while i < holders.len() {
        for (group, members) in &config.groups {
            let container = Member::Group(group.clone());
            if members.contains(&holders[i]) && !holders.contains(&container) {
                holders.push(container);
            }
        }
        i += 1;
    }
    std::iter::once(&config.policy)
        .chain(config.services.iter().map(|s| &s.policy))
        .chain(config.service_accounts.iter().map(|a| &a.policy))
        .flat_map(|p| &p.bindings)
        .filter(|b| b.members.iter().any(|m| holders.contains(m)))
        .count()
}

/// `text` as a YAML scalar: plain when it is made of characters that cannot change its
/// meaning, else double-quoted (JSON's quoting is YAML's). A federated principal's subject,
/// say, may hold `,`, `]` or ` #`.
fn yaml_scalar(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@.:_/*+-".contains(&b));
    if plain {
        text.to_owned()
    } else {
        serde_json::Value::String(text.to_owned()).to_string()
    }
}

/// The longest audience compared letter by letter with the accepted ones: a token's `aud`
/// is its minter's to choose (up to the 8 KiB frontdoor mints), and the decisions list
/// ranks fixes for every refusal it returns.
const NEAR_MISS_MAX: usize = 256;

/// The token's audience `aud` is not one `service` accepts.
fn audience(config: &Config, service: &Service, aud: &str) -> Vec<Fix> {
    let mut fixes = Vec::new();
    // Whoever minted the token chose `aud`: shown without backticks (the page renders
    // backticked text as code), and put in a command only when it cannot change the
    // command's meaning.
    let shown = aud.replace('`', "'");
    let aud_in_command = aud.len() <= NEAR_MISS_MAX
        && aud
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b":/._~%-".contains(&b));
    let url = &service.url;
    let bare = aud.split(['?', '#']).next().unwrap_or(aud);
    let accepted: Vec<&str> = [url.as_str(), service.legacy_url.as_str()]
        .into_iter()
        .chain(service.custom_audiences.iter().map(String::as_str))
        .collect();
    if aud == GCLOUD_CLIENT_ID {
        fixes.push(Fix::caller(format!(
            "mint the token for {url}: `gcloud auth print-identity-token --audiences={url}` (without --audiences, gcloud's client id is the audience, which only a user's token may carry)"
        )));
    } else if let Some(other) = config.services.iter().find(|s| {
        s.name != service.name
            && (s.url == bare.trim_end_matches('/') || s.custom_audiences.iter().any(|a| a == aud))
    }) {
        fixes.push(Fix::caller(format!(
            "the token was minted for {} ({shown}); mint it for {}'s URL, {url}",
            other.name, service.name
        )));
    } else if bare.trim_end_matches('/') != aud && accepted.contains(&bare.trim_end_matches('/')) {
        fixes.push(Fix::caller(format!(
            "an audience is the URL alone, with no query or fragment: mint the token for {}",
            bare.trim_end_matches('/')
        )));
    } else if let Some(path_base) = aud
        .strip_prefix(url.as_str())
        .filter(|rest| rest.starts_with('/') && rest.len() > 1)
        .map(|_| url.as_str())
    {
        fixes.push(Fix::caller(format!(
            "an audience is the service's URL alone, with no path: mint the token for {path_base}"
        )));
    } else if let Some(near) = accepted
        .iter()
        .copied()
        // A few letters, or a label left out or added (`billing.shop` for
        // `billing.internal.shop`): near enough to be the one meant. Only this service's
        // own audiences are candidates, so a loose match still names one that works.
        .filter(|a| {
            // No edit distance within the bound is possible past this length difference.
            let longer = a.len().max(aud.len());
            aud.len() <= NEAR_MISS_MAX && a.len().abs_diff(aud.len()) * 10 <= (longer * 3).max(30)
        })
        .map(|a| (a, strsim::levenshtein(a, aud)))
        .filter(|(a, d)| *d <= 3 || *d * 10 <= a.len().max(aud.len()) * 3)
        .min_by_key(|(_, d)| *d)
        .map(|(a, _)| a)
    {
        fixes.push(Fix::caller(format!(
            "did you mean {near}? It is an audience {} accepts, close to {shown}: mint the token for it",
            service.name
        )));
    } else {
        fixes.push(Fix::caller(format!(
            "mint the token for {url}, {}'s URL (or one of its accepted audiences: {})",
            service.name,
            accepted.join(", ")
        )));
    }
    // Accepting this audience too lets in every token minted for it: last, and said.
    let mut audiences = service.custom_audiences.clone();
    audiences.push(aud.to_owned());
    fixes.push(Fix {
        kind: "setting",
        widens: true,
        text: format!(
            "accept {shown} at {} as a custom audience: every token minted for it then reaches {}, whoever it was minted for",
            service.name, service.name
        ),
        yaml: Some(format!(
            "custom_audiences: [{}]",
            audiences
                .iter()
                .map(|a| serde_json::Value::String(a.clone()).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )),
        place: Some(format!(
            "under service `{}`, in place of its `custom_audiences:` line if it has one",
            service.name
        )),
        command: aud_in_command.then(|| {
            format!(
                "gcloud run services update {} --add-custom-audiences={aud}",
                service.name
            )
        }),
    });
    fixes
}

/// No service answers to `host`: one whose URL is a few letters from it is the one meant.
fn unknown_host(config: &Config, host: &str) -> Vec<Fix> {
    let bare = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let near = config
        .services
        .iter()
        .flat_map(|s| {
            [&s.url, &s.legacy_url]
                .into_iter()
                .chain(s.custom_domains.iter())
                .map(move |u| (s, u.trim_start_matches("https://")))
        })
        .filter(|(_, h)| strsim::levenshtein(h, bare) <= 3)
        .min_by_key(|(_, h)| strsim::levenshtein(h, bare));
    match near {
        Some((service, h)) => vec![Fix::caller(format!(
            "did you mean https://{h}? It is {}'s URL, a few letters from {bare}: call that, with a token minted for it",
            service.name
        ))],
        None => vec![Fix::caller(format!(
            "call one of the services' URLs: {}",
            config
                .services
                .iter()
                .map(|s| s.url.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))],
    }
}

/// `member` may not mint `target`'s tokens (IAM Credentials' `permission`): an account a
/// few letters from it that `member` may act as first, then the narrowest role on that
/// account alone, merged into its own policy.
fn token_creator(config: &Config, member: &Member, target: &str, permission: &str) -> Vec<Fix> {
    let mut fixes = Vec::new();
    let Some(account) = config.service_account_named(target) else {
        return fixes;
    };
    let Some(principal) = principal_of(member) else {
        return fixes;
    };
    let Some(permission) = [
        iam::GET_OPENID_TOKEN,
        iam::GET_ACCESS_TOKEN,
        iam::SIGN_JWT,
        iam::SIGN_BLOB,
    ]
    .into_iter()
    .find(|p| *p == permission) else {
        return fixes;
    };
    if let Some(near) = config
        .service_accounts
        .iter()
        .filter(|a| a.email != account.email)
        .filter(|a| strsim::levenshtein(&a.email, &account.email) <= 2)
        .find(|a| judge(config, &principal, permission, Resource::Account(a)).is_ok())
    {
        fixes.push(Fix::caller(format!(
            "did you mean {}? {member} may act as it, and its name is a letter or two from {}",
            near.email, account.email
        )));
    }
    // The ID-token-only role where an ID token was asked for; else Token Creator.
    let role = if permission == iam::GET_OPENID_TOKEN {
        "roles/iam.serviceAccountOpenIdTokenCreator"
    } else {
        "roles/iam.serviceAccountTokenCreator"
    };
    let mut policy = account.policy.clone();
    match policy.bindings.iter_mut().find(|b| b.role.name() == role) {
        // Granted already, by a reload since the refusal: nothing to add.
        Some(binding) if binding.members.contains(member) => return fixes,
        Some(binding) => binding.members.push(member.clone()),
        None => policy.bindings.push(Binding {
            role: Role::parse(role).expect("a known role"),
            members: vec![member.clone()],
        }),
    }
    fixes.push(Fix {
        kind: "policy",
        widens: false,
        text: format!(
            "grant {member} {role} on {} alone (not on the project, which would let it act as every account)",
            account.email
        ),
        yaml: Some(policy_yaml(&policy)),
        place: Some(format!(
            "under `service_accounts:`, in {}'s entry, in place of its policy block if it has one",
            account.email
        )),
        command: Some(format!(
            "gcloud iam service-accounts add-iam-policy-binding {} --member={member} --role={role}",
            account.email
        )),
    });
    fixes
}

/// The service accounts and users that may mint `account`'s ID tokens (its own policy's
/// and the project's Token Creator bindings), as members' strings.
fn minters_of(config: &Config, account: &str) -> Vec<String> {
    let Some(acc) = config.service_account(account) else {
        return Vec::new();
    };
    let mut minters = Vec::new();
    for policy in [&acc.policy, &config.policy] {
        for binding in &policy.bindings {
            if !binding.role.grants(iam::GET_OPENID_TOKEN) {
                continue;
            }
            for m in &binding.members {
                if matches!(m, Member::ServiceAccount(_) | Member::User(_)) {
                    let text = m.to_string();
                    if !minters.contains(&text) {
                        minters.push(text);
                    }
                }
            }
        }
    }
    minters
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
    fn a_member_needing_quotes_is_quoted_in_the_yaml() {
        assert_eq!(
            yaml_scalar("serviceAccount:ci@x.iam.gserviceaccount.com"),
            "serviceAccount:ci@x.iam.gserviceaccount.com"
        );
        assert_eq!(yaml_scalar("a, b] #c"), "\"a, b] #c\"");
        assert_eq!(yaml_scalar(""), "\"\"");
    }
}
