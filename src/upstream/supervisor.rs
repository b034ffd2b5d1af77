//! Services frontdoor starts itself (SPEC §7): each `command` runs with Cloud Run's container
//! contract (`PORT`, `K_SERVICE`, `K_REVISION`, `K_CONFIGURATION`) and what `frontdoor env`
//! prints ([`crate::client_env`]: its own metadata server, which is also its egress proxy,
//! and the local CA), in its own process
//! group, with its output prefixed by the service name. It counts as started once its port
//! accepts connections; requests that arrive before then wait, as on a cold start. A process
//! that exits is restarted with back-off; on shutdown the whole group is stopped.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;

use crate::config::CommandSpec;

/// Output lines kept per instance, for the message when it fails to start.
const KEPT_LINES: usize = 20;
/// A longer line is cut (a process printing one endless line must not grow memory).
const MAX_LINE: usize = 8 * 1024;
/// How long a stopped process gets between SIGTERM and SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The longest a replaced revision waits for its requests before it is stopped anyway.
const MAX_DRAIN: Duration = Duration::from_secs(60);

/// Where the processes' output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// To frontdoor's stderr, each line prefixed `SERVICE | `.
    Stderr,
    /// Nowhere (tests); the last lines are still kept for error messages.
    Discard,
}

/// Where an instance is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    Starting,
    Ready(SocketAddr),
    /// The last attempt failed; the reason is in words, with the last output lines.
    Failed(String),
    Stopped,
}

/// One running (or starting) process for one revision of a service.
pub struct Instance {
    pub service: String,
    pub revision: String,
    phase: watch::Sender<Phase>,
    stop: watch::Sender<bool>,
    lines: Mutex<VecDeque<String>>,
    /// Requests proxied to it and not yet answered: a replaced revision stops at zero.
    in_flight: AtomicUsize,
    /// The process group of its running process (0 when none runs).
    group: std::sync::atomic::AtomicU32,
    /// How many times its process exited and was started again.
    restarts: std::sync::atomic::AtomicU64,
}

/// Counts one request as in flight on an instance while it lives.
pub struct InFlight(Arc<Instance>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Stops a replaced instance once the requests it is answering are done (or after the
/// longest wait a request may have, so a hung one cannot keep it forever).
fn retire(instance: Arc<Instance>) {
    tokio::spawn(async move {
        let deadline = Instant::now() + MAX_DRAIN;
        while instance.in_flight.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        instance.stop();
    });
}

impl Instance {
    /// How many times its process exited and was started again.
    pub fn restarts(&self) -> u64 {
        self.restarts.load(Ordering::Relaxed)
    }

    pub fn phase(&self) -> Phase {
        self.phase.borrow().clone()
    }

    /// The address to proxy to, waiting for a start in progress up to `timeout`, and the
    /// request counted in flight until the guard is dropped.
    pub async fn address(
        self: &Arc<Self>,
        timeout: Duration,
    ) -> Result<(SocketAddr, InFlight), String> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let guard = InFlight(self.clone());
        self.ready_address(timeout).await.map(|addr| (addr, guard))
    }

    async fn ready_address(&self, timeout: Duration) -> Result<SocketAddr, String> {
        let mut rx = self.phase.subscribe();
        let wait = rx.wait_for(|p| !matches!(p, Phase::Starting));
        // A little longer than the start timeout, so that an attempt under way ends first
        // and its own, fuller reason (with the last output) is the one given.
        match tokio::time::timeout(timeout + Duration::from_secs(2), wait).await {
            Err(_) => Err(format!(
                "it did not listen on port (its PORT) within {} s",
                timeout.as_secs()
            )),
            Ok(Err(_)) => Err("it was stopped".to_owned()),
            Ok(Ok(phase)) => match &*phase {
                Phase::Ready(addr) => Ok(*addr),
                Phase::Failed(why) => Err(why.clone()),
                Phase::Stopped => Err("it was stopped".to_owned()),
                Phase::Starting => unreachable!("waited for a phase other than Starting"),
            },
        }
    }

    fn last_output(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.is_empty() {
            "(no output)".to_owned()
        } else {
            // One line: a reason travels in a header and a log line, where a line break
            // would be escaped (or shown as `?`) rather than read.
            lines.iter().cloned().collect::<Vec<_>>().join(" | ")
        }
    }

    fn keep(&self, line: String) {
        let mut lines = self.lines.lock().unwrap_or_else(|p| p.into_inner());
        if lines.len() == KEPT_LINES {
            lines.pop_front();
        }
        lines.push_back(line);
    }

    /// Asks the instance to stop; its process group gets SIGTERM, then SIGKILL.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }
}

/// The environment of one instance, besides `PORT` (chosen per start).
#[derive(Debug, Clone)]
pub struct Contract {
    pub service: String,
    pub revision: String,
    pub project: String,
    pub region: String,
    /// The service's own metadata server, also its egress proxy.
    pub metadata: SocketAddr,
    /// The google listener, where `PUBSUB_EMULATOR_HOST` points.
    pub google: SocketAddr,
    /// The server's state directory, absolute (the local CA's files).
    pub state_dir: std::path::PathBuf,
}

#[derive(Default)]
pub struct Supervisor {
    instances: Mutex<HashMap<String, Arc<Instance>>>,
    quiet: AtomicBool,
}

impl Supervisor {
    pub fn set_output(&self, output: Output) {
        self.quiet
            .store(output == Output::Discard, Ordering::Relaxed);
    }

    /// The instance serving `service` now.
    pub fn get(&self, service: &str) -> Option<Arc<Instance>> {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(service)
            .cloned()
    }

    /// Starts `spec` under `contract`'s revision, unless that revision already runs. A
    /// previous revision keeps running until the new one is ready, then is stopped.
    pub fn run(&self, spec: &CommandSpec, contract: Contract) -> Arc<Instance> {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(existing) = instances.get(&contract.service)
            && existing.revision == contract.revision
            && existing.phase() != Phase::Stopped
        {
            return existing.clone();
        }
        let instance = Arc::new(Instance {
            service: contract.service.clone(),
            revision: contract.revision.clone(),
            phase: watch::Sender::new(Phase::Starting),
            stop: watch::Sender::new(false),
            lines: Mutex::new(VecDeque::new()),
            in_flight: AtomicUsize::new(0),
            restarts: std::sync::atomic::AtomicU64::new(0),
            group: std::sync::atomic::AtomicU32::new(0),
        });
        let previous = instances.insert(contract.service.clone(), instance.clone());
        let output = if self.quiet.load(Ordering::Relaxed) {
            Output::Discard
        } else {
            Output::Stderr
        };
        tokio::spawn(supervise(
            instance.clone(),
            spec.clone(),
            contract,
            output,
            previous,
        ));
        instance
    }

    /// Stops the instances of services not in `keep`.
    pub fn retain(&self, keep: &[&str]) {
        let mut instances = self.instances.lock().unwrap_or_else(|p| p.into_inner());
        instances.retain(|name, instance| {
            let kept = keep.contains(&name.as_str());
            if !kept {
                instance.stop();
            }
            kept
        });
    }

    /// (service, process group) of every instance with a process running.
    pub fn groups(&self) -> Vec<(String, u32)> {
        self.instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .map(|i| (i.service.clone(), i.group.load(Ordering::SeqCst)))
            .filter(|(_, g)| *g != 0)
            .collect()
    }

    /// Stops every instance and waits until each has stopped.
    pub async fn stop_all(&self) {
        let all: Vec<Arc<Instance>> = self
            .instances
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for i in &all {
            i.stop();
        }
        for i in all {
            let mut rx = i.phase.subscribe();
            let _ =
                tokio::time::timeout(STOP_GRACE * 2, rx.wait_for(|p| *p == Phase::Stopped)).await;
        }
    }
}

fn say(output: Output, service: &str, line: &str) {
    if output == Output::Stderr {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{service} | {line}");
    }
}

/// A port nobody listens on right now (the OS's choice), for `PORT`. The port is free
/// again between our check and the process binding it, so the OS could hand it to the next
/// instance too; ports given out recently are skipped, so two instances never share one.
fn free_port() -> std::io::Result<u16> {
    static RECENT: Mutex<VecDeque<u16>> = Mutex::new(VecDeque::new());
    let mut recent = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    for _ in 0..64 {
        let port = std::net::TcpListener::bind(("127.0.0.1", 0))?
            .local_addr()?
            .port();
        if !recent.contains(&port) {
            if recent.len() == 1024 {
                recent.pop_front();
            }
            recent.push_back(port);
            return Ok(port);
        }
    }
    Err(std::io::Error::other(
        "the OS kept offering ports given out moments ago",
    ))
}

async fn supervise(
    instance: Arc<Instance>,
    spec: CommandSpec,
    contract: Contract,
    output: Output,
    previous: Option<Arc<Instance>>,
) {
    let mut stop = instance.stop.subscribe();
    let mut backoff = Duration::from_millis(500);
    let mut previous = previous;
    let name = instance.service.clone();
    loop {
        if *stop.borrow() {
            break;
        }
        let started = Instant::now();
        let outcome = attempt(
            &instance,
            &spec,
            &contract,
            output,
            &mut stop,
            &mut previous,
        )
        .await;
        match outcome {
            Attempt::Stopped => break,
            Attempt::Exited(why) => {
                instance.restarts.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(service = %name, revision = %contract.revision, "{why}; restarting in {} ms", backoff.as_millis());
                say(
                    output,
                    &name,
                    &format!(
                        "[frontdoor] {why}; restarting in {} ms",
                        backoff.as_millis()
                    ),
                );
            }
        }
        if started.elapsed() > MAX_BACKOFF {
            backoff = Duration::from_millis(500);
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    if let Some(p) = previous {
        retire(p);
    }
    instance.phase.send_replace(Phase::Stopped);
}

enum Attempt {
    Stopped,
    /// It failed to start or exited; the reason in words.
    Exited(String),
}

async fn attempt(
    instance: &Arc<Instance>,
    spec: &CommandSpec,
    contract: &Contract,
    output: Output,
    stop: &mut watch::Receiver<bool>,
    previous: &mut Option<Arc<Instance>>,
) -> Attempt {
    let fail = |why: String| {
        instance.phase.send_replace(Phase::Failed(why.clone()));
        Attempt::Exited(why)
    };
    let port = match free_port() {
        Ok(p) => p,
        Err(e) => return fail(format!("no free port for it: {e}")),
    };
    let pointers = crate::client_env::variables(&crate::client_env::Target {
        metadata: contract.metadata,
        google: contract.google,
        state_dir: &contract.state_dir,
        project: &contract.project,
        region: &contract.region,
    });
    let mut command = Command::new(&spec.argv[0]);
    command
        .args(&spec.argv[1..])
        .env("PORT", port.to_string())
        .env("K_SERVICE", &contract.service)
        .env("K_REVISION", &contract.revision)
        .env("K_CONFIGURATION", &contract.service)
        .envs(pointers)
        .envs(&spec.env)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.working_dir {
        command.current_dir(dir);
    }
    let mut child = match command.spawn() {
        Ok(c) => c,
        Err(e) => {
            return fail(format!("cannot run `{}`: {e}", spec.argv[0]));
        }
    };
    // process_group(0) made the child the leader of a group numbered by its pid.
    instance
        .group
        .store(child.id().unwrap_or(0), Ordering::SeqCst);
    if let Some(out) = child.stdout.take() {
        tokio::spawn(pump(out, instance.clone(), output));
    }
    if let Some(err) = child.stderr.take() {
        tokio::spawn(pump(err, instance.clone(), output));
    }
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + spec.start_timeout;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            tokio::time::sleep(Duration::from_millis(50)).await; // let the last lines arrive
            return fail(format!(
                "it exited ({status}) before listening on port {port}; last output: {}",
                instance.last_output()
            ));
        }
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            break;
        }
        if Instant::now() > deadline {
            terminate(&mut child).await;
            return fail(format!(
                "it did not listen on port {port} (its PORT) within {} s; last output: {}",
                spec.start_timeout.as_secs(),
                instance.last_output()
            ));
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(25)) => {}
            _ = stop.changed() => {
                terminate(&mut child).await;
                return Attempt::Stopped;
            }
        }
    }
    instance.phase.send_replace(Phase::Ready(addr));
    tracing::info!(service = %contract.service, revision = %contract.revision, %addr, "instance ready");
    // The new revision serves now; the previous one stops once its requests are done.
    if let Some(p) = previous.take() {
        retire(p);
    }
    tokio::select! {
        status = child.wait() => {
            instance.phase.send_replace(Phase::Starting);
            let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
            Attempt::Exited(format!("the instance exited ({status})"))
        }
        _ = stop.changed() => {
            terminate(&mut child).await;
            Attempt::Stopped
        }
    }
}

/// SIGTERM to the whole process group, SIGKILL if it lingers. The process is collected
/// only after the last signal: until then it stays a zombie whose id no other process can
/// take, so the group's SIGKILL (for children that outlived it) reaches nobody else. Once
/// collected, its id, and so the group id, may belong to some other process group.
async fn terminate(child: &mut Child) {
    let Some(pid) = child.id() else {
        return;
    };
    let group = Pid::from_raw(pid as i32);
    let _ = killpg(group, Signal::SIGTERM);
    let deadline = Instant::now() + STOP_GRACE;
    while !exited_uncollected(group) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = killpg(group, Signal::SIGKILL);
    // The process itself, if it left its group (`setpgid`): the group's signal missed it.
    // Not collected yet, so its id is still its own.
    let _ = child.start_kill();
    let _ = child.wait().await;
}

/// Whether `pid`, a child of this process, has exited, without collecting it.
fn exited_uncollected(pid: Pid) -> bool {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    match waitid(
        Id::Pid(pid),
        WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT | WaitPidFlag::WNOHANG,
    ) {
        Ok(WaitStatus::StillAlive) => false,
        Ok(_) => true,
        // Already collected (or not ours): nothing left to wait for.
        Err(_) => true,
    }
}

/// Copies a stream line by line to the output, keeping the last lines.
async fn pump(mut stream: impl AsyncRead + Unpin, instance: Arc<Instance>, output: Output) {
    let mut buf = vec![0u8; 16 * 1024];
    let mut line: Vec<u8> = Vec::new();
    loop {
        let n = match stream.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        for &b in &buf[..n] {
            if b == b'\n' {
                let text = String::from_utf8_lossy(&line).into_owned();
                say(output, &instance.service, &text);
                instance.keep(text);
                line.clear();
            } else if line.len() < MAX_LINE {
                line.push(b);
            }
        }
    }
    if !line.is_empty() {
        let text = String::from_utf8_lossy(&line).into_owned();
        say(output, &instance.service, &text);
        instance.keep(text);
    }
}
