//! Helper for the scripts in `bench/`.
//!
//! - `bench-tool mint CONFIG STATE_DIR EMAIL AUDIENCE N [PAD]` prints N distinct valid ID
//!   tokens, one a line, signed with the state directory's current key; with PAD, each
//!   carries a `pad` claim of that many bytes (for the memory floods).
//! - `bench-tool rates SECONDS` prints how many RS256 signatures and verifications of an
//!   ID token one thread of this code does per second (`tokens::mint` / `tokens::verify`,
//!   JSON and base64 included), for comparison with `openssl speed rsa2048`.

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
        _ => {
            eprintln!(
                "usage: bench-tool mint CONFIG STATE_DIR EMAIL AUDIENCE N [PAD] | bench-tool rates SECONDS"
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
        claims.insert("jti".into(), serde_json::json!(i));
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
