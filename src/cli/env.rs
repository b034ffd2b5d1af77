//! `frontdoor env` and `frontdoor exec`: what makes a process act as a service on Cloud
//! Run, read from the running server, printed for a shell or set for one command.

use anyhow::Context;

use super::{ConfigArgs, get_json, locate, say};

/// The variables that make a process act as `service` (or as the default metadata
/// listener's identity), from the running server.
async fn variables(
    args: &ConfigArgs,
    service: Option<&str>,
) -> anyhow::Result<Vec<(&'static str, String)>> {
    let addresses = locate::running(args)?;
    // What is in force is the running server's to say, not the file's: a live edit it
    // refused leaves the file unreadable and the server running as before.
    let status = get_json(addresses.google, "/frontdoor/v1/status").await?;
    let project = &status["project"];
    let (Some(project_id), Some(region)) = (project["id"].as_str(), project["region"].as_str())
    else {
        anyhow::bail!(
            "the running server's status names no project; it is older than this frontdoor: restart it"
        );
    };
    let running: Vec<&str> = status["services"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["name"].as_str())
        .collect();
    let metadata = match service {
        None => addresses.metadata,
        Some(name) => {
            let known = &running;
            addresses
                .services
                .get(name)
                .with_context(|| {
                    format!(
                        "no service `{name}` in the running server{} (services: {})",
                        crate::suggest::did_you_mean(name, known.iter().copied()),
                        known.join(", ")
                    )
                })?
                .metadata
        }
    };
    let state_dir = addresses
        .state_dir
        .clone()
        .context("the running server did not record its state directory; restart it")?;
    let mut vars = crate::client_env::variables(&crate::client_env::Target {
        metadata,
        google: addresses.google,
        state_dir: &state_dir,
        project: project_id,
        region,
    });
    if let Some(name) = service {
        // What Cloud Run sets in every container, as for the services frontdoor starts.
        // Node's library sees Cloud Run by K_CONFIGURATION.
        let revision = status["services"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["name"] == name)
            .and_then(|s| s["revision"].as_str())
            .with_context(|| format!("the running server names no revision of `{name}`"))?;
        vars.push(("K_SERVICE", name.to_owned()));
        vars.push(("K_REVISION", revision.to_owned()));
        vars.push(("K_CONFIGURATION", name.to_owned()));
    }
    Ok(vars)
}

/// `frontdoor env`: the variables as `export` lines for a shell's `eval`, or as JSON.
pub(super) async fn env(args: ConfigArgs, service: Option<&str>, json: bool) -> anyhow::Result<()> {
    let vars = variables(&args, service).await?;
    if json {
        let object: serde_json::Map<String, serde_json::Value> = vars
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value.into()))
            .collect();
        say(&format!("{}\n", serde_json::Value::Object(object)));
    } else {
        say(&crate::client_env::exports(&vars));
    }
    Ok(())
}

/// `frontdoor exec SERVICE -- COMMAND…`: COMMAND in this process's place, with SERVICE's
/// variables set for it alone, so that the shell it was run from stays as it was (its
/// package installs, say, never meet the egress proxy). Its exit status is COMMAND's.
pub(super) async fn exec(
    args: ConfigArgs,
    service: &str,
    command: &[std::ffi::OsString],
) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let (program, rest) = command
        .split_first()
        .context("give the command to run after `--`")?;
    let vars = variables(&args, Some(service)).await?;
    let mut command = std::process::Command::new(program);
    command.args(rest).envs(vars);
    // What a Cloud Run container does not have and Google's libraries and gcloud would
    // take before the metadata server: a key file, another account, a token file.
    for credential in CREDENTIAL_OVERRIDES {
        command.env_remove(credential);
    }
    let error = command.exec();
    // As env(1) does: 127 when COMMAND is not found, 126 when it cannot be run, so that a
    // script can tell them from COMMAND's own failures.
    eprintln!(
        "frontdoor exec: cannot run `{}`: {error}",
        program.to_string_lossy()
    );
    std::process::exit(match error.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    });
}

/// Variables that would make Google's libraries or gcloud act as someone other than the
/// service; `exec` runs COMMAND without them.
const CREDENTIAL_OVERRIDES: [&str; 4] = [
    "GOOGLE_APPLICATION_CREDENTIALS",
    "CLOUDSDK_AUTH_ACCESS_TOKEN_FILE",
    "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE",
    "CLOUDSDK_CORE_ACCOUNT",
];
