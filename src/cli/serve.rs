//! `frontdoor serve`: loads the configuration and the keys, binds every listener, records
//! where they are (`addresses.json`) and serves until a signal, or until stdin closes when
//! a test harness asked for that.

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;

use super::{ConfigArgs, describe, locate, say};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::server::{self, Ports};
use crate::state::AppState;

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// Allow listeners on other interfaces than loopback (e.g. 0.0.0.0 in a container).
    /// The metadata server hands out tokens to whoever reaches it.
    #[arg(long)]
    bind_all: bool,
    /// Bind every listener (the shared ones, each service's front door and metadata
    /// server) to a port the OS picks, whatever the configuration says, so that servers of
    /// the same configuration run side by side. `addresses.json` in the state directory
    /// (written whole, once every listener is bound) and `frontdoor env` give the real
    /// ports. The server is then found only through its state directory.
    #[arg(long)]
    ephemeral_ports: bool,
    /// Stop, as on SIGTERM, when stdin reaches its end: a test harness that holds the
    /// other end stops frontdoor and its services even when it dies itself.
    #[arg(long)]
    stop_on_stdin_close: bool,
    /// How the log on stderr is written: a short line per event, or one JSON object per
    /// line. `FRONTDOOR_LOG` sets the level (`info`; `debug` adds every check).
    #[arg(long, value_enum, default_value_t, env = "FRONTDOOR_LOG_FORMAT")]
    pub(super) log_format: crate::logging::LogFormat,
}

/// Said at start-up in audit mode, so that nobody mistakes it for enforcement.
const AUDIT_BANNER: &str = "\n  !!! AUDIT MODE (enforcement: audit): NOTHING IS ENFORCED !!!\n  Every request passes the front door; what Cloud Run would refuse is logged as AUDIT … would deny, with its code.\n  Remove `enforcement: audit` to enforce.\n\n";

pub(super) async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let ServeArgs {
        config: args,
        bind_all,
        ephemeral_ports,
        stop_on_stdin_close,
        log_format: _,
    } = args;
    let ports = if ephemeral_ports {
        Ports::Ephemeral
    } else {
        Ports::AsConfigured
    };
    let (config, state_dir) = args.load()?;
    // Two servers on one state directory would share its keys' record, Pub/Sub's messages
    // and the Admin APIs' changes, and the first to stop would remove the other's record.
    if let Some(running) = locate::live_server(&state_dir) {
        bail!(
            "a frontdoor (process {}) already serves from the state directory {}, its google listener at {}: stop it, or give this one its own --state-dir",
            running
                .pid
                .map_or_else(|| "?".to_owned(), |p| p.to_string()),
            state_dir.path().display(),
            running.google
        );
    }
    config.check_exposure(bind_all)?;
    if bind_all {
        warn_exposed(&config);
    }
    raise_fd_limit();
    // Said at once: on a first start, making the keys takes a moment.
    say(&format!(
        "frontdoor: {} is valid; loading the signing keys in {} (made on first start), then binding the listeners\n",
        config.file.display(),
        state_dir.path().display()
    ));
    let keys = state_dir.signing_keys()?;
    let kids = keys.kids().join(", ");
    let mut state = AppState::new(config, keys, state_dir, Arc::new(SystemClock));
    if bind_all {
        state = state.binding_all_interfaces();
    }
    // Made before the listeners bind, so that its files exist once `addresses.json` says
    // the server runs: `frontdoor env` and `command:` services name them.
    state.ca().context("cannot set up the local CA")?;
    let (config, state_dir) = (state.config(), state.state_dir());
    let bound = server::bind(config, ports).await?;
    let shutdown = shutdown_signal(stop_on_stdin_close)?;
    let addresses = server::Addresses {
        pid: Some(std::process::id()),
        config_file: std::path::absolute(&config.file).ok(),
        state_dir: std::path::absolute(state_dir.path()).ok(),
        ..bound.addresses()
    };
    // Recorded before the banner, so that once it shows, `frontdoor env` and `decisions`
    // find the server (serve records it again after every reload).
    state_dir
        .write_file(
            "addresses.json",
            serde_json::to_string_pretty(&addresses)?.as_bytes(),
        )
        .context("cannot record the listeners' addresses")?;
    // A server on ephemeral ports is one of several alike (a test suite's): it does not
    // note itself among the servers a person started, which the CLI looks through.
    if ports == Ports::AsConfigured {
        locate::remember(state_dir.path());
    }
    say(&format!(
        "frontdoor {} — project {} ({}, {})\n  dashboard    http://{}{}\n  front door   http://{}\n  google APIs  http://{}  (issuer {}, keys {kids})\n  decisions    http://{}/frontdoor/v1/decisions\n  metadata     http://{}  (default identity {})\n{}",
        env!("CARGO_PKG_VERSION"),
        config.project.id,
        config.project.number,
        config.project.region,
        addresses.google,
        crate::ops::DASHBOARD_PATH,
        addresses.frontdoor,
        addresses.google,
        config.issuer,
        addresses.google,
        addresses.metadata,
        config.metadata_identity,
        describe(config, Some(&addresses))
    ));
    if config.enforcement == crate::config::Enforcement::Audit {
        say(AUDIT_BANNER);
    }
    let record = state.state_dir().clone();
    let served = server::serve(bound, crate::state::Live::new(state), shutdown).await;
    locate::forget(&record);
    served?;
    say("frontdoor stopped\n");
    Ok(())
}

/// Raises the soft limit on open files to the hard one: each listener holds up to 4,096
/// connections, and the usual soft limit of 1,024 would run out first.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
        && soft < hard
        && let Err(e) = setrlimit(Resource::RLIMIT_NOFILE, hard, hard)
    {
        tracing::warn!(error = %e, soft, hard, "cannot raise the open-file limit");
    }
}

/// `--bind-all`'s warning, on stderr before anything serves: every listener other machines
/// can reach, the metadata servers first, since they hand tokens to whoever asks.
fn warn_exposed(config: &Config) {
    let mut exposed = config.exposed_addresses();
    if exposed.is_empty() {
        return;
    }
    exposed.sort_by_key(|(path, _)| !path.ends_with("metadata"));
    let mut text = String::from(
        "WARNING: --bind-all: these listeners are reachable from other machines on the network:\n",
    );
    for (path, addr) in &exposed {
        let what = if path.ends_with("metadata") {
            "a metadata server: it hands this project's ID and access tokens to anyone who reaches it"
        } else if path.ends_with("google") {
            "the token endpoints and IAM Credentials"
        } else {
            "a front door"
        };
        text.push_str(&format!("  {addr:<22} {path}: {what}\n"));
    }
    text.push_str("Use it only inside a private network (a container network, say).\n");
    use std::io::Write;
    let _ = std::io::stderr().write_all(text.as_bytes());
}

/// Installs the SIGINT and SIGTERM handlers now, so that a signal sent as soon as the
/// banner is out is caught, and returns the future that completes on either, or (with
/// `on_stdin_close`) when stdin reaches its end.
fn shutdown_signal(on_stdin_close: bool) -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    let stdin_closed = on_stdin_close.then(stdin_end);
    Ok(async move {
        let closed = async move {
            match stdin_closed {
                Some(end) => drop(end.await),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = int.recv() => tracing::info!("shutting down (SIGINT)"),
            _ = term.recv() => tracing::info!("shutting down (SIGTERM)"),
            () = closed => tracing::info!("shutting down: stdin closed (--stop-on-stdin-close)"),
        }
    })
}

/// Reads stdin to its end on a thread of its own (a blocking read would hold a runtime
/// thread, and tokio's stdin cannot be cancelled), dropping whatever is written; the
/// receiver completes at the end.
fn stdin_end() -> tokio::sync::oneshot::Receiver<()> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut sink = [0u8; 512];
        let mut stdin = std::io::stdin().lock();
        loop {
            match stdin.read(&mut sink) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                // A non-blocking stdin with nothing to read yet is not its end.
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
                Err(_) => break,
            }
        }
        let _ = tx.send(());
    });
    rx
}
