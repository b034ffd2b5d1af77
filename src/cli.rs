//! The command line: parses arguments, reads files and the clock, and runs the library.
//! This is the one place that prints to the terminal.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use crate::config::{self, Config};
use crate::iam::{self, Member};
use crate::keys::StateDir;
use crate::server;

mod changes;
mod credentials;
mod env;
mod inspect;
mod locate;
mod serve;
mod token;

#[derive(Debug, Parser)]
#[command(
    name = "frontdoor",
    version,
    about = "Cloud Run's service-to-service authentication, emulated offline",
    after_help = "The commands are listed in the order a first session uses them: check the file, serve it, run a command as a service, read the decisions, ask why. `frontdoor COMMAND --help` gives each one's example."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// On an error, print every cause in the chain, not only the first and the last.
    #[arg(long, short, global = true)]
    pub verbose: bool,
}

impl Cli {
    /// How the log is written: `serve --log-format`'s; the other commands log nothing of
    /// their own.
    pub fn log_format(&self) -> crate::logging::LogFormat {
        match &self.command {
            Command::Serve(args) => args.log_format,
            _ => crate::logging::LogFormat::default(),
        }
    }
}

/// A verdict of DENY from `frontdoor explain`: printed already; the process exits 1 with
/// nothing more said, as `grep` does when it finds nothing, so that a script can test it.
#[derive(Debug, thiserror::Error)]
#[error("denied")]
pub struct Denied;

/// An error as the user reads it: what failed and its root cause on one line; with
/// `--verbose`, every link of the chain (an HTTP client's error, say) on a line of its own.
pub fn describe_error(e: &anyhow::Error, verbose: bool) -> String {
    let chain: Vec<String> = e.chain().map(ToString::to_string).collect();
    if verbose {
        return chain.join("\n  caused by: ");
    }
    match chain.as_slice() {
        [] => String::new(),
        [only] => only.clone(),
        [first, .., root] if first.ends_with(root.as_str()) => first.clone(),
        [first, .., root] => format!("{first}: {root} (--verbose shows every cause)"),
    }
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file [default: services.yaml].
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where keys and the running server's record live [default: .frontdoor/ beside the
    /// config].
    #[arg(long, env = "FRONTDOOR_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

impl ConfigArgs {
    /// The configuration file named, or `services.yaml`.
    pub(crate) fn config_file(&self) -> PathBuf {
        self.config
            .clone()
            .unwrap_or_else(|| PathBuf::from("services.yaml"))
    }

    /// The configuration, with the changes made through the Admin APIs (kept in the state
    /// directory, `config::layer`) over it, as the server runs it.
    pub(crate) fn load(&self) -> anyhow::Result<(Config, StateDir)> {
        let (config, state, _) = self.load_with_layer()?;
        Ok((config, state))
    }

    /// The state directory: the one given, or the one beside the configuration file.
    pub(crate) fn state(&self) -> StateDir {
        self.state_dir
            .clone()
            .map_or_else(|| StateDir::beside(&self.config_file()), StateDir::new)
    }

    /// [`ConfigArgs::load`], and the layer it applied.
    pub(crate) fn load_with_layer(&self) -> anyhow::Result<(Config, StateDir, config::Layer)> {
        let file = self.config_file();
        let state = self.state();
        let layer = config::Layer::read(state.path())?;
        let config = config::load_layered(&file, &layer)?;
        Ok((config, state, layer))
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start every listener and serve until interrupted.
    #[command(display_order = 2, after_help = "Example: frontdoor serve")]
    Serve(serve::ServeArgs),
    /// Service-account keys, like `gcloud iam service-accounts keys`.
    #[command(subcommand)]
    #[command(
        display_order = 9,
        after_help = "Example: frontdoor keys create login-key.json --iam-account login@demo-project.iam.gserviceaccount.com"
    )]
    Keys(credentials::KeysCommand),
    /// Print a token from frontdoor's built-in external issuer, for a workload identity
    /// provider with `jwks: builtin`.
    #[command(
        display_order = 12,
        after_help = "See: docs/tokens.md mints one for workload identity federation"
    )]
    ExternalToken(credentials::ExternalToken),
    /// Write credential configuration files.
    #[command(subcommand)]
    #[command(
        display_order = 11,
        after_help = "See: docs/tokens.md writes each kind of credential file"
    )]
    Credentials(credentials::CredentialsCommand),
    /// Validate the configuration and print the services it describes.
    #[command(
        display_order = 1,
        after_help = "Example: frontdoor check --config services.yaml"
    )]
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Write the changes made through the Admin APIs into services.yaml.
    ///
    /// The changes (kept in the state directory, over the file) go into the configuration
    /// file itself, its comments and layout kept; what cannot be written there stays in the
    /// state directory, and is listed.
    #[command(display_order = 10, after_help = "Example: frontdoor fold")]
    Fold {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print an ID token, like `gcloud auth print-identity-token`.
    #[command(
        display_order = 6,
        after_help = "Example: frontdoor token --impersonate-service-account login@demo-project.iam.gserviceaccount.com --audiences https://search-123456789012.us-central1.run.app"
    )]
    Token {
        #[command(flatten)]
        config: ConfigArgs,
        /// Mint for this service account.
        #[arg(
            long,
            value_name = "EMAIL",
            required_unless_present = "user",
            conflicts_with = "user"
        )]
        impersonate_service_account: Option<String>,
        /// Mint for this user (declared under `users:`).
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
        /// The token's audience [default: gcloud's client id, as gcloud does].
        #[arg(long, value_name = "AUDIENCE")]
        audiences: Option<String>,
        /// Who is impersonating (`serviceAccount:EMAIL` or `user:EMAIL`): minted only if
        /// this principal may mint the account's ID tokens
        /// (`iam.serviceAccounts.getOpenIdToken`, as IAM Credentials checks it). Without
        /// it, frontdoor mints as an administrator would, and says so on stderr.
        #[arg(
            long = "as",
            value_name = "MEMBER",
            requires = "impersonate_service_account"
        )]
        caller: Option<String>,
    },
    /// Print the `export` lines that make a shell act as SERVICE.
    ///
    /// The variables (its metadata server, project and name) are read from the running
    /// server; without SERVICE, the default metadata listener's.
    ///
    /// Like `status` and `decisions`, it finds the running server through --state-dir or
    /// FRONTDOOR_STATE_DIR, else beside --config, else the nearest .frontdoor/ from the
    /// current directory up, else the newest running server this user started; one that is no
    /// longer running is reported (exit code 1), never used.
    #[command(
        display_order = 7,
        after_help = "Example: eval \"$(frontdoor env login)\""
    )]
    Env {
        #[command(flatten)]
        config: ConfigArgs,
        /// The service to act as.
        service: Option<String>,
        /// Print the variables as one JSON object (name → value), for programs (the test
        /// helpers) rather than a shell's `eval`.
        #[arg(long)]
        json: bool,
    },
    /// Run COMMAND as SERVICE would run on Cloud Run.
    ///
    /// The variables `frontdoor env SERVICE` prints are set for that command alone, so that
    /// the shell it is run from stays as it was (`frontdoor exec login -- curl
    /// https://search-….run.app`). Its exit status is COMMAND's. Finds the running server
    /// as `env` does.
    #[command(
        display_order = 3,
        after_help = "Example: frontdoor exec login -- curl -s -H 'Metadata-Flavor: Google' http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/email"
    )]
    Exec {
        #[command(flatten)]
        config: ConfigArgs,
        /// The service to act as.
        service: String,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// Show the running server's services, revisions and last reload.
    ///
    /// The configuration's generation, each service's revision and instance, and how the
    /// last reload went.
    #[command(display_order = 8, after_help = "Example: frontdoor status")]
    Status {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Ask why: the front door's verdict for a token and a service, or IAM's on a permission.
    ///
    /// The decision the front door would make, computed by the running server with the
    /// front door's own checks; nothing reaches the service, and a token is minted only
    /// for --impersonate-service-account. Or, with
    /// --principal, --permission and --resource, whether the principal holds the permission
    /// there, as the Admin APIs and IAM Credentials would judge it. Exits 1 on a DENY (the
    /// verdict printed, nothing on stderr), 0 on an ALLOW.
    #[command(
        display_order = 5,
        after_help = "Example: frontdoor explain --service search --impersonate-service-account login@demo-project.iam.gserviceaccount.com"
    )]
    Explain {
        #[command(flatten)]
        config: ConfigArgs,
        /// The service the token would be sent to.
        #[arg(long, required_unless_present = "permission")]
        service: Option<String>,
        /// The token to judge, as it would be sent after `Bearer `.
        #[arg(
            long,
            conflicts_with_all = ["impersonate_service_account", "user", "group"],
            required_unless_present_any = ["impersonate_service_account", "permission", "user", "group"]
        )]
        token: Option<String>,
        /// Whether this user may invoke --service, judged on IAM alone (no token): the
        /// group rosters that count are named in the reason.
        #[arg(long, value_name = "EMAIL", requires = "service", conflicts_with_all = ["impersonate_service_account", "group"])]
        user: Option<String>,
        /// Whether each member of this group (as `groups:` lists them) may invoke
        /// --service, judged on IAM alone.
        #[arg(
            long,
            value_name = "EMAIL",
            requires = "service",
            conflicts_with = "impersonate_service_account"
        )]
        group: Option<String>,
        /// Judge a token minted for this service account instead.
        #[arg(long)]
        impersonate_service_account: Option<String>,
        /// The minted token's audience (default: the service's URL).
        #[arg(long, requires = "impersonate_service_account")]
        audience: Option<String>,
        /// Who asks: `serviceAccount:EMAIL`, `user:EMAIL`, or an email.
        #[arg(long, requires_all = ["permission", "resource"])]
        principal: Option<String>,
        /// The IAM permission to judge (`iam.serviceAccounts.getOpenIdToken`, `run.services.update`, …).
        #[arg(
            long,
            requires_all = ["principal", "resource"],
            conflicts_with_all = ["service", "token", "impersonate_service_account"]
        )]
        permission: Option<String>,
        /// Where: `services/NAME`, `serviceAccounts/EMAIL` or `projects/ID`.
        #[arg(long, requires_all = ["principal", "permission"])]
        resource: Option<String>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show the recent decisions, with their reasons.
    ///
    /// Every surface's (the front door, IAM Credentials, /token, STS, tokeninfo, the
    /// metadata server), from the running server.
    #[command(
        display_order = 4,
        after_help = "Example: frontdoor decisions --limit 5"
    )]
    Decisions {
        #[command(flatten)]
        config: ConfigArgs,
        /// How many of the newest decisions to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Only this surface's decisions.
        #[arg(long, value_parser = clap::builder::PossibleValuesParser::new(crate::decisions::SURFACES))]
        surface: Option<String>,
        /// Print the raw JSON.
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve::serve(args).await,
        Command::Keys(command) => credentials::keys(command).await,
        Command::ExternalToken(args) => credentials::external_token(args),
        Command::Credentials(command) => credentials::write(command),
        Command::Env {
            config,
            service,
            json,
        } => match env::env(config, service.as_deref(), json).await {
            Ok(()) => Ok(()),
            Err(e) if json => Err(e),
            Err(e) => {
                // `eval "$(frontdoor env …)"` would otherwise set nothing, silently, and the
                // next command would go to the real Google: what is printed makes the eval
                // itself fail, saying why.
                say(&crate::client_env::eval_failure(&format!("{e:#}")));
                Err(e)
            }
        },
        Command::Exec {
            config,
            service,
            command,
        } => env::exec(config, &service, &command).await,
        Command::Status { config } => inspect::status(config).await,
        Command::Explain {
            config,
            service,
            token,
            impersonate_service_account,
            audience,
            principal,
            permission,
            resource,
            user,
            group,
            json,
        } => {
            if let Some(user) = user {
                if user.ends_with(".gserviceaccount.com") || user.starts_with("serviceAccount:") {
                    bail!(
                        "--user `{user}` is a service account: ask with --impersonate-service-account (a token minted for it) or --principal serviceAccount:EMAIL --permission run.routes.invoke --resource services/NAME"
                    );
                }
                let ask = serde_json::json!({
                    "principal": format!("user:{}", user.strip_prefix("user:").unwrap_or(&user)),
                    "permission": crate::iam::INVOKE,
                    "resource": format!("services/{}", service.unwrap_or_default()),
                });
                return inspect::explain(config, ask, json).await;
            }
            if let Some(group) = group {
                let ask = serde_json::json!({"group": group, "service": service});
                return inspect::explain(config, ask, json).await;
            }
            let ask = serde_json::json!({
                "service": service,
                "token": token,
                "impersonate_service_account": impersonate_service_account,
                "audience": audience,
                "principal": principal,
                "permission": permission,
                "resource": resource,
            });
            inspect::explain(config, ask, json).await
        }
        Command::Decisions {
            config,
            limit,
            surface,
            json,
        } => inspect::decisions(config, limit, surface.as_deref(), json).await,
        Command::Check { config: args } => {
            let (config, state_dir, layer) = args.load_with_layer()?;
            let mut out = describe(&config, None);
            out.push_str(&changes::note(&state_dir, &layer));
            for (path, addr) in config.exposed_addresses() {
                out.push_str(&format!(
                    "note: {path} is {addr}, not loopback: `serve` needs --bind-all\n"
                ));
            }
            say(&out);
            Ok(())
        }
        Command::Fold { config } => changes::fold(&config),
        Command::Token {
            config,
            impersonate_service_account,
            user,
            audiences,
            caller,
        } => token::token(config, impersonate_service_account, user, audiences, caller).await,
    }
}

/// GET `path` on the running server's google listener, as JSON. Loopback only: never
/// through a proxy the environment may name.
async fn fetch_json(config: &ConfigArgs, path: &str) -> anyhow::Result<serde_json::Value> {
    let addresses = locate::running(config)?;
    get_json(addresses.google, path).await
}

/// GET `path` on the google listener at `google`, as JSON.
async fn get_json(google: std::net::SocketAddr, path: &str) -> anyhow::Result<serde_json::Value> {
    let (status, _, body) = ask(google, path, None).await?;
    if !status.is_success() {
        // Whatever answers on that port chose the body: escaped before the terminal.
        anyhow::bail!(
            "frontdoor at {google} answered {status} for {path}: {}",
            crate::decisions::escape_controls(&String::from_utf8_lossy(&body))
        );
    }
    Ok(serde_json::from_slice(&body)?)
}

/// `path` on the google listener at `google`: a GET, or a POST of `body` as JSON; the
/// status, the headers and the body. Straight to the loopback address, never through a proxy the
/// environment may name. (hyper's own connection, not an HTTP client crate: one request
/// to our own server needs no pool, redirects or TLS.)
async fn ask(
    google: std::net::SocketAddr,
    path: &str,
    body: Option<&serde_json::Value>,
) -> anyhow::Result<(http::StatusCode, http::HeaderMap, bytes::Bytes)> {
    use http_body_util::{BodyExt, Full};
    // A server bound with --bind-all records 0.0.0.0: reached, and named, as loopback,
    // which its own endpoints answer.
    let google = if google.ip().is_unspecified() {
        let loopback = match google {
            std::net::SocketAddr::V4(_) => std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
            std::net::SocketAddr::V6(_) => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        std::net::SocketAddr::new(loopback, google.port())
    } else {
        google
    };
    let unreachable = || {
        format!("cannot reach frontdoor at http://{google}{path}; is `frontdoor serve` running?")
    };
    let stream = tokio::net::TcpStream::connect(google)
        .await
        .with_context(unreachable)?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .with_context(unreachable)?;
    tokio::spawn(connection);
    let request = http::Request::builder()
        .uri(path)
        .header(http::header::HOST, google.to_string());
    let request = match body {
        Some(body) => request
            .method(http::Method::POST)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(bytes::Bytes::from(serde_json::to_vec(body)?)))?,
        None => request.body(Full::new(bytes::Bytes::new()))?,
    };
    let response = sender
        .send_request(request)
        .await
        .with_context(unreachable)?;
    let (parts, body) = response.into_parts();
    Ok((
        parts.status,
        parts.headers,
        body.collect().await?.to_bytes(),
    ))
}

/// Writes to stdout, ignoring a closed pipe: `frontdoor token | head -c 10` or a parent
/// that stopped reading must not turn into a panic.
pub(crate) fn say(text: &str) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
}

/// Prints a token as the metadata server serves one: no trailing newline, so that
/// `frontdoor external-token > subject.jwt` is a token file Google's libraries read as is.
/// A terminal gets the newline, so the prompt does not run into the token.
pub(crate) fn print_token(token: &str) {
    use std::io::IsTerminal;
    if std::io::stdout().is_terminal() {
        say(&format!("{token}\n"));
    } else {
        say(token);
    }
}

/// The resolved services, for `check` and the start-up banner.
/// With the running server's `addresses`, each service's metadata listener is shown too.
pub fn describe(config: &Config, addresses: Option<&server::Addresses>) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "services:");
    for s in &config.services {
        let who = invokers(config, s);
        let _ = writeln!(
            out,
            "  {}  (runs as {}; ingress {}; {})",
            s.name,
            s.service_account,
            s.ingress.as_str(),
            who
        );
        let _ = writeln!(out, "    url        {}", s.url);
        let _ = writeln!(out, "    url        {}", s.legacy_url);
        for a in &s.custom_audiences {
            let _ = writeln!(out, "    audience   {a}");
        }
        for d in &s.custom_domains {
            let _ = writeln!(out, "    domain     {d}");
        }
        let running = addresses.and_then(|a| a.services.get(&s.name));
        // Where it really listens (another port with `serve --ephemeral-ports`).
        if let Some(l) = running.and_then(|a| a.listen).or(s.listen) {
            let _ = writeln!(out, "    listen     http://{l}");
        }
        if let Some(a) = running {
            let _ = writeln!(out, "    metadata   http://{}", a.metadata);
        }
        let _ = writeln!(out, "    upstream   {}", s.upstream);
    }
    out
}

fn invokers(config: &Config, s: &config::Service) -> String {
    if s.invoker_iam_disabled {
        return "public: invoker IAM check disabled".into();
    }
    if s.policy.is_public(iam::INVOKE) || config.policy.is_public(iam::INVOKE) {
        return "public: allUsers may invoke".into();
    }
    let members: Vec<String> = s
        .policy
        .bindings
        .iter()
        .chain(&config.policy.bindings)
        .filter(|b| b.role.grants(iam::INVOKE))
        .flat_map(|b| b.members.iter().map(Member::to_string))
        .collect();
    if members.is_empty() {
        "invokable by nobody yet".into()
    } else {
        format!("invokable by {}", members.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_show_what_failed_and_the_root_cause_and_verbose_shows_all() {
        let e = anyhow::anyhow!("tcp connect error: Connection refused (os error 111)")
            .context("error sending request for url (http://127.0.0.1:8088/)")
            .context("cannot reach frontdoor at http://127.0.0.1:8088/");
        assert_eq!(
            describe_error(&e, false),
            "cannot reach frontdoor at http://127.0.0.1:8088/: tcp connect error: Connection refused (os error 111) (--verbose shows every cause)"
        );
        let all = describe_error(&e, true);
        assert_eq!(all.lines().count(), 3, "{all}");
        assert!(
            all.contains("\n  caused by: error sending request"),
            "{all}"
        );
        assert_eq!(describe_error(&anyhow::anyhow!("plain"), false), "plain");
    }

    /// Nobody listening: the error says where it looked and what to start.
    #[tokio::test]
    async fn asking_a_port_nobody_serves_says_to_start_frontdoor() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let e = get_json(addr, "/frontdoor/v1/status").await.unwrap_err();
        let said = describe_error(&e, false);
        assert!(
            said.starts_with(&format!("cannot reach frontdoor at http://{addr}/frontdoor/v1/status; is `frontdoor serve` running?")),
            "{said}"
        );
    }

    /// A refusal's body is shown, its control characters escaped.
    #[tokio::test]
    async fn a_refusal_is_shown_escaped() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let app = axum::Router::new()
            .fallback(|| async { (axum::http::StatusCode::NOT_FOUND, "no\u{1b}[31m such") });
        tokio::spawn(async move { axum::serve(listener, app).await });
        let e = get_json(addr, "/x").await.unwrap_err().to_string();
        assert!(
            e.contains("answered 404 Not Found for /x: no\\u{1b}[31m such"),
            "{e}"
        );
    }
}
