use super::*;
use crate::keys::SigningKey;
use crate::keys::testkeys;

const NOW: i64 = 1_800_000_000;
const ISS: &str = "https://accounts.google.com";

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A JWT with any header and payload, signed RS256 by `key`.
fn forge(header: Value, payload: Value, key: &SigningKey) -> String {
    let signed = format!("{}.{}", b64(&header), b64(&payload));
    format!(
        "{signed}.{}",
        URL_SAFE_NO_PAD.encode(key.sign(signed.as_bytes()))
    )
}

fn good_claims() -> Value {
    json!({"iss": ISS, "aud": "https://x", "sub": "1", "email": "a@b.iam.gserviceaccount.com", "iat": NOW, "exp": NOW + 3600})
}

fn sa() -> ServiceAccount {
    ServiceAccount {
        email: "login@demo-project.iam.gserviceaccount.com".into(),
        unique_id: "123456789012345678901".into(),
        display_name: None,
        policy: Default::default(),
        policy_by_admin: Default::default(),
        declared: true,
    }
}

#[test]
fn minted_service_account_tokens_verify_with_google_shape() {
    let keys = testkeys::key_set();
    let token = mint(
        &keys,
        &service_account_claims(ISS, &sa(), "https://svc", NOW),
    );
    let header = peek_header(&token);
    assert_eq!(
        header,
        json!({"alg": "RS256", "kid": keys.current().kid(), "typ": "JWT"})
    );
    let v = verify(&keys, &token, ISS, NOW + 10).unwrap();
    assert_eq!(v.aud, "https://svc");
    assert_eq!(v.sub, "123456789012345678901");
    assert_eq!(v.claims["azp"], "123456789012345678901");
    assert_eq!(v.claims["email_verified"], true);
    assert_eq!(v.exp - v.iat, 3600);
    assert_eq!(
        v.email(),
        Some("login@demo-project.iam.gserviceaccount.com")
    );
}

fn peek_header(token: &str) -> Value {
    serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap()
}

#[test]
fn user_tokens_default_to_the_gcloud_audience() {
    let user = User {
        email: "alice@example.com".into(),
        id: "100000000000000000001".into(),
    };
    let c = user_claims(ISS, &user, None, NOW);
    assert_eq!(c["aud"], GCLOUD_CLIENT_ID);
    assert_eq!(c["azp"], GCLOUD_CLIENT_ID);
    assert_eq!(
        user_claims(ISS, &user, Some("https://x"), NOW)["aud"],
        "https://x"
    );
}

#[test]
fn tokens_signed_by_the_next_key_verify_too() {
    let keys = testkeys::key_set();
    let next = SigningKey::from_pkcs8_pem(testkeys::B).unwrap();
    let t = forge(
        json!({"alg": "RS256", "kid": next.kid()}),
        good_claims(),
        &next,
    );
    assert!(verify(&keys, &t, ISS, NOW).is_ok());
}

/// Every hostile shape gets its own error, and none verifies.
#[test]
fn hostile_tokens_are_refused_each_with_its_reason() {
    let keys = testkeys::key_set();
    let good = keys.current();
    let kid = good.kid().to_owned();
    let stranger = testkeys::stranger();
    let h = json!({"alg": "RS256", "kid": kid, "typ": "JWT"});
    let with = |k: &str, v: Value| {
        let mut c = good_claims();
        c[k] = v;
        forge(h.clone(), c, good)
    };
    let without = |k: &str| {
        let mut c = good_claims();
        c.as_object_mut().unwrap().remove(k);
        forge(h.clone(), c, good)
    };
    let valid = forge(h.clone(), good_claims(), good);
    let (vh, vp, _) = {
        let mut it = valid.split('.');
        (
            it.next().unwrap().to_owned(),
            it.next().unwrap().to_owned(),
            (),
        )
    };
    let hs256 = {
        // HS256 "signed" with the public key's bytes: the classic confusion attack.
        let signed = format!(
            "{}.{}",
            b64(&json!({"alg": "HS256", "kid": kid})),
            b64(&good_claims())
        );
        format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(b"not-an-rsa-signature")
        )
    };
    let cases: Vec<(&str, String, TokenError)> = vec![
        (
            "alg none",
            format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&good_claims())),
            TokenError::Algorithm("none".into()),
        ),
        ("hs256", hs256, TokenError::Algorithm("HS256".into())),
        (
            "no alg",
            forge(json!({"kid": kid}), good_claims(), good),
            TokenError::Algorithm("(no alg)".into()),
        ),
        (
            "no kid",
            forge(json!({"alg": "RS256"}), good_claims(), good),
            TokenError::MissingKid,
        ),
        (
            "foreign key, own kid",
            forge(
                json!({"alg": "RS256", "kid": stranger.kid()}),
                good_claims(),
                &stranger,
            ),
            TokenError::UnknownKid(stranger.kid().into()),
        ),
        (
            "known kid, foreign signature",
            forge(h.clone(), good_claims(), &stranger),
            TokenError::BadSignature(kid.clone()),
        ),
        (
            "payload swapped",
            format!(
                "{vh}.{}.{}",
                b64(&json!({"iss": ISS, "aud": "https://other"})),
                valid.rsplit('.').next().unwrap()
            ),
            TokenError::BadSignature(kid.clone()),
        ),
        (
            "expired",
            with("exp", json!(NOW - 301)),
            TokenError::Expired {
                exp: NOW - 301,
                ago: 301,
            },
        ),
        (
            "exp as string",
            with("exp", json!((NOW + 10).to_string())),
            TokenError::ClaimType("exp", "an integer number of seconds"),
        ),
        ("no exp", without("exp"), TokenError::MissingClaim("exp")),
        (
            "iat an hour ahead",
            with("iat", json!(NOW + 3600)),
            TokenError::IssuedInFuture {
                iat: NOW + 3600,
                ahead: 3600,
            },
        ),
        (
            "aud array",
            with("aud", json!(["https://x"])),
            TokenError::ClaimType("aud", "a string (one audience)"),
        ),
        ("no aud", without("aud"), TokenError::MissingClaim("aud")),
        (
            "wrong iss",
            with("iss", json!("https://evil.example.com")),
            TokenError::WrongIssuer {
                expected: ISS.into(),
                found: "`https://evil.example.com`".into(),
            },
        ),
        (
            "no iss",
            without("iss"),
            TokenError::WrongIssuer {
                expected: ISS.into(),
                found: "missing".into(),
            },
        ),
        (
            "access token",
            "ya29.a0AfH6SMBx".into(),
            TokenError::AccessToken,
        ),
        (
            "two segments",
            format!("{vh}.{vp}"),
            TokenError::NotThreeSegments(2),
        ),
        (
            "four segments",
            format!("{valid}.x"),
            TokenError::NotThreeSegments(4),
        ),
        (
            "garbage",
            "QUFB".repeat(4096),
            TokenError::NotThreeSegments(1),
        ),
        (
            "header not base64",
            format!("%%%.{vp}.sig"),
            TokenError::NotBase64("header"),
        ),
        (
            "header not json",
            format!("{}.{vp}.sig", URL_SAFE_NO_PAD.encode("{nope")),
            TokenError::NotJsonObject("header"),
        ),
        (
            "payload json array",
            forge(h.clone(), json!([1, 2]), good),
            TokenError::NotJsonObject("payload"),
        ),
        (
            "signature not base64",
            format!("{vh}.{vp}.***"),
            TokenError::NotBase64("signature"),
        ),
    ];
    for (name, token, want) in cases {
        assert_eq!(verify(&keys, &token, ISS, NOW).unwrap_err(), want, "{name}");
    }
}

#[test]
fn jku_and_x5u_are_ignored() {
    let keys = testkeys::key_set();
    let stranger = testkeys::stranger();
    let h = json!({"alg": "RS256", "kid": stranger.kid(), "jku": "https://evil.example.com/jwks", "x5u": "https://evil.example.com/cert"});
    let t = forge(h, good_claims(), &stranger);
    assert_eq!(
        verify(&keys, &t, ISS, NOW).unwrap_err(),
        TokenError::UnknownKid(stranger.kid().into())
    );
}

#[test]
fn skew_is_allowed_at_the_edges() {
    let keys = testkeys::key_set();
    let t = mint(&keys, &service_account_claims(ISS, &sa(), "a", NOW));
    assert!(verify(&keys, &t, ISS, NOW + 3600 + SKEW).is_ok());
    assert!(verify(&keys, &t, ISS, NOW + 3600 + SKEW + 1).is_err());
    assert!(verify(&keys, &t, ISS, NOW - SKEW).is_ok());
    assert!(verify(&keys, &t, ISS, NOW - SKEW - 1).is_err());
}

#[test]
fn crit_nbf_and_overlong_lifetimes_are_refused() {
    let keys = testkeys::key_set();
    let good = keys.current();
    let h = json!({"alg": "RS256", "kid": good.kid(), "typ": "JWT"});
    let with = |k: &str, v: Value| {
        let mut c = good_claims();
        c[k] = v;
        forge(h.clone(), c, good)
    };
    let crit = forge(
        json!({"alg": "RS256", "kid": good.kid(), "crit": ["exp"], "exp": 1}),
        good_claims(),
        good,
    );
    assert_eq!(
        verify(&keys, &crit, ISS, NOW).unwrap_err(),
        TokenError::CriticalExtensions(r#"["exp"]"#.into())
    );
    assert_eq!(
        verify(&keys, &with("nbf", json!(NOW + SKEW + 1)), ISS, NOW).unwrap_err(),
        TokenError::NotYetValid {
            nbf: NOW + SKEW + 1,
            ahead: SKEW + 1
        }
    );
    assert!(verify(&keys, &with("nbf", json!(NOW + SKEW)), ISS, NOW).is_ok());
    assert_eq!(
        verify(&keys, &with("nbf", json!("soon")), ISS, NOW).unwrap_err(),
        TokenError::ClaimType("nbf", "an integer number of seconds")
    );
    let mut long = good_claims();
    long["exp"] = json!(NOW + MAX_LIFETIME + 1);
    let err = verify(&keys, &forge(h.clone(), long, good), ISS, NOW).unwrap_err();
    assert_eq!(
        err,
        TokenError::TooLongLived {
            lifetime: i128::from(MAX_LIFETIME) + 1,
            max: MAX_LIFETIME,
        }
    );
    assert!(err.to_string().contains("86400"), "{err}");
    let mut day = good_claims();
    day["exp"] = json!(NOW + MAX_LIFETIME);
    assert!(verify(&keys, &forge(h.clone(), day, good), ISS, NOW).is_ok());
}

#[test]
fn extreme_times_neither_overflow_nor_pass() {
    let keys = testkeys::key_set();
    let good = keys.current();
    let h = json!({"alg": "RS256", "kid": good.kid(), "typ": "JWT"});
    let times = |iat: i64, exp: i64| {
        let mut c = good_claims();
        c["iat"] = json!(iat);
        c["exp"] = json!(exp);
        verify(&keys, &forge(h.clone(), c, good), ISS, NOW)
    };
    assert_eq!(
        times(i64::MIN, i64::MIN).unwrap_err(),
        TokenError::Expired {
            exp: i64::MIN,
            ago: i64::MAX
        }
    );
    let err = times(i64::MIN, i64::MAX).unwrap_err();
    assert!(matches!(err, TokenError::TooLongLived { .. }), "{err}");
    assert!(err.to_string().contains("18446744073709551615"), "{err}");
    assert_eq!(
        times(i64::MAX, i64::MAX).unwrap_err(),
        TokenError::IssuedInFuture {
            iat: i64::MAX,
            ahead: i64::MAX - NOW
        }
    );
    // And at the other end of the clock.
    let c = good_claims();
    let t = forge(h.clone(), c, good);
    assert!(matches!(
        verify(&keys, &t, ISS, i64::MIN).unwrap_err(),
        TokenError::IssuedInFuture { .. }
    ));
    assert!(matches!(
        verify(&keys, &t, ISS, i64::MAX).unwrap_err(),
        TokenError::Expired { .. }
    ));
}

#[test]
fn an_oversized_token_is_refused_before_it_is_decoded() {
    let keys = testkeys::key_set();
    let good = keys.current();
    let mut c = good_claims();
    c["padding"] = json!("x".repeat(MAX_TOKEN_BYTES));
    let big = forge(json!({"alg": "RS256", "kid": good.kid()}), c, good);
    assert_eq!(
        verify(&keys, &big, ISS, NOW).unwrap_err(),
        TokenError::TooLarge(big.len())
    );
}
