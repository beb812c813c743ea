//! Sinks: the places a new secret is written to so consumers can read it.
//! One trait, one file per sink. `put` is idempotent (writing the same
//! rotation twice is harmless); `read_back` returns the SHA-256 of what the
//! sink holds so the Verifying step compares hashes, never values.

pub mod file;

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::SecretString;

use crate::config::{SinkConfig, SinkKind};
pub use crate::error::CallError;

/// Where and what a rotation writes: everything but the secret.
#[derive(Clone, Debug)]
pub struct SinkTarget {
    /// Slot id (`provider/name`).
    pub slot: String,
    /// Provider name.
    pub provider: String,
    /// Key name.
    pub key_name: String,
    /// The new key's id.
    pub key_id: String,
    /// The rotation writing it.
    pub rotation_id: String,
    /// The new key's expiry.
    pub expires_at: Option<Timestamp>,
}

/// A place a secret is written to.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Config name.
    fn name(&self) -> &str;
    /// Sink type (`file`, ...).
    fn kind(&self) -> &'static str;
    /// Writes the secret with its metadata; returns the sink's version
    /// marker, if it has one.
    async fn put(
        &self,
        target: &SinkTarget,
        secret: &SecretString,
    ) -> Result<Option<String>, CallError>;
    /// SHA-256 (hex) of the secret the sink holds for `target`, None when
    /// it holds nothing.
    async fn read_back(&self, target: &SinkTarget) -> Result<Option<String>, CallError>;
}

/// Builds a sink from its config.
pub fn build(cfg: &SinkConfig) -> Result<Arc<dyn Sink>, CallError> {
    match &cfg.kind {
        SinkKind::File(f) => Ok(Arc::new(file::FileSink::new(&cfg.name, f.clone())?)),
    }
}
