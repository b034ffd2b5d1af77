//! Project Wycheproof's vectors (vendored in `tests/wycheproof/`, Apache-2.0) against the
//! signature checks every frontdoor verifier runs: RSASSA-PKCS1-v1_5 with SHA-256 on both
//! kinds of public key, and the compact-JWS stage of [`super::jws::Jws::verify_signature`].

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

use super::TokenError;
use super::jws::{Jws, KidRule};
use crate::keys::PublicKey;

fn vectors(name: &str) -> Value {
    let path = format!(
        "{}/tests/wycheproof/{name}.json",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

fn hex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap()).unwrap()
}

/// Every vector: a valid signature verifies, an invalid one does not, with the key parsed
/// from DER (the issuer's and account keys) and from its modulus and exponent (JWKS keys).
/// "Acceptable" vectors (legal but discouraged encodings) may go either way.
#[test]
fn rsa_pkcs1_sha256_signatures() {
    let mut checked = 0;
    for size in [2048, 3072, 4096] {
        let set = vectors(&format!("rsa_signature_{size}_sha256_test"));
        for group in set["testGroups"].as_array().unwrap() {
            let der = PublicKey::from_pkcs1_der(&hex(&group["publicKeyAsn"])).unwrap();
            let modulus = hex(&group["publicKey"]["modulus"]);
            let modulus = modulus.strip_prefix(&[0u8][..]).unwrap_or(&modulus);
            let parts =
                PublicKey::from_components(modulus, &hex(&group["publicKey"]["publicExponent"]))
                    .unwrap();
            for test in group["tests"].as_array().unwrap() {
                let (msg, sig) = (hex(&test["msg"]), hex(&test["sig"]));
                let id = &test["tcId"];
                let outcomes = [der.verify(&msg, &sig), parts.verify(&msg, &sig)];
                match test["result"].as_str().unwrap() {
                    "valid" => assert_eq!(outcomes, [true, true], "{size} tcId {id}"),
                    "invalid" => assert_eq!(outcomes, [false, false], "{size} tcId {id}"),
                    _ => assert_eq!(outcomes[0], outcomes[1], "{size} tcId {id}"),
                }
                checked += 1;
            }
        }
    }
    // So that an emptied or renamed file cannot pass by checking nothing.
    assert!(checked > 700, "{checked} vectors");
}

/// Every compact JWS under an RSA key: valid RS256 passes the signature stage, anything
/// invalid is refused (an RS256 signature by a key published for PS512 included); a valid
/// JWS in another algorithm (PS256, RS384…) is refused because frontdoor, like Google's ID
/// tokens, knows RS256 alone.
#[test]
fn json_web_signatures() {
    let set = vectors("json_web_signature_test");
    let (mut valid, mut invalid, mut other_alg) = (0, 0, 0);
    for group in set["testGroups"].as_array().unwrap() {
        let Some(jwk) = group["public"].as_object() else {
            continue;
        };
        if jwk.get("kty").and_then(Value::as_str) != Some("RSA") {
            continue;
        }
        // Through the JWKS reader workload identity providers use: a key published for
        // another algorithm is not one to check RS256 with.
        let jwks = serde_json::json!({ "keys": [jwk] }).to_string();
        let key = crate::config::parse_jwks(&jwks)
            .ok()
            .and_then(|keys| keys.into_iter().next())
            .map(|k| k.key);
        for test in group["tests"].as_array().unwrap() {
            // JSON serialisation is not a form any Google token takes.
            let Some(jws) = test["jws"].as_str() else {
                continue;
            };
            let id = &test["tcId"];
            let header: Option<Value> = jws
                .split('.')
                .next()
                .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
                .and_then(|h| serde_json::from_slice(&h).ok());
            let alg = header.as_ref().and_then(|h| h["alg"].as_str());
            let outcome = Jws::parse(jws).and_then(|jws| {
                jws.verify_signature(key.iter().map(|k| (jws.kid(), &**k)), KidRule::Required)
            });
            match (test["result"].as_str().unwrap(), alg) {
                ("valid", Some("RS256")) => {
                    let payload = outcome.unwrap_or_else(|e| panic!("tcId {id}: refused: {e}"));
                    assert_eq!(
                        payload,
                        URL_SAFE_NO_PAD
                            .decode(jws.split('.').nth(1).unwrap())
                            .unwrap()
                    );
                    valid += 1;
                }
                ("valid", Some(other)) => {
                    assert!(
                        matches!(outcome, Err(TokenError::Algorithm(ref a)) if a == other),
                        "tcId {id}: {outcome:?}"
                    );
                    other_alg += 1;
                }
                _ => {
                    assert!(outcome.is_err(), "tcId {id} accepted: {test}");
                    invalid += 1;
                }
            }
        }
    }
    assert_eq!(valid, 8);
    assert!(other_alg >= 10, "{other_alg}");
    assert!(invalid >= 280, "{invalid}");
}
