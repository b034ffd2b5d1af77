//! The differential: the hostile-token corpus and valid tokens through every language's
//! default verifier and the front door, and where they may disagree.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::clients::{Client, run, write_tokens};
use crate::common::*;

/// Where Google's verifiers disagree with each other on a case, which ones accept it, and
/// what frontdoor does and why. Every other case, they and the front door all agree.
pub(crate) const DISAGREEMENTS: &[(&str, &[&str], bool, &str)] = &[
    (
        "aud as an array",
        &["Java GoogleIdTokenVerifier"],
        false,
        "Google signs `aud` as one string; Java alone reads a list (and accepts it when every entry is trusted), Go, Node and Python refuse it",
    ),
    (
        "exp as a string",
        &["Node OAuth2Client.verifyIdToken"],
        false,
        "RFC 7519 makes `exp` a number; Node alone compares a string as if it were one",
    ),
    (
        "expired 100 s ago",
        &[
            "Java GoogleIdTokenVerifier",
            "Node OAuth2Client.verifyIdToken",
        ],
        true,
        "frontdoor allows five minutes of clock skew on `exp` and `iat`, as Java and Node do; Go and Python allow none",
    ),
    (
        "iat an hour ahead",
        &["Go auth idtoken.Validator.Validate", "Go idtoken.Validate"],
        false,
        "Go's validators never read `iat`; a token issued beyond the skew in the future is refused, as Java, Node and Python refuse it",
    ),
    (
        "issued 100 s ahead",
        &[
            "Go auth idtoken.Validator.Validate",
            "Go idtoken.Validate",
            "Java GoogleIdTokenVerifier",
            "Node OAuth2Client.verifyIdToken",
        ],
        true,
        "within the five minutes of skew; Python allows none by default",
    ),
    (
        "wrong iss",
        &["Go auth idtoken.Validator.Validate", "Go idtoken.Validate"],
        false,
        "Go's validators never check the issuer; Cloud Run takes only Google's, which Java, Node and Python check",
    ),
];

/// Each verifier's verdict on each case ("accepted" or "refused: why"), and the front
/// door's.
pub(crate) struct Differential {
    pub(crate) cases: Vec<String>,
    pub(crate) verifiers: BTreeMap<String, BTreeMap<String, String>>,
    pub(crate) front_door: BTreeMap<String, bool>,
}

/// The corpus, and valid tokens, through every language's default verifier and through the
/// front door.
pub(crate) async fn differential(emu: &Emulator, clients: &[Client]) -> Differential {
    let url = emu.url_of("vault");
    let corpus = corpus::hostile(emu, &url, &emu.url_of("closed"), &sa("login"));
    let now = corpus.now;
    let mut tokens: BTreeMap<String, String> = corpus
        .cases
        .iter()
        .map(|(name, token)| (name.to_string(), token.clone()))
        .collect();
    tokens.insert("valid: the corpus's own".into(), corpus.valid.clone());
    tokens.insert(
        "valid: as the metadata server mints".into(),
        emu.sa_token(&sa("login"), &url),
    );
    let near =
        |f: &dyn Fn(&mut Value)| corpus::signed(emu, corpus::claims(&sa("login"), &url, now, f));
    tokens.insert(
        "expired 100 s ago".into(),
        near(&|c| {
            c["iat"] = json!(now - 3700);
            c["exp"] = json!(now - 100);
        }),
    );
    tokens.insert(
        "issued 100 s ahead".into(),
        near(&|c| c["iat"] = json!(now + 100)),
    );
    let file = write_tokens(emu.dir.path(), "corpus.json", &tokens);
    let mut verifiers = BTreeMap::new();
    for client in clients.iter().filter(|c| c.name != "gcloud") {
        let out = run(emu, client, &["verify", &url, file.to_str().unwrap()], None)
            .unwrap_or_else(|e| panic!("{}'s verifiers: {e}", client.name));
        for (verifier, verdicts) in out["verifiers"].as_object().unwrap() {
            let verdicts: BTreeMap<String, String> =
                serde_json::from_value(verdicts.clone()).unwrap();
            // A verdict on every token, and nothing but a verdict: a case left out must
            // not pass as refused.
            assert!(
                verdicts.keys().eq(tokens.keys()),
                "{} {verifier} judged {:?}, not every case",
                client.name,
                verdicts.keys()
            );
            for (case, verdict) in &verdicts {
                assert!(
                    verdict == "accepted" || verdict.starts_with("refused: "),
                    "{} {verifier} on {case}: {verdict}",
                    client.name
                );
            }
            verifiers.insert(format!("{} {verifier}", client.name), verdicts);
        }
    }
    let mut front_door = BTreeMap::new();
    for (name, token) in &tokens {
        let (status, _, _) = get_with(
            &emu.service("vault", "/"),
            &[("authorization", &bearer(token))],
        )
        .await;
        // A 401 refuses the token; past the token checks, a 200 or the IAM check's 403
        // means it was accepted. Anything else is no verdict on the token.
        let accepted = match status.as_u16() {
            200 | 403 => true,
            401 => false,
            other => panic!("the front door answered {other} to {name}"),
        };
        front_door.insert(name.clone(), accepted);
    }
    Differential {
        cases: tokens.into_keys().collect(),
        verifiers,
        front_door,
    }
}

/// The differential's disagreements with the front door, each naming its case.
pub(crate) fn disagreements(d: &Differential) -> Vec<String> {
    let mut wrong = Vec::new();
    for case in &d.cases {
        let accepting: Vec<&str> = d
            .verifiers
            .iter()
            .filter(|(_, v)| v.get(case).is_some_and(|v| v == "accepted"))
            .map(|(name, _)| name.as_str())
            .collect();
        let front_door = d.front_door[case];
        let declared = DISAGREEMENTS.iter().find(|(c, ..)| c == case);
        match declared {
            Some((_, declared_accepting, follows, _)) => {
                if accepting != *declared_accepting {
                    wrong.push(format!(
                        "{case}: accepted by {accepting:?}, declared {declared_accepting:?}"
                    ));
                }
                if front_door != *follows {
                    wrong.push(format!("{case}: the front door accepts: {front_door}"));
                }
            }
            None if accepting.is_empty() || accepting.len() == d.verifiers.len() => {
                let libraries = !accepting.is_empty();
                if libraries != front_door {
                    wrong.push(format!(
                        "{case}: every library {} it, the front door {}",
                        if libraries { "accepts" } else { "refuses" },
                        if front_door { "accepts" } else { "refuses" }
                    ));
                }
            }
            None => wrong.push(format!(
                "{case}: the libraries disagree (accepted by {accepting:?}) and DISAGREEMENTS does not say which frontdoor follows"
            )),
        }
    }
    wrong
}
