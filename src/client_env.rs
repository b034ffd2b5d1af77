//! The environment that points a process at frontdoor, in every form Google's runtimes and
//! tools read: the metadata server, the egress proxy (the same listener) and the local CA.
//! `frontdoor env` prints it; a `command:` service is started with it. Nothing else in the
//! process changes: its code calls Google's own URLs, and they reach frontdoor.

use std::net::SocketAddr;
use std::path::Path;

use crate::keys::ca::{BUNDLE_FILE, CA_FILE, TRUST_STORE_FILE, TRUST_STORE_PASSWORD};

/// Hosts every client reaches directly, never through the proxy: frontdoor's own listeners
/// are on loopback.
pub const NO_PROXY: &str = "localhost,127.0.0.1,::1";

/// Where a process acts from.
pub struct Target<'a> {
    /// Its metadata listener, which is also its egress proxy.
    pub metadata: SocketAddr,
    /// The google listener: Pub/Sub's emulator host.
    pub google: SocketAddr,
    /// The running server's state directory (absolute): the CA's files are in it.
    pub state_dir: &'a Path,
    pub project: &'a str,
    pub region: &'a str,
}

/// Every variable, in the order `frontdoor env` prints them.
pub fn variables(target: &Target<'_>) -> Vec<(&'static str, String)> {
    let metadata = target.metadata.to_string();
    let proxy = format!("http://{metadata}");
    let file = |name: &str| target.state_dir.join(name).display().to_string();
    let bundle = file(BUNDLE_FILE);
    let mut vars = vec![
        ("GOOGLE_CLOUD_PROJECT", target.project.to_owned()),
        // Go, Node, Java and Python's google-auth read HOST (Python also IP); gcloud reads
        // ROOT.
        ("GCE_METADATA_HOST", metadata.clone()),
        ("GCE_METADATA_IP", metadata.clone()),
        ("GCE_METADATA_ROOT", metadata.clone()),
        // curl reads only the lowercase http_proxy; most others either.
        ("HTTPS_PROXY", proxy.clone()),
        ("https_proxy", proxy.clone()),
        ("HTTP_PROXY", proxy.clone()),
        ("http_proxy", proxy),
        ("NO_PROXY", NO_PROXY.to_owned()),
        ("no_proxy", NO_PROXY.to_owned()),
        // OpenSSL (and so Python's ssl), Go, requests and curl *replace* their roots with
        // these files: hence the bundle, the system's roots and the CA.
        ("SSL_CERT_FILE", bundle.clone()),
        ("REQUESTS_CA_BUNDLE", bundle.clone()),
        ("CURL_CA_BUNDLE", bundle.clone()),
        // gRPC's C core (Python, Ruby, PHP, C++) and Node's grpc-js replace their roots
        // with this file; both take the proxy from the lowercase https_proxy above.
        ("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", bundle.clone()),
        // Node adds these to its own roots.
        ("NODE_EXTRA_CA_CERTS", file(CA_FILE)),
        ("CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE", bundle),
        // gcloud's project and Cloud Run region, as `gcloud config set project` and
        // `gcloud config set run/region` would set them (`gcloud run` asks otherwise).
        ("CLOUDSDK_CORE_PROJECT", target.project.to_owned()),
        ("CLOUDSDK_RUN_REGION", target.region.to_owned()),
        ("CLOUDSDK_PROXY_TYPE", "http".to_owned()),
        ("CLOUDSDK_PROXY_ADDRESS", target.metadata.ip().to_string()),
        ("CLOUDSDK_PROXY_PORT", target.metadata.port().to_string()),
        // Every Pub/Sub client library (and gcloud's emulator mode) calls this host in
        // plaintext, without credentials, as it would Google's emulator.
        ("PUBSUB_EMULATOR_HOST", target.google.to_string()),
    ];
    vars.push(("JAVA_TOOL_OPTIONS", java_options(target)));
    vars
}

/// The JVM's proxy and trust store. The JVM splits this variable at whitespace (a quoted
/// part stays whole), so a path with a space is quoted.
fn java_options(target: &Target<'_>) -> String {
    let host = target.metadata.ip();
    let port = target.metadata.port();
    let store = target
        .state_dir
        .join(TRUST_STORE_FILE)
        .display()
        .to_string();
    let store = if store.contains(char::is_whitespace) {
        format!("\"{store}\"")
    } else {
        store
    };
    format!(
        "-Dhttps.proxyHost={host} -Dhttps.proxyPort={port} -Dhttp.proxyHost={host} \
         -Dhttp.proxyPort={port} -Dhttp.nonProxyHosts=localhost|127.*|[::1] \
         -Djavax.net.ssl.trustStore={store} -Djavax.net.ssl.trustStoreType=PKCS12 \
         -Djavax.net.ssl.trustStorePassword={TRUST_STORE_PASSWORD}"
    )
}

/// `export NAME=VALUE` lines a POSIX shell can `eval`.
pub fn exports(vars: &[(&str, String)]) -> String {
    vars.iter()
        .map(|(name, value)| format!("export {name}={}\n", shell_quote(value)))
        .collect()
}

/// What `frontdoor env` prints when it cannot say what to set: shell that, once `eval`ed,
/// writes `why` on stderr and fails, so that `eval "$(frontdoor env …)"` does not pass
/// silently having set nothing.
pub fn eval_failure(why: &str) -> String {
    let said = format!("frontdoor env: {why}; nothing was set");
    format!("printf '%s\\n' {} >&2; false\n", shell_quote(&said))
}

/// Single-quotes `value` unless it is made only of characters no shell treats specially.
/// Hand-written: one rule, not worth a crate.
fn shell_quote(value: &str) -> String {
    let plain = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:,@%+=".contains(c));
    if plain {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_makes_the_eval_fail_and_say_why() {
        let script = format!(
            "eval \"$(cat <<'EOF'\n{}EOF\n)\" && echo passed",
            eval_failure("it's `down`; $HOME")
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert!(!out.status.success());
        assert!(out.stdout.is_empty());
        assert_eq!(
            String::from_utf8(out.stderr).unwrap(),
            "frontdoor env: it's `down`; $HOME; nothing was set\n"
        );
    }

    #[test]
    fn every_value_survives_the_shell() {
        let vars = vec![
            ("A", "plain/path:1".to_owned()),
            ("B", "two words|pipe".to_owned()),
            ("C", "it's".to_owned()),
            ("D", String::new()),
        ];
        let script = format!(
            "{}printf '%s\\n' \"$A\" \"$B\" \"$C\" \"[$D]\"",
            exports(&vars)
        );
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(script)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "plain/path:1\ntwo words|pipe\nit's\n[]\n"
        );
    }

    #[test]
    fn a_state_directory_with_a_space_stays_one_java_option() {
        let target = Target {
            metadata: "127.0.0.1:9000".parse().unwrap(),
            google: "127.0.0.1:8088".parse().unwrap(),
            state_dir: Path::new("/tmp/my state"),
            project: "p",
            region: "us-central1",
        };
        let java = java_options(&target);
        assert!(java.contains("-Djavax.net.ssl.trustStore=\"/tmp/my state/ca/truststore.p12\" "));
        assert!(java.contains("-Dhttps.proxyPort=9000"));
    }
}
