//! The docker-compose setup, checked without a Docker engine (none exists here): the
//! compose file against the Compose Specification's schema, the frontdoor configuration it
//! mounts with `frontdoor check`, and the two against each other.

use crate::common;

use common::*;
use serde_json::Value;

fn validate(file: &std::path::Path) -> Value {
    serde_json::from_str(&run_node(
        "validate_compose.js",
        &[file.to_str().unwrap()],
        &[],
    ))
    .unwrap()
}

#[test]
#[ignore = "left to scripts/test: runs node"]
fn the_compose_file_follows_the_compose_specification() {
    let file = repo().join("docker-compose.yml");
    let verdict = validate(&file);
    assert_eq!(verdict["valid"], true, "{verdict}");

    // The validator does refuse what the specification does not allow.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("docker-compose.yml");
    let text = std::fs::read_to_string(&file).unwrap().replace(
        "    build: .\n",
        "    build: .\n    restart_policy: always\n",
    );
    std::fs::write(&broken, text).unwrap();
    let verdict = validate(&broken);
    assert_eq!(verdict["valid"], false);
    assert!(
        verdict["errors"].to_string().contains("restart_policy"),
        "{verdict}"
    );
}

#[test]
fn the_mounted_configuration_passes_check_and_matches_the_compose_file() {
    let compose: Value = serde_yaml_ng::from_str(
        &std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap(),
    )
    .unwrap();
    let container = &compose["services"]["frontdoor"];
    let mount = container["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .find(|v| v.ends_with(":/config/services.yaml:ro"))
        .expect("the config is mounted at /config/services.yaml");
    let config_file = repo().join(mount.split(':').next().unwrap());

    let out = succeed(frontdoor().arg("check").arg("--config").arg(&config_file));
    assert!(
        out.contains("note: listen.frontdoor is 0.0.0.0:8080, not loopback"),
        "{out}"
    );
    let config = frontdoor::config::load(&config_file).unwrap();

    // Each service container reaches its own metadata server, and frontdoor reaches it by
    // its compose name.
    for service in &config.services {
        let container = &compose["services"][service.name.as_str()];
        assert!(container.is_object(), "no container for {}", service.name);
        let port = service.metadata.unwrap().port();
        assert_eq!(
            container["environment"]["GCE_METADATA_HOST"],
            format!("frontdoor:{port}"),
            "{}",
            service.name
        );
        assert_eq!(
            container["environment"]["GCE_METADATA_IP"],
            format!("frontdoor:{port}")
        );
        // The same listener is its egress proxy, and it trusts the CA in frontdoor's state
        // volume, mounted where the bundle's path says.
        assert_eq!(
            container["environment"]["HTTPS_PROXY"],
            format!("http://frontdoor:{port}")
        );
        let bundle = container["environment"]["REQUESTS_CA_BUNDLE"]
            .as_str()
            .unwrap();
        let mounted = compose["x-service"]["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .filter_map(|v| v.strip_prefix("frontdoor-state:"))
            .any(|v| bundle.starts_with(&format!("{}/", v.trim_end_matches(":ro"))));
        assert!(mounted, "{bundle} is not in the mounted state volume");
        assert!(bundle.ends_with("/ca/bundle.pem"));
        assert_eq!(
            service.upstream.to_string(),
            format!("http://{}:8080/", service.name)
        );
    }

    // Serving it needs the explicit flag, and says so.
    let err = fails(
        frontdoor()
            .arg("serve")
            .arg("--config")
            .arg(&config_file)
            .arg("--state-dir")
            .arg(tempfile::tempdir().unwrap().path()),
    );
    assert!(
        err.contains("listen.frontdoor: 0.0.0.0:8080 is reachable from other machines")
            && err.contains("--bind-all"),
        "{err}"
    );
}
