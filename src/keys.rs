//! RSA-2048 signing keys: generated once into the state directory, reused across restarts,
//! published as a JWKS and as self-signed X.509 certificates.
//!
//! Signing and verification are the hot path of every surface, so keys are parsed once
//! here into aws-lc-rs objects (`RsaKeyPair`, `ParsedPublicKey`) and reused; aws-lc's RSA
//! runs at OpenSSL's speed.

pub mod ca;
mod store;
mod system;
mod x509;

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    KeyPair, ParsedPublicKey, RSA_PKCS1_2048_8192_SHA256, RSA_PKCS1_SHA256, RsaKeyPair,
    RsaPublicKeyComponents,
};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Map, Value, json};

pub use store::{StateDir, StoreError};
pub use system::SystemKeys;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the PEM text holds no PKCS#8 private key")]
    NotPkcs8,
    #[error("the private key was rejected: {0}")]
    Rejected(String),
    #[error("cannot generate an RSA key")]
    Generate,
    #[error("cannot make the X.509 certificate: {0}")]
    Certificate(String),
}

/// One RSA key pair with everything derived from it.
pub struct SigningKey {
    kid: String,
    pair: RsaKeyPair,
    verifier: ParsedPublicKey,
    n: Vec<u8>,
    e: Vec<u8>,
    private_pem: String,
    cert_pem: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    pub fn generate() -> Result<SigningKey, KeyError> {
        let pair = RsaKeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        let der: Pkcs8V1Der<'static> = pair.as_der().map_err(|_| KeyError::Generate)?;
        let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
        SigningKey::from_pkcs8_pem(&pem)
    }

    /// Parses a `-----BEGIN PRIVATE KEY-----` (PKCS#8) PEM.
    pub fn from_pkcs8_pem(text: &str) -> Result<SigningKey, KeyError> {
        let parsed = pem::parse(text).map_err(|_| KeyError::NotPkcs8)?;
        if parsed.tag() != "PRIVATE KEY" {
            return Err(KeyError::NotPkcs8);
        }
        let pair = RsaKeyPair::from_pkcs8(parsed.contents())
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let components = RsaPublicKeyComponents::<Vec<u8>>::from(pair.public_key());
        let verifier =
            ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, pair.public_key().as_ref())
                .map_err(|e| KeyError::Rejected(e.to_string()))?;
        let spki: PublicKeyX509Der<'static> = pair
            .public_key()
            .as_der()
            .map_err(|e| KeyError::Rejected(e.to_string()))?;
        // Google's key ids are 40 hex characters; a SHA-1 of the public key has that shape
        // and makes the id a pure function of the key.
        let kid = hex::encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, spki.as_ref())
                .as_ref(),
        );
        let private_pem = pem::encode(&parsed);
        let cert_pem = x509::self_signed(&private_pem, &kid)?;
        Ok(SigningKey {
            kid,
            pair,
            verifier,
            n: components.n,
            e: components.e,
            private_pem,
            cert_pem,
        })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// RS256 over `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        let mut signature = vec![0; self.pair.public_modulus_len()];
        // RSA PKCS#1 v1.5 is deterministic and aws-lc ignores the RNG argument for it; an
        // error here means a broken key, which `from_pkcs8_pem` has already ruled out.
        self.pair
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                message,
                &mut signature,
            )
            .expect("RSA signing with a validated key cannot fail");
        signature
    }

    /// Whether `signature` is an RS256 signature of `message` by this key.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verifier.verify_sig(message, signature).is_ok()
    }

    /// The public key as a JWK (RFC 7517), as Google publishes it.
    pub fn jwk(&self) -> Value {
        json!({
            "kty": "RSA",
            "alg": "RS256",
            "use": "sig",
            "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&self.n),
            "e": URL_SAFE_NO_PAD.encode(&self.e),
        })
    }

    /// The public key as PKCS#1 `RSAPublicKey` DER, the form `PublicKey::from_pkcs1_der` reads.
    pub fn public_key_der(&self) -> Vec<u8> {
        self.pair.public_key().as_ref().to_vec()
    }

    pub fn private_key_pem(&self) -> &str {
        &self.private_pem
    }

    pub fn certificate_pem(&self) -> &str {
        &self.cert_pem
    }
}

/// A public key alone, parsed once: what is kept of a service account's key, or an
/// external issuer's.
pub struct PublicKey(ParsedPublicKey);

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicKey").finish_non_exhaustive()
    }
}

impl PublicKey {
    /// From PKCS#1 `RSAPublicKey` DER (`SigningKey::public_key_der`).
    pub fn from_pkcs1_der(der: &[u8]) -> Result<PublicKey, KeyError> {
        ParsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, der)
            .map(PublicKey)
            .map_err(|e| KeyError::Rejected(e.to_string()))
    }

    /// From a JWK's modulus and exponent (big-endian bytes without leading zeros).
    pub fn from_components(n: &[u8], e: &[u8]) -> Result<PublicKey, KeyError> {
        RsaPublicKeyComponents { n, e }
            .to_parsed_public_key(&RSA_PKCS1_2048_8192_SHA256)
            .map(PublicKey)
            .map_err(|e| KeyError::Rejected(e.to_string()))
    }

    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.0.verify_sig(message, signature).is_ok()
    }
}

/// A key that checks RS256 signatures: the issuer's own, or a public key alone.
pub trait VerifyingKey {
    /// Whether `signature` is an RS256 signature of `message` by this key.
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool;
}

impl VerifyingKey for SigningKey {
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        SigningKey::verify(self, message, signature)
    }
}

impl VerifyingKey for PublicKey {
    fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        PublicKey::verify(self, message, signature)
    }
}

/// The keys the issuer publishes: the one it signs with now, then the next one, published
/// ahead of time as Google does so that a rotation never breaks a verifier's cache.
#[derive(Debug)]
pub struct KeySet {
    keys: Vec<SigningKey>,
}

impl KeySet {
    /// `keys[0]` signs; all verify. Panics on an empty list, which is a programming error.
    pub fn new(keys: Vec<SigningKey>) -> KeySet {
        assert!(!keys.is_empty(), "a key set needs a signing key");
        KeySet { keys }
    }

    pub fn current(&self) -> &SigningKey {
        &self.keys[0]
    }

    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Every key, the signing one first.
    pub fn iter(&self) -> impl Iterator<Item = &SigningKey> {
        self.keys.iter()
    }

    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// `{"keys":[…]}` for `/oauth2/v3/certs`.
    pub fn jwks(&self) -> Value {
        json!({ "keys": self.keys.iter().map(SigningKey::jwk).collect::<Vec<_>>() })
    }

    /// `{"KID": "-----BEGIN CERTIFICATE-----…"}` for `/oauth2/v1/certs`.
    pub fn pem_certificates(&self) -> Value {
        let map: Map<String, Value> = self
            .keys
            .iter()
            .map(|k| (k.kid.clone(), Value::String(k.cert_pem.clone())))
            .collect();
        Value::Object(map)
    }
}

#[cfg(test)]
pub(crate) mod testkeys {
    //! Checked-in keys, so that tests do not generate RSA keys.
    use super::*;

    pub(crate) const A: &str = include_str!("../tests/keys/a.pem");
    pub(crate) const B: &str = include_str!("../tests/keys/b.pem");
    pub(crate) const C: &str = include_str!("../tests/keys/c.pem");

    pub(crate) fn key_set() -> KeySet {
        KeySet::new(vec![
            SigningKey::from_pkcs8_pem(A).unwrap(),
            SigningKey::from_pkcs8_pem(B).unwrap(),
        ])
    }

    pub(crate) fn stranger() -> SigningKey {
        SigningKey::from_pkcs8_pem(C).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_are_40_hex_and_stable() {
        let k = SigningKey::from_pkcs8_pem(testkeys::A).unwrap();
        assert_eq!(k.kid().len(), 40);
        assert!(
            k.kid()
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        );
        assert_eq!(
            k.kid(),
            SigningKey::from_pkcs8_pem(testkeys::A).unwrap().kid()
        );
        assert_ne!(k.kid(), testkeys::stranger().kid());
    }

    #[test]
    fn signatures_verify_only_with_their_key_and_message() {
        let set = testkeys::key_set();
        let sig = set.current().sign(b"hello");
        assert_eq!(sig.len(), 256);
        assert!(set.current().verify(b"hello", &sig));
        assert!(!set.current().verify(b"hellO", &sig));
        assert!(!testkeys::stranger().verify(b"hello", &sig));
    }

    #[test]
    fn published_forms_name_both_keys() {
        let set = testkeys::key_set();
        let jwks = set.jwks();
        let kids: Vec<&str> = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap())
            .collect();
        assert_eq!(kids, set.kids());
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
        let certs = set.pem_certificates();
        for kid in set.kids() {
            assert!(
                certs[kid]
                    .as_str()
                    .unwrap()
                    .starts_with("-----BEGIN CERTIFICATE-----")
            );
        }
    }

    #[test]
    fn public_keys_from_der_and_from_jwk_components_verify() {
        let set = testkeys::key_set();
        let key = set.current();
        let sig = key.sign(b"m");
        let from_der = PublicKey::from_pkcs1_der(&key.public_key_der()).unwrap();
        assert!(from_der.verify(b"m", &sig));
        let jwk = key.jwk();
        let part = |k: &str| URL_SAFE_NO_PAD.decode(jwk[k].as_str().unwrap()).unwrap();
        let from_jwk = PublicKey::from_components(&part("n"), &part("e")).unwrap();
        assert!(from_jwk.verify(b"m", &sig));
        assert!(!from_jwk.verify(b"n", &sig));
    }

    #[test]
    fn bad_pem_is_refused() {
        assert!(matches!(
            SigningKey::from_pkcs8_pem("nope"),
            Err(KeyError::NotPkcs8)
        ));
        let cert = testkeys::key_set().current().certificate_pem().to_owned();
        assert!(matches!(
            SigningKey::from_pkcs8_pem(&cert),
            Err(KeyError::NotPkcs8)
        ));
    }
}
