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
            "- email: {compute}\n  display_name: \"Compute Engine default service account\"\n  iam_policy:\n    bindings:\n"
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
    assert_eq!(
        account.display_name.as_deref(),
        Some("Compute Engine default service account")
    );
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
