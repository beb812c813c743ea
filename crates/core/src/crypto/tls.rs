//! The cryptography behind every TLS connection keyrot makes: rustls with
//! *ring*. One provider for the HTTP clients (reqwest, built without one of
//! its own), mail (lettre's `ring` feature) and PostgreSQL.
//!
//! *ring* rather than aws-lc-rs, rustls's default: both are maintained and
//! audited, keyrot needs no FIPS module, and *ring* builds in a fraction of
//! the time (aws-lc-sys compiles a C library of its own in every build).

use std::sync::Arc;

use rustls::crypto::CryptoProvider;

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
