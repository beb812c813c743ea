//! The cryptography behind every TLS connection keyrot makes: rustls with
//! *ring*. One provider for the HTTP clients (reqwest, built without one of
//! its own), mail (lettre's `ring` feature) and PostgreSQL.
//!
//! *ring* rather than aws-lc-rs, rustls's default: both are maintained and
//! audited, keyrot needs no FIPS module, and *ring* builds in a fraction of
//! the time (aws-lc-sys compiles a C library of its own in every build).

use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use rustls_platform_verifier::Verifier;

/// The provider, installed as the process's default on first use: reqwest
/// takes the default, and panics when none is installed, so everything
/// that builds an HTTP client calls this first (`keyrot_peers::http::client`
/// does).
pub fn provider() -> Arc<CryptoProvider> {
    // Err only when one is installed already (by an earlier call, or by a
    // program that embeds keyrot): that one is used.
    let _ = rustls::crypto::ring::default_provider().install_default();
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

/// The verifiers built so far: over the system's CA roots alone (no extra
/// roots), and over the system's and a `ca_file`'s, keyed by that file's
/// certificates. reqwest reads and parses the system's bundle (every
/// certificate of `/etc/ssl/certs`, a few hundred) for every client it
/// builds, and keyrot builds one per webhook delivery and per hook call: in
/// a debug build 37 ms of CPU each, most of a CLI call's.
static VERIFIERS: Mutex<Vec<(Vec<CertificateDer<'static>>, Arc<Verifier>)>> =
    Mutex::new(Vec::new());

/// How many verifiers are kept: one per distinct `ca_file` content a
/// configuration names, plus the system's; past it the oldest is dropped
/// (a file rewritten again and again between reloads cannot grow the
/// cache).
const KEPT_VERIFIERS: usize = 32;

/// A TLS client configuration that verifies servers against the system's CA
/// roots (the platform verifier, as reqwest uses by default), offering
/// HTTP/1.1 by ALPN: what reqwest would build itself, minus re-reading the
/// roots. The roots are read at the first call and after
/// [`reread_system_roots`].
pub fn system_roots_config() -> Result<rustls::ClientConfig, rustls::Error> {
    config_over(Vec::new())
}

/// Why a `ca_file`'s contents cannot serve as roots.
#[derive(Debug, thiserror::Error)]
pub enum CaFileError {
    #[error("holds no PEM certificate: {0}")]
    Malformed(rustls_pki_types::pem::Error),
    #[error("holds no PEM certificate")]
    Empty,
    #[error("cannot serve as CA roots beside the system's: {0}")]
    Verifier(#[from] rustls::Error),
}

/// [`system_roots_config`] that also trusts the PEM certificates of `pem`
/// (a `ca_file`'s contents), as reqwest's `add_root_certificate` does: the
/// system's roots and these. The verifier is shared by every client whose
/// file holds the same certificates.
pub fn ca_file_config(pem: &[u8]) -> Result<rustls::ClientConfig, CaFileError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(CaFileError::Malformed)?;
    if certs.is_empty() {
        return Err(CaFileError::Empty);
    }
    Ok(config_over(certs)?)
}

fn config_over(
    extra_roots: Vec<CertificateDer<'static>>,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier(extra_roots)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The shared verifier over the system's roots and `extra_roots`, built
/// now if not yet.
fn verifier(extra_roots: Vec<CertificateDer<'static>>) -> Result<Arc<Verifier>, rustls::Error> {
    let mut kept = VERIFIERS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, v)) = kept.iter().find(|(roots, _)| *roots == extra_roots) {
        return Ok(Arc::clone(v));
    }
    // An error is not kept: the next client tries again.
    let v = Arc::new(Verifier::new_with_extra_roots(
        extra_roots.iter().cloned(),
        provider(),
    )?);
    if kept.len() >= KEPT_VERIFIERS {
        kept.remove(0);
    }
    kept.push((extra_roots, Arc::clone(&v)));
    Ok(v)
}

/// Forgets the CA roots read so far: the next HTTPS client reads them
/// again. A configuration reload calls it, so that a CA bundle updated on
/// the host (`update-ca-certificates`) is in force after `systemctl
/// reload`, as everything else the configuration names is.
pub fn reread_system_roots() {
    VERIFIERS.lock().unwrap_or_else(|p| p.into_inner()).clear();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verifiers are one per process: a test that forgets them must not
    /// run while another compares them.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn the_system_roots_are_read_once_until_reread() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let a = verifier(Vec::new()).expect("system roots");
        let b = verifier(Vec::new()).expect("system roots");
        assert!(Arc::ptr_eq(&a, &b));
        let config = system_roots_config().expect("system roots");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        reread_system_roots();
        let c = verifier(Vec::new()).expect("system roots");
        assert!(!Arc::ptr_eq(&a, &c));
    }

    /// A self-signed CA certificate (P-256), never used to sign anything.
    const CA_PEM: &str = "\
-----BEGIN CERTIFICATE-----
MIIBiTCCAS+gAwIBAgIUMry2EVm4zYOvBK8gXKIgIfOJKxIwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOa2V5cm90IHRlc3QgQ0EwIBcNMjYxMjA4MDE0NzQ4WhgPMjEy
NjExMTQwMTQ3NDhaMBkxFzAVBgNVBAMMDmtleXJvdCB0ZXN0IENBMFkwEwYHKoZI
zj0CAQYIKoZIzj0DAQcDQgAEk1ZoWv9HVK2xoWsIM5HaKA9vTxxjAiagVHbKMNwa
iGsN+/CzJ+NXs/qHZfOCGYeCdoc3tjWwMOG9vcuDl9dmM6NTMFEwHQYDVR0OBBYE
FPSD1+TNU8WyI6B4UA9ALsiUADb1MB8GA1UdIwQYMBaAFPSD1+TNU8WyI6B4UA9A
LsiUADb1MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAKih7ePw
NUAVZ80FJPe8B+Vc+drJ8DEHtv2dGqlPOPbkAiBoYIy7jqd5VK+OOWXUXF1NlTW9
YCX/7sdaje8PbFapBw==
-----END CERTIFICATE-----
";

    #[test]
    fn a_ca_file_shares_the_verifier_of_its_certificates() {
        let _serial = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
        let der = CertificateDer::from_pem_slice(CA_PEM.as_bytes()).expect("pem");
        let first = verifier(vec![der.clone()]).expect("roots");
        ca_file_config(CA_PEM.as_bytes()).expect("a config over the file's CA");
        let again = verifier(vec![der]).expect("roots");
        assert!(Arc::ptr_eq(&first, &again));
        let system = verifier(Vec::new()).expect("roots");
        assert!(!Arc::ptr_eq(&first, &system));
        assert!(matches!(
            ca_file_config(b"not a certificate"),
            Err(CaFileError::Empty)
        ));
        let damaged = CA_PEM.replace("MIIB", "MIIC");
        assert!(ca_file_config(damaged.as_bytes()).is_err());
    }
}
