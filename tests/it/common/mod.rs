//! The one harness every end-to-end test uses: starts the emulator in-process on ephemeral
//! loopback ports from inline YAML, with the checked-in test keys, and stops it again,
//! re-raising any panic from inside the server.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use base64::Engine;

pub mod corpus;
pub mod tokens;

use frontdoor::clock::SystemClock;
use frontdoor::config::{self, Config};
use frontdoor::keys::StateDir;
use frontdoor::server::{Addresses, Running};
use frontdoor::state::AppState;

pub const PROJECT: &str =
    "project: {id: demo-project, number: \"123456789012\", region: us-central1}\n";

/// Every listener on an ephemeral port, so tests never collide.
pub const EPHEMERAL: &str =
    "listen: {frontdoor: 127.0.0.1:0, google: 127.0.0.1:0, metadata: 127.0.0.1:0}\n";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A state directory holding the checked-in keys `a` (signer), `b` (next) and `d` (the
/// built-in external issuer).
pub fn state_dir_with_test_keys(dir: &Path) -> StateDir {
    let signing = dir.join("signing");
    std::fs::create_dir_all(&signing).unwrap();
    std::fs::copy(repo().join("tests/keys/a.pem"), signing.join("current.pem")).unwrap();
    std::fs::copy(repo().join("tests/keys/b.pem"), signing.join("next.pem")).unwrap();
    std::fs::create_dir_all(dir.join("external")).unwrap();
    std::fs::copy(
        repo().join("tests/keys/d.pem"),
        dir.join("external/issuer.pem"),
    )
    .unwrap();
    StateDir::new(dir)
}

/// A checked-in key: `a` to `f`.
pub fn test_key(name: &str) -> frontdoor::keys::SigningKey {
    let pem = std::fs::read_to_string(repo().join(format!("tests/keys/{name}.pem"))).unwrap();
    frontdoor::keys::SigningKey::from_pkcs8_pem(&pem).unwrap()
}

/// A generation made from `yaml` with the checked-in keys, and nothing started: for
/// router-level tests, which hand one request at a time to a listener's `Router`
/// ([`oneshot`]) instead of starting the whole emulator.
pub struct Generation {
    pub dir: tempfile::TempDir,
    pub live: frontdoor::state::Live,
}

pub fn generation(yaml: &str) -> Generation {
    let (dir, state) = first_state(yaml, Arc::new(SystemClock));
    Generation {
        dir,
        live: frontdoor::state::Live::new(state),
    }
}

/// `yaml` (on ephemeral ports) written to a fresh directory and loaded, with the
/// checked-in keys in its state directory: what the emulator and the router-level tests
/// both start from.
fn first_state(yaml: &str, clock: frontdoor::clock::SharedClock) -> (tempfile::TempDir, AppState) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("services.yaml");
    std::fs::write(&file, format!("{EPHEMERAL}{yaml}")).unwrap();
    let config = config::load(&file).unwrap_or_else(|e| panic!("{e}"));
    let state_dir = state_dir_with_test_keys(&dir.path().join(".frontdoor"));
    let keys = state_dir.signing_keys().unwrap();
    (dir, AppState::new(config, keys, state_dir, clock))
}

/// `request` answered by `app` in-process, handed over as the accept loop would (from a
/// loopback peer); the status, the headers and the body as text.
pub async fn oneshot(
    app: &axum::Router,
    mut request: axum::http::Request<axum::body::Body>,
) -> (axum::http::StatusCode, axum::http::HeaderMap, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    request
        .extensions_mut()
        .insert(axum::extract::ConnectInfo(frontdoor::peer::Peer {
            remote: "127.0.0.1:40000".parse().unwrap(),
            local: "127.0.0.1:9999".parse().unwrap(),
        }));
    let response = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&bytes).into_owned(),
    )
}

pub struct Emulator {
    pub dir: tempfile::TempDir,
    pub config: Config,
    pub state: AppState,
    pub addresses: Addresses,
    running: Option<Running>,
}

impl Emulator {
    /// Starts from `yaml` (which must not set `listen:`; the harness does).
    pub async fn start(yaml: &str) -> Emulator {
        Emulator::start_with_clock(yaml, Arc::new(SystemClock)).await
    }

    /// Starts from `yaml`, then waits until every started command listens (`/healthz`
    /// answers 200; within 90 s). For tests that count a receiver's attempts: an instance
    /// whose first start failed (its port taken meanwhile by another test's connection,
    /// say) is restarted by the supervisor, and a call in that window fails before it
    /// reaches the receiver.
    pub async fn start_ready(yaml: &str) -> Emulator {
        let emu = Emulator::start(yaml).await;
        let start = std::time::Instant::now();
        loop {
            let r = reqwest::get(emu.google("/healthz")).await.unwrap();
            let status = r.status();
            let body = r.text().await.unwrap_or_default();
            if status == 200 {
                return emu;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(90),
                "not ready after 90 s: {body}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    pub async fn start_with_clock(yaml: &str, clock: frontdoor::clock::SharedClock) -> Emulator {
        let (dir, state) = first_state(yaml, clock);
        Emulator::serve(dir, state).await
    }

    /// Stops this emulator and starts another from the same directory, as `frontdoor
    /// serve` would after a restart: the configuration file with the Admin APIs' changes
    /// over it, and the same state directory (listeners on new ephemeral ports).
    pub async fn restart(mut self) -> Emulator {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap();
        }
        let state_dir = self.state.state_dir().clone();
        let layer = config::Layer::read(state_dir.path()).unwrap();
        let config = config::load_layered(&self.config_file(), &layer).unwrap();
        let keys = state_dir.signing_keys().unwrap();
        let state = AppState::new(config, keys, state_dir, Arc::new(SystemClock));
        Emulator::serve(self.dir, state).await
    }

    async fn serve(dir: tempfile::TempDir, state: AppState) -> Emulator {
        let config = state.config().clone();
        // Started commands' output stays out of the test log; failures quote its last lines.
        state
            .supervisor()
            .set_output(frontdoor::upstream::Output::Discard);
        let running = Running::start(state.clone()).await.unwrap();
        // As `frontdoor serve` does, so the CLI's commands find this emulator, and
        // `frontdoor env` the local CA's files.
        state.ca().unwrap();
        let recorded = Addresses {
            state_dir: Some(std::path::absolute(state.state_dir().path()).unwrap()),
            ..running.addresses.clone()
        };
        let addresses = serde_json::to_string(&recorded).unwrap();
        state
            .state_dir()
            .write_file("addresses.json", addresses.as_bytes())
            .unwrap();
        Emulator {
            dir,
            config,
            state,
            addresses: running.addresses.clone(),
            running: Some(running),
        }
    }

    /// The configuration file, for CLI commands run against this emulator.
    pub fn config_file(&self) -> PathBuf {
        self.dir.path().join("services.yaml")
    }

    /// Runs `frontdoor ARGS --config` this emulator's file; its stdout (it must succeed).
    pub fn cli(&self, args: &[&str]) -> String {
        succeed(
            frontdoor()
                .args(args)
                .arg("--config")
                .arg(self.config_file()),
        )
    }

    /// Runs `frontdoor ARGS --config` this emulator's file, which must answer a DENY: exit
    /// status 1, nothing on stderr; its stdout.
    pub fn cli_denied(&self, args: &[&str]) -> String {
        let out = bounded_output(
            frontdoor()
                .args(args)
                .arg("--config")
                .arg(self.config_file()),
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stdout}");
        assert!(
            out.stderr.is_empty(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        stdout
    }

    /// Runs `frontdoor ARGS --config` this emulator's file, which must fail; its stderr.
    pub fn cli_fails(&self, args: &[&str]) -> String {
        fails(
            frontdoor()
                .args(args)
                .arg("--config")
                .arg(self.config_file()),
        )
    }

    pub fn google(&self, path: &str) -> String {
        format!("http://{}{path}", self.addresses.google)
    }

    pub fn frontdoor(&self, path: &str) -> String {
        format!("http://{}{path}", self.addresses.frontdoor)
    }

    /// A service's own front-door listener (the service must set `listen: 127.0.0.1:0`).
    pub fn service(&self, name: &str, path: &str) -> String {
        let addr = self.addresses.services[name]
            .listen
            .unwrap_or_else(|| panic!("{name} has no listener"));
        format!("http://{addr}{path}")
    }

    /// A service's own metadata server, `host:port` as `GCE_METADATA_HOST` wants it.
    pub fn metadata_of(&self, name: &str) -> String {
        self.addresses.services[name].metadata.to_string()
    }

    pub fn url_of(&self, name: &str) -> String {
        self.config.service(name).unwrap().url.clone()
    }

    /// An ID token for a service account, signed by the emulator's current key.
    pub fn sa_token(&self, email: &str, audience: &str) -> String {
        let sa = self
            .config
            .service_account(email)
            .unwrap_or_else(|| panic!("{email} not declared"));
        let claims = frontdoor::tokens::service_account_claims(
            &self.config.issuer,
            sa,
            audience,
            self.state.now(),
        );
        frontdoor::tokens::mint(self.state.keys(), &claims)
    }

    pub fn user_token(&self, email: &str, audience: Option<&str>) -> String {
        let user = self
            .config
            .user(email)
            .unwrap_or_else(|| panic!("{email} not declared"));
        let claims =
            frontdoor::tokens::user_claims(&self.config.issuer, user, audience, self.state.now());
        frontdoor::tokens::mint(self.state.keys(), &claims)
    }

    /// Registers checked-in key `name` as a key of service account `email`, as `frontdoor
    /// keys create` would, and returns it for signing assertions.
    pub fn install_account_key(&self, email: &str, name: &str) -> frontdoor::keys::SigningKey {
        let key = test_key(name);
        let dir = self.dir.path().join(".frontdoor/account-keys").join(email);
        std::fs::create_dir_all(&dir).unwrap();
        let pem = format!(
            "-----BEGIN RSA PUBLIC KEY-----\n{}\n-----END RSA PUBLIC KEY-----\n",
            base64::engine::general_purpose::STANDARD.encode(key.public_key_der())
        );
        std::fs::write(dir.join(format!("{}.pem", key.kid())), pem).unwrap();
        key
    }

    /// Makes checked-in key `name` the Google-managed key of service account `email` (what
    /// `signJwt` and `signBlob` sign with), so the test generates no RSA key.
    pub fn install_system_key(&self, email: &str, name: &str) -> frontdoor::keys::SigningKey {
        let dir = self.dir.path().join(".frontdoor/system-keys");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::copy(
            repo().join(format!("tests/keys/{name}.pem")),
            dir.join(format!("{email}.pem")),
        )
        .unwrap();
        test_key(name)
    }

    /// Replaces the configuration file whole (a temporary file renamed over it), for a
    /// live reload to pick up: the watcher never sees it half-written, so a test counting
    /// its reads (`checks`) counts reads of this content. `yaml` must not set `listen:`;
    /// the harness does.
    pub fn rewrite_config(&self, yaml: &str) {
        let tmp = self.dir.path().join(".services.yaml.tmp");
        std::fs::write(&tmp, format!("{EPHEMERAL}{yaml}")).unwrap();
        std::fs::rename(&tmp, self.config_file()).unwrap();
    }

    /// Rewrites the configuration file in place (truncate, then write), as some editors
    /// do: the watcher may read it empty or half-written and must wait for it to settle.
    pub fn rewrite_config_in_place(&self, yaml: &str) {
        std::fs::write(self.config_file(), format!("{EPHEMERAL}{yaml}")).unwrap();
    }

    /// An access token for service `name`, from its own metadata server.
    pub async fn access_token(&self, name: &str) -> String {
        let r = reqwest::Client::new()
            .get(format!(
                "http://{}/computeMetadata/v1/instance/service-accounts/default/token",
                self.metadata_of(name)
            ))
            .header("metadata-flavor", "Google")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.unwrap()["access_token"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `GET /frontdoor/v1/status`.
    pub async fn status(&self) -> serde_json::Value {
        reqwest::get(self.google("/frontdoor/v1/status"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Waits until the status satisfies `done`, failing after ten seconds.
    pub async fn wait_status(
        &self,
        what: &str,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let status = self.status().await;
            if done(&status) {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "waited in vain for {what}: {status}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The front door's recorded decisions, newest last.
    pub async fn decisions(&self) -> Vec<serde_json::Value> {
        let body: serde_json::Value = reqwest::get(self.google("/frontdoor/v1/decisions"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["decisions"].as_array().unwrap().clone()
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await.unwrap();
        }
    }
}

/// Waits until `path` exists; fails the test, naming it, after `limit`.
pub fn wait_for_file(path: &Path, limit: std::time::Duration) {
    let deadline = std::time::Instant::now() + limit;
    while !path.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "{} did not appear within {limit:?}",
            path.display()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// The project's Python venv, made by `scripts/setup-test-deps`. Its absence is a failure,
/// never a skip: a test that silently skips proves nothing.
pub fn python() -> PathBuf {
    installed(".venv/bin/python")
}

/// How long one client program (gcloud, a language client, a shell recipe) may run before
/// the test fails: never a hang.
pub const CLIENT_LIMIT: std::time::Duration = std::time::Duration::from_secs(180);

/// `cmd`'s output, as `Command::output` gives it, within [`CLIENT_LIMIT`]: past it the
/// program is killed and the test fails with what it had printed.
pub fn bounded_output(cmd: &mut Command) -> std::process::Output {
    bounded_output_within(cmd, CLIENT_LIMIT).unwrap_or_else(|e| panic!("{e}"))
}

/// `cmd`'s output within `limit`; past it the program is killed, and the error says so
/// with what it had printed.
pub fn bounded_output_within(
    cmd: &mut Command,
    limit: std::time::Duration,
) -> Result<std::process::Output, String> {
    use std::io::Read;
    use std::os::unix::process::CommandExt;
    use std::process::Stdio;
    // Its own process group, so that past the limit its children (gcloud under bash, say,
    // holding the pipes open) are killed with it.
    let mut child = cmd
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    // Drained as it runs, so a chatty program never blocks on a full pipe.
    let drain = |mut pipe: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            bytes
        })
    };
    let stdout = drain(Box::new(child.stdout.take().unwrap()));
    let stderr = drain(Box::new(child.stderr.take().unwrap()));
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "{cmd:?} ran past {limit:?} and was killed:\nstdout:\n{}\nstderr:\n{}",
                String::from_utf8_lossy(&stdout.join().unwrap_or_default()),
                String::from_utf8_lossy(&stderr.join().unwrap_or_default())
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Ok(std::process::Output {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

/// Runs `cmd`; returns its stdout, failing the test with its stderr on a non-zero exit.
pub fn succeed(cmd: &mut Command) -> String {
    let output = bounded_output(cmd);
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{cmd:?} failed ({}):\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    stdout
}

/// Runs `cmd`, which must fail with exit code 1; returns its stderr, which says why.
pub fn fails(cmd: &mut Command) -> String {
    let output = bounded_output(cmd);
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "{cmd:?}: {stderr}");
    stderr
}

/// The demo project's service-account email domain, and an account in it.
pub const SA: &str = "@demo-project.iam.gserviceaccount.com";

pub fn sa(name: &str) -> String {
    format!("{name}{SA}")
}

/// The checks of the front door's chain that an allowed service-account token passes
/// before IAM, in order (as `steps` names them).
pub const CHECKS_BEFORE_IAM: [&str; 12] = [
    "route",
    "ingress",
    "public",
    "credential",
    "format",
    "alg",
    "kid",
    "signature",
    "issuer",
    "lifetime",
    "audience",
    "principal",
];

/// The front door's answer to `token` on `service`'s own listener: its status and the code
/// its `X-Frontdoor-Reason` starts with.
pub async fn front_door_verdict(
    emu: &Emulator,
    service: &str,
    token: &str,
) -> (u16, Option<String>) {
    let (status, headers, _) = get_with(
        &emu.service(service, "/"),
        &[("authorization", &bearer(token))],
    )
    .await;
    let code = headers.get("x-frontdoor-reason").map(|v| {
        let v = v.to_str().unwrap();
        v.split_once(": ").map_or(v, |(c, _)| c).to_owned()
    });
    (status.as_u16(), code)
}

pub fn bearer(t: &str) -> String {
    format!("Bearer {t}")
}

/// GET `url` with `headers`: (status, headers, body).
pub async fn get_with(
    url: &str,
    headers: &[(&str, &str)],
) -> (reqwest::StatusCode, reqwest::header::HeaderMap, String) {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    (status, headers, r.text().await.unwrap())
}

/// Runs a script from `tests/clients/python/` with the project's venv.
pub fn run_python(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    succeed(
        Command::new(python())
            .arg(repo().join("tests/clients/python").join(script))
            .args(args)
            .envs(env.iter().copied()),
    )
}

/// A path `scripts/setup-test-deps` makes, failing the test (never skipping it) when the
/// script has not run.
fn installed(path: &str) -> PathBuf {
    let p = repo().join(path);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup-test-deps (scripts/test does)",
        p.display()
    );
    p
}

/// The Go client of `tests/clients/go`, built by `scripts/setup-test-deps`.
pub fn go_client() -> PathBuf {
    installed("tests/clients/go/go-client")
}

/// The arguments that make `java` run the Java client of `tests/clients/java`, its classes
/// and their dependencies built by `scripts/setup-test-deps` (Maven).
pub fn java_client_args() -> Vec<String> {
    installed("tests/clients/java/target/classes/frontdoor/Client.class");
    let dependencies = installed("tests/clients/java/target/dependency");
    let classes = repo().join("tests/clients/java/target/classes");
    vec![
        "-cp".into(),
        format!("{}:{}/*", classes.display(), dependencies.display()),
        "frontdoor.Client".into(),
    ]
}

/// `tests/clients/node/SCRIPT`, once the project's `node_modules` it requires are installed.
pub fn node_script(script: &str) -> PathBuf {
    installed("tests/clients/node/node_modules");
    repo().join("tests/clients/node").join(script)
}

/// Runs `node tests/clients/node/SCRIPT args` with the project's `node_modules`.
pub fn run_node(script: &str, args: &[&str], env: &[(&str, &str)]) -> String {
    succeed(
        Command::new("node")
            .arg(node_script(script))
            .args(args)
            .envs(env.iter().copied()),
    )
}

/// The environment a process on Cloud Run would have for `metadata` (host:port), with no
/// other credentials to find: no key file, and an empty gcloud configuration.
pub fn cloud_run_env(metadata: &str, home: &Path) -> Vec<(String, String)> {
    vec![
        ("GCE_METADATA_HOST".into(), metadata.into()),
        ("GCE_METADATA_IP".into(), metadata.into()),
        ("GOOGLE_APPLICATION_CREDENTIALS".into(), String::new()),
        (
            "CLOUDSDK_CONFIG".into(),
            home.join("gcloud").display().to_string(),
        ),
        ("HOME".into(), home.display().to_string()),
        ("NO_PROXY".into(), "*".into()),
    ]
}

/// What `eval "$(frontdoor env [SERVICE])"` sets against `emu`, decoded by a shell: the
/// variables its `export` lines name, with the values bash gave them.
pub fn env_of(emu: &Emulator, service: Option<&str>) -> Vec<(String, String)> {
    let mut cmd = frontdoor();
    cmd.arg("env").arg("--config").arg(emu.config_file());
    cmd.args(service);
    let script = succeed(&mut cmd);
    let names: Vec<&str> = script
        .lines()
        .filter_map(|l| l.strip_prefix("export ")?.split_once('=').map(|(n, _)| n))
        .collect();
    let dump = succeed(
        Command::new("bash")
            .env_clear()
            .arg("-c")
            .arg(format!("{script}\nenv -0")),
    );
    dump.split('\0')
        .filter_map(|kv| kv.split_once('='))
        .filter(|(k, _)| names.contains(k))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// A process's world after `eval "$(frontdoor env [SERVICE])"`: that environment (read
/// once), an empty home and gcloud configuration (never prompting), nothing else.
pub struct ClientShell {
    pub home: tempfile::TempDir,
    pub env: Vec<(String, String)>,
    service: Option<String>,
}

impl ClientShell {
    pub fn new(emu: &Emulator, service: Option<&str>) -> ClientShell {
        ClientShell {
            home: tempfile::tempdir().unwrap(),
            env: env_of(emu, service),
            service: service.map(str::to_owned),
        }
    }

    /// The same home and gcloud configuration against a restarted emulator's addresses.
    pub fn reconnect(&mut self, emu: &Emulator) {
        self.env = env_of(emu, self.service.as_deref());
    }

    /// `program`, run in the home directory with only this environment.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap())
            .env("HOME", self.home.path())
            .env("CLOUDSDK_CONFIG", self.home.path().join("gcloud"))
            .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .current_dir(self.home.path());
        cmd
    }
}

/// The frontdoor binary, for CLI tests. Its per-user note of the last server started goes
/// to a directory of this test process, never the user's own, and no state directory
/// comes from the environment.
pub fn frontdoor() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_frontdoor"));
    cmd.env("XDG_STATE_HOME", test_state_home())
        .env_remove("FRONTDOOR_STATE_DIR");
    cmd
}

/// Where the CLI run by this test process notes the last server started: never the
/// user's own.
pub fn test_state_home() -> PathBuf {
    std::env::temp_dir().join(format!("frontdoor-tests-{}", std::process::id()))
}

/// The `ci-pool/ci` provider ([`FEDERATION_POOL`]): frontdoor's built-in issuer, its
/// `repository` claim mapped to an attribute.
pub const CI_POOL: &str = "workload_identity_pools:
  - name: ci-pool
    providers:
      - name: ci
        issuer: https://ci.example.com
        jwks: builtin
        attribute_mapping: {google.subject: assertion.sub, attribute.repository: assertion.repository}
";

pub const FEDERATION_POOL: &str =
    "//iam.googleapis.com/projects/123456789012/locations/global/workloadIdentityPools/ci-pool";

/// Accounts, bindings and a workload identity provider for the token-endpoint tests.
pub fn token_config() -> String {
    format!(
        r#"{PROJECT}
users: [alice@example.com]
service_accounts:
  - email: caller{SA}
  - email: loner{SA}
  - email: target{SA}
    iam_policy:
      bindings:
        - role: roles/iam.serviceAccountTokenCreator
          members: [serviceAccount:caller{SA}]
        - role: roles/iam.workloadIdentityUser
          members: ["principalSet:{FEDERATION_POOL}/attribute.repository/good-repo"]
        # An account needs the role even to mint ID tokens as itself, as on Google Cloud.
        - role: roles/iam.serviceAccountOpenIdTokenCreator
          members: [serviceAccount:target{SA}]
  - email: hop{SA}
    iam_policy: {{bindings: [{{role: roles/iam.serviceAccountTokenCreator, members: [serviceAccount:caller{SA}]}}]}}
  - email: deep{SA}
    iam_policy: {{bindings: [{{role: roles/iam.serviceAccountTokenCreator, members: [serviceAccount:hop{SA}]}}]}}
  - email: oidc-only{SA}
    iam_policy: {{bindings: [{{role: roles/iam.serviceAccountOpenIdTokenCreator, members: [serviceAccount:caller{SA}]}}]}}
services:
  - name: api
    upstream: builtin:echo
    listen: 127.0.0.1:0
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:target{SA}, serviceAccount:caller{SA}]}}]}}
{CI_POOL}"#
    )
}

/// The default configuration's shape, every service on its own ephemeral listener.
pub fn three_services() -> String {
    format!(
        r#"{PROJECT}
service_accounts: [{{email: login{SA}}}, {{email: profiles{SA}}}, {{email: search{SA}}}]
users: [alice@example.com, bob@corp.example.org]
groups: [{{email: devs@example.com, members: [user:alice@example.com]}}]
services:
  - name: login
    service_account: login{SA}
    upstream: builtin:echo
    listen: 127.0.0.1:0
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [allUsers]}}]}}
  - name: user-profiles
    service_account: profiles{SA}
    upstream: builtin:echo
    listen: 127.0.0.1:0
    custom_audiences: [https://profiles.example.com, profiles]
    custom_domains: [profiles.example.com]
    tags: [blue]
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:login{SA}]}}]}}
  - name: search
    service_account: search{SA}
    upstream: builtin:echo
    listen: 127.0.0.1:0
"#
    )
}

/// Spawns `frontdoor serve` on `file` with the state directory `dir/state`, reads its
/// standard output until a line `until` accepts (or 30 s), and returns the child with the
/// lines read.
pub fn spawn_serve(
    dir: &Path,
    file: &Path,
    until: impl Fn(&str) -> bool,
) -> (std::process::Child, Vec<String>) {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let mut child = frontdoor()
        .arg("serve")
        .arg("--config")
        .arg(file)
        .arg("--state-dir")
        .arg(dir.join("state"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut line = String::new();
        if out.read_line(&mut line).unwrap() == 0 || Instant::now() > deadline {
            break;
        }
        let done = until(&line);
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines)
}

/// Stops a spawned `serve` with SIGTERM, as a process manager would, and checks it stopped
/// cleanly.
pub fn stop(child: &mut std::process::Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let status = child.wait().unwrap();
    assert!(status.success(), "serve did not stop cleanly: {status}");
}

/// A call of a Google REST API on the google listener (`path` from its first slash),
/// without credentials (an emulator's door) or with `token`: its status and JSON (a body
/// that is no JSON as `{"text": …}`).
pub async fn google_json(
    emu: &Emulator,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    let client = reqwest::Client::new();
    let mut request = client.request(method.parse().unwrap(), emu.google(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or_else(|_| serde_json::json!({"text": text})),
    )
}

/// The JSON lines a test receiver has written to `file` that `keep` keeps, once `done`
/// holds of them (failing after 30 s, with what was there).
pub fn recorded_lines(
    file: &Path,
    keep: impl Fn(&serde_json::Value) -> bool,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let start = std::time::Instant::now();
    loop {
        let lines: Vec<serde_json::Value> = std::fs::read_to_string(file)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .filter(|l| keep(l))
            .collect();
        if done(&lines) {
            return lines;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(30),
            "recorded so far: {lines:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
