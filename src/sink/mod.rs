//! Sinks: the places a new secret is written to so consumers can read it.
//! One trait, one file per sink. `put` is idempotent (writing the same
//! rotation twice is harmless); `read_back` returns the SHA-256 of what the
//! sink holds so the Verifying step compares hashes, never values.

pub mod aws_sm;
pub mod azure_kv;
pub mod exec;
pub mod file;
pub mod openbao;
pub mod probe;

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
    /// A `keyrot sink test` probe: write to the `keyrot-probe` location
    /// beside the configured one (see [`SinkTarget::location`]), never to a
    /// key's own.
    pub probe: bool,
}

/// Name of the location a probe writes to.
pub const PROBE_NAME: &str = "keyrot-probe";

impl SinkTarget {
    /// `template` with `{provider}`, `{name}` and `{slot}` (slot with `/`
    /// replaced by `_`) filled in. For a probe, the last `/`-separated
    /// segment of the result is replaced by `keyrot-probe`, so the probe
    /// lands beside the real secrets (same directory, mount, prefix) and
    /// never on one of them.
    pub fn location(&self, template: &str) -> String {
        let filled = template
            .replace("{provider}", &self.provider)
            .replace("{name}", &self.key_name)
            .replace("{slot}", &self.slot.replace('/', "_"));
        if !self.probe {
            return filled;
        }
        match filled.rfind('/') {
            Some(i) => format!("{}{PROBE_NAME}", &filled[..=i]),
            None => PROBE_NAME.to_string(),
        }
    }
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
    /// it holds nothing. Only called when [`Sink::can_read_back`].
    async fn read_back(&self, target: &SinkTarget) -> Result<Option<String>, CallError>;
    /// False for a sink that cannot read its secret back (an `exec` sink
    /// without `read_command`): Verifying then relies on `put`'s success.
    fn can_read_back(&self) -> bool {
        true
    }
    /// Called once every sink has been read back and the provider has
    /// accepted the new key, before the rotation moves on: a sink that
    /// stages a new version (AWS Secrets Manager's AWSPENDING) makes it
    /// current here. Idempotent; the default does nothing.
    async fn finish(&self, target: &SinkTarget) -> Result<(), CallError> {
        let _ = target;
        Ok(())
    }
}

/// Builds a sink from its config.
/// Secret references are resolved now (credentials from
/// `$CREDENTIALS_DIRECTORY`), so a missing one fails at start or reload with
/// the sink and field named.
pub fn build(cfg: &SinkConfig) -> Result<Arc<dyn Sink>, CallError> {
    let creds = crate::config::credentials_dir_from_env();
    match &cfg.kind {
        SinkKind::File(f) => Ok(Arc::new(file::FileSink::new(&cfg.name, f.clone())?)),
        SinkKind::OpenBao(c) => Ok(Arc::new(openbao::OpenBaoSink::new(
            &cfg.name,
            c,
            creds.as_deref(),
        )?)),
        SinkKind::AwsSecretsManager(c) => Ok(Arc::new(aws_sm::AwsSecretsManagerSink::new(
            &cfg.name,
            c,
            creds.as_deref(),
        )?)),
        SinkKind::AzureKeyVault(c) => Ok(Arc::new(azure_kv::AzureKeyVaultSink::new(
            &cfg.name,
            c,
            creds.as_deref(),
        )?)),
        SinkKind::Exec(c) => Ok(Arc::new(exec::ExecSink::new(&cfg.name, c)?)),
    }
}
