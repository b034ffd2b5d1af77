//! Self-signed certificates for `/oauth2/v1/certs`, which Google publishes and some
//! verifiers (Python's `verify_token` by default, Node's `verifyIdToken`) read.

use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_RSA_SHA256, SerialNumber};

use super::KeyError;

/// A certificate for the key in `private_pem`. Every input is fixed by the key (validity
/// window, serial from the key id), and RSA PKCS#1 v1.5 signatures are deterministic, so
/// the same key always yields the same certificate bytes across restarts.
pub(super) fn self_signed(private_pem: &str, kid: &str) -> Result<String, KeyError> {
    let key = KeyPair::from_pkcs8_pem_and_sign_algo(private_pem, &PKCS_RSA_SHA256)
        .map_err(|e| KeyError::Certificate(e.to_string()))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(|e| KeyError::Certificate(e.to_string()))?;
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "frontdoor.local");
    params.distinguished_name = name;
    set_validity(&mut params);
    let id = hex::decode(&kid[..16]).map_err(|e| KeyError::Certificate(e.to_string()))?;
    params.serial_number = Some(serial(&id));
    let cert = params
        .self_signed(&key)
        .map_err(|e| KeyError::Certificate(e.to_string()))?;
    Ok(cert.pem())
}

/// A serial number from (up to 16 of) `bytes`: positive and never zero, as RFC 5280 wants
/// (a DER INTEGER with its top bit set is negative).
pub(super) fn serial(bytes: &[u8]) -> SerialNumber {
    let mut serial = bytes[..bytes.len().min(16)].to_vec();
    if serial.is_empty() {
        serial.push(0);
    }
    serial[0] = (serial[0] & 0x7f) | 0x01;
    SerialNumber::from_slice(&serial)
}

/// The validity window of every certificate frontdoor makes: fixed, so the same key always
/// yields the same certificate, and long, so none expires under a test suite.
pub(super) fn set_validity(params: &mut CertificateParams) {
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2074, 1, 1);
}
