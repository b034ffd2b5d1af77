//! README.md and the pages under `docs/` are executed: every shell block runs here exactly
//! as written, from a copy of the repository, against the default `services.yaml` on the
//! default ports (issue 9). A recipe that breaks breaks the suite.
//!
//! The pages are read in the order of `PAGES`, and their blocks run as one sequence, as a
//! reader goes from the README to each page in turn: a server a block starts serves the
//! blocks after it, on later pages too. A failure names the page, the block's number on it
//! and its line (`docs/tokens.md block 3 (line 40)`).
//!
//! A block may be marked by an HTML comment on the line before its fence:
//! - `<!-- readme: server -->` — a command that serves until stopped: it runs in the
//!   background (after any server before it is stopped) and the next block waits until
//!   the google listener answers;
//! - `<!-- readme: expect NAME -->` — its output must show what `expected(NAME)` lists, in
//!   that order, so a block that "runs" but gets the wrong answer fails too;
//! - `<!-- readme: not run: REASON -->` — not run, for the reason given (the text beside
//!   the block says it too).
//! - `<!-- readme: file PATH -->`, before a block of any language — the block is the file at
//!   PATH in the repository, byte for byte (an example shown whole, run by another test).
//!
//! Every other `sh` block must exit 0 under `bash -e -o pipefail`. A page's blocks run in one
//! shell, in order, as a reader pastes them into one terminal: what a block leaves (a
//! variable, a function, an `eval "$(frontdoor env …)"`) meets the blocks after it on that
//! page. A server's block runs in a terminal of its own.
//!
//! The first block installs frontdoor with `cargo install`; here that install goes
//! to a directory under `target/` (`CARGO_INSTALL_ROOT`, `CARGO_TARGET_DIR`), so the test
//! neither replaces the user's own `frontdoor` nor waits on the build lock of `cargo test`.

use crate::common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::repo;

/// The pages whose shell blocks run, README.md first, then the pages under `docs/` in the
/// order their sections had in the README. The order is the recipes' own: a block uses what
/// the blocks before it left, across pages (the README's first block starts the server the
/// pages call; the three-service example stops it and starts it again for the command
/// line's and the deployer's blocks; `health` counts the one tokeninfo call since then).
const PAGES: &[&str] = &[
    "README.md",
    "docs/front-door.md",
    "docs/metadata.md",
    "docs/tokens.md",
    "docs/local-cloud-run.md",
    "docs/cli.md",
    "docs/egress.md",
    "docs/pubsub.md",
    "docs/tasks.md",
    "docs/scheduler.md",
    "docs/clients.md",
    "docs/testing.md",
    "docs/deployer.md",
    "docs/configuration.md",
    "docs/choices.md",
    "docs/layout.md",
];

#[derive(Debug)]
enum Mark {
    Run,
    Server,
    Expect(String),
    NotRun,
}

#[derive(Debug)]
struct Block {
    line: usize,
    mark: Mark,
    text: String,
}

/// A fenced block of a Markdown file: its fence's line (1-based), its info string, the
/// `<!-- readme: … -->` mark on the last non-blank line before it, if any, and its text.
struct Fenced<'a> {
    line: usize,
    info: &'a str,
    mark: Option<&'a str>,
    text: String,
}

/// Every fenced block of `markdown`, in order.
fn fenced_blocks(markdown: &str) -> Vec<Fenced<'_>> {
    let mut blocks = Vec::new();
    let mut lines = markdown.lines().enumerate();
    let mut previous = "";
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            if !line.trim().is_empty() {
                previous = line;
            }
            continue;
        };
        let mut text = String::new();
        for (_, body) in lines.by_ref() {
            if body.starts_with("```") {
                break;
            }
            text.push_str(body);
            text.push('\n');
        }
        let mark = previous
            .trim()
            .strip_prefix("<!-- readme:")
            .and_then(|m| m.strip_suffix("-->"))
            .map(str::trim);
        blocks.push(Fenced {
            line: n + 1,
            info: info.trim(),
            mark,
            text,
        });
        previous = "";
    }
    blocks
}

/// The shell blocks of a Markdown file, with their marks; `page` names the file in a refusal.
fn shell_blocks(page: &str, markdown: &str) -> Vec<Block> {
    fenced_blocks(markdown)
        .into_iter()
        .filter(|b| matches!(b.info, "sh" | "bash" | "shell" | "console"))
        .map(|b| {
            let mark = match b.mark {
                None => Mark::Run,
                Some("server") => Mark::Server,
                Some(m) if m.starts_with("expect ") => Mark::Expect(m[7..].trim().to_owned()),
                Some(m) if m.starts_with("not run:") && m.len() > "not run:".len() + 10 => {
                    Mark::NotRun
                }
                Some(other) => panic!("{page} line {}: unknown mark `{other}`", b.line),
            };
            Block {
                line: b.line,
                mark,
                text: b.text,
            }
        })
        .collect()
}

/// What a marked block's output must show, in order; `None` for a name this test does not
/// know.
fn expected(name: &str) -> Option<&'static [&'static str]> {
    let wanted: &'static [&'static str] = match name {
        "first-calls" => &[
            // login is public
            "HTTP/1.1 200",
            // login's token for search's own URL, through the proxy (TLS, HTTP/2): IAM says no
            "HTTP/2 403",
            "x-frontdoor-reason: no_invoker_binding",
            // user-profiles lets login in at its run.app URL, on its port, and with either
            // header
            "HTTP/2 200",
            "HTTP/1.1 200",
            "HTTP/1.1 200",
            "SIGNATURE_REMOVED_BY_GOOGLE",
            // search with user-profiles' token: the audience is wrong
            "HTTP/1.1 401",
            "x-frontdoor-reason: audience",
            // the decisions, with their reasons
            "ALLOW 200 GET login /",
            "DENY  403 GET search /",
            "no_invoker_binding",
            "ALLOW 200 GET user-profiles /",
            "DENY  401 GET search /",
            "is not one of service `search`'s audiences",
            // why, with the fixes ranked: the grant to login alone, as services.yaml lines
            "DENY  403 search → serviceAccount:login@demo-project.iam.gserviceaccount.com",
            "fixes, least privilege first:",
            "1. (policy) grant serviceAccount:login@demo-project.iam.gserviceaccount.com roles/run.invoker on search",
            "in services.yaml, under service `search` (it has no policy yet):",
            "iam_policy:",
            "members: [serviceAccount:login@demo-project.iam.gserviceaccount.com]",
            "or: gcloud run services add-iam-policy-binding search",
            "exit status: 1",
        ],
        "explain" => &[
            "DENY  403 search → serviceAccount:login@demo-project.iam.gserviceaccount.com",
            "    no_invoker_binding: serviceAccount:login@demo-project.iam.gserviceaccount.com has no role carrying run.routes.invoke",
            "    fix: grant `roles/run.invoker` to the principal the reason names\n",
            "(a token minted for the question, sent nowhere)",
            "  checks: route ✓ → ingress ✓ → public? no → credential picked ✓ → token: format ✓",
            "token: aud ✓ → principal ✓ → IAM ✗",
            "token claims: {",
            "exit status: 1",
        ],
        "explain-permission" => &[
            "DENY  403 serviceAccount:deployer@demo-project.iam.gserviceaccount.com → iam.serviceAccounts.getOpenIdToken on serviceAccounts/login@demo-project.iam.gserviceaccount.com",
            "    permission_denied: serviceAccount:deployer@demo-project.iam.gserviceaccount.com has no role carrying iam.serviceAccounts.getOpenIdToken (roles/iam.serviceAccountTokenCreator,",
            "    fix: grant one of the roles the reason lists",
            "exit status: 1",
        ],
        "env" => &[
            "export GCE_METADATA_HOST=127.0.0.1:9082",
            "export GCE_METADATA_IP=127.0.0.1:9082",
            "export GCE_METADATA_ROOT=127.0.0.1:9082",
            "export HTTPS_PROXY=http://127.0.0.1:9082",
            "export NO_PROXY=localhost,127.0.0.1,::1",
            "/ca/bundle.pem",
            "export NODE_EXTRA_CA_CERTS=",
            "export CLOUDSDK_PROXY_PORT=9082",
            "export JAVA_TOOL_OPTIONS=",
            "export K_SERVICE=user-profiles",
            "export K_REVISION=user-profiles-00001-",
            "export K_CONFIGURATION=user-profiles",
        ],
        // the Python helper's example: both tests pass
        "python-helper" => &["2 passed"],
        "node-helper" => &["# pass 2", "# fail 0"],
        "java-helper" => &["Tests run: 2, Failures: 0, Errors: 0, Skipped: 0"],
        "go-helper" => &[
            "--- PASS: TestLoginMayCallSearch",
            "--- PASS: TestReportMayNotAndTheDecisionSaysWhy",
            "ok  \tfrontdoor.test/frontdoortest",
        ],
        "deployer" => &[
            "login\thttps://login-123456789012.us-central1.run.app",
            "search\thttps://search-123456789012.us-central1.run.app",
            "before the binding: 403",
            "serviceAccount:login@demo-project.iam.gserviceaccount.com",
            "after the binding: 200",
            "custom audience: 200",
            "run.googleapis.com/custom-audiences: '[\"https://api.example.com\"]'",
            "replaced audience: 200",
            "PERMISSION_DENIED: Failed to impersonate [login@demo-project.iam.gserviceaccount.com]",
            "role: roles/iam.serviceAccountTokenCreator",
            "impersonated: 200",
            "folded into services.yaml",
            "service account login@demo-project.iam.gserviceaccount.com: IAM policy → service_accounts[0].iam_policy",
            "service search: iam_policy → services[2]",
            "service search: custom audiences, Knative document: kept in changes.json",
            // the binding is in the file now
            "Token Creator bindings in services.yaml: 1\n",
            "binding removed: 403",
            "changed through the Admin APIs",
            "service search: service account, custom audiences",
            "service account login@demo-project.iam.gserviceaccount.com: IAM policy",
            // the checkout as it was
            "services.yaml as the checkout has it\n",
            "Token Creator bindings in services.yaml after the walk-through: 0\n",
        ],
        "key-file" => &["created key [", "eyJ"],
        "self-signed" => &[
            "['id_token']",
            "https://user-profiles-123456789012.us-central1.run.app",
        ],
        "keys" => &["KEY_ID", "deleted key ["],
        "impersonation" => &["iam.serviceAccounts.getOpenIdToken", "PERMISSION_DENIED"],
        "federation" => &[
            "wrote",
            // Python's identity_pool: STS, then generateAccessToken as deployer
            "deployer@demo-project.iam.gserviceaccount.com ya29.",
            // curl: STS, then generateIdToken with the federated token
            "{\"token\":\"eyJ",
        ],
        "example-calls" => &[
            "\"user-profiles\"",
            "\"status\": 200",
            "login@demo-project.iam.gserviceaccount.com",
            "\"search\"",
            "\"status\": 403",
            "\"recommendations\"",
            "\"code\": \"OK\"",
            "\"published\"",
            "\"messageIds\"",
            "\"queued\"",
            "welcome-mail/tasks/",
        ],
        "example-grant" => &[
            "\"search\"",
            "\"status\": 200",
            "search-00002-",
            "commented out again: 1\n",
        ],
        "token" => &[
            "\"aud\":\"https://x\"",
            "\"email\":\"login@demo-project.iam.gserviceaccount.com\"",
        ],
        "health" => &[
            "ok",
            r#"frontdoor_decisions_total{surface="tokeninfo",service="",outcome="allow",status="200"} 1"#,
        ],
        _ => return None,
    };
    Some(wanted)
}

/// Every page's shell blocks, in the order they run, each with its name for messages:
/// "PAGE block N (line L)", N counted on its own page, so that a failure says which file to
/// open. A block expecting a name `expected` does not know is refused here, before anything
/// runs, rather than after the twenty minutes of blocks before it.
fn all_blocks() -> Vec<(String, Block)> {
    let mut all = Vec::new();
    for page in PAGES {
        let markdown =
            std::fs::read_to_string(repo().join(page)).unwrap_or_else(|e| panic!("{page}: {e}"));
        for (i, block) in shell_blocks(page, &markdown).into_iter().enumerate() {
            let what = format!("{page} block {} (line {})", i + 1, block.line);
            if let Mark::Expect(name) = &block.mark {
                assert!(
                    expected(name).is_some(),
                    "{what} expects `{name}`, which this test does not know"
                );
            }
            all.push((what, block));
        }
    }
    all
}

/// Copies the repository's files (not its build output, environments or state) to `to`.
fn copy_repository(from: &Path, to: &Path) {
    const SKIP: [&str; 6] = [
        "target",
        ".git",
        ".venv",
        "node_modules",
        ".frontdoor",
        "__pycache__",
    ];
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if SKIP.iter().any(|s| name == *s) {
            continue;
        }
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            copy_repository(&entry.path(), &to.join(&name));
        } else if kind.is_file() {
            std::fs::copy(entry.path(), to.join(&name)).unwrap();
        }
    }
}

struct Shell {
    dir: PathBuf,
    path: String,
    install_root: PathBuf,
    target_dir: PathBuf,
}

impl Shell {
    /// `bash -e -o pipefail -c SCRIPT`: a server's block, in a terminal of its own.
    fn command(&self, script: &str) -> Command {
        let mut cmd = self.bash();
        cmd.args(["-e", "-o", "pipefail", "-c", script]);
        cmd
    }

    /// bash, with the reader's environment, in the copy of the repository.
    fn bash(&self) -> Command {
        let mut cmd = Command::new("bash");
        cmd.current_dir(&self.dir)
            .env("PATH", &self.path)
            .env("CARGO_INSTALL_ROOT", &self.install_root)
            .env("CARGO_TARGET_DIR", &self.target_dir)
            // The install is checked for working, not for speed: a lightly optimised,
            // incremental release build takes a fraction of the full one, and the
            // command stays as the README writes it.
            .env("CARGO_PROFILE_RELEASE_OPT_LEVEL", "1")
            .env("CARGO_PROFILE_RELEASE_DEBUG", "0")
            .env("CARGO_PROFILE_RELEASE_INCREMENTAL", "true")
            .env("CARGO_PROFILE_RELEASE_CODEGEN_UNITS", "256");
        // A reader's shell has none of these set by frontdoor; a test's environment might.
        for var in [
            "GOOGLE_APPLICATION_CREDENTIALS",
            "GCE_METADATA_HOST",
            "GCE_METADATA_IP",
            "FRONTDOOR_STATE_DIR",
            "CLOUDSDK_CONFIG",
        ] {
            cmd.env_remove(var);
        }
        cmd
    }
}

/// A server started by a block: `stop` sends SIGINT, as Ctrl-C would; one still running
/// when dropped (the test ended early) is killed.
struct Server {
    child: Child,
    log: PathBuf,
}

/// A server still running when the test ends early (a block failed): killed with its
/// process group, so that it does not hold the default ports for the next run. Signalled
/// only while uncollected, when its id cannot belong to anything else.
impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = nix::sys::signal::killpg(
                nix::unistd::Pid::from_raw(self.child.id() as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
            let _ = self.child.wait();
        }
    }
}

impl Server {
    fn stop(mut self) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("a server a block started did not stop within 20 s of SIGINT");
    }

    fn tail(&self) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        String::from_utf8_lossy(&bytes[bytes.len().saturating_sub(4000)..]).into_owned()
    }
}

/// A reader's terminal for one page: one bash that runs the page's blocks in order, so that
/// what a block leaves (variables, functions, an `eval "$(frontdoor env …)"`) meets the
/// blocks after it, as it would when they are pasted one after another (issue 31: an
/// `eval` once broke the README's next block, run in the same terminal).
struct Session {
    child: Child,
    stdin: std::process::ChildStdin,
    out: PathBuf,
    err: PathBuf,
    dir: PathBuf,
    blocks: usize,
    /// Whether the shell's exit was collected: its process id (and group id) may then
    /// belong to another process, which must not be signalled.
    reaped: bool,
}

/// How long one block may run in a session before the test fails: never a hang.
const BLOCK_LIMIT: Duration = Duration::from_secs(15 * 60);
/// A block slower than this is named on stderr.
const SLOW_BLOCK: Duration = Duration::from_secs(5);

impl Session {
    fn start(shell: &Shell, dir: PathBuf) -> Session {
        std::fs::create_dir_all(&dir).unwrap();
        let (out, err) = (dir.join("stdout"), dir.join("stderr"));
        let mut cmd = shell.bash();
        // Commands from stdin (`-s`), each block's read from its own file with stdin closed,
        // so that nothing a block runs can read the blocks after it.
        cmd.args(["--noprofile", "--norc", "-e", "-o", "pipefail", "-s"])
            .stdin(Stdio::piped())
            .stdout(std::fs::File::create(&out).unwrap())
            .stderr(std::fs::File::create(&err).unwrap());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd.spawn().unwrap();
        let stdin = child.stdin.take().unwrap();
        Session {
            child,
            stdin,
            out,
            err,
            dir,
            blocks: 0,
            reaped: false,
        }
    }

    /// Runs `text` after the blocks before it: its stdout and stderr, or, if it failed (which
    /// ends the session, as `set -e` does), why.
    fn run(&mut self, text: &str) -> Result<(String, String), String> {
        use std::io::Write;
        self.blocks += 1;
        let file = self.dir.join(format!("block-{}.sh", self.blocks));
        std::fs::write(&file, text).unwrap();
        // From byte offsets: what a block prints need not be UTF-8.
        let read = |path: &Path, from: u64| {
            let bytes = std::fs::read(path).unwrap_or_default();
            let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
            String::from_utf8_lossy(&bytes[from..]).into_owned()
        };
        let size = |path: &Path| std::fs::metadata(path).map_or(0, |m| m.len());
        let (out_from, err_from) = (size(&self.out), size(&self.err));
        let done = format!("<<block {} done, status", self.blocks);
        let quoted = file.display().to_string().replace('\'', "'\\''");
        // `set -e` again before each block, so that a block's `set +e` cannot hide the
        // failures of the blocks after it; the marker carries the block's own status.
        // One write (well under a pipe's atomic size): written in pieces, the shell could
        // run the block, fail and exit before the rest arrived, and the rest would find the
        // pipe closed. A write that fails because the shell is gone is reported below, as
        // the end of the session, with what it printed.
        let command = format!(
            "set -e -o pipefail\n{{ . '{quoted}'; }} </dev/null\nprintf '\\n%s %d>>\\n' '{done}' \"$?\"\n"
        );
        if let Err(e) = self.stdin.write_all(command.as_bytes())
            && self.child.try_wait().map_or(true, |s| s.is_none())
        {
            return Err(format!("cannot write to the session's shell: {e}"));
        }
        let started = Instant::now();
        loop {
            let stdout = read(&self.out, out_from);
            if let Some(at) = stdout.find(&format!("\n{done} ")) {
                let status = stdout[at + done.len() + 2..]
                    .split(">>")
                    .next()
                    .unwrap_or_default()
                    .to_owned();
                if stdout[at..].contains(">>\n") {
                    let stderr = read(&self.err, err_from);
                    if status != "0" {
                        return Err(format!(
                            "exited {status}:\n--- stdout\n{}\n--- stderr\n{stderr}",
                            &stdout[..at]
                        ));
                    }
                    // A slow block is named (shown with --nocapture): the suite's time is
                    // mostly these pages'.
                    if started.elapsed() > SLOW_BLOCK {
                        eprintln!(
                            "readme: a block took {:.1} s: {}",
                            started.elapsed().as_secs_f64(),
                            text.lines()
                                .find(|l| !l.trim().is_empty())
                                .unwrap_or_default()
                        );
                    }
                    return Ok((stdout[..at].to_owned(), stderr));
                }
            }
            let ended = self.child.try_wait().unwrap();
            self.reaped |= ended.is_some();
            if ended.is_some() || started.elapsed() > BLOCK_LIMIT {
                if ended.is_none() {
                    self.kill();
                }
                let why = ended.map_or(format!("ran past {BLOCK_LIMIT:?}"), |s| {
                    format!("ended the session's shell ({s})")
                });
                return Err(format!(
                    "{why}:\n--- stdout\n{stdout}\n--- stderr\n{}",
                    read(&self.err, err_from)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Session {
    /// The shell and whatever its blocks left running (its own process group).
    fn kill(&mut self) {
        if self.reaped {
            return;
        }
        self.reaped = true;
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGKILL,
        );
        let _ = self.child.wait();
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Waits until the google listener on its default address answers, which includes the
/// release build of the first block.
fn wait_until_up(server: &mut Server, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20 * 60);
    loop {
        if let Ok(mut stream) = std::net::TcpStream::connect("127.0.0.1:8088") {
            use std::io::Write;
            let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = stream.write_all(
                b"GET /.well-known/openid-configuration HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            );
            let mut answer = String::new();
            let _ = stream.read_to_string(&mut answer);
            if answer.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        if let Some(status) = server.child.try_wait().unwrap() {
            panic!(
                "{what} exited ({status}) before serving:\n{}",
                server.tail()
            );
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not serve within 20 minutes:\n{}",
            server.tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn in_order(output: &str, wanted: &[&str]) -> Result<(), String> {
    let mut rest = output;
    for w in wanted {
        match rest.find(w) {
            Some(i) => rest = &rest[i + w.len()..],
            None => return Err(format!("`{w}` (in this order)")),
        }
    }
    Ok(())
}

#[test]
#[ignore = "left to scripts/test: runs the pages' recipes (cargo install, curl, gcloud, Python)"]
fn every_shell_block_of_the_pages_runs_as_written() {
    let blocks = all_blocks();
    assert!(blocks.len() >= 10, "found only {} blocks", blocks.len());
    for port in [8080, 8088, 8089] {
        assert!(
            std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(),
            "port {port} is taken: the recipes use the default ports; stop whatever holds it (a `frontdoor serve` of your own?)"
        );
    }

    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("frontdoor");
    copy_repository(&repo(), &dir);
    let build = repo().join("target/readme");
    let shell = Shell {
        path: format!(
            "{}:{}",
            build.join("install/bin").display(),
            std::env::var("PATH").unwrap_or_default()
        ),
        install_root: build.join("install"),
        target_dir: build.join("build"),
        dir,
    };

    let mut server: Option<Server> = None;
    // The page whose blocks are running, and its terminal.
    let mut session: Option<(&str, Session)> = None;
    let mut ran = 0;
    for (i, (what, block)) in blocks.iter().enumerate() {
        eprintln!("{what}: {:?}\n{}", block.mark, block.text);
        match &block.mark {
            Mark::NotRun => continue,
            Mark::Server => {
                if let Some(previous) = server.take() {
                    previous.stop();
                }
                let log = work.path().join(format!("server-{}.log", i + 1));
                let out = std::fs::File::create(&log).unwrap();
                let mut cmd = shell.command(&block.text);
                cmd.stdin(Stdio::null())
                    .stdout(out.try_clone().unwrap())
                    .stderr(out);
                // Its own process group, so that stopping it reaches what it started.
                std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
                let mut started = Server {
                    child: cmd.spawn().unwrap(),
                    log,
                };
                wait_until_up(&mut started, what);
                server = Some(started);
            }
            Mark::Run | Mark::Expect(_) => {
                let page = what.split(" block ").next().unwrap();
                if session.as_ref().is_none_or(|(on, _)| *on != page) {
                    let dir = work.path().join(format!("session-{}", i + 1));
                    session = Some((page, Session::start(&shell, dir)));
                }
                let ran = session.as_mut().unwrap().1.run(&block.text);
                let server_log = server.as_ref().map(Server::tail).unwrap_or_default();
                let (stdout, stderr) =
                    ran.unwrap_or_else(|why| panic!("{what} {why}\n--- server\n{server_log}"));
                if let Mark::Expect(name) = &block.mark {
                    let wanted = expected(name).expect("checked by all_blocks");
                    if let Err(missing) = in_order(&stdout, wanted) {
                        panic!(
                            "{what} ran, but its output lacks {missing}:\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- server\n{server_log}"
                        );
                    }
                }
            }
        }
        ran += 1;
    }
    if let Some(last) = server.take() {
        last.stop();
    }
    eprintln!("ran {ran} of the pages' {} blocks", blocks.len());
}

#[test]
fn a_pages_blocks_share_one_shell_and_a_failure_ends_it() {
    let work = tempfile::tempdir().unwrap();
    let shell = Shell {
        dir: work.path().to_owned(),
        path: std::env::var("PATH").unwrap_or_default(),
        install_root: work.path().join("install"),
        target_dir: work.path().join("build"),
    };
    let mut session = Session::start(&shell, work.path().join("session"));
    // What one block leaves, the next sees; nothing a block runs reads the blocks after it.
    let (out, _) = session
        .run("WHO=login\ngreet() { echo \"hello $1\"; }\nexport LEFT=yes\ncat\n")
        .unwrap();
    assert_eq!(out, "");
    let (out, err) = session
        .run("greet \"$WHO\"; bash -c 'echo \"$LEFT\"'; echo oops >&2\n")
        .unwrap();
    assert_eq!(
        (out.as_str(), err.as_str()),
        ("hello login\nyes\n", "oops\n")
    );
    // A failing command ends the block and the session, as `set -e` does in a terminal
    // script; what it printed comes with the failure.
    // A block's `set +e` does not carry over: the next block runs under `set -e` again,
    // and a block whose own last command fails is a failure.
    let (out, _) = session.run("set +e\nfalse\necho went on\n").unwrap();
    assert_eq!(out, "went on\n");
    let why = session.run("set +e\necho last\nfalse\n").unwrap_err();
    assert!(why.contains("exited 1") && why.contains("last"), "{why}");
    let why = session.run("echo before\nfalse\necho after\n").unwrap_err();
    assert!(
        why.contains("ended the session's shell") && why.contains("before"),
        "{why}"
    );
    assert!(!why.contains("after"), "{why}");
}

#[test]
fn marks_are_read_and_unknown_ones_refused() {
    let md = "text\n<!-- readme: server -->\n```sh\nfrontdoor serve\n```\n\n```yaml\nnot: shell\n```\n<!-- readme: expect env -->\n```sh\nfrontdoor env\n```\n```sh\nplain\n```\n";
    let blocks = shell_blocks("test.md", md);
    assert_eq!(blocks.len(), 3);
    assert!(matches!(blocks[0].mark, Mark::Server));
    assert!(matches!(&blocks[1].mark, Mark::Expect(n) if n == "env"));
    assert!(matches!(blocks[2].mark, Mark::Run));
    assert_eq!(blocks[2].text, "plain\n");
    let bad = std::panic::catch_unwind(|| {
        shell_blocks("test.md", "<!-- readme: serv -->\n```sh\nx\n```\n")
    });
    assert!(bad.is_err());
    assert!(expected("env").is_some());
    assert!(expected("no-such-output").is_none());
    assert!(in_order("a b c", &["a", "c"]).is_ok());
    assert!(in_order("a b c", &["c", "a"]).is_err());
}

/// The blocks marked `<!-- readme: file PATH -->` on `markdown`: (line, PATH, text).
fn file_blocks(markdown: &str) -> Vec<(usize, String, String)> {
    fenced_blocks(markdown)
        .into_iter()
        .filter_map(|b| {
            let path = b.mark?.strip_prefix("file ")?;
            Some((b.line, path.trim().to_owned(), b.text))
        })
        .collect()
}

/// An example shown whole on a page is the file the suite runs: the two never drift.
#[test]
fn every_block_shown_as_a_file_is_that_file() {
    let mut shown = 0;
    for page in PAGES {
        let markdown = std::fs::read_to_string(repo().join(page)).unwrap();
        for (line, path, text) in file_blocks(&markdown) {
            let file = std::fs::read_to_string(repo().join(&path))
                .unwrap_or_else(|e| panic!("{page} line {line}: {path}: {e}"));
            assert!(
                text == file,
                "{page} line {line}: the block differs from {path}; copy the file into it"
            );
            shown += 1;
        }
    }
    assert!(shown >= 1, "no page shows a file");
}

/// A page under `docs/` left out of `PAGES` would have its recipes never run, and one listed
/// but gone would stop the suite late: the two lists are the same.
#[test]
fn every_page_under_docs_is_run() {
    let mut found: Vec<String> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".md"))
        .map(|name| format!("docs/{name}"))
        .collect();
    found.sort();
    let mut listed: Vec<String> = PAGES[1..].iter().map(|p| p.to_string()).collect();
    listed.sort();
    assert_eq!(PAGES[0], "README.md");
    assert_eq!(found, listed, "the pages under docs/ and PAGES differ");
}

/// Every page's blocks parse, and every `expect` names a list this test has, without the
/// recipes being run (a plain `cargo test` checks the pages this far).
#[test]
fn every_pages_marks_are_known() {
    let blocks = all_blocks();
    assert!(
        blocks.iter().any(|(_, b)| matches!(b.mark, Mark::Server)),
        "no page starts a server"
    );
    assert!(blocks.len() > 10, "only {} blocks found", blocks.len());
}
