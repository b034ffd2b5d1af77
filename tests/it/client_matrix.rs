//! Google's clients as the test oracle (issue 14): each language's library, unmodified and
//! configured by `frontdoor env` alone, through every surface frontdoor emulates (the
//! matrix), and each language's default ID-token verifier against the front door on the
//! hostile-token corpus (the differential). The client table of `docs/clients.md` is this
//! run's: the test fails when the committed one differs, and `scripts/client-matrix` copies
//! it in.

#[path = "client_matrix/clients.rs"]
mod clients;
use crate::common;
#[path = "client_matrix/differential.rs"]
mod differential;
#[path = "client_matrix/table.rs"]
mod table;

use std::collections::BTreeMap;
use std::path::PathBuf;

use clients::{Client, clients, read, run, write_tokens};
use common::*;
use differential::{DISAGREEMENTS, differential, disagreements};
use serde_json::{Value, json};
use table::{END, PAGE, START, render};

/// The matrix's columns: the cell a client program is asked for, and its heading.
const CELLS: &[(&str, &str)] = &[
    ("platform", "platform detection"),
    ("metadata-access", "metadata access token"),
    ("metadata-id", "metadata ID token (`format=full`)"),
    ("key-file", "ID token from a key file"),
    (
        "impersonated",
        "ID token from an `impersonated_service_account` file",
    ),
    ("external-access", "external account: access token"),
    ("external-id", "external account: ID token"),
    ("verify", "verifies a frontdoor ID token"),
    ("call", "calls the `run.app` URL"),
    ("grpc", "calls a gRPC service at `run.app:443`"),
];

/// The cells a library cannot do even against Google: its program says so, with the
/// source location that shows it. Listed here too, so that a cell never turns into "not
/// possible" unnoticed.
/// Cells that work with one of a client's libraries while another has a bug that fails
/// against Google too; the program reports the bug, the test checks it fails as Google
/// would, and the table says so.
const KNOWN_BUGS: &[(&str, &str)] = &[("Go", "impersonated"), ("Go", "external-id")];

const NOT_POSSIBLE: &[(&str, &str)] = &[
    ("Java", "external-id"),
    ("Node", "external-id"),
    ("Python", "external-id"),
    ("gcloud", "impersonated"),
    ("gcloud", "external-id"),
    ("gcloud", "verify"),
    ("gcloud", "grpc"),
];

fn yaml() -> String {
    format!(
        r#"{PROJECT}service_accounts:
  - email: login{SA}
  # The key file's account: not the service's, so a library that ignored the file and
  # asked the metadata server would be caught.
  - email: keyed{SA}
  - email: invoker{SA}
    iam_policy:
      bindings:
        - role: roles/iam.serviceAccountTokenCreator
          members: [serviceAccount:keyed{SA}]
        - role: roles/iam.workloadIdentityUser
          members: ["principalSet:{FEDERATION_POOL}/attribute.repository/app"]
services:
  - name: login
    service_account: login{SA}
    upstream: builtin:echo
  - name: vault
    upstream: builtin:echo
    listen: 127.0.0.1:0
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:login{SA}, serviceAccount:invoker{SA}]}}]}}
  - name: closed
    upstream: builtin:echo
  # gRPC servers (tests/services/grpc_app.py), login bound on the first alone.
  - name: grpc-vault
    command: ['{python}', '{grpc}']
    iam_policy: {{bindings: [{{role: roles/run.invoker, members: [serviceAccount:login{SA}]}}]}}
  - name: grpc-closed
    command: ['{python}', '{grpc}']
{CI_POOL}"#,
        python = python().display(),
        grpc = repo().join("tests/services/grpc_app.py").display(),
    )
}

/// The gRPC cell: the client's gRPC program, as `login`, calls `grpc-vault` (let in: its
/// answer names the service) and `grpc-closed` (`PERMISSION_DENIED`, for the lack of a
/// binding for login's own token).
async fn grpc_cell(emu: &Emulator, client: &Client) -> Outcome {
    let program = match client.grpc_program() {
        Ok(program) => program,
        Err(why) => return Outcome::NotPossible(why.to_owned()),
    };
    let host = |service: &str| {
        emu.url_of(service)
            .trim_start_matches("https://")
            .to_owned()
    };
    let checked = async {
        let vault = run(emu, &program, &[&host("grpc-vault"), "unary"], None)?;
        expect(
            vault["code"] == "OK" && vault["answer"]["service"] == "grpc-vault",
            || format!("grpc-vault: want OK from grpc-vault: {vault}"),
        )?;
        let closed = run(emu, &program, &[&host("grpc-closed"), "unary"], None)?;
        // Go names it PermissionDenied; the protocol, and the others, PERMISSION_DENIED.
        let code = closed["code"].as_str().unwrap_or_default().replace('_', "");
        expect(code.eq_ignore_ascii_case("permissiondenied"), || {
            format!("grpc-closed: want PERMISSION_DENIED: {closed}")
        })?;
        let decisions = emu.decisions().await;
        let refused = decisions
            .iter()
            .rev()
            .find(|d| d["service"] == "grpc-closed")
            .ok_or_else(|| "no decision about grpc-closed".to_owned())?;
        expect(
            refused["code"] == "no_invoker_binding"
                && refused["principal"] == format!("serviceAccount:{}", sa("login")),
            || format!("grpc-closed refused for another reason: {refused}"),
        )
    };
    match checked.await {
        Ok(()) => Outcome::Works(None),
        Err(why) => Outcome::Fails(why),
    }
}

/// The credentials files the file-reading cells are given, as a user would make them.
struct Files {
    key: PathBuf,
    impersonated: PathBuf,
    federated: PathBuf,
}

fn files(emu: &Emulator) -> Files {
    let dir = emu.dir.path();
    let key = dir.join("keyed-key.json");
    emu.cli(&[
        "keys",
        "create",
        key.to_str().unwrap(),
        "--iam-account",
        &sa("keyed"),
    ]);
    // What `gcloud auth application-default login --impersonate-service-account` writes,
    // its source a key file.
    let impersonated = dir.join("impersonated.json");
    let source: Value = serde_json::from_str(&std::fs::read_to_string(&key).unwrap()).unwrap();
    let file = json!({
        "type": "impersonated_service_account",
        "service_account_impersonation_url": format!(
            "https://iamcredentials.googleapis.com/v1/projects/-/serviceAccounts/{}:generateAccessToken",
            sa("invoker")
        ),
        "source_credentials": source,
        "delegates": [],
    });
    std::fs::write(&impersonated, file.to_string()).unwrap();
    // A CI job's token from frontdoor's external issuer, and a configuration that
    // exchanges it at STS and impersonates `invoker`.
    let subject = dir.join("subject.jwt");
    let token = emu.cli(&[
        "external-token",
        "--provider",
        "ci-pool/ci",
        "--subject",
        "repo:app",
        "--claim",
        "repository=app",
    ]);
    std::fs::write(&subject, token.trim()).unwrap();
    let federated = dir.join("federated.json");
    emu.cli(&[
        "credentials",
        "external-account",
        federated.to_str().unwrap(),
        "--provider",
        "ci-pool/ci",
        "--token-file",
        subject.to_str().unwrap(),
        "--service-account",
        &sa("invoker"),
    ]);
    Files {
        key,
        impersonated,
        federated,
    }
}

/// What a cell came to.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// Works, with a note when part of the library is known not to (as against Google).
    Works(Option<String>),
    NotPossible(String),
    Fails(String),
}

/// The claims of an ID token that frontdoor's tokeninfo accepts (its signature checked).
async fn verified_claims(emu: &Emulator, token: &str) -> Result<Value, String> {
    let (status, _, body) =
        get_with(&emu.google(&format!("/tokeninfo?id_token={token}")), &[]).await;
    if status != 200 {
        let start: String = token.chars().take(12).collect();
        return Err(format!("tokeninfo refused the ID token ({start}…): {body}"));
    }
    frontdoor::tokens::peek_claims(token)
        .map(Value::Object)
        .ok_or_else(|| format!("not a JWT: {token}"))
}

/// The account an access token belongs to, by frontdoor's tokeninfo.
async fn access_token_email(emu: &Emulator, token: &str) -> Result<String, String> {
    let (status, _, body) = get_with(
        &emu.google(&format!("/tokeninfo?access_token={token}")),
        &[],
    )
    .await;
    let info: Value = serde_json::from_str(&body).unwrap_or_default();
    match info["email"].as_str() {
        Some(email) if status == 200 => Ok(email.to_owned()),
        _ => Err(format!("tokeninfo refused the access token: {body}")),
    }
}

/// Every `token…` value of a cell's answer.
fn tokens(out: &Value) -> Result<Vec<&str>, String> {
    let found: Vec<&str> = out
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("token"))
        .map(|(k, v)| match v.as_str() {
            Some(t) if !t.is_empty() => Ok(t),
            _ => Err(format!("{k} is no token: {v}")),
        })
        .collect::<Result<_, _>>()?;
    expect(!found.is_empty(), || format!("no token: {out}"))?;
    Ok(found)
}

fn expect(ok: bool, what: impl FnOnce() -> String) -> Result<(), String> {
    if ok { Ok(()) } else { Err(what()) }
}

/// Whether a cell's answer is what Cloud Run would give, with a note on a known library bug
/// the program reported.
async fn check(emu: &Emulator, cell: &str, out: &Value) -> Result<Option<String>, String> {
    let note = match out
        .get("library_bug")
        .map(|b| b.as_str().unwrap_or_default())
    {
        // Go's auth idtoken.NewCredentials calls generateIdToken without credentials: Google
        // answers 401, and so must frontdoor.
        Some(bug) => {
            expect(
                bug.contains("status code 401") && bug.contains("CREDENTIALS_MISSING"),
                || format!("the known library bug, not as Google answers it: {bug}"),
            )?;
            Some(
                "`google.golang.org/api/idtoken` works; `cloud.google.com/go/auth`'s `idtoken.NewCredentials` sends generateIdToken without credentials and gets Google's 401 here too (googleapis/google-cloud-go#19939)"
                    .to_owned(),
            )
        }
        None => None,
    };
    check_answer(emu, cell, out).await.map(|()| note)
}

async fn check_answer(emu: &Emulator, cell: &str, out: &Value) -> Result<(), String> {
    let url = emu.url_of("vault");
    // An ID token cell: whose token it must be, and whether in the full format.
    let want_id = match cell {
        "metadata-id" => Some(("login", true)),
        "key-file" => Some(("keyed", false)),
        "impersonated" | "external-id" => Some(("invoker", false)),
        _ => None,
    };
    if let Some((account, full)) = want_id {
        let email = sa(account);
        for token in tokens(out)? {
            let claims = verified_claims(emu, token).await?;
            expect(
                claims["email"] == email.as_str() && claims["aud"] == url.as_str(),
                || format!("want email {email} and aud {url}: {claims}"),
            )?;
            expect(
                !full || claims["google"]["compute_engine"]["instance_name"] == "login",
                || format!("format=full asked, no google.compute_engine naming login: {claims}"),
            )?;
        }
        return Ok(());
    }
    match cell {
        "platform" => {
            expect(out["detected"] == true, || format!("not detected: {out}"))?;
            expect(out["project"] == "demo-project", || {
                format!("project: {}", out["project"])
            })?;
            expect(out["account"] == sa("login").as_str(), || {
                format!("account: {}", out["account"])
            })
        }
        "metadata-access" | "external-access" => {
            let want = sa(if cell == "metadata-access" {
                "login"
            } else {
                "invoker"
            });
            for token in tokens(out)? {
                let email = access_token_email(emu, token).await?;
                expect(email == want, || {
                    format!("access token of {email}, not {want}")
                })?;
            }
            Ok(())
        }
        "verify" => {
            let verifiers = out["verifiers"]
                .as_object()
                .filter(|v| !v.is_empty())
                .ok_or_else(|| format!("no verifiers: {out}"))?;
            for (verifier, verdicts) in verifiers {
                expect(verdicts["valid"] == "accepted", || {
                    format!("{verifier} refused the valid token: {}", verdicts["valid"])
                })?;
                // Refused for its signature, not for some other failure (the
                // certificates unreachable). Java's verifier gives no reason.
                let tampered = verdicts["tampered"].as_str().unwrap_or_default();
                let signature = [
                    "crypto/rsa: verification error",
                    "Invalid token signature",
                    "Could not verify token signature",
                    "verify returned null",
                ];
                expect(
                    tampered.starts_with("refused")
                        && signature.iter().any(|s| tampered.contains(s)),
                    || format!("{verifier} on a token with an altered signature: {tampered}"),
                )?;
            }
            Ok(())
        }
        "call" => {
            expect(out["statuses"] == json!([200, 403]), || {
                format!("want [200, 403] (bound, not bound): {}", out["statuses"])
            })?;
            // The 403 for the lack of a binding, with login's token: not for a request
            // that carried none.
            let decisions = emu.decisions().await;
            let closed = decisions
                .iter()
                .rev()
                .find(|d| d["service"] == "closed")
                .ok_or("no decision about closed")?;
            expect(
                closed["code"] == "no_invoker_binding"
                    && closed["principal"] == format!("serviceAccount:{}", sa("login")),
                || format!("closed refused for another reason: {closed}"),
            )
        }
        _ => Err(format!("no check for cell {cell}")),
    }
}

/// A token with the same header and claims and an altered signature: a character in the
/// middle of it changed (at the end, only padding bits might change).
fn tampered(token: &str) -> String {
    let at = token.rfind('.').unwrap() + (token.len() - token.rfind('.').unwrap()) / 2;
    let flipped = if &token[at..=at] == "A" { "B" } else { "A" };
    format!("{}{flipped}{}", &token[..at], &token[at + 1..])
}

/// The matrix: every client through every cell.
async fn matrix(emu: &Emulator, clients: &[Client]) -> Vec<Vec<Outcome>> {
    let files = files(emu);
    let url = emu.url_of("vault");
    let closed = emu.url_of("closed");
    let valid = emu.sa_token(&sa("login"), &url);
    let pair = BTreeMap::from([
        ("valid".to_owned(), valid.clone()),
        ("tampered".to_owned(), tampered(&valid)),
    ]);
    let pair = write_tokens(emu.dir.path(), "verify-pair.json", &pair);
    let mut rows = Vec::new();
    for client in clients {
        let mut row = Vec::new();
        for (cell, _) in CELLS {
            if *cell == "grpc" {
                let outcome = grpc_cell(emu, client).await;
                eprintln!("{} {cell}: {outcome:?}", client.name);
                row.push(outcome);
                continue;
            }
            let credentials = match *cell {
                "key-file" => Some(files.key.as_path()),
                "impersonated" => Some(files.impersonated.as_path()),
                "external-access" | "external-id" => Some(files.federated.as_path()),
                _ => None,
            };
            let args: Vec<&str> = if *cell == "verify" {
                vec!["verify", &url, pair.to_str().unwrap()]
            } else {
                vec![cell, &url, &closed]
            };
            let outcome = match run(emu, client, &args, credentials) {
                Err(why) => Outcome::Fails(why),
                Ok(out) => match out.get("unsupported").and_then(Value::as_str) {
                    Some(why) => Outcome::NotPossible(why.to_owned()),
                    None => match check(emu, cell, &out).await {
                        Ok(note) => Outcome::Works(note),
                        Err(why) => Outcome::Fails(why),
                    },
                },
            };
            eprintln!("{} {cell}: {outcome:?}", client.name);
            row.push(outcome);
        }
        rows.push(row);
    }
    rows
}

/// The matrix and the differential, from one run: every cell a library supports works, the
/// front door and the verifiers agree (or disagree as declared), and `docs/clients.md` shows
/// this run's table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "left to scripts/test: runs Google's clients (Python, Node, Go, Java) and gcloud"]
async fn googles_clients_agree_with_frontdoor() {
    let emu = Emulator::start(&yaml()).await;
    let clients = clients();
    let rows = matrix(&emu, &clients).await;
    let d = differential(&emu, &clients).await;
    let table = render(&clients, &rows, &d);
    let written = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("client-matrix.md");
    std::fs::write(&written, &table).unwrap();

    let mut failures = Vec::new();
    for (client, row) in clients.iter().zip(&rows) {
        for ((cell, _), outcome) in CELLS.iter().zip(row) {
            let declared = NOT_POSSIBLE.contains(&(client.name, *cell));
            let bug = KNOWN_BUGS.contains(&(client.name, *cell));
            match outcome {
                Outcome::Works(note) if !declared && note.is_some() == bug => {}
                Outcome::NotPossible(_) if declared => {}
                other => failures.push(format!(
                    "{} {cell}: {other:?}{}",
                    client.name,
                    if declared {
                        " (declared not possible)"
                    } else {
                        ""
                    }
                )),
            }
        }
    }
    failures.extend(disagreements(&d));
    for (case, ..) in DISAGREEMENTS {
        if !d.cases.iter().any(|c| c == case) {
            failures.push(format!("DISAGREEMENTS names {case}, which no token is"));
        }
    }
    assert!(
        failures.is_empty(),
        "{}\n\nthis run's table is in {}",
        failures.join("\n"),
        written.display()
    );
    let page = read(PAGE);
    let committed = page
        .split_once(START)
        .and_then(|(_, rest)| rest.split_once(END))
        .map(|(table, _)| table)
        .unwrap_or_else(|| panic!("{PAGE} has no client-matrix section"));
    assert!(
        committed == table,
        "{PAGE}'s client table is not this run's: scripts/client-matrix copies {} in",
        written.display()
    );
    emu.stop().await;
}
