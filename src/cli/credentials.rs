//! Commands that write credentials: service-account key files, tokens from the built-in
//! external issuer, and external-account (workload identity federation) configurations.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::{ConfigArgs, locate, say};
use crate::clock::{Clock, SystemClock};
use crate::config::{Config, Provider, ProviderKeys};
use crate::keys::StateDir;
use crate::tokens::{Claims, LIFETIME, jws};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a key for a service account and write its JSON key file.
    Create {
        /// Where to write the key file.
        key_file: PathBuf,
        #[arg(long, value_name = "EMAIL")]
        iam_account: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// List a service account's keys.
    List {
        #[arg(long, value_name = "EMAIL")]
        iam_account: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Delete a key; assertions signed with it are refused from then on.
    Delete {
        key_id: String,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

#[derive(Debug, Args)]
pub struct ExternalToken {
    /// The provider, `POOL/PROVIDER`.
    #[arg(long)]
    provider: String,
    /// The token's `sub`.
    #[arg(long)]
    subject: String,
    /// Another claim, `NAME=VALUE` (repeatable).
    #[arg(long = "claim", value_name = "NAME=VALUE")]
    claims: Vec<String>,
    /// The token's `aud` [default: the provider's first allowed audience].
    #[arg(long)]
    audience: Option<String>,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Write an external-account configuration (workload identity federation) that reads
    /// its subject token from a file and impersonates a service account.
    ExternalAccount {
        /// Where to write the configuration.
        out: PathBuf,
        /// The provider, `POOL/PROVIDER`.
        #[arg(long)]
        provider: String,
        #[arg(long, value_name = "EMAIL")]
        service_account: String,
        /// The file the subject token is read from.
        #[arg(long)]
        token_file: PathBuf,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// `http://HOST:PORT` of the google listener: the running server's, else the configured one.
fn google_base(args: &ConfigArgs, config: &Config) -> String {
    let addr = locate::running(args).map_or(config.listen.google, |a| a.google);
    format!("http://{addr}")
}

pub(super) fn declared<'c>(
    config: &'c Config,
    email: &str,
) -> anyhow::Result<&'c crate::config::ServiceAccount> {
    config.service_account(email).with_context(|| {
        format!(
            "service account `{email}` is not declared in {}{}",
            config.file.display(),
            crate::suggest::did_you_mean(
                email,
                config.service_accounts.iter().map(|a| a.email.as_str())
            )
        )
    })
}

/// Writes `value` as a private file: created mode 0600, so a key is never readable by
/// others, not even for a moment; an existing file is restricted before it is written.
fn write_json(path: &PathBuf, value: &Value) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let text = serde_json::to_string_pretty(value)? + "\n";
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .and_then(|mut f| {
            use std::os::unix::fs::PermissionsExt;
            f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            f.write_all(text.as_bytes())
        })
        .with_context(|| format!("cannot write {}", path.display()))
}

pub(super) fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            key_file,
            iam_account,
            config: args,
        } => {
            let (config, state) = args.load()?;
            let account = declared(&config, &iam_account)?;
            let key = state.create_account_key(&account.email)?;
            let base = google_base(&args, &config);
            // The shape `gcloud iam service-accounts keys create` writes. universe_domain
            // stays googleapis.com: another value switches Python's library to another flow.
            let file = json!({
                "type": "service_account",
                "project_id": config.project.id,
                "private_key_id": key.kid(),
                "private_key": key.private_key_pem(),
                "client_email": account.email,
                "client_id": account.unique_id,
                "auth_uri": "https://accounts.google.com/o/oauth2/auth",
                "token_uri": format!("{base}/token"),
                "auth_provider_x509_cert_url": format!("{base}/oauth2/v1/certs"),
                "client_x509_cert_url": format!("{base}/oauth2/v1/certs"),
                "universe_domain": "googleapis.com",
            });
            write_json(&key_file, &file)?;
            say(&format!(
                "created key [{}] of [{}] in [{}]\n",
                key.kid(),
                account.email,
                key_file.display()
            ));
            Ok(())
        }
        KeysCommand::List {
            iam_account,
            config: args,
        } => {
            let (config, state) = args.load()?;
            let account = declared(&config, &iam_account)?;
            let mut out = String::from("KEY_ID                                    CREATED_AT\n");
            for (kid, _, created) in state.account_keys(&account.email)? {
                out.push_str(&format!(
                    "{kid}  {}\n",
                    humantime::format_rfc3339_seconds(created)
                ));
            }
            say(&out);
            Ok(())
        }
        KeysCommand::Delete {
            key_id,
            config: args,
        } => {
            let (_, state) = args.load()?;
            match state.delete_account_key(&key_id)? {
                Some(account) => {
                    say(&format!("deleted key [{key_id}] of [{account}]\n"));
                    Ok(())
                }
                None => bail!("no key `{key_id}` in {}", state.path().display()),
            }
        }
    }
}

fn provider<'c>(config: &'c Config, id: &str) -> anyhow::Result<&'c Provider> {
    config.provider(id).with_context(|| {
        let known: Vec<String> = config.providers.iter().map(Provider::id).collect();
        format!(
            "no provider `{id}` under workload_identity_pools (providers: {})",
            known.join(", ")
        )
    })
}

pub(super) fn external_token(args: ExternalToken) -> anyhow::Result<()> {
    let (config, state): (Config, StateDir) = args.config.load()?;
    let provider = provider(&config, &args.provider)?;
    if provider.keys != ProviderKeys::Builtin {
        bail!(
            "provider `{}` verifies tokens with its own JWKS, not frontdoor's built-in issuer (jwks: builtin)",
            provider.id()
        );
    }
    let key = state.external_issuer_key()?;
    let now = SystemClock.now();
    let mut claims = Claims::new();
    claims.insert("iss".into(), provider.issuer.clone().into());
    claims.insert("sub".into(), args.subject.into());
    claims.insert(
        "aud".into(),
        args.audience
            .unwrap_or_else(|| provider.allowed_audiences[0].clone())
            .into(),
    );
    claims.insert("iat".into(), now.into());
    claims.insert("exp".into(), (now + LIFETIME).into());
    for c in args.claims {
        let (name, value) = c
            .split_once('=')
            .with_context(|| format!("claim `{c}` is not NAME=VALUE"))?;
        claims.insert(name.to_owned(), value.into());
    }
    super::print_token(&jws::sign_claims(&key, &claims));
    Ok(())
}

pub(super) fn write(command: CredentialsCommand) -> anyhow::Result<()> {
    let CredentialsCommand::ExternalAccount {
        out,
        provider: id,
        service_account,
        token_file,
        config: args,
    } = command;
    let (config, _) = args.load()?;
    let provider = provider(&config, &id)?;
    let account = declared(&config, &service_account)?;
    let base = google_base(&args, &config);
    let token_file = std::path::absolute(&token_file).unwrap_or(token_file);
    let file = json!({
        "type": "external_account",
        "audience": provider.resource,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{base}/v1/token"),
        "service_account_impersonation_url": format!("{base}/v1/projects/-/serviceAccounts/{}:generateAccessToken", account.email),
        "credential_source": {"file": token_file.display().to_string()},
        "universe_domain": "googleapis.com",
    });
    write_json(&out, &file)?;
    say(&format!(
        "wrote external-account configuration for [{}] as [{}] to [{}]\n",
        provider.id(),
        account.email,
        out.display()
    ));
    Ok(())
}
