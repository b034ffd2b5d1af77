use super::*;

fn policy(role: &str, members: &[&str]) -> Policy {
    Policy {
        bindings: vec![Binding {
            role: Role::parse(role).unwrap(),
            members: members.iter().map(|m| Member::parse(m).unwrap()).collect(),
        }],
    }
}

fn sa(name: &str) -> Principal {
    Principal::ServiceAccount(format!("{name}@demo-project.iam.gserviceaccount.com"))
}

#[test]
fn members_parse_and_print_back() {
    for s in [
        "allUsers",
        "allAuthenticatedUsers",
        "user:alice@example.com",
        "serviceAccount:login@demo-project.iam.gserviceaccount.com",
        "group:devs@example.com",
        "domain:example.com",
        "principal://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/subject/repo:x",
        "principalSet://iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/*",
    ] {
        assert_eq!(Member::parse(s).unwrap().to_string(), s);
    }
}

#[test]
fn malformed_members_are_refused_with_a_reason() {
    for (s, needle) in [
        ("alice@example.com", "has no kind;"),
        ("allusers", "has no kind (did you mean `allUsers`?)"),
        (
            "AllAuthenticatedUsers",
            "(did you mean `allAuthenticatedUsers`?)",
        ),
        ("person:alice@example.com", "unknown kind `person`"),
        ("user:alice", "no `@`"),
        ("user:al ice@example.com", "bad local part"),
        (
            "serviceAccount:bob@example.com",
            "not a service-account email",
        ),
        ("domain:localhost", "not a domain name"),
        (
            "principal://iam.googleapis.com/projects/x/locations/global/workloadIdentityPools/p/subject/s",
            "malformed",
        ),
        ("principalSet://elsewhere/p/*", "malformed"),
    ] {
        let err = Member::parse(s).unwrap_err().to_string();
        assert!(err.contains(needle), "{s}: {err}");
    }
}

#[test]
fn unknown_roles_list_the_known_ones() {
    let err = Role::parse("roles/run.invokerr").unwrap_err().to_string();
    assert!(err.contains("unknown role `roles/run.invokerr`"), "{err}");
    assert!(err.contains("roles/run.invoker,"), "{err}");
}

#[test]
fn every_invoking_role_grants_invoke_and_viewer_does_not() {
    for role in Role::carrying(INVOKE) {
        let p = policy(
            role,
            &["serviceAccount:login@demo-project.iam.gserviceaccount.com"],
        );
        let d = check(
            INVOKE,
            Some(&sa("login")),
            &[Scope {
                kind: "service",
                name: "s",
                policy: &p,
            }],
            &Groups::new(),
        );
        assert!(d.allowed, "{role}: {}", d.reason);
    }
    assert_eq!(Role::carrying(INVOKE).len(), 6);
    let p = policy("roles/viewer", &["allUsers"]);
    let d = check(
        INVOKE,
        Some(&sa("login")),
        &[Scope {
            kind: "service",
            name: "s",
            policy: &p,
        }],
        &Groups::new(),
    );
    assert!(!d.allowed);
}

#[test]
fn denial_names_the_principal_and_the_bindings() {
    let p = policy(
        "roles/run.invoker",
        &["serviceAccount:login@demo-project.iam.gserviceaccount.com"],
    );
    let project = Policy::default();
    let d = check(
        INVOKE,
        Some(&sa("search")),
        &[
            Scope {
                kind: "service",
                name: "user-profiles",
                policy: &p,
            },
            Scope {
                kind: "project",
                name: "demo-project",
                policy: &project,
            },
        ],
        &Groups::new(),
    );
    assert!(!d.allowed);
    assert!(d.reason.starts_with("serviceAccount:search@demo-project.iam.gserviceaccount.com has no role carrying run.routes.invoke"), "{}", d.reason);
    assert!(
        d.reason
            .contains("on service `user-profiles`: roles/run.invoker → [serviceAccount:login@"),
        "{}",
        d.reason
    );
    assert!(
        d.reason.contains("on project `demo-project`: (none)"),
        "{}",
        d.reason
    );
}

#[test]
fn groups_domains_and_anonymous_callers() {
    let mut groups = Groups::new();
    groups.insert(
        "devs@example.com".into(),
        vec![Member::parse("group:leads@example.com").unwrap()],
    );
    groups.insert(
        "leads@example.com".into(),
        vec![
            Member::parse("user:alice@example.com").unwrap(),
            Member::parse("group:devs@example.com").unwrap(), // a cycle must not loop
        ],
    );
    let alice = Principal::User("alice@example.com".into());
    let bob = Principal::User("bob@example.com".into());
    let p = policy("roles/run.invoker", &["group:devs@example.com"]);
    let scopes = [Scope {
        kind: "project",
        name: "p",
        policy: &p,
    }];
    assert!(check(INVOKE, Some(&alice), &scopes, &groups).allowed);
    let refused = check(INVOKE, Some(&bob), &scopes, &groups);
    assert!(!refused.allowed);
    // The refusal shows the roster of the group that would have let bob in.
    assert!(
        refused.reason.contains(
            "); user:bob@example.com is not in group:devs@example.com (its members: group:leads@example.com); bindings on project"
        ),
        "{}",
        refused.reason
    );
    let p = policy("roles/run.invoker", &["group:empty@example.com"]);
    let scopes = [Scope {
        kind: "project",
        name: "p",
        policy: &p,
    }];
    let refused = check(INVOKE, Some(&bob), &scopes, &groups);
    assert!(
        refused.reason.contains(
            "; group:empty@example.com has no members under `groups:`, so nobody is in it; bindings"
        ),
        "{}",
        refused.reason
    );

    let p = policy("roles/run.invoker", &["domain:example.com"]);
    let scopes = [Scope {
        kind: "project",
        name: "p",
        policy: &p,
    }];
    assert!(check(INVOKE, Some(&bob), &scopes, &groups).allowed);
    assert!(!check(INVOKE, Some(&sa("x")), &scopes, &groups).allowed);

    let p = policy("roles/run.invoker", &["allAuthenticatedUsers"]);
    let scopes = [Scope {
        kind: "project",
        name: "p",
        policy: &p,
    }];
    assert!(check(INVOKE, Some(&bob), &scopes, &groups).allowed);
    assert!(!check(INVOKE, None, &scopes, &groups).allowed);

    let p = policy("roles/run.invoker", &["allUsers"]);
    assert!(p.is_public(INVOKE));
    let scopes = [Scope {
        kind: "project",
        name: "p",
        policy: &p,
    }];
    assert!(check(INVOKE, None, &scopes, &groups).allowed);
}

#[test]
fn federated_principals_match_subject_and_sets() {
    let base = "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/ci";
    let who = Principal::Federated {
        subject: format!("principal:{base}/subject/repo-a"),
        sets: vec![
            format!("principalSet:{base}/attribute.repository/a"),
            format!("principalSet:{base}/*"),
        ],
    };
    for (member, want) in [
        (format!("principal:{base}/subject/repo-a"), true),
        (format!("principal:{base}/subject/repo-b"), false),
        (format!("principalSet:{base}/attribute.repository/a"), true),
        (format!("principalSet:{base}/attribute.repository/b"), false),
        (format!("principalSet:{base}/*"), true),
    ] {
        let p = policy("roles/iam.workloadIdentityUser", &[&member]);
        let d = check(
            GET_ACCESS_TOKEN,
            Some(&who),
            &[Scope {
                kind: "service account",
                name: "x",
                policy: &p,
            }],
            &Groups::new(),
        );
        assert_eq!(d.allowed, want, "{member}");
    }
}

/// `member`, the front door's joined spelling, is `Display`'s.
#[test]
fn a_principal_as_a_member_is_its_display() {
    for p in [
        sa("x"),
        Principal::User("alice@example.com".into()),
        Principal::Federated {
            subject: "principal://iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/subject/s".into(),
            sets: vec![],
        },
    ] {
        assert_eq!(p.member(), p.to_string());
    }
}
