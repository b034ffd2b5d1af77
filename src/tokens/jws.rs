//! Compact JWS with RS256 (RFC 7515): the one place frontdoor signs a JWT and the one place
//! it checks one. ID tokens, `signJwt`, the CLI's self-signed and external tokens are signed
//! by [`sign`]; ID tokens, jwt-bearer assertions and STS subject tokens are checked by
//! [`Jws::verify`] under [`Rules`] that say, per use, which issuer, which audiences, whether
//! a `kid` is required and how long a token may live.
//!
//! Not the `jsonwebtoken` crate: its aws-lc backend parses the key again on every call, and
//! it reads the wall clock itself. Here keys are parsed once (`keys::PublicKey`), the time
//! is passed in, and every refusal is a [`TokenError`] written for the person who sent the
//! token.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

use crate::keys::{SigningKey, VerifyingKey};

pub type Claims = Map<String, Value>;

/// Clock skew allowed on `exp`, `iat` and `nbf` by every verifier (our choice, the same
/// for all: Google's own verifiers differ, and five minutes covers them).
pub const SKEW: i64 = 300;
/// The longest credential read (our choice): Google's ID tokens are about 1 KiB, and
/// anything longer is refused before it is decoded or remembered.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Why a JWT is unusable, the one list for every verifier. At the front door each is a 401;
/// the token endpoints translate them into the descriptions Google's endpoints give.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(
        "the credential is {0} bytes, more than the {MAX_TOKEN_BYTES} frontdoor reads; an ID token is about 1 KiB"
    )]
    TooLarge(usize),
    #[error(
        "an access token (ya29.…) was sent where an ID token is needed; fetch an ID token for the service's URL (metadata `identity?audience=…`, `fetch_id_token`, `generateIdToken`) instead of an access token"
    )]
    AccessToken,
    #[error(
        "the credential is not a JWT: it has {0} dot-separated segments, a JWT has three (header.payload.signature)"
    )]
    NotThreeSegments(usize),
    #[error("the JWT's {0} is not base64url")]
    NotBase64(&'static str),
    #[error("the JWT's {0} is not a JSON object")]
    NotJsonObject(&'static str),
    #[error("the JWT is signed with `{0}`; only RS256 tokens signed by the issuer are accepted")]
    Algorithm(String),
    #[error(
        "the JWT header lists critical extensions ({0}) in `crit`; frontdoor understands none, so it must refuse the token (RFC 7515 §4.1.11)"
    )]
    CriticalExtensions(String),
    #[error("the JWT header has no `kid`, so no issuer key can verify it")]
    MissingKid,
    #[error(
        "the JWT's key id `{0}` is not one of the issuer's published keys (was it minted by another frontdoor, or with a different state directory?)"
    )]
    UnknownKid(String),
    #[error(
        "the JWT's signature does not verify with the issuer's key `{0}`; the token was altered or signed by another key"
    )]
    BadSignature(String),
    #[error(
        "the JWT has no `kid`, and its signature verifies with none of the {0} keys that could have signed it"
    )]
    NoKeyVerifies(usize),
    #[error("the JWT's issuer is {found}, expected `{expected}`")]
    WrongIssuer { expected: String, found: String },
    #[error("the JWT's audience {found} is not one of the accepted audiences: {accepted}")]
    WrongAudience { found: String, accepted: String },
    #[error("the JWT's `{0}` claim is missing")]
    MissingClaim(&'static str),
    #[error("the JWT's `{0}` claim is not {1}")]
    ClaimType(&'static str, &'static str),
    #[error(
        "the JWT expired at {}, {} ago (allowing {SKEW} s of clock skew); fetch a new token",
        When(*exp),
        Span(*ago)
    )]
    Expired { exp: i64, ago: i64 },
    #[error(
        "the JWT was issued at {}, {} in the future (allowing {SKEW} s of clock skew)",
        When(*iat),
        Span(*ahead)
    )]
    IssuedInFuture { iat: i64, ahead: i64 },
    #[error(
        "the JWT is not valid before {} (`nbf`), {} from now (allowing {SKEW} s of clock skew)",
        When(*nbf),
        Span(*ahead)
    )]
    NotYetValid { nbf: i64, ahead: i64 },
    #[error(
        "the JWT claims a lifetime of {lifetime} s (`exp` - `iat`), more than the {max} s this verifier accepts; Google's tokens live 3600 s"
    )]
    TooLongLived { lifetime: i128, max: i64 },
}

/// Signs `payload` (a JSON object's text) with `key`: `{"alg":"RS256","kid":…,"typ":"JWT"}`.
pub fn sign(key: &SigningKey, payload: &[u8]) -> String {
    let header = json!({"alg": "RS256", "kid": key.kid(), "typ": "JWT"});
    let mut token = URL_SAFE_NO_PAD.encode(header.to_string());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature));
    token
}

/// Signs `claims` with `key`.
pub fn sign_claims(key: &SigningKey, claims: &Claims) -> String {
    let payload = serde_json::to_vec(claims).expect("a JSON map always serializes");
    sign(key, &payload)
}

/// Whether a verifier needs the token to name its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KidRule {
    /// ID tokens: Google's always carry a `kid`, and a verifier looks it up.
    Required,
    /// Assertions and external tokens: some clients send none; then any candidate may
    /// have signed it.
    Optional,
}

/// Which `aud` a verifier accepts.
#[derive(Debug, Clone, Copy)]
pub enum Audience<'a> {
    /// One string, returned for the caller to judge (the front door compares it with the
    /// service's URLs; tokeninfo reports it).
    One,
    /// A string or an array, at least one of whose values is listed here (STS).
    AnyOf(&'a [String]),
    /// Not read here: the caller checks it against what it alone knows (the token
    /// endpoint's own address, for an assertion).
    Unchecked,
}

/// What a verifier requires beyond the signature.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    pub issuer: &'a str,
    pub audience: Audience<'a>,
    pub kid: KidRule,
    /// The longest `exp - iat` accepted.
    pub max_lifetime: i64,
}

/// A token that passed [`Jws::verify`].
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    pub kid: Option<String>,
    pub claims: Claims,
    /// The audience under [`Audience::One`]; empty otherwise.
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
}

/// A compact JWS whose structure, algorithm and `crit` have been checked, and nothing else.
#[derive(Debug)]
pub struct Jws<'t> {
    header: Claims,
    /// `header.payload`, the bytes the signature covers.
    signed: &'t str,
    payload: &'t str,
    signature: &'t str,
}

impl<'t> Jws<'t> {
    /// Its size, three base64url segments, a JSON header with `alg` RS256 and no `crit`.
    pub fn parse(token: &'t str) -> Result<Jws<'t>, TokenError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(TokenError::TooLarge(token.len()));
        }
        let mut parts = token.split('.');
        let (Some(header_part), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::NotThreeSegments(token.split('.').count()));
        };
        let header = json_object(&decode_part(header_part, "header")?, "header")?;
        match header.get("alg").and_then(Value::as_str) {
            Some("RS256") => {}
            Some(other) => return Err(TokenError::Algorithm(other.to_owned())),
            None => return Err(TokenError::Algorithm("(no alg)".to_owned())),
        }
        if let Some(crit) = header.get("crit") {
            return Err(TokenError::CriticalExtensions(crit.to_string()));
        }
        Ok(Jws {
            signed: &token[..header_part.len() + 1 + payload.len()],
            header,
            payload,
            signature,
        })
    }

    pub fn kid(&self) -> Option<&str> {
        self.header.get("kid").and_then(Value::as_str)
    }

    /// The claims before any check, for choosing the keys (an assertion names its signer in
    /// `iss`). Never decide anything else on them.
    pub fn unverified_claims(&self) -> Result<Claims, TokenError> {
        json_object(&decode_part(self.payload, "payload")?, "payload")
    }

    /// The signature stage: a candidate key for the token's `kid` (or, with none and
    /// [`KidRule::Optional`], any candidate) verifies it. `keys` pairs each key with its id.
    /// Returns the payload's bytes. Header fields other than `alg` and `kid` (`jku`, `x5u`,
    /// `jwk`, …) are ignored: keys come only from `keys`.
    pub fn verify_signature<'k, K: VerifyingKey + ?Sized + 'k>(
        &self,
        keys: impl IntoIterator<Item = (Option<&'k str>, &'k K)>,
        rule: KidRule,
    ) -> Result<Vec<u8>, TokenError> {
        let kid = self.kid();
        if kid.is_none() && rule == KidRule::Required {
            return Err(TokenError::MissingKid);
        }
        // Tried in turn, nothing collected (this runs on every front-door cache miss); the
        // signature is decoded once a key for it is found, so an unknown kid is said first.
        let mut signature = None;
        let mut tried = 0;
        for (_, key) in keys
            .into_iter()
            .filter(|(key_id, _)| kid.is_none() || *key_id == kid)
        {
            tried += 1;
            let signature = match &signature {
                Some(s) => s,
                None => signature.insert(decode_part(self.signature, "signature")?),
            };
            if key.verify(self.signed.as_bytes(), signature) {
                return decode_part(self.payload, "payload");
            }
        }
        Err(match kid {
            Some(kid) if tried == 0 => TokenError::UnknownKid(kid.to_owned()),
            Some(kid) => TokenError::BadSignature(kid.to_owned()),
            None => TokenError::NoKeyVerifies(tried),
        })
    }

    /// The signature, then the issuer, the times and the audience, in that order.
    pub fn verify<'k, K: VerifyingKey + ?Sized + 'k>(
        &self,
        keys: impl IntoIterator<Item = (Option<&'k str>, &'k K)>,
        rules: &Rules<'_>,
        now: i64,
    ) -> Result<Checked, TokenError> {
        let payload = self.verify_signature(keys, rules.kid)?;
        let claims = json_object(&payload, "payload")?;
        match claims.get("iss") {
            Some(Value::String(iss)) if iss == rules.issuer => {}
            found => {
                return Err(TokenError::WrongIssuer {
                    expected: rules.issuer.to_owned(),
                    found: found.map_or_else(|| "missing".to_owned(), |v| format!("`{}`", text(v))),
                });
            }
        }
        let (exp, iat) = check_times(&claims, now, rules.max_lifetime)?;
        let aud = match rules.audience {
            Audience::One => string(&claims, "aud", "a string (one audience)")?,
            Audience::AnyOf(accepted) => {
                let listed =
                    |v: &Value| v.as_str().is_some_and(|a| accepted.iter().any(|x| x == a));
                let ok = match claims.get("aud") {
                    Some(Value::Array(list)) => list.iter().any(listed),
                    Some(one) => listed(one),
                    None => false,
                };
                if !ok {
                    return Err(TokenError::WrongAudience {
                        found: claims
                            .get("aud")
                            .map_or_else(|| "(none)".to_owned(), Value::to_string),
                        accepted: accepted.join(", "),
                    });
                }
                String::new()
            }
            Audience::Unchecked => String::new(),
        };
        Ok(Checked {
            kid: self.kid().map(str::to_owned),
            claims,
            aud,
            iat,
            exp,
        })
    }
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn decode_part(part: &str, what: &'static str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| TokenError::NotBase64(what))
}

pub(super) fn json_object(bytes: &[u8], what: &'static str) -> Result<Claims, TokenError> {
    match serde_json::from_slice(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(TokenError::NotJsonObject(what)),
    }
}

/// The time rules every verified JWT meets: `exp` not past, `iat` not ahead and `nbf` (if
/// any) not ahead, each allowing [`SKEW`], and a lifetime of at most `max_lifetime`.
/// Returns `exp` and `iat`.
fn check_times(claims: &Claims, now: i64, max_lifetime: i64) -> Result<(i64, i64), TokenError> {
    // Times are attacker-chosen integers: compare and subtract in i128 so that values near
    // i64::MAX or MIN neither overflow nor print nonsense.
    let exp = integer(claims, "exp")?;
    let ahead = |t: i64| i128::from(t) - i128::from(now);
    if ahead(exp) < -i128::from(SKEW) {
        return Err(TokenError::Expired {
            exp,
            ago: clamp(-ahead(exp)),
        });
    }
    let iat = integer(claims, "iat")?;
    if ahead(iat) > i128::from(SKEW) {
        return Err(TokenError::IssuedInFuture {
            iat,
            ahead: clamp(ahead(iat)),
        });
    }
    if claims.contains_key("nbf") {
        let nbf = integer(claims, "nbf")?;
        if ahead(nbf) > i128::from(SKEW) {
            return Err(TokenError::NotYetValid {
                nbf,
                ahead: clamp(ahead(nbf)),
            });
        }
    }
    let lifetime = i128::from(exp) - i128::from(iat);
    if lifetime > i128::from(max_lifetime) {
        return Err(TokenError::TooLongLived {
            lifetime,
            max: max_lifetime,
        });
    }
    Ok((exp, iat))
}

/// A token's time (`exp`, `iat`, `nbf`) as a person reads it: UTC, as the logs give times,
/// then the claim as the token holds it (`2026-12-07T08:15:00Z (1796631300)`). A time no
/// calendar date can show (before 1970, after 9999: the token chose it) is the number alone.
struct When(i64);

impl std::fmt::Display for When {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const YEAR_10000: i64 = 253_402_300_800;
        match u64::try_from(self.0) {
            Ok(secs) if self.0 < YEAR_10000 => {
                let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
                write!(f, "{} ({})", humantime::format_rfc3339_seconds(at), self.0)
            }
            _ => write!(f, "{}", self.0),
        }
    }
}

/// Seconds as `6m 40s`.
struct Span(i64);

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secs = u64::try_from(self.0).unwrap_or(0);
        write!(
            f,
            "{}",
            humantime::format_duration(std::time::Duration::from_secs(secs))
        )
    }
}

/// A difference of two i64 times, which always fits in i128, shown as an i64.
fn clamp(seconds: i128) -> i64 {
    i64::try_from(seconds).unwrap_or(if seconds < 0 { i64::MIN } else { i64::MAX })
}

fn integer(claims: &Claims, name: &'static str) -> Result<i64, TokenError> {
    match claims.get(name) {
        None => Err(TokenError::MissingClaim(name)),
        Some(v) => v
            .as_i64()
            .ok_or(TokenError::ClaimType(name, "an integer number of seconds")),
    }
}

/// A string claim.
pub(super) fn string(
    claims: &Claims,
    name: &'static str,
    expected: &'static str,
) -> Result<String, TokenError> {
    match claims.get(name) {
        None => Err(TokenError::MissingClaim(name)),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(TokenError::ClaimType(name, expected)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::testkeys;

    const NOW: i64 = 1_800_000_000;

    fn claims(aud: Value) -> Claims {
        let Value::Object(c) =
            json!({"iss": "https://issuer", "aud": aud, "iat": NOW, "exp": NOW + 60})
        else {
            unreachable!()
        };
        c
    }

    /// A token signed by `key`, with the header `{"alg":"RS256"}` alone (no `kid`).
    fn without_kid(key: &SigningKey, claims: &Claims) -> String {
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap())
        );
        format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(key.sign(signed.as_bytes()))
        )
    }

    fn rules(audience: Audience<'_>, kid: KidRule) -> Rules<'_> {
        Rules {
            issuer: "https://issuer",
            audience,
            kid,
            max_lifetime: 3600,
        }
    }

    #[test]
    fn a_token_without_kid_is_tried_against_every_candidate_only_when_allowed() {
        let set = testkeys::key_set();
        let keys = || set.iter().map(|k| (Some(k.kid()), k));
        let second = set.iter().nth(1).unwrap();
        let token = without_kid(second, &claims(json!("a")));
        let jws = Jws::parse(&token).unwrap();
        let one = rules(Audience::One, KidRule::Optional);
        assert_eq!(jws.verify(keys(), &one, NOW).unwrap().aud, "a");
        let required = rules(Audience::One, KidRule::Required);
        assert_eq!(
            jws.verify(keys(), &required, NOW).unwrap_err(),
            TokenError::MissingKid
        );
        let stranger = testkeys::stranger();
        let forged = without_kid(&stranger, &claims(json!("a")));
        assert_eq!(
            Jws::parse(&forged)
                .unwrap()
                .verify(keys(), &one, NOW)
                .unwrap_err(),
            TokenError::NoKeyVerifies(2)
        );
    }

    #[test]
    fn a_named_kid_picks_its_key_and_no_other() {
        let set = testkeys::key_set();
        let second = set.iter().nth(1).unwrap();
        let token = sign_claims(second, &claims(json!("a")));
        let jws = Jws::parse(&token).unwrap();
        let one = rules(Audience::One, KidRule::Optional);
        // The right key under another id does not count.
        let mislabelled = [(Some(set.current().kid()), second)];
        assert_eq!(
            jws.verify(mislabelled, &one, NOW).unwrap_err(),
            TokenError::UnknownKid(second.kid().to_owned())
        );
        let wrong_key = [(Some(second.kid()), set.current())];
        assert_eq!(
            jws.verify(wrong_key, &one, NOW).unwrap_err(),
            TokenError::BadSignature(second.kid().to_owned())
        );
    }

    #[test]
    fn any_of_accepts_a_listed_audience_in_a_string_or_an_array() {
        let set = testkeys::key_set();
        let keys = || set.iter().map(|k| (Some(k.kid()), k));
        let accepted = ["https://x".to_owned(), "https://y".to_owned()];
        let any_of = rules(Audience::AnyOf(&accepted), KidRule::Required);
        for aud in [json!("https://y"), json!(["https://z", "https://x"])] {
            let token = sign_claims(set.current(), &claims(aud.clone()));
            assert!(
                Jws::parse(&token)
                    .unwrap()
                    .verify(keys(), &any_of, NOW)
                    .is_ok(),
                "{aud}"
            );
        }
        for aud in [
            json!("https://z"),
            json!(["https://z"]),
            json!(7),
            json!(null),
        ] {
            let token = sign_claims(set.current(), &claims(aud.clone()));
            let err = Jws::parse(&token)
                .unwrap()
                .verify(keys(), &any_of, NOW)
                .unwrap_err();
            assert!(
                matches!(err, TokenError::WrongAudience { .. }),
                "{aud}: {err}"
            );
        }
    }
}
