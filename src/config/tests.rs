use std::path::{Path, PathBuf};

use super::*;

const BASE: &str = r#"
project: {id: demo-project, number: "123456789012", region: us-central1}
service_accounts:
  - email: login@demo-project.iam.gserviceaccount.com
  - email: profiles@demo-project.iam.gserviceaccount.com
users: [alice@example.com]
groups: [{email: devs@example.com, members: [user:alice@example.com]}]
iam_policy: {bindings: [{role: roles/run.invoker, members: [group:devs@example.com]}]}
services:
  - name: user-profiles
    service_account: profiles@demo-project.iam.gserviceaccount.com
    upstream: builtin:echo
"#;

fn ok(text: &str) -> Config {
    parse(text, Path::new("services.yaml")).unwrap_or_else(|e| panic!("{e}"))
}

/// The error for `text`, checked to name the file, the field path and a reason.
fn err(text: &str, path: &str, reason: &str) {
    match parse(text, Path::new("services.yaml")) {
        Ok(_) => panic!("accepted, expected {path}: {reason}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("services.yaml: "), "{msg}");
            assert!(
                msg.contains(&format!(": {path}: ")),
                "want path {path}: {msg}"
            );
            assert!(msg.contains(reason), "want {reason:?}: {msg}");
        }
    }
}

fn with_service(extra: &str) -> String {
    format!("{BASE}    {}\n", extra.trim().replace('\n', "\n    "))
}

#[test]
fn the_base_config_resolves_every_derived_value() {
    let c = ok(BASE);
    assert_eq!(c.project.region_code, "uc");
    assert_eq!(c.listen.frontdoor.to_string(), "127.0.0.1:8080");
    assert_eq!(c.listen.google.to_string(), "127.0.0.1:8088");
    assert_eq!(c.listen.metadata.to_string(), "127.0.0.1:8089");
    assert_eq!(c.issuer, "https://accounts.google.com");
    let s = c.service("user-profiles").unwrap();
    assert_eq!(
        s.url,
        "https://user-profiles-123456789012.us-central1.run.app"
    );
    assert!(
        s.legacy_url.starts_with("https://user-profiles-")
            && s.legacy_url.ends_with("-uc.a.run.app")
    );
    assert_eq!(
        s.legacy_url.len(),
        "https://user-profiles-".len() + 10 + "-uc.a.run.app".len()
    );
    assert_eq!(s.timeout, DEFAULT_TIMEOUT);
    assert_eq!(s.ingress, Ingress::All);
    let sa = c
        .service_account("login@demo-project.iam.gserviceaccount.com")
        .unwrap();
    assert_eq!(sa.unique_id, unique_id_for(&sa.email));
    assert!(
        c.service_account("123456789012-compute@developer.gserviceaccount.com")
            .is_some()
    );
    assert_eq!(c.groups["devs@example.com"].len(), 1);
    assert_eq!(c.user("alice@example.com").unwrap().id.len(), 21);
}

#[test]
fn the_shipped_default_config_is_valid() {
    let c = load(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/services.yaml"
    )))
    .unwrap();
    let names: Vec<&str> = c.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["login", "user-profiles", "search"]);
    let search = c.service("search").unwrap();
    assert_eq!(search.custom_audiences, ["https://search.example.com"]);
    assert_eq!(
        search.service_account,
        "search@demo-project.iam.gserviceaccount.com"
    );
    assert!(search.policy.bindings.is_empty());
}

#[test]
fn mistyped_names_are_named_once_with_the_nearest_valid_one() {
    let load_err = |text: &str| {
        parse(text, Path::new("services.yaml"))
            .unwrap_err()
            .to_string()
    };
    let e = load_err(&BASE.replace("{role: roles/run.invoker", "{rol: roles/run.invoker"));
    assert_eq!(e.matches("bindings[0]").count(), 1, "{e}");
    assert!(
        e.contains("iam_policy.bindings[0].rol: unknown field `rol`")
            && e.contains("(did you mean `role`?)"),
        "{e}"
    );
    let e = load_err(&BASE.replace("[group:devs", "[serviceaccount:devs"));
    assert_eq!(e.matches("serviceaccount:devs").count(), 1, "{e}");
    assert!(e.contains("(did you mean `serviceAccount`?)"), "{e}");
    let e = load_err(&BASE.replace("role: roles/run.invoker", "role: roles/run.invokr"));
    assert!(
        e.contains("unknown role `roles/run.invokr` (did you mean `roles/run.invoker`?)"),
        "{e}"
    );
}

#[test]
fn unknown_fields_are_refused_with_their_path() {
    err(
        &format!("{BASE}extra: 1\n"),
        "extra",
        "unknown field `extra`, expected one of `project`",
    );
    err(
        &with_service("colour: blue"),
        "services[0].colour",
        "unknown field `colour`",
    );
    err(
        &BASE.replace("members: [group:devs", "memberz: [group:devs"),
        "iam_policy.bindings[0].memberz",
        "unknown field `memberz`",
    );
}

#[test]
fn duplicates_are_refused() {
    let dup_service = format!("{BASE}  - name: user-profiles\n    upstream: builtin:echo\n");
    err(
        &dup_service,
        "services[1].name",
        "duplicate service `user-profiles`",
    );
    let dup_account = BASE.replace(
        "  - email: profiles@",
        "  - email: login@demo-project.iam.gserviceaccount.com\n  - email: profiles@",
    );
    err(
        &dup_account,
        "service_accounts[1].email",
        "duplicate service account",
    );
    err(
        &BASE.replace(
            "users: [alice@example.com]",
            "users: [alice@example.com, Alice@example.com]",
        ),
        "users[1]",
        "duplicate user",
    );
}

#[test]
fn malformed_emails_members_and_roles_are_refused() {
    err(
        &BASE.replace(
            "- email: login@demo-project.iam.gserviceaccount.com",
            "- email: login",
        ),
        "service_accounts[0].email",
        "not an email address",
    );
    err(
        &BASE.replace(
            "- email: login@demo-project.iam.gserviceaccount.com",
            "- email: login@example.com",
        ),
        "service_accounts[0].email",
        "not a service-account email",
    );
    err(
        &BASE.replace("users: [alice@example.com]", "users: [alice]"),
        "users[0]",
        "not an email address",
    );
    err(
        &BASE.replace("[group:devs@example.com]", "[team:devs@example.com]"),
        "iam_policy.bindings[0].members[0]",
        "unknown kind `team`",
    );
    err(
        &BASE.replace("[group:devs@example.com]", "[principal://elsewhere]"),
        "iam_policy.bindings[0].members[0]",
        "malformed",
    );
    err(
        &BASE.replace("members: [user:alice@example.com]", "members: [user:alice]"),
        "groups[0].members[0]",
        "not an email address",
    );
    err(
        &BASE.replace("role: roles/run.invoker", "role: roles/run.invoke"),
        "iam_policy.bindings[0].role",
        "unknown role `roles/run.invoke`",
    );
}

#[test]
fn services_must_name_declared_accounts_and_good_upstreams() {
    err(
        &BASE.replace("service_account: profiles@", "service_account: ghost@"),
        "services[0].service_account",
        "service account `ghost@demo-project.iam.gserviceaccount.com` is not declared",
    );
    for (upstream, reason) in [
        (
            "ftp://x",
            "neither an http://HOST:PORT URL nor builtin:echo",
        ),
        (
            "localhost:3000",
            "neither an http://HOST:PORT URL nor builtin:echo (did you mean `http://localhost:3000`?)",
        ),
        (
            "127.0.0.1:8080",
            "nor builtin:echo (did you mean `http://127.0.0.1:8080`?)",
        ),
        ("builtin:mirror", "unknown builtin upstream"),
        ("https://x.example.com", "is https"),
    ] {
        err(
            &BASE.replace(
                "upstream: builtin:echo",
                &format!("upstream: \"{upstream}\""),
            ),
            "services[0].upstream",
            reason,
        );
    }
    err(
        &BASE.replace("    upstream: builtin:echo\n", ""),
        "services[0].upstream",
        "no upstream",
    );
    let c = ok(&BASE.replace("upstream: builtin:echo", "upstream: http://127.0.0.1:3001"));
    assert_eq!(c.services[0].upstream.to_string(), "http://127.0.0.1:3001/");
}

#[test]
fn names_ingress_timeouts_and_addresses_are_checked() {
    err(
        &BASE.replace("name: user-profiles", "name: User_Profiles"),
        "services[0].name",
        "service name `User_Profiles`",
    );
    err(
        &with_service("ingress: everyone"),
        "services[0].ingress",
        "unknown ingress `everyone`",
    );
    err(
        &with_service("timeout: 4000s"),
        "services[0].timeout",
        "outside Cloud Run's range",
    );
    err(
        &with_service("timeout: soon"),
        "services[0].timeout",
        "not a number of seconds",
    );
    err(
        &with_service("listen: 127.0.0.1:8088"),
        "services[0].listen",
        "already used by listen.google",
    );
    err(
        &with_service("metadata: nowhere"),
        "services[0].metadata",
        "not an address",
    );
    err(
        &BASE.replace("region: us-central1", "region: moon"),
        "project.region",
        "does not look like",
    );
    err(
        &BASE.replace("number: \"123456789012\"", "number: twelve"),
        "project.number",
        "not a number",
    );
    err(
        &BASE.replace("id: demo-project", "id: Demo"),
        "project.id",
        "project id `Demo`",
    );
    let c = ok(&with_service(
        "timeout: 30\ningress: internal\ntags: [blue]",
    ));
    assert_eq!(c.services[0].timeout.as_secs(), 30);
    assert_eq!(c.services[0].ingress, Ingress::Internal);
    assert!(
        c.services[0]
            .hosts()
            .iter()
            .any(|h| h.starts_with("blue---user-profiles-"))
    );
}

/// Cloud Run's documented limit: the JSON encoding of the list may be 32,768 characters.
#[test]
fn custom_audiences_are_limited_to_32768_characters_of_json() {
    // `["` + body + `"]` is body + 4 characters.
    let at_limit = "a".repeat(CUSTOM_AUDIENCES_LIMIT - 4);
    let c = ok(&with_service(&format!(
        "custom_audiences: [\"{at_limit}\"]"
    )));
    assert_eq!(
        serde_json::to_string(&c.services[0].custom_audiences)
            .unwrap()
            .len(),
        32_768
    );
    let over = "a".repeat(CUSTOM_AUDIENCES_LIMIT - 3);
    err(
        &with_service(&format!("custom_audiences: [\"{over}\"]")),
        "services[0].custom_audiences",
        "is 32769 characters, over Cloud Run's limit of 32768",
    );
}

/// A configuration naming one Knative export, resolved from strings: no file is read.
fn knative_config(dir: &Path, doc: &str, entry_extra: &str) -> Result<Config, ConfigError> {
    let text =
        format!("{BASE}  - knative: exported/svc.yaml\n    upstream: builtin:echo\n{entry_extra}");
    let named = NamedFiles::from_texts([(dir.join("exported/svc.yaml"), doc.to_owned())]);
    let config = parse_with(&text, &dir.join("services.yaml"), &named)?;
    assert_eq!(config.named_files, [dir.join("exported/svc.yaml")]);
    Ok(config)
}

const KNATIVE: &str = r#"
apiVersion: serving.knative.dev/v1
kind: Service
metadata:
  name: search
  annotations:
    run.googleapis.com/ingress: internal
    run.googleapis.com/invoker-iam-disabled: 'true'
    run.googleapis.com/custom-audiences: '["https://search.example.com", "search"]'
spec:
  template:
    spec:
      serviceAccountName: login@demo-project.iam.gserviceaccount.com
      timeoutSeconds: 60
      containers: [{image: hello}]
  traffic: [{percent: 100, latestRevision: true}, {tag: green, revisionName: search-00002-abc}]
"#;

#[test]
fn knative_exports_supply_the_service() {
    // Nothing is created at this path: the export is given as a string.
    let dir = Path::new("/nonexistent");
    let c = knative_config(dir, KNATIVE, "").unwrap();
    let s = c.service("search").unwrap();
    assert_eq!(s.custom_audiences, ["https://search.example.com", "search"]);
    assert_eq!(s.ingress, Ingress::Internal);
    assert!(s.invoker_iam_disabled);
    assert_eq!(
        s.service_account,
        "login@demo-project.iam.gserviceaccount.com"
    );
    assert_eq!(s.timeout.as_secs(), 60);
    assert_eq!(s.tags, ["green"]);
    assert!(!s.use_http2);
}

#[test]
fn a_knative_port_named_h2c_is_http2_end_to_end() {
    let dir = Path::new("/nonexistent");
    for (containers, h2) in [
        (
            "[{image: hello, ports: [{name: h2c, containerPort: 8080}]}]",
            true,
        ),
        (
            "[{image: hello, ports: [{name: http1, containerPort: 8080}]}]",
            false,
        ),
        ("[{image: hello, ports: [{containerPort: 8080}]}]", false),
    ] {
        let doc = KNATIVE.replace("[{image: hello}]", containers);
        let c = knative_config(dir, &doc, "").unwrap();
        assert_eq!(c.service("search").unwrap().use_http2, h2, "{containers}");
    }
    // Said twice, the file's word and the entry's are not silently merged.
    let doc = KNATIVE.replace("[{image: hello}]", "[{image: hello, ports: [{name: h2c}]}]");
    let e = knative_config(dir, &doc, "    use_http2: true\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`use_http2` is given both here and in the Knative file"),
        "{e}"
    );
    // In services.yaml itself.
    let c = parse_with(
        &format!("{BASE}  - name: grpc\n    upstream: builtin:echo\n    use_http2: true\n"),
        &dir.join("services.yaml"),
        &NamedFiles::default(),
    )
    .unwrap();
    assert!(c.service("grpc").unwrap().use_http2);
}

#[test]
fn knative_errors_name_the_exported_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = KNATIVE.replace(
        r#"'["https://search.example.com", "search"]'"#,
        r#"'https://search.example.com'"#,
    );
    let e = knative_config(dir.path(), &bad, "")
        .unwrap_err()
        .to_string();
    assert!(e.contains("exported/svc.yaml: metadata.annotations.run.googleapis.com/custom-audiences: the annotation must be a JSON array of strings"), "{e}");

    let e = knative_config(
        dir.path(),
        &KNATIVE.replace("kind: Service", "kind: Job"),
        "",
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("expected apiVersion serving.knative.dev/v1 and kind Service"),
        "{e}"
    );

    let e = knative_config(dir.path(), KNATIVE, "    ingress: all\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("services[1].ingress: `ingress` is given both here and in the Knative file"),
        "{e}"
    );

    let missing = parse(
        &format!("{BASE}  - knative: nope.yaml\n    upstream: builtin:echo\n"),
        &dir.path().join("services.yaml"),
    );
    // Blamed on the field that names it, in the configuration's file (found by fuzzing:
    // the error named only the missing file).
    let e = missing.unwrap_err().to_string();
    assert!(
        e.starts_with(&format!(
            "{}: services[1].knative: cannot read {}: ",
            dir.path().join("services.yaml").display(),
            dir.path().join("nope.yaml").display()
        )),
        "{e}"
    );
}

#[test]
fn broken_yaml_is_an_error_not_a_panic() {
    for text in [
        "",
        "project: [",
        "- a\n- b",
        "project: {id: demo-project}",
        "\u{0}",
    ] {
        assert!(parse(text, Path::new("services.yaml")).is_err(), "{text:?}");
    }
}

const POOLS: &str = r#"
workload_identity_pools:
  - name: ci-pool
    providers:
      - name: ci
        issuer: https://ci.example.com
        jwks: builtin
        attribute_mapping: {google.subject: assertion.sub, attribute.repository: assertion.repository}
"#;

#[test]
fn workload_identity_providers_resolve_with_googles_defaults() {
    let c = ok(&format!("{BASE}{POOLS}"));
    let p = c.provider("ci-pool/ci").unwrap();
    let resource = "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/ci-pool/providers/ci";
    assert_eq!(p.resource, resource);
    assert_eq!(p.allowed_audiences, [format!("https:{resource}")]);
    assert_eq!(p.subject_claim, "sub");
    assert_eq!(
        p.attributes,
        [("repository".to_owned(), "repository".to_owned())]
    );
    assert_eq!(p.keys, ProviderKeys::Builtin);
}

#[test]
fn workload_identity_provider_errors() {
    let pools = |from: &str, to: &str| format!("{BASE}{}", POOLS.replace(from, to));
    err(
        &pools("assertion.sub,", "assertion.sub.upper,"),
        "workload_identity_pools[0].providers[0].attribute_mapping.google.subject",
        "not of the form assertion.CLAIM",
    );
    err(
        &pools("attribute.repository:", "google.groups:"),
        "workload_identity_pools[0].providers[0].attribute_mapping.google.groups",
        "unknown target",
    );
    err(
        &pools("issuer: https://ci.example.com", "issuer: ci.example.com"),
        "workload_identity_pools[0].providers[0].issuer",
        "not an http(s) URL",
    );
    err(
        &pools("name: ci-pool", "name: Ci_Pool"),
        "workload_identity_pools[0].name",
        "pool id `Ci_Pool`",
    );
    let dup = format!(
        "{BASE}{POOLS}      - name: ci\n        issuer: https://x.example.com\n        jwks: builtin\n"
    );
    err(
        &dup,
        "workload_identity_pools[0].providers[1].name",
        "duplicate provider `ci`",
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("jwks.json"),
        r#"{"keys": [{"kty": "EC", "crv": "P-256"}]}"#,
    )
    .unwrap();
    let text = pools("jwks: builtin", "jwks: jwks.json");
    let e = parse(&text, &dir.path().join("services.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("providers[0].jwks") && e.contains("no RSA keys"),
        "{e}"
    );
    std::fs::write(
        dir.path().join("jwks.json"),
        r#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "k"}]}"#,
    )
    .unwrap();
    let c = parse(&text, &dir.path().join("services.yaml")).unwrap();
    assert!(
        matches!(&c.providers[0].keys, ProviderKeys::Jwks(keys) if keys[0].kid.as_deref() == Some("k"))
    );
    // Keys published for another algorithm, for encryption, or without `verify` among
    // their operations are not RS256 keys; the one that is stays.
    std::fs::write(
        dir.path().join("jwks.json"),
        r#"{"keys": [
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "pss", "alg": "PS512"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "enc", "use": "enc"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "ops", "key_ops": ["encrypt"]},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB", "kid": "rs", "alg": "RS256", "use": "sig", "key_ops": ["verify"]}
        ]}"#,
    )
    .unwrap();
    let c = parse(&text, &dir.path().join("services.yaml")).unwrap();
    let ProviderKeys::Jwks(keys) = &c.providers[0].keys else {
        panic!("{:?}", c.providers[0].keys)
    };
    let kids: Vec<_> = keys.iter().map(|k| k.kid.as_deref()).collect();
    assert_eq!(kids, [Some("rs")]);
    std::fs::write(
        dir.path().join("jwks.json"),
        r#"{"keys": [{"kty": "RSA", "n": "AQAB", "e": "AQAB", "alg": "PS512"}]}"#,
    )
    .unwrap();
    let e = parse(&text, &dir.path().join("services.yaml"))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("no RSA key for RS256 signatures (1 skipped: their `alg`, `use` or `key_ops` say they are for something else)"),
        "{e}"
    );
}

/// 100,000 nested brackets took the YAML parser 25 s; they are refused before it runs.
#[test]
fn deep_nesting_is_refused_before_parsing() {
    let n = 100_000;
    let text = format!(
        "{BASE}internal_callers: {}{}\n",
        "[".repeat(n),
        "]".repeat(n)
    );
    let started = std::time::Instant::now();
    err(
        &text,
        "line 13",
        "nested 100001 levels deep, more than the 64 frontdoor reads",
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn egress_passthrough_hosts_are_host_names() {
    let c = parse(
        &format!("{BASE}egress: {{passthrough: [Example.COM, downloads.example.org]}}\n"),
        Path::new("services.yaml"),
    )
    .unwrap();
    assert_eq!(
        c.egress_passthrough,
        ["example.com", "downloads.example.org"]
    );
    // Issue 26: never this machine, so the proxy cannot be chained to frontdoor's own
    // listeners.
    for own in [
        "localhost",
        "LOCALHOST",
        "app.localhost",
        "127.0.0.1",
        "127.8.9.10",
        "0.0.0.0",
    ] {
        let e = parse(
            &format!("{BASE}egress: {{passthrough: [example.com, '{own}']}}\n"),
            Path::new("services.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("egress.passthrough[1]") && e.contains("frontdoor's own listeners"),
            "{own}: {e}"
        );
    }
    for bad in ["https://example.com", "example.com:443", "''"] {
        let e = parse(
            &format!("{BASE}egress: {{passthrough: [{bad}]}}\n"),
            Path::new("services.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("egress.passthrough[0]") && e.contains("is not a host name"),
            "{bad}: {e}"
        );
    }
}

/// The Admin APIs' layer: a field it sets wins over the file's; every other field, and any
/// later edit to them, comes from the file; a change for a service not in the file applies
/// to nothing; a layer that no longer resolves says where the value came from.
#[test]
fn the_admin_layer_wins_field_by_field() {
    let mut layer = Layer::default();
    layer.services.insert(
        "user-profiles".into(),
        layer::ServiceChange {
            custom_audiences: Some(vec!["https://api.example.com".into()]),
            iam_policy: Some(layer::PolicyText::default()),
            ..Default::default()
        },
    );
    layer
        .services
        .insert("gone".into(), layer::ServiceChange::default());
    let file = Path::new("services.yaml");
    let edited = BASE.replace(
        "upstream: builtin:echo",
        "upstream: builtin:echo\n    ingress: internal\n    custom_audiences: [https://file.example.com]",
    );
    let config = parse_layered(&edited, file, &layer).unwrap();
    let s = config.service("user-profiles").unwrap();
    assert_eq!(s.custom_audiences, ["https://api.example.com"]);
    assert_eq!(s.ingress, Ingress::Internal);
    assert!(s.policy.bindings.is_empty());
    assert_eq!(config.policy, ok(BASE).policy);

    layer.project_policy = Some(layer::PolicyText {
        bindings: vec![layer::BindingText {
            role: "roles/run.admin".into(),
            members: vec!["user:alice@example.com".into()],
        }],
    });
    let config = parse_layered(BASE, file, &layer).unwrap();
    assert_eq!(config.policy.bindings[0].role.name(), "roles/run.admin");

    layer
        .services
        .get_mut("user-profiles")
        .unwrap()
        .service_account = Some("removed@demo-project.iam.gserviceaccount.com".into());
    let e = parse_layered(BASE, file, &layer).unwrap_err().to_string();
    assert!(
        e.contains("services[0].service_account") && e.contains("changes.json"),
        "{e}"
    );
}

#[test]
fn a_layer_that_is_not_json_is_refused_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Layer::read(dir.path()).unwrap(), Layer::default());
    std::fs::write(dir.path().join(layer::FILE), "{\n\"services\": 3\n}").unwrap();
    let e = Layer::read(dir.path()).unwrap_err().to_string();
    assert!(
        e.contains("changes.json: line 2") && e.contains("Admin APIs"),
        "{e}"
    );
}

fn policy_text(role: &str, member: &str) -> layer::PolicyText {
    layer::PolicyText {
        bindings: vec![layer::BindingText {
            role: role.into(),
            members: vec![member.into()],
        }],
    }
}

/// `gcloud iam service-accounts add-iam-policy-binding`'s changes: an account's policy from
/// the layer, the compute default account's too (it is never declared).
#[test]
fn account_policies_in_the_layer_apply_to_declared_and_default_accounts() {
    let creator = policy_text(
        "roles/iam.serviceAccountTokenCreator",
        "user:alice@example.com",
    );
    let mut layer = Layer::default();
    let login = "login@demo-project.iam.gserviceaccount.com";
    let compute = "123456789012-compute@developer.gserviceaccount.com";
    layer.account_policies.insert(login.into(), creator.clone());
    layer
        .account_policies
        .insert(compute.into(), creator.clone());
    let config = parse_layered(BASE, Path::new("services.yaml"), &layer).unwrap();
    for email in [login, compute] {
        let policy = &config.service_account(email).unwrap().policy;
        assert_eq!(
            policy.bindings[0].role.name(),
            "roles/iam.serviceAccountTokenCreator"
        );
    }
    assert!(
        config
            .service_account("profiles@demo-project.iam.gserviceaccount.com")
            .unwrap()
            .policy
            .bindings
            .is_empty()
    );
}

/// `frontdoor fold`: comments stay, the layer's fields land in the file, and what has no
/// place there (an undeclared account, a service the file no longer describes) stays in
/// the layer; the file with what is left resolves as before.
#[test]
fn fold_writes_the_layer_into_the_file_and_keeps_the_rest() {
    let file = Path::new("services.yaml");
    let text = format!("# The team's file.\n{BASE}  # A trailing comment.\n");
    let mut layer = Layer::default();
    layer.services.insert(
        "user-profiles".into(),
        layer::ServiceChange {
            custom_audiences: Some(vec!["https://api.example.com".into()]),
            ingress: Some("internal".into()),
            timeout_seconds: Some(60),
            ..Default::default()
        },
    );
    layer
        .services
        .insert("gone".into(), layer::ServiceChange::default());
    layer.project_policy = Some(policy_text("roles/run.admin", "user:alice@example.com"));
    let creator = policy_text(
        "roles/iam.serviceAccountTokenCreator",
        "user:alice@example.com",
    );
    for email in [
        "login@demo-project.iam.gserviceaccount.com",
        "123456789012-compute@developer.gserviceaccount.com",
    ] {
        layer.account_policies.insert(email.into(), creator.clone());
    }
    let want = parse_layered(&text, file, &layer).unwrap();
    let folded = fold::fold(&text, file, &layer, &want, &Default::default()).unwrap();
    assert!(
        folded.text.starts_with("# The team's file.\n")
            && folded.text.contains("  # A trailing comment.\n"),
        "{}",
        folded.text
    );
    let alone = ok(&folded.text);
    let s = alone.service("user-profiles").unwrap();
    assert_eq!(s.custom_audiences, ["https://api.example.com"]);
    assert_eq!((s.ingress, s.timeout.as_secs()), (Ingress::Internal, 60));
    assert_eq!(alone.policy, want.policy);
    assert_eq!(
        folded.rest.summary(),
        [
            "service gone: ",
            "service account 123456789012-compute@developer.gserviceaccount.com: IAM policy",
        ]
    );
    assert_eq!(
        parse_layered(&folded.text, file, &folded.rest).unwrap(),
        want
    );
}

/// An entry that names a Knative file takes only its IAM policy: the export gives the
/// other fields (one given in both places is refused), so those stay in the layer.
#[test]
fn fold_leaves_a_knative_services_fields_in_the_layer() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("exported")).unwrap();
    std::fs::write(dir.path().join("exported/svc.yaml"), KNATIVE).unwrap();
    let file = dir.path().join("services.yaml");
    let text = format!("{BASE}  - knative: exported/svc.yaml\n    upstream: builtin:echo\n");
    let invoker = policy_text("roles/run.invoker", "user:alice@example.com");
    let mut layer = Layer::default();
    layer.services.insert(
        "search".into(),
        layer::ServiceChange {
            custom_audiences: Some(vec!["https://new.example.com".into()]),
            iam_policy: Some(invoker.clone()),
            ..Default::default()
        },
    );
    let want = parse_layered(&text, &file, &layer).unwrap();
    let folded = fold::fold(&text, &file, &layer, &want, &Default::default()).unwrap();
    let alone = parse(&folded.text, &file).unwrap();
    let search = alone.service("search").unwrap();
    assert_eq!(
        search.policy.describe(),
        parse_layered(&text, &file, &layer)
            .unwrap()
            .service("search")
            .unwrap()
            .policy
            .describe()
    );
    assert_eq!(
        folded.rest.services["search"].custom_audiences.as_deref(),
        Some(&["https://new.example.com".to_owned()][..])
    );
    assert!(folded.rest.services["search"].iam_policy.is_none());
}

/// `changes.json` is never written larger than frontdoor reads back: a document nested
/// deep enough that indenting it passes the limit is refused, not written (every later
/// read of the layer would fail).
#[test]
fn a_layer_too_large_to_read_back_is_refused() {
    let mut deep = serde_json::json!(vec![0; 100_000]);
    for _ in 0..100 {
        deep = serde_json::json!([deep]);
    }
    let mut layer = Layer::default();
    layer.services.insert(
        "search".into(),
        layer::ServiceChange {
            knative: Some(deep),
            ..Default::default()
        },
    );
    let e = layer.to_json().unwrap_err();
    assert!(
        e.contains("changes.json") && e.contains(&MAX_CONFIG_BYTES.to_string()),
        "{e}"
    );
    layer.services.get_mut("search").unwrap().knative =
        Some(serde_json::json!({"kind": "Service"}));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(layer::FILE), layer.to_json().unwrap()).unwrap();
    assert_eq!(Layer::read(dir.path()).unwrap(), layer);
}

#[test]
fn enforcement_is_enforce_unless_audit_is_asked() {
    assert_eq!(ok(BASE).enforcement, Enforcement::Enforce);
    let audit = ok(&format!("{BASE}enforcement: audit\n"));
    assert_eq!(audit.enforcement, Enforcement::Audit);
    err(
        &format!("{BASE}enforcement: audi\n"),
        "enforcement",
        "`audi` is not an enforcement mode",
    );
    let e = parse(
        &format!("{BASE}enforcement: audi\n"),
        Path::new("services.yaml"),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("did you mean `audit`?"), "{e}");
}

#[test]
fn a_policy_over_googles_limit_of_principals_is_refused() {
    let members = |n: usize| -> String {
        (0..n)
            .map(|i| format!("user:u{i}@example.com"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let over = with_service(&format!(
        "iam_policy: {{bindings: [{{role: roles/run.invoker, members: [{}]}}, {{role: roles/run.viewer, members: [{}]}}]}}",
        members(1000),
        members(501)
    ));
    err(
        &over,
        "services[0].iam_policy.bindings",
        "The number of members in the policy (1,501) is larger than the maximum allowed size 1,500.",
    );
    let at = with_service(&format!(
        "iam_policy: {{bindings: [{{role: roles/run.invoker, members: [{}]}}]}}",
        members(1500)
    ));
    ok(&at);
}

#[test]
fn an_error_for_the_admin_apis_callers_names_no_directory() {
    let e = ConfigError::Invalid {
        file: PathBuf::from("/srv/team/app/services.yaml"),
        path: "services[0].ingress".into(),
        reason: "unknown ingress `everywhere`".into(),
    };
    assert!(e.to_string().contains("/srv/team/app"));
    assert_eq!(
        e.for_callers(),
        "services.yaml: services[0].ingress: unknown ingress `everywhere`"
    );
    let e = ConfigError::Read {
        file: PathBuf::from("/srv/team/app/services.yaml"),
        source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
    };
    assert!(!e.for_callers().contains("/srv"), "{}", e.for_callers());
}

#[test]
fn pubsub_topics_and_subscriptions_resolve_to_googles_messages() {
    let c = ok(&format!(
        r#"{BASE}pubsub:
  backoff_divisor: 1000
  topics:
    - name: orders-dead
    - name: orders
      subscriptions:
        - name: orders-push
          push_endpoint: https://user-profiles-123456789012.us-central1.run.app
          push_service_account: login@demo-project.iam.gserviceaccount.com
          dead_letter_topic: orders-dead
          max_delivery_attempts: 7
          min_retry_delay: 1s
          max_retry_delay: 2s
        - name: orders-pull
"#
    ));
    let p = &c.pubsub;
    assert_eq!(p.backoff_divisor, 1000);
    assert_eq!(p.topics[1].name, "projects/demo-project/topics/orders");
    let push = &p.subscriptions[0];
    assert_eq!(push.name, "projects/demo-project/subscriptions/orders-push");
    assert_eq!(push.topic, "projects/demo-project/topics/orders");
    assert_eq!(push.ack_deadline_seconds, 10);
    let dead = push.dead_letter_policy.as_ref().unwrap();
    assert_eq!(
        dead.dead_letter_topic,
        "projects/demo-project/topics/orders-dead"
    );
    assert_eq!(dead.max_delivery_attempts, 7);
    assert_eq!(
        push.retry_policy.unwrap().maximum_backoff.unwrap().seconds,
        2
    );
    assert!(p.subscriptions[1].push_config.is_none());
}

#[test]
fn pubsub_mistakes_name_their_field() {
    let topics = |body: &str| format!("{BASE}pubsub:\n  topics:\n{body}");
    err(
        &topics("    - name: ab\n"),
        "pubsub.topics[0].name",
        "3 to 255",
    );
    err(
        &topics("    - name: orders\n    - name: orders\n"),
        "pubsub.topics[1].name",
        "declared twice",
    );
    let sub = |fields: &str| {
        topics(&format!(
            "    - name: orders\n      subscriptions:\n        - name: orders-sub\n{fields}"
        ))
    };
    err(
        &sub(
            "          push_endpoint: https://x.run.app\n          push_service_account: nobody@demo-project.iam.gserviceaccount.com\n",
        ),
        "pubsub.topics[0].subscriptions[0].push_service_account",
        "is not declared",
    );
    err(
        &sub("          push_endpoint: http://example.com/push\n"),
        "pubsub.topics[0].subscriptions[0].push_endpoint",
        "neither a Cloud Run URL",
    );
    err(
        &sub(
            "          push_endpoint: https://user-profiles-123456789012.us-central1.run.app/push\n          push_service_account: login@demo-project.iam.gserviceaccount.com\n",
        ),
        "pubsub.topics[0].subscriptions[0].push_audience",
        "set push_audience",
    );
    err(
        &sub("          dead_letter_topic: orders\n"),
        "pubsub.topics[0].subscriptions[0].dead_letter_topic",
        "own topic",
    );
    err(
        &sub("          push_endpoint: ftp://x\n"),
        "pubsub.topics[0].subscriptions[0].push_endpoint",
        "not an http or https URL",
    );
    err(
        &sub("          dead_letter_topic: elsewhere\n"),
        "pubsub.topics[0].subscriptions[0].dead_letter_topic",
        "not a topic declared here",
    );
    err(
        &sub("          max_delivery_attempts: 5\n"),
        "pubsub.topics[0].subscriptions[0].max_delivery_attempts",
        "needs a dead_letter_topic",
    );
    err(
        &sub("          min_retry_delay: 20s\n          max_retry_delay: 10s\n"),
        "pubsub.topics[0].subscriptions[0].min_retry_delay",
        "over max_retry_delay",
    );
    err(
        &sub("          ack_deadline_seconds: 5\n"),
        "pubsub.topics[0].subscriptions[0].ack_deadline_seconds",
        "10 to 600",
    );
    err(
        &format!("{BASE}pubsub: {{backoff_divisor: 0}}\n"),
        "pubsub.backoff_divisor",
        "out of range",
    );
}

#[test]
fn cloud_tasks_queues_and_scheduler_jobs_resolve_and_their_mistakes_are_named() {
    let c = ok(&format!(
        "{BASE}tasks:
  queues:
    - name: mail
      max_attempts: 5
      min_backoff: 0.1s
scheduler:
  jobs:
    - name: nightly
      schedule: '0 3 * * *'
      time_zone: Europe/Paris
      uri: https://user-profiles-123456789012.us-central1.run.app/nightly
      oidc_service_account_email: login@demo-project.iam.gserviceaccount.com
      oidc_token_audience: https://user-profiles-123456789012.us-central1.run.app
"
    ));
    assert_eq!(
        c.tasks.queues[0].name,
        "projects/demo-project/locations/us-central1/queues/mail"
    );
    assert_eq!(
        c.scheduler.jobs[0].name,
        "projects/demo-project/locations/us-central1/jobs/nightly"
    );
    let job = |fields: &str| {
        format!(
            "{BASE}scheduler:\n  jobs:\n    - {{name: j, uri: 'https://x-123456789012.us-central1.run.app/', {fields}}}\n"
        )
    };
    err(&job("schedule: '* * *'"), "scheduler.jobs[0]", "five");
    err(
        &job("schedule: '61 * * * *'"),
        "scheduler.jobs[0]",
        "not unix-cron",
    );
    err(
        &job("schedule: '* * * * *', time_zone: Mars/Olympus"),
        "scheduler.jobs[0]",
        "tz database",
    );
    err(
        &job("schedule: '* * * * *', max_retry_attempts: 6"),
        "scheduler.jobs[0]",
        "retry_count 6 is out of range",
    );
    err(
        &job("schedule: '* * * * *', attempt_deadline: 5s"),
        "scheduler.jobs[0]",
        "15 seconds to 30 minutes",
    );
    err(
        &job(
            "schedule: '* * * * *', oidc_service_account_email: ghost@demo-project.iam.gserviceaccount.com",
        ),
        "scheduler.jobs[0].oidc_service_account_email",
        "not declared",
    );
    err(
        &format!("{BASE}tasks:\n  queues:\n    - {{name: bad_name}}\n"),
        "tasks.queues[0].name",
        "letters, digits and hyphens",
    );
    err(
        &format!("{BASE}tasks:\n  queues:\n    - {{name: q, min_backoff: soon}}\n"),
        "tasks.queues[0].min_backoff",
        "no duration",
    );
    err(
        &format!("{BASE}tasks:\n  queues:\n    - {{name: q, max_dispatches_per_second: 501}}\n"),
        "tasks.queues[0]",
        "max_dispatches_per_second",
    );
}
