//! Who may act as a service account: the IAM Credentials refusal's fixes, and the
//! accounts' minters that the invoker's fixes compare.

use super::{Fix, Home, policy_yaml, principal_of};
use crate::config::Config;
use crate::google::{Resource, judge};
use crate::iam::{self, Binding, Member, Role};

/// `member` may not mint `target`'s tokens (IAM Credentials' `permission`): an account a
/// few letters from it that `member` may act as first, then the narrowest role on that
/// account alone, merged into its own policy.
pub(super) fn token_creator(
    config: &Config,
    member: &Member,
    target: &str,
    permission: &str,
) -> Vec<Fix> {
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
    let what = format!("{}'s policy", account.email);
    let home = match (*account.policy_by_admin, account.declared) {
        (false, _) => Home::File,
        (true, true) => Home::Admin(what),
        // fold keeps an undeclared account's policy in the layer.
        (true, false) => Home::AdminOnly {
            what,
            how: format!(
                "gcloud iam service-accounts add-iam-policy-binding {}",
                account.email
            ),
        },
    };
    let fix = Fix::change(
        "policy",
        false,
        format!(
            "grant {member} {role} on {} alone (not on the project, which would let it act as every account)",
            account.email
        ),
        Some(format!(
            "gcloud iam service-accounts add-iam-policy-binding {} --member={member} --role={role}",
            account.email
        )),
    );
    // An account the file does not declare (the compute default account) gets an entry.
    let (yaml, place) = if account.declared {
        (
            policy_yaml(&policy),
            format!(
                "under `service_accounts:`, in {}'s entry, in place of its policy block if it has one",
                account.email
            ),
        )
    } else {
        (
            format!(
                "- email: {}\n{}{}",
                account.email,
                // Its name kept, as the file would declare it.
                account
                    .display_name
                    .as_deref()
                    .map(|d| format!("  display_name: {}\n", super::yaml_scalar(d)))
                    .unwrap_or_default(),
                policy_yaml(&policy)
                    .lines()
                    .map(|l| format!("  {l}"))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            format!(
                "under `service_accounts:`, as a new entry ({} is not declared there)",
                account.email
            ),
        )
    };
    fixes.push(fix.lines(home, yaml, place));
    fixes
}

/// The service accounts and users that may mint `account`'s ID tokens (its own policy's
/// and the project's Token Creator bindings), as members' strings.
pub(super) fn minters_of(config: &Config, account: &str) -> Vec<String> {
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
