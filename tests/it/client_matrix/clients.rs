//! The clients of the matrix: how to run each program, the libraries it pins, and one
//! bounded run of it as `login` on Cloud Run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::common::*;

/// How long one cell may take before it fails, with the program's stderr shown.
const CELL_LIMIT: Duration = Duration::from_secs(30);

/// One client: its row's name, how to run its program, and the libraries it pins.
pub(crate) struct Client {
    pub(crate) name: &'static str,
    pub(crate) program: PathBuf,
    pub(crate) args: Vec<String>,
    pub(crate) libraries: String,
    /// Its gRPC program (`HOST CASE` follow these), or why it has none.
    pub(crate) grpc: Result<(PathBuf, Vec<String>), &'static str>,
}

impl Client {
    /// The client's gRPC program as a client of its own, to [`run`].
    pub(crate) fn grpc_program(&self) -> Result<Client, &'static str> {
        let (program, args) = self.grpc.clone()?;
        Ok(Client {
            name: self.name,
            program,
            args,
            libraries: String::new(),
            grpc: Err("a gRPC program has no gRPC program of its own"),
        })
    }
}

pub(crate) fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `module vX` lines of go.mod, for the modules the Go client imports.
fn go_versions() -> String {
    let gomod = read("tests/clients/go/go.mod");
    [
        "cloud.google.com/go/auth",
        "cloud.google.com/go/compute/metadata",
        "google.golang.org/api",
        "golang.org/x/oauth2",
        "google.golang.org/grpc",
    ]
    .iter()
    .map(|m| {
        let version = gomod
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("{m} ")))
            .unwrap_or_else(|| panic!("{m} not in go.mod"));
        format!("`{m}` {}", version.trim_end_matches(" // indirect"))
    })
    .collect::<Vec<_>>()
    .join(", ")
}

fn java_versions() -> String {
    let pom = read("tests/clients/java/pom.xml");
    [
        "google-auth-library-oauth2-http",
        "google-api-client",
        "grpc-netty-shaded",
        "grpc-auth",
    ]
    .iter()
    .map(|artifact| {
        let after = pom
            .split(&format!("<artifactId>{artifact}</artifactId>"))
            .nth(1)
            .unwrap_or_else(|| panic!("{artifact} not in pom.xml"));
        let version = after
            .split("<version>")
            .nth(1)
            .and_then(|v| v.split("</version>").next())
            .unwrap();
        format!("`{artifact}` {version}")
    })
    .collect::<Vec<_>>()
    .join(", ")
}

fn node_version() -> String {
    let package: Value = serde_json::from_str(&read("tests/clients/node/package.json")).unwrap();
    ["google-auth-library", "@grpc/grpc-js"]
        .iter()
        .map(|name| {
            let version = package["dependencies"][name].as_str().unwrap();
            format!("`{name}` {version}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn python_version() -> String {
    let pins = read("tests/clients/python/requirements.txt");
    ["google-auth", "grpcio"]
        .iter()
        .map(|name| {
            let version = pins
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}==")))
                .unwrap_or_else(|| panic!("{name} not pinned"));
            format!("`{name}` {version}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn gcloud_version() -> String {
    let out = succeed(Command::new("gcloud").args(["version", "--format=json"]));
    let versions: Value = serde_json::from_str(&out).unwrap();
    format!(
        "Google Cloud SDK {}",
        versions["Google Cloud SDK"].as_str().unwrap()
    )
}

pub(crate) fn clients() -> Vec<Client> {
    vec![
        Client {
            name: "Go",
            program: go_client(),
            args: vec![],
            libraries: go_versions(),
            grpc: Ok((go_client(), vec!["grpc".into()])),
        },
        Client {
            name: "Java",
            program: "java".into(),
            args: java_client_args(),
            libraries: java_versions(),
            grpc: Ok(("java".into(), {
                let mut args = java_client_args();
                *args.last_mut().unwrap() = "frontdoor.GrpcProbe".into();
                args
            })),
        },
        Client {
            name: "Node",
            program: "node".into(),
            args: vec![node_script("client.js").to_str().unwrap().to_owned()],
            libraries: node_version(),
            grpc: Ok((
                "node".into(),
                vec![node_script("grpc.js").to_str().unwrap().to_owned()],
            )),
        },
        Client {
            name: "Python",
            program: python(),
            args: vec![
                repo()
                    .join("tests/clients/python/client.py")
                    .display()
                    .to_string(),
            ],
            libraries: python_version(),
            grpc: Ok((
                python(),
                vec![
                    repo()
                        .join("tests/clients/python/grpc_client.py")
                        .display()
                        .to_string(),
                ],
            )),
        },
        Client {
            name: "gcloud",
            program: "bash".into(),
            args: vec![
                repo()
                    .join("tests/clients/gcloud/client.sh")
                    .display()
                    .to_string(),
            ],
            libraries: gcloud_version(),
            grpc: Err(
                "gcloud has no gRPC client: it calls Google's APIs, never a service's own methods (`gcloud run` deploys and describes services, it does not invoke them)",
            ),
        },
    ]
}

/// Runs `client`'s program for `cell` as `login` would run on Cloud Run, the credentials
/// file it reads (if any) in GOOGLE_APPLICATION_CREDENTIALS: its JSON, or why it failed.
pub(crate) fn run(
    emu: &Emulator,
    client: &Client,
    args: &[&str],
    credentials: Option<&Path>,
) -> Result<Value, String> {
    let shell = ClientShell::new(emu, Some("login"));
    let mut cmd = shell.command(&client.program);
    cmd.args(&client.args).args(args);
    if args[0] == "platform" {
        // Cloud Run sets no project variable: the project must come from the metadata
        // server.
        cmd.env_remove("GOOGLE_CLOUD_PROJECT")
            .env_remove("CLOUDSDK_CORE_PROJECT");
    }
    if let Some(file) = credentials {
        cmd.env("GOOGLE_APPLICATION_CREDENTIALS", file);
    }
    let output = bounded_output_within(&mut cmd, CELL_LIMIT)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        return Err(format!("exit {}: {}", output.status, excerpt(&stderr)));
    }
    serde_json::from_str(stdout.trim())
        .map_err(|e| format!("not JSON ({e}): {stdout}\nstderr: {}", excerpt(&stderr)))
}

fn excerpt(text: &str) -> String {
    // The first lines (a Node or Java error's message) and the last (a Python traceback's),
    // at most 4 KB of them.
    let lines: Vec<&str> = text.lines().collect();
    let shown = if lines.len() <= 12 {
        lines.join("\n")
    } else {
        format!(
            "{}\n…\n{}",
            lines[..4].join("\n"),
            lines[lines.len() - 8..].join("\n")
        )
    };
    shown.chars().take(4096).collect()
}

pub(crate) fn write_tokens(dir: &Path, name: &str, tokens: &BTreeMap<String, String>) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, serde_json::to_string(tokens).unwrap()).unwrap();
    path
}
