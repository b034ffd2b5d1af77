//! frontdoor's local certificate authority, which lets the egress proxy end TLS for
//! `*.run.app` and Google's API hosts: clients that trust it (`frontdoor env` points them
//! at it) reach frontdoor at Google's own URLs.
//!
//! The CA key is ECDSA P-256, made on first use in the state directory (`ca/key.pem`, mode
//! 0600) and reused across restarts with its certificate (`ca/ca.pem`), so a trust store
//! set up once stays valid; `ca/bundle.pem` is the system's trusted roots followed by it,
//! for runtimes that replace their roots rather than add to them.
//! Leaf certificates are issued on demand, one per host, and kept (at most [`MAX_LEAVES`]).

use std::sync::Arc;

use aws_lc_rs::digest::{Context, SHA256};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::sign::CertifiedKey;

use super::{KeyError, StateDir, StoreError};

/// The CA's key, within the state directory.
const KEY_FILE: &str = "ca/key.pem";
/// The CA's certificate, PEM.
pub const CA_FILE: &str = "ca/ca.pem";
/// The system's roots and the CA, PEM.
pub const BUNDLE_FILE: &str = "ca/bundle.pem";
/// The same roots as a PKCS#12 trust store, for Java (which replaces its roots with it).
pub const TRUST_STORE_FILE: &str = "ca/truststore.p12";
/// The trust store's password: Java's customary one. It guards nothing secret (the store
/// holds certificates only), but a PKCS#12 file has one.
pub const TRUST_STORE_PASSWORD: &str = "changeit";
/// The most leaf certificates kept: hosts come from the configuration and Google's fixed
/// list, but a `*.run.app` name is the client's to choose.
pub const MAX_LEAVES: usize = 1024;

pub struct LocalCa {
    issuer: Issuer<'static, KeyPair>,
    /// One key for every leaf, made each start: only the CA's must survive restarts. Kept
    /// in both forms: rcgen signs certificates for it, rustls signs handshakes with it.
    leaf_key: KeyPair,
    leaf_signer: Arc<dyn tokio_rustls::rustls::sign::SigningKey>,
    leaves: quick_cache::sync::Cache<String, Arc<CertifiedKey>>,
    pem: String,
    der: CertificateDer<'static>,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa").finish_non_exhaustive()
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, "frontdoor local CA");
    name.push(
        DnType::OrganizationName,
        "frontdoor (offline Cloud Run emulator)",
    );
    params.distinguished_name = name;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    super::x509::set_validity(&mut params);
    params
}

fn cert_error(e: rcgen::Error) -> KeyError {
    KeyError::Certificate(e.to_string())
}

impl LocalCa {
    /// The CA of `dir`, made on first use; writes `ca.pem` and `bundle.pem` beside its key.
    pub fn load_or_create(dir: &StateDir) -> Result<LocalCa, StoreError> {
        let key_pem = dir.private_text(KEY_FILE, || {
            KeyPair::generate()
                .map(|k| k.serialize_pem())
                .map_err(|e| StoreError::Generate(cert_error(e)))
        })?;
        let bad = |source| StoreError::BadKey {
            path: dir.path().join(KEY_FILE),
            source,
        };
        let key = KeyPair::from_pem(&key_pem).map_err(|e| bad(cert_error(e)))?;
        let params = ca_params();
        // Kept like the key (an ECDSA signature and the serial differ each time one is
        // made), so that a trust store copied once stays byte-for-byte current.
        let pem = dir.private_text(CA_FILE, || {
            params
                .self_signed(&key)
                .map(|cert| cert.pem())
                .map_err(|e| bad(cert_error(e)))
        })?;
        let der = CertificateDer::from(
            pem::parse(&pem)
                .map_err(|e| bad(KeyError::Certificate(e.to_string())))?
                .into_contents(),
        );
        let roots = rustls_native_certs::load_native_certs().certs;
        dir.write_file(BUNDLE_FILE, bundle(&roots, &pem).as_bytes())?;
        let store = trust_store(&roots, &der).map_err(StoreError::Generate)?;
        dir.write_file(TRUST_STORE_FILE, &store)?;
        let leaf_key = KeyPair::generate().map_err(|e| StoreError::Generate(cert_error(e)))?;
        let leaf_signer = tokio_rustls::rustls::crypto::aws_lc_rs::sign::any_supported_type(
            &PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der())),
        )
        .map_err(|e| StoreError::Generate(KeyError::Certificate(e.to_string())))?;
        Ok(LocalCa {
            issuer: Issuer::new(params, key),
            leaf_key,
            leaf_signer,
            leaves: quick_cache::sync::Cache::new(MAX_LEAVES),
            pem,
            der,
        })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> &str {
        &self.pem
    }

    /// A certificate for `host` (a DNS name or an IP address, lowercase) signed by this CA,
    /// with the leaf key, ready for rustls.
    pub fn leaf(&self, host: &str) -> Result<Arc<CertifiedKey>, KeyError> {
        self.leaves
            .get_or_insert_with(host, || self.issue(host).map(Arc::new))
    }

    fn issue(&self, host: &str) -> Result<CertifiedKey, KeyError> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        name.push(DnType::CommonName, host);
        params.distinguished_name = name;
        params.subject_alt_names = vec![match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(host.to_owned().try_into().map_err(cert_error)?),
        }];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        super::x509::set_validity(&mut params);
        // Every leaf shares one key, so rcgen's default serial (from the key) would repeat:
        // RFC 5280 wants it unique per issuer, and NSS refuses a repeat. From the host and
        // the leaf key, which is new at every start: the same serial never names two
        // certificates, across restarts either.
        let mut digest = Context::new(&SHA256);
        digest.update(self.leaf_key.public_key_raw());
        digest.update(host.as_bytes());
        params.serial_number = Some(super::x509::serial(digest.finish().as_ref()));
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(cert_error)?;
        Ok(CertifiedKey::new(
            vec![cert.der().clone(), self.der.clone()],
            self.leaf_signer.clone(),
        ))
    }
}

/// The system's trusted roots (as the platform lists them), then `ca_pem`. A root that
/// cannot be read is left out: the bundle is for hosts frontdoor passes through.
fn bundle(roots: &[CertificateDer<'_>], ca_pem: &str) -> String {
    let mut out = String::new();
    for cert in roots {
        out.push_str(&pem::encode(&pem::Pem::new("CERTIFICATE", cert.to_vec())));
    }
    out.push_str(ca_pem);
    out
}

/// The system's roots and the CA as trusted certificates of a PKCS#12 store (each bag
/// marked trusted the way Java's keytool marks it, without which Java ignores it). A root
/// the parser refuses is left out, as in the bundle.
fn trust_store(roots: &[CertificateDer<'_>], ca: &CertificateDer<'_>) -> Result<Vec<u8>, KeyError> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry};
    let mut store = KeyStore::new();
    for (i, root) in roots.iter().enumerate() {
        if let Ok(cert) = Certificate::from_der(root) {
            store.add_entry(
                &format!("system-root-{i}"),
                KeyStoreEntry::Certificate(cert),
            );
        }
    }
    let ca = Certificate::from_der(ca).map_err(|e| KeyError::Certificate(e.to_string()))?;
    store.add_entry("frontdoor-local-ca", KeyStoreEntry::Certificate(ca));
    store
        .writer(TRUST_STORE_PASSWORD)
        .write()
        .map_err(|e| KeyError::Certificate(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_kept_across_restarts_and_its_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let first = LocalCa::load_or_create(&state).unwrap();
        let second = LocalCa::load_or_create(&state).unwrap();
        // The same key and name: a leaf of the second chains to the first's certificate.
        assert_eq!(first.pem(), second.pem());
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let bundle = std::fs::read_to_string(dir.path().join(BUNDLE_FILE)).unwrap();
        assert!(bundle.ends_with(first.pem()));
        let leaf = second.leaf("search-abc-uc.a.run.app").unwrap();
        assert_eq!(leaf.cert.len(), 2);
        assert!(Arc::ptr_eq(
            &leaf,
            &second.leaf("search-abc-uc.a.run.app").unwrap()
        ));
        // One key for every leaf, yet each its own serial (from the leaf key and its host),
        // which the DER carries; after a restart (a new leaf key) the same host gets
        // another serial, so one serial never names two certificates.
        let serial = |ca: &LocalCa, host: &str| {
            let mut digest = Context::new(&SHA256);
            digest.update(ca.leaf_key.public_key_raw());
            digest.update(host.as_bytes());
            let mut s = digest.finish().as_ref()[..16].to_vec();
            s[0] = (s[0] & 0x7f) | 0x01;
            s
        };
        let other = second.leaf("other-abc-uc.a.run.app").unwrap();
        for (cert, host) in [
            (&leaf, "search-abc-uc.a.run.app"),
            (&other, "other-abc-uc.a.run.app"),
        ] {
            let wanted = serial(&second, host);
            assert!(
                cert.cert[0].windows(16).any(|w| w == wanted.as_slice()),
                "{host}"
            );
        }
        let before_restart = first.leaf("search-abc-uc.a.run.app").unwrap();
        let wanted = serial(&first, "search-abc-uc.a.run.app");
        assert!(
            before_restart.cert[0]
                .windows(16)
                .any(|w| w == wanted.as_slice())
        );
        assert_ne!(wanted, serial(&second, "search-abc-uc.a.run.app"));
        assert!(second.leaf("169.254.169.254").is_ok());
    }
}
