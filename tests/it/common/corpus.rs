//! The hostile-token corpus of the front-door issue, as tokens: shared by the front door's
//! own test (`hostile_tokens.rs`, which adds the cases that live in headers) and the
//! differential test of Google's verifiers (`client_matrix.rs`).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use frontdoor::keys::SigningKey;
use serde_json::{Value, json};

use super::{Emulator, repo};

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn sign(header: Value, payload: Value, key: &SigningKey) -> String {
    let signed = format!("{}.{}", b64(&header), b64(&payload));
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(signed.as_bytes()))
    )
}

/// The corpus for a token meant for `audience`, naming `email`.
pub struct Corpus {
    /// Each hostile case by name, none of which may pass.
    pub cases: Vec<(&'static str, String)>,
    /// A well-formed token from the issuer's current key for `audience`, which passes.
    pub valid: String,
    /// The issuer's current key id, and the stranger key's (tests/keys/c.pem).
    pub kid: String,
    pub stranger_kid: String,
    /// The emulator's clock when the corpus was made.
    pub now: i64,
}

/// A key frontdoor never published.
pub fn stranger() -> SigningKey {
    SigningKey::from_pkcs8_pem(&std::fs::read_to_string(repo().join("tests/keys/c.pem")).unwrap())
        .unwrap()
}

/// Claims as the issuer would sign them for `email` and `audience` at `now`, changed by `f`.
pub fn claims(email: &str, audience: &str, now: i64, f: impl Fn(&mut Value)) -> Value {
    let mut c = json!({"iss": "https://accounts.google.com", "aud": audience, "azp": "1", "sub": "1", "email": email, "email_verified": true, "iat": now, "exp": now + 3600});
    f(&mut c);
    c
}

/// A token the issuer's current key signs over `claims`.
pub fn signed(emu: &Emulator, claims: Value) -> String {
    let keys = emu.state.keys();
    let header = json!({"alg": "RS256", "kid": keys.current().kid(), "typ": "JWT"});
    sign(header, claims, keys.current())
}

/// The hostile tokens for `audience`; `other` is another service's audience.
pub fn hostile(emu: &Emulator, audience: &str, other: &str, email: &str) -> Corpus {
    let keys = emu.state.keys();
    let kid = keys.current().kid().to_owned();
    let good_key = keys.current();
    let stranger = stranger();
    let now = emu.state.now();
    let claims = |f: &dyn Fn(&mut Value)| claims(email, audience, now, f);
    let rs = json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
    let valid = sign(rs.clone(), claims(&|_| {}), good_key);
    let (vh, vp) = {
        let mut it = valid.split('.');
        (it.next().unwrap().to_owned(), it.next().unwrap().to_owned())
    };
    let hs256 = {
        // The classic confusion: HMAC keyed with the issuer's published key bytes.
        let signed = format!(
            "{}.{}",
            b64(&json!({"alg": "HS256", "kid": kid})),
            b64(&claims(&|_| {}))
        );
        let key = aws_lc_rs::hmac::Key::new(
            aws_lc_rs::hmac::HMAC_SHA256,
            good_key.certificate_pem().as_bytes(),
        );
        let sig = aws_lc_rs::hmac::sign(&key, signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(sig))
    };
    let cases = vec![
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none"})),
                b64(&claims(&|_| {}))
            ),
        ),
        ("HS256 with the public key", hs256),
        (
            "RS256 by a key not in the set",
            sign(
                json!({"alg": "RS256", "kid": stranger.kid()}),
                claims(&|_| {}),
                &stranger,
            ),
        ),
        (
            "known kid, other key's signature",
            sign(rs.clone(), claims(&|_| {}), &stranger),
        ),
        (
            "expired",
            sign(
                rs.clone(),
                claims(&|c| c["exp"] = json!(now - 400)),
                good_key,
            ),
        ),
        (
            "iat an hour ahead",
            sign(
                rs.clone(),
                claims(&|c| c["iat"] = json!(now + 3600)),
                good_key,
            ),
        ),
        (
            "exp as a string",
            sign(
                rs.clone(),
                claims(&|c| c["exp"] = json!((now + 3600).to_string())),
                good_key,
            ),
        ),
        (
            "aud as an array",
            sign(
                rs.clone(),
                claims(&|c| c["aud"] = json!([audience])),
                good_key,
            ),
        ),
        (
            "missing aud",
            sign(
                rs.clone(),
                claims(&|c| {
                    c.as_object_mut().unwrap().remove("aud");
                }),
                good_key,
            ),
        ),
        (
            "wrong iss",
            sign(
                rs.clone(),
                claims(&|c| c["iss"] = json!("https://evil.example.com")),
                good_key,
            ),
        ),
        ("token for another service", emu.sa_token(email, other)),
        (
            "audience with a path",
            emu.sa_token(email, &format!("{audience}/admin")),
        ),
        (
            "an access token",
            "ya29.a0AfH6SMC-frontdoor-test".to_owned(),
        ),
        ("a ya29 string", "ya29.".to_owned()),
        ("16 KiB of base64 garbage", "QUJD".repeat(4096)),
        ("header not base64", format!("!!!.{vp}.AAAA")),
        (
            "payload JSON but not an object",
            sign(rs.clone(), json!("just a string"), good_key),
        ),
        (
            "jku/x5u pointing elsewhere",
            sign(
                json!({"alg": "RS256", "kid": stranger.kid(), "jku": "http://127.0.0.1:1/jwks", "x5u": "http://127.0.0.1:1/x5u"}),
                claims(&|_| {}),
                &stranger,
            ),
        ),
        ("signature stripped", format!("{vh}.{vp}.")),
        (
            "redacted signature replayed",
            format!("{vh}.{vp}.SIGNATURE_REMOVED_BY_GOOGLE"),
        ),
    ];
    Corpus {
        cases,
        valid,
        kid,
        stranger_kid: stranger.kid().to_owned(),
        now,
    }
}
