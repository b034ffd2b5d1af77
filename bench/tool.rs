//! Helper for the scripts in `bench/`.
//!
//! - `bench-tool mint CONFIG STATE_DIR EMAIL AUDIENCE N [PAD]` prints N distinct valid ID
//!   tokens, one a line, signed with the state directory's current key; with PAD, each
//!   carries a `pad` claim of that many bytes (for the memory floods).
//! - `bench-tool rates SECONDS` prints how many RS256 signatures and verifications of an
//!   ID token one thread of this code does per second (`tokens::mint` / `tokens::verify`,
//!   JSON and base64 included), for comparison with `openssl speed rsa2048`.
//! - `bench-tool tls-load …` is the TLS load generator of `bench/tls.py` (see [`tls_load`]).
//! - `bench-tool bare-proxy …` is the floor under the front door's speed (see [`bare_proxy`]).

mod bare_proxy;

/// The allocator frontdoor runs with, so that `bare-proxy` is measured like it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use frontdoor::config;
use frontdoor::keys::StateDir;
use frontdoor::tokens;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["mint", config_file, state, email, audience, n, pad @ ..] => mint(
            config_file,
            state,
            email,
            audience,
            n.parse().expect("N is a number"),
            pad.first()
                .map_or(0, |p| p.parse().expect("PAD is a number")),
        ),
        ["rates", seconds] => rates(seconds.parse().expect("SECONDS is a number")),
        ["tls-load", rest @ ..] => tls_load(rest),
        ["bare-proxy", rest @ ..] => bare_proxy::run(rest),
        _ => {
            eprintln!(
                "usage: bench-tool mint CONFIG STATE_DIR EMAIL AUDIENCE N [PAD] | bench-tool rates SECONDS | bench-tool tls-load keepalive|handshake direct:ADDR|proxy:ADDR HOST CA_FILE TOKEN|- CONNECTIONS SECONDS | bench-tool bare-proxy legacy|conn LISTEN UPSTREAM"
            );
            std::process::exit(2);
        }
    }
}

fn mint(config_file: &str, state: &str, email: &str, audience: &str, n: usize, pad: usize) {
    let config = config::load(Path::new(config_file)).unwrap_or_else(|e| panic!("{e}"));
    let keys = StateDir::new(state).signing_keys().unwrap();
    let sa = config
        .service_account(email)
        .expect("the account is declared");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for i in 0..n {
        // A different iat makes every token distinct; all stay valid for the next hour.
        let claims =
            tokens::service_account_claims(&config.issuer, sa, audience, now - (i % 600) as i64);
        let mut claims = claims;
        // A string, as RFC 7519 §4.1.7 has it (Envoy's jwt_authn refuses a number).
        claims.insert("jti".into(), serde_json::json!(i.to_string()));
        if pad > 0 {
            claims.insert("pad".into(), serde_json::json!("p".repeat(pad)));
        }
        writeln!(out, "{}", tokens::mint(&keys, &claims)).unwrap();
    }
}

fn rates(seconds: f64) {
    let dir = tempfile::tempdir().unwrap();
    let keys = StateDir::new(dir.path()).signing_keys().unwrap();
    let yaml = "project: {id: demo-project, number: '1', region: us-central1}\nservice_accounts: [{email: a@demo-project.iam.gserviceaccount.com}]\n";
    let config = config::parse(yaml, Path::new("bench.yaml")).unwrap();
    let sa = config
        .service_account("a@demo-project.iam.gserviceaccount.com")
        .unwrap();
    let claims = tokens::service_account_claims(&config.issuer, sa, "https://x", 2_000_000_000);
    let budget = Duration::from_secs_f64(seconds);

    let start = Instant::now();
    let mut signed = 0u64;
    let mut token = String::new();
    while start.elapsed() < budget {
        token = tokens::mint(&keys, &claims);
        signed += 1;
    }
    let sign_rate = signed as f64 / start.elapsed().as_secs_f64();

    let start = Instant::now();
    let mut verified = 0u64;
    while start.elapsed() < budget {
        tokens::verify(&keys, &token, &config.issuer, 2_000_000_000).unwrap();
        verified += 1;
    }
    let verify_rate = verified as f64 / start.elapsed().as_secs_f64();
    println!("{sign_rate:.0} {verify_rate:.0}");
}

/// How `tls-load` reaches the TLS server.
enum Route {
    /// Straight to it (nginx).
    Direct(String),
    /// Through an HTTP proxy's CONNECT to HOST:443 (frontdoor's egress proxy).
    Proxy(String),
}

struct TlsLoad {
    route: Route,
    host: String,
    connector: tokio_rustls::TlsConnector,
    token: Option<String>,
    /// A new connection (TCP, CONNECT, TLS handshake) for every request.
    handshake_each: bool,
}

/// `bench-tool tls-load keepalive|handshake direct:ADDR|proxy:ADDR HOST CA_FILE TOKEN|-
/// CONNECTIONS SECONDS`: HTTP/1.1 GETs of `https://HOST/` over TLS (SNI HOST, trusting
/// CA_FILE only), each connection's requests one after another; prints `RESULT requests
/// seconds p50_us p99_us non2xx errors`, as bench/wrk.lua does. One load generator for both
/// servers, since wrk cannot go through a proxy's CONNECT.
fn tls_load(args: &[&str]) {
    let [mode, route, host, ca, token, connections, seconds] = args else {
        panic!("tls-load needs 7 arguments");
    };
    let route = match route.split_once(':') {
        Some(("direct", addr)) => Route::Direct(addr.to_owned()),
        Some(("proxy", addr)) => Route::Proxy(addr.to_owned()),
        _ => panic!("route is direct:ADDR or proxy:ADDR"),
    };
    use tokio_rustls::rustls::pki_types::{CertificateDer, pem::PemObject};
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("CA_FILE is readable") {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a CA certificate");
    }
    let provider = std::sync::Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
    let mut config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    // Every connection a full handshake: no session resumption for either server.
    config.resumption = tokio_rustls::rustls::client::Resumption::disabled();
    let load = std::sync::Arc::new(TlsLoad {
        route,
        host: host.to_string(),
        connector: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)),
        token: (*token != "-").then(|| token.to_string()),
        handshake_each: *mode == "handshake",
    });
    let connections: usize = connections.parse().expect("CONNECTIONS is a number");
    let budget = Duration::from_secs_f64(seconds.parse().expect("SECONDS is a number"));
    // One thread, as wrk -t1 in the other benchmarks.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let start = Instant::now();
    let results = runtime.block_on(async {
        let tasks: Vec<_> = (0..connections)
            .map(|_| tokio::spawn(run_connection(load.clone(), start + budget)))
            .collect();
        let mut all = Tally::default();
        for t in tasks {
            let tally = t.await.unwrap();
            all.latencies_us.extend(tally.latencies_us);
            all.non2xx += tally.non2xx;
            all.errors += tally.errors;
        }
        all
    });
    let elapsed = start.elapsed().as_secs_f64();
    let mut lat = results.latencies_us;
    lat.sort_unstable();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0)
    };
    println!(
        "RESULT {} {elapsed:.3} {} {} {} {}",
        lat.len(),
        pct(0.5),
        pct(0.99),
        results.non2xx,
        results.errors
    );
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    non2xx: u64,
    errors: u64,
}

type Sender = hyper::client::conn::http1::SendRequest<http_body_util::Empty<bytes::Bytes>>;

async fn connect(load: &TlsLoad) -> Result<Sender, Box<dyn std::error::Error + Send + Sync>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let tcp = match &load.route {
        Route::Direct(addr) => tokio::net::TcpStream::connect(addr).await?,
        Route::Proxy(addr) => {
            let mut tcp = tokio::net::TcpStream::connect(addr).await?;
            tcp.set_nodelay(true)?;
            let host = &load.host;
            tcp.write_all(
                format!("CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n").as_bytes(),
            )
            .await?;
            // The proxy's answer: read to its blank line, byte-sized reads so nothing of the
            // TLS stream is taken.
            let mut head = Vec::new();
            while !head.ends_with(b"\r\n\r\n") {
                let mut byte = [0u8; 1];
                if tcp.read(&mut byte).await? == 0 {
                    return Err("the proxy closed".into());
                }
                head.push(byte[0]);
            }
            if !head.starts_with(b"HTTP/1.1 200") {
                return Err(String::from_utf8_lossy(&head).into_owned().into());
            }
            tcp
        }
    };
    tcp.set_nodelay(true)?;
    let name = tokio_rustls::rustls::pki_types::ServerName::try_from(load.host.clone())?;
    let tls = load.connector.connect(name, tcp).await?;
    let (sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn run_connection(load: std::sync::Arc<TlsLoad>, deadline: Instant) -> Tally {
    use http_body_util::BodyExt;
    let mut tally = Tally::default();
    let mut sender: Option<Sender> = None;
    while Instant::now() < deadline {
        let started = Instant::now();
        if sender.is_none() || load.handshake_each {
            match connect(&load).await {
                Ok(s) => sender = Some(s),
                Err(_) => {
                    tally.errors += 1;
                    sender = None;
                    continue;
                }
            }
        }
        let mut request = hyper::Request::get("/").header("host", &load.host);
        if load.handshake_each {
            request = request.header("connection", "close");
        }
        if let Some(token) = &load.token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let request = request.body(http_body_util::Empty::new()).unwrap();
        let s = sender.as_mut().unwrap();
        let answer = match s.send_request(request).await {
            Ok(r) => r,
            Err(_) => {
                tally.errors += 1;
                sender = None;
                continue;
            }
        };
        let ok = answer.status().is_success();
        if answer.into_body().collect().await.is_err() {
            tally.errors += 1;
            sender = None;
            continue;
        }
        tally
            .latencies_us
            .push(started.elapsed().as_micros() as u64);
        if !ok {
            tally.non2xx += 1;
        }
    }
    tally
}
