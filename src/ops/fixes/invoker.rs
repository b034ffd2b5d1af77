//! A principal that holds no invoker role on a service: the account it should have acted
//! as, the group it could join, the grant merged into the service's policy, and the other
//! services it may call.

use super::creator::minters_of;
use super::{Fix, Home, policy_yaml, principal_of, yaml_scalar};
use crate::config::{Config, Service};
use crate::google::{Resource, judge};
use crate::iam::{self, Binding, Member, Role};

/// `member` holds no invoker role on `service`.
pub(super) fn no_invoker(config: &Config, service: &Service, member: &Member) -> Vec<Fix> {
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
            let fix = Fix::change(
                "roster",
                widens,
                format!(
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
                None,
            )
            .lines(
                Home::File,
                format!(
                    "- email: {}\n  members: [{}]",
                    yaml_scalar(group),
                    with.iter()
                        .map(|m| yaml_scalar(m))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!("under `groups:`, in place of group `{group}`'s entry"),
            );
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
    let fix = Fix::change(
        "policy",
        false,
        format!(
            "grant {member} roles/run.invoker on {} ({})",
            service.name,
            if service.policy.bindings.is_empty() {
                "the service has no policy yet"
            } else {
                "merged into the service's policy: every member it has is kept"
            }
        ),
        Some(format!(
            "gcloud run services add-iam-policy-binding {} --member={member} --role=roles/run.invoker",
            service.name
        )),
    );
    // A Knative file holds no IAM policy: the file's or the Admin API's.
    let home = match Home::of(service, "iam_policy", String::new) {
        Home::Knative { .. } => Home::File,
        home => home,
    };
    fixes.push(fix.lines(
        home,
        policy_yaml(&policy),
        if service.policy.bindings.is_empty() {
            format!("under service `{}` (it has no policy yet)", service.name)
        } else {
            format!(
                "under service `{}`, in place of its policy block (never beside it: a second one is refused)",
                service.name
            )
        },
    ));
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
