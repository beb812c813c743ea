//! The cryptography behind every TLS connection keyrot makes: rustls with
//! *ring*. One provider for the HTTP clients (reqwest, built without one of
//! its own), mail (lettre's `ring` feature) and PostgreSQL.
//!
//! *ring* rather than aws-lc-rs, rustls's default: both are maintained and
//! audited, keyrot needs no FIPS module, and *ring* builds in a fraction of
//! the time (aws-lc-sys compiles a C library of its own in every build).

use std::sync::{Arc, Mutex};

use rustls::crypto::CryptoProvider;
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

/// The system's CA roots, read once: the verifier every HTTPS client
/// without a `ca_file` of its own shares. reqwest reads and parses the
/// system's bundle (every certificate of `/etc/ssl/certs`, a few hundred)
/// for every client it builds, and keyrot builds one per webhook delivery
/// and per hook call: in a debug build 37 ms of CPU each, most of a CLI
/// call's.
static SYSTEM_ROOTS: Mutex<Option<Arc<Verifier>>> = Mutex::new(None);

/// A TLS client configuration that verifies servers against the system's CA
/// roots (the platform verifier, as reqwest uses by default), offering
/// HTTP/1.1 by ALPN: what reqwest would build itself, minus re-reading the
/// roots. The roots are read at the first call and after
/// [`reread_system_roots`].
pub fn system_roots_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let mut config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(system_verifier()?)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// The shared verifier over the system's roots, read now if not yet.
fn system_verifier() -> Result<Arc<Verifier>, rustls::Error> {
    let mut cached = SYSTEM_ROOTS.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(v) = &*cached {
        return Ok(Arc::clone(v));
    }
    // An error is not kept: the next client tries again.
    let v = Arc::new(Verifier::new(provider())?);
    *cached = Some(Arc::clone(&v));
    Ok(v)
}

/// Forgets the system's CA roots read so far: the next HTTPS client reads
/// them again. A configuration reload calls it, so that a CA bundle updated
/// on the host (`update-ca-certificates`) is in force after `systemctl
/// reload`, as everything else the configuration names is.
pub fn reread_system_roots() {
    *SYSTEM_ROOTS.lock().unwrap_or_else(|p| p.into_inner()) = None;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_roots_are_read_once_until_reread() {
        let a = system_verifier().expect("system roots");
        let b = system_verifier().expect("system roots");
        assert!(Arc::ptr_eq(&a, &b));
        let config = system_roots_config().expect("system roots");
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        reread_system_roots();
        let c = system_verifier().expect("system roots");
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
