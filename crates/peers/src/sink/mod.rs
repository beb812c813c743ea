//! Sinks: the places a new secret is written to so consumers can read it.
//! One trait, one file per sink. `put` is idempotent (writing the same
//! rotation twice is harmless); `read_back` returns the SHA-256 of what the
//! sink holds so the Verifying step compares hashes, never values.

pub mod aws_sm;
pub mod azure_kv;
pub mod confined;
pub mod exec;
pub mod file;
pub mod openbao;
pub mod probe;

use std::sync::Arc;

use async_trait::async_trait;
use jiff::Timestamp;
use secrecy::SecretString;

use keyrot_config::{SinkConfig, SinkKind};
pub use keyrot_core::error::CallError;

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
    ///
    /// A value that could move the location elsewhere (see
    /// [`unsafe_segment`]) is refused, whatever the sink: names come from
    /// providers, and a name such as `ci/../../etc/x` must never pick the
    /// place its secret is written to.
    pub fn location(&self, template: &str) -> Result<String, CallError> {
        let slot = self.slot.replace('/', "_");
        let fills = [
            ("{provider}", "provider", self.provider.as_str()),
            ("{name}", "key name", self.key_name.as_str()),
            ("{slot}", "slot", slot.as_str()),
        ];
        for (placeholder, what, value) in fills {
            if let Some(why) = template
                .contains(placeholder)
                .then(|| unsafe_segment(value))
                .flatten()
            {
                return Err(CallError::permanent(format!(
                    "the {what} {value:?} cannot fill {placeholder} in {template:?}: {why}"
                )));
            }
        }
        let filled = fills
            .iter()
            .fold(template.to_string(), |t, (p, _, v)| t.replace(p, v));
        if !self.probe {
            return Ok(filled);
        }
        Ok(match filled.rfind('/') {
            Some(i) => format!("{}{PROBE_NAME}", &filled[..=i]),
            None => PROBE_NAME.to_string(),
        })
    }
}

/// Why `value` may not fill a placeholder of a location, or None when it
/// may: one non-empty path segment that does not start with `.` (so never
/// `.` or `..`, nor one of keyrot's temporary files), with no `/` or `\`,
/// no `%`, `?` or `#` (which change what a URL points at) and no control
/// character.
pub fn unsafe_segment(value: &str) -> Option<&'static str> {
    if value.is_empty() {
        Some("it is empty")
    } else if value.starts_with('.') {
        Some("it starts with `.`")
    } else if value.contains(['/', '\\']) {
        Some("it holds a `/` or `\\`")
    } else if value.contains(['%', '?', '#']) {
        Some("it holds a `%`, `?` or `#`")
    } else if value.chars().any(char::is_control) {
        Some("it holds a control character")
    } else {
        None
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
    let creds = keyrot_config::credentials_dir_from_env();
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
