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
    /// Make a key for a service account and write its JSON key file, naming Google's token
    /// endpoint as Google's key files do (it reaches frontdoor through `frontdoor env`'s proxy).
    Create {
        /// Where to write the key file.
        key_file: PathBuf,
        #[arg(long, value_name = "EMAIL")]
        iam_account: String,
        /// Make it as this member, `serviceAccount:EMAIL` or `user:EMAIL`, judged as the
        /// IAM API judges `keys create` (iam.serviceAccountKeys.create on the account);
        /// without it, as an administrator, unchecked.
        #[arg(long = "as", value_name = "MEMBER")]
        caller: Option<String>,
        #[command(flatten)]
        urls: UrlArgs,
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

#[derive(Debug, Args)]
pub struct UrlArgs {
    /// Name the running server's google listener (`http://127.0.0.1:PORT`) instead of
    /// Google's URLs, for processes that do not use frontdoor's proxy.
    #[arg(long)]
    loopback_urls: bool,
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Write an external-account configuration (workload identity federation) that reads
    /// its subject token from a file and, given --service-account, impersonates it; it
    /// names Google's STS and IAM Credentials URLs, as gcloud's `create-cred-config` does.
    ExternalAccount {
        /// Where to write the configuration.
        out: PathBuf,
        /// The provider, `POOL/PROVIDER`.
        #[arg(long)]
        provider: String,
        /// The account to impersonate; without it, the federated token is used directly.
        #[arg(long, value_name = "EMAIL")]
        service_account: Option<String>,
        /// The file the subject token is read from.
        #[arg(long)]
        token_file: PathBuf,
        #[command(flatten)]
        urls: UrlArgs,
        #[command(flatten)]
        config: ConfigArgs,
    },
}

/// Where a credential file sends its client: Google's own hosts, or (--loopback-urls) the
/// google listener, the running server's else the configured one.
struct Urls {
    oauth2: String,
    certs: String,
    sts: String,
    iam_credentials: String,
}

impl Urls {
    fn new(urls: &UrlArgs, args: &ConfigArgs, config: &Config) -> Urls {
        if !urls.loopback_urls {
            return Urls {
                oauth2: "https://oauth2.googleapis.com".into(),
                certs: "https://www.googleapis.com".into(),
                sts: "https://sts.googleapis.com".into(),
                iam_credentials: "https://iamcredentials.googleapis.com".into(),
            };
        }
        let addr = locate::running(args).map_or(config.listen.google, |a| a.google);
        let base = format!("http://{addr}");
        Urls {
            oauth2: base.clone(),
            certs: base.clone(),
            sts: base.clone(),
            iam_credentials: base,
        }
    }
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

/// A private file made before what it will hold is known, in the directory it goes in,
/// then renamed over its path; dropped unfinished, it is removed.
struct Pending {
    temporary: PathBuf,
    path: PathBuf,
}

impl Pending {
    fn make(path: &std::path::Path) -> anyhow::Result<Pending> {
        let name = path
            .file_name()
            .with_context(|| format!("{} names no file", path.display()))?;
        let mut temporary = path.to_path_buf();
        temporary.set_file_name(format!(
            ".{}.{:08x}.tmp",
            name.to_string_lossy(),
            fastrand::u32(..)
        ));
        write_json(&temporary, &Value::Null)?;
        Ok(Pending {
            temporary,
            path: path.to_path_buf(),
        })
    }

    fn finish(self, value: &Value) -> anyhow::Result<()> {
        write_json(&self.temporary, value)?;
        std::fs::rename(&self.temporary, &self.path)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        // Gone already once renamed.
        let _ = std::fs::remove_file(&self.temporary);
    }
}

pub(super) async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create {
            key_file,
            iam_account,
            caller,
            urls,
            config: args,
        } => {
            // The file is made first: a key nobody can write down would count against the
            // account's ten with no one holding it.
            let pending = Pending::make(&key_file)?;
            // The server running from this state directory makes it, under the IAM API's
            // lock and limit, and logs the decision; without one, the file is enough.
            let made = match locate::live_server(&args.state()) {
                Some(addresses) => {
                    key_from_server(addresses.google, &iam_account, caller.as_deref(), &urls)
                        .await?
                }
                None => key_offline(&args, &iam_account, caller.as_deref(), &urls)?,
            };
            pending.finish(&made.file)?;
            if caller.is_none() {
                // An administrator's shortcut, said every time: IAM's own way is checked.
                eprintln!(
                    "frontdoor keys create: made as an administrator would, with no IAM check ({}); --as MEMBER is checked as the IAM API checks it, and so is `gcloud iam service-accounts keys create` against frontdoor's Admin API (iam.serviceAccountKeys.create)",
                    if made.logged {
                        "the decision log says so"
                    } else {
                        "no server runs from this state directory, so no decision was logged"
                    }
                );
            }
            say(&format!(
                "created key [{}] of [{}] in [{}]\n{} now has {} of Google's {} keys; each is a credential until deleted (`frontdoor keys delete KEY_ID`)\n",
                made.kid,
                made.email,
                key_file.display(),
                made.email,
                made.held,
                crate::google::MAX_KEYS_PER_ACCOUNT
            ));
            Ok(())
        }
        KeysCommand::List {
            iam_account,
            config: args,
        } => {
            // The keys are the state directory's. The file only says whether the account
            // is declared: while a server runs from that directory and the file holds an
            // edit it refused, the list is still given, and stderr says what went unchecked.
            let (email, state) = match args.load() {
                Ok((config, state)) => (declared(&config, &iam_account)?.email.clone(), state),
                Err(e) if locate::live_server(&args.state()).is_some() => {
                    // The email as the configuration would hold it (lowercased), or none.
                    let Ok(crate::iam::Member::ServiceAccount(email)) =
                        crate::iam::Member::parse(&format!("serviceAccount:{iam_account}"))
                    else {
                        return Err(e);
                    };
                    eprintln!(
                        "frontdoor keys list: the configuration file does not load ({e:#}); the keys the state directory keeps for {email} are listed unchecked"
                    );
                    (email, args.state())
                }
                Err(e) => return Err(e),
            };
            let mut out = String::from("KEY_ID                                    CREATED_AT\n");
            for (kid, _, created) in state.account_keys(&email)? {
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

/// A key made, with its file.
struct Made {
    file: Value,
    kid: String,
    email: String,
    /// How many keys the account holds now.
    held: usize,
    /// A running server made it and logged the decision.
    logged: bool,
}

/// `keys create`, asked of the running server (`POST /frontdoor/v1/keys`).
async fn key_from_server(
    google: std::net::SocketAddr,
    email: &str,
    caller: Option<&str>,
    urls: &UrlArgs,
) -> anyhow::Result<Made> {
    let question = json!({
        "service_account": email,
        "as": caller,
        "loopback_urls": urls.loopback_urls,
    });
    let (status, headers, body) = super::ask(google, "/frontdoor/v1/keys", Some(&question)).await?;
    let answer: Value = serde_json::from_slice(&body).unwrap_or_default();
    if !status.is_success() {
        return Err(super::token::refusal(status, &headers, &body, &answer));
    }
    // Checked before anything is written; the answer holds a private key, so it is never
    // quoted in an error.
    let (Some(kid), Some(file), Some(held)) = (
        answer["key_id"].as_str(),
        answer["key_file"]
            .as_object()
            .filter(|f| f.get("private_key").is_some_and(Value::is_string)),
        answer["held"].as_u64(),
    ) else {
        bail!(
            "frontdoor at {google} answered {status} without a key id, a key file and a count; nothing was written"
        );
    };
    Ok(Made {
        kid: kid.to_owned(),
        email: file
            .get("client_email")
            .and_then(Value::as_str)
            .unwrap_or(email)
            .to_owned(),
        held: usize::try_from(held).unwrap_or(usize::MAX),
        file: Value::Object(file.clone()),
        logged: true,
    })
}

/// `keys create` with no server running: from the file and the state directory.
fn key_offline(
    args: &ConfigArgs,
    email: &str,
    caller: Option<&str>,
    urls: &UrlArgs,
) -> anyhow::Result<Made> {
    let (config, state) = args.load()?;
    let account = declared(&config, email)?;
    if let Some(caller) = caller {
        super::token::judged_as(&config, account, caller, crate::iam::KEYS_CREATE)?;
    }
    // Google's limit, as its API keeps it: a script that makes a key each run finds out
    // at the eleventh, not never.
    let max = crate::google::MAX_KEYS_PER_ACCOUNT;
    let held = state.account_keys(&account.email)?.len();
    if held >= max {
        bail!(
            "FAILED_PRECONDITION: {} already has {held} keys, Google's limit of {max}: delete one first (`frontdoor keys list --iam-account {0}`, then `frontdoor keys delete KEY_ID`)",
            account.email
        );
    }
    let key = state.create_account_key(&account.email)?;
    let urls = Urls::new(urls, args, &config);
    Ok(Made {
        file: crate::google::key_file(&config, account, &key, &urls.oauth2, &urls.certs),
        kid: key.kid().to_owned(),
        email: account.email.clone(),
        held: held + 1,
        logged: false,
    })
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
        urls,
        config: args,
    } = command;
    let (config, _) = args.load()?;
    let provider = provider(&config, &id)?;
    let account = service_account
        .as_deref()
        .map(|email| declared(&config, email))
        .transpose()?;
    let urls = Urls::new(&urls, &args, &config);
    let token_file = std::path::absolute(&token_file).unwrap_or(token_file);
    let mut file = json!({
        "type": "external_account",
        "audience": provider.resource,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
        "token_url": format!("{}/v1/token", urls.sts),
        "credential_source": {"file": token_file.display().to_string()},
        "universe_domain": "googleapis.com",
    });
    if let Some(account) = account {
        file["service_account_impersonation_url"] = format!(
            "{}/v1/projects/-/serviceAccounts/{}:generateAccessToken",
            urls.iam_credentials, account.email
        )
        .into();
    }
    write_json(&out, &file)?;
    let acting = account.map_or_else(
        || "the federated identity itself".to_owned(),
        |a| format!("[{}]", a.email),
    );
    say(&format!(
        "wrote external-account configuration for [{}] as {acting} to [{}]\n",
        provider.id(),
        out.display()
    ));
    Ok(())
}
