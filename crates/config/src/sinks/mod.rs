//! `[[sink]]` types that talk to a secret store: `openbao`/`vault` (KV v2),
//! `aws-secretsmanager`, `azure-keyvault` and `exec`. Raw fields as
//! written, the validated settings, the secret references each holds (for
//! `keyrot check`) and its summary line. The sinks themselves are in
//! `crates/peers/src/sink/`.
//!
//! One file per sink type; here the checks they share, `keyrot check`, and
//! the validated `[[sink]]` entry of every type (`SinkConfig`, `SinkKind`,
//! the `file` sink's settings, which `typed` checks).

mod aws;
mod azure;
mod exec;
mod openbao;

use jiff::SignedDuration;
use toml::Spanned;

use super::ctx::{Ctx, did_you_mean};
use super::raw::DurationText;
use super::secret::SecretUse;
use super::secret_ref::SecretRef;
use keyrot_core::policy::format_duration;

pub use aws::{
    AwsCredentialsConfig, AwsSecretsManagerSinkConfig, RawAwsCredentials, RawAwsSecretsManagerSink,
    SecretFormat,
};
pub(crate) use aws::{aws_credentials, aws_region, aws_secret_uses, aws_secretsmanager_sink};
pub(crate) use azure::azure_keyvault_sink;
pub use azure::{AZURE_API_VERSION, AzureKeyVaultSinkConfig, RawAzureKeyVaultSink, azure_name_ok};
pub use exec::{ExecSinkConfig, RawExecSink};
pub(crate) use exec::{argv, exec_env, exec_sink};
pub use openbao::{DEFAULT_APPROLE_MOUNT, OpenBaoSinkConfig, RawOpenBaoSink, VaultAuth};
pub(crate) use openbao::{VaultAuthFields, openbao_sink, vault_auth, vault_path};

/// Default `timeout` of every network sink and of `exec`.
pub const DEFAULT_SINK_TIMEOUT: SignedDuration = SignedDuration::from_secs(30);
/// Default field name (KV v2 field, JSON member).
pub const DEFAULT_FIELD: &str = "secret";
/// Placeholders a sink location template may use.
pub const PLACEHOLDERS: [&str; 3] = ["provider", "name", "slot"];

/// `[[sink]]`.
#[derive(Clone, Debug)]
pub struct SinkConfig {
    /// Unique name, used by keys.
    pub name: String,
    /// Type-specific settings.
    pub kind: SinkKind,
    /// Hooks (config names) run once a rotation's secret is in this sink.
    pub hooks: Vec<String>,
}

/// Sink types.
#[derive(Clone, Debug)]
pub enum SinkKind {
    /// `type = "file"`.
    File(FileSinkConfig),
    /// `type = "openbao"` or `"vault"`: KV v2.
    OpenBao(OpenBaoSinkConfig),
    /// `type = "aws-secretsmanager"`.
    AwsSecretsManager(AwsSecretsManagerSinkConfig),
    /// `type = "azure-keyvault"`.
    AzureKeyVault(AzureKeyVaultSinkConfig),
    /// `type = "exec"`.
    Exec(ExecSinkConfig),
}

impl SinkKind {
    /// The template naming where a key's secret goes (file path, KV path,
    /// secret name); None for `exec`, whose program decides.
    pub fn location_template(&self) -> Option<&str> {
        match self {
            SinkKind::File(f) => Some(&f.path),
            SinkKind::OpenBao(c) => Some(&c.path),
            SinkKind::AwsSecretsManager(c) => Some(&c.secret_name),
            SinkKind::AzureKeyVault(c) => Some(&c.secret_name),
            SinkKind::Exec(_) => None,
        }
    }
}

/// `type = "file"` settings.
#[derive(Clone, Debug)]
pub struct FileSinkConfig {
    /// Target path; may contain `{provider}`, `{name}` and `{slot}`
    /// (slot with `/` replaced by `_`) placeholders.
    pub path: String,
    /// What the file holds.
    pub format: FileFormat,
    /// Variable name for `format = "env"` (default `API_KEY`).
    pub env_name: String,
    /// File mode (default 0o600).
    pub mode: u32,
    /// Owner user name, if set (needs privilege).
    pub owner: Option<String>,
    /// Owner group name, if set.
    pub group: Option<String>,
}

/// File sink formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileFormat {
    /// The secret alone, no newline.
    Raw,
    /// `{"secret":..,"key_id":..,"expires_at":..,"rotation_id":..}`.
    Json,
    /// `NAME=value` and a newline.
    Env,
}

/// `timeout`, default [`DEFAULT_SINK_TIMEOUT`].
pub(crate) fn timeout(
    ctx: &mut Ctx<'_>,
    raw: &Option<Spanned<DurationText>>,
) -> Option<SignedDuration> {
    match raw {
        None => Some(DEFAULT_SINK_TIMEOUT),
        Some(t) => ctx.positive(t, "timeout"),
    }
}

/// Checks `{...}` placeholders in a location template.
pub(crate) fn check_placeholders(
    ctx: &mut Ctx<'_>,
    raw: &Spanned<String>,
    field: &str,
) -> Option<()> {
    let mut rest = raw.get_ref().as_str();
    while let Some(open) = rest.find(['{', '}']) {
        let after = &rest[open + 1..];
        let close = after.find('}').filter(|_| rest[open..].starts_with('{'));
        let Some(close) = close else {
            ctx.error(raw.span(), format!("unbalanced `{{` or `}}` in `{field}`"));
            return None;
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            let hint = did_you_mean(name, PLACEHOLDERS);
            ctx.error(
                raw.span(),
                format!(
                    "unknown placeholder {{{name}}}{hint} in `{field}`: use {{provider}}, {{name}} or {{slot}}"
                ),
            );
            return None;
        }
        rest = &after[close + 1..];
    }
    Some(())
}

/// `template` without its placeholders (for character checks).
fn strip_placeholders(template: &str) -> String {
    let mut out = template.to_string();
    for p in PLACEHOLDERS {
        out = out.replace(&format!("{{{p}}}"), "");
    }
    out
}

// ---------------------------------------------------------------------
// `keyrot check`: secret references and summary lines.

/// The secret references of one sink.
pub(crate) fn secret_uses<'a>(name: &str, kind: &'a SinkKind) -> Vec<SecretUse<'a>> {
    let owner = format!("sink {name:?}");
    let one = |field: &'static str, secret: &'a SecretRef| SecretUse {
        owner: owner.clone(),
        field,
        secret,
    };
    match kind {
        SinkKind::File(_) | SinkKind::Exec(_) => Vec::new(),
        SinkKind::OpenBao(c) => match &c.auth {
            VaultAuth::Token(t) => vec![one("token", t)],
            VaultAuth::AppRole { secret_id, .. } => vec![one("secret_id", secret_id)],
        },
        SinkKind::AwsSecretsManager(c) => aws_secret_uses(&owner, &c.credentials),
        SinkKind::AzureKeyVault(c) => vec![one("client_secret", &c.client_secret)],
    }
}

/// A sink's line in the `keyrot check` summary (without indent); `None`
/// for types the summary renders itself.
pub(crate) fn summary_line(name: &str, kind: &SinkKind) -> Option<String> {
    let line = match kind {
        SinkKind::File(_) => return None,
        SinkKind::OpenBao(c) => {
            let auth = match &c.auth {
                VaultAuth::Token(_) => "token auth".to_string(),
                VaultAuth::AppRole { mount, .. } => format!("approle auth at {mount}"),
            };
            let ns = c
                .namespace
                .as_deref()
                .map(|n| format!(", namespace {n}"))
                .unwrap_or_default();
            format!(
                "{name} ({}, {}, {}/data/{} field {}{ns}, {auth}, timeout {})",
                c.flavor,
                c.address,
                c.mount,
                c.path,
                c.field,
                format_duration(c.timeout)
            )
        }
        SinkKind::AwsSecretsManager(c) => {
            let creds = match c.credentials {
                AwsCredentialsConfig::Environment => "credentials from the environment",
                AwsCredentialsConfig::Refs { .. } => "credentials from references",
            };
            format!(
                "{name} (aws-secretsmanager, {}{}, {}{}, {}, {creds}, timeout {})",
                c.region,
                c.endpoint
                    .as_deref()
                    .map(|e| format!(" via {e}"))
                    .unwrap_or_default(),
                c.secret_name,
                if c.create { ", created if absent" } else { "" },
                match &c.format {
                    SecretFormat::Raw => "raw".to_string(),
                    SecretFormat::Json { field } => format!("json field {field}"),
                },
                format_duration(c.timeout)
            )
        }
        SinkKind::AzureKeyVault(c) => format!(
            "{name} (azure-keyvault, {}, secret {}, tenant {}, client {}, timeout {})",
            c.vault_url,
            c.secret_name,
            c.tenant_id,
            c.client_id,
            format_duration(c.timeout)
        ),
        SinkKind::Exec(c) => format!(
            "{name} (exec, {}{}, timeout {})",
            c.command.join(" "),
            if c.read_command.is_some() {
                ", with read-back"
            } else {
                ", no read-back"
            },
            format_duration(c.timeout)
        ),
    };
    Some(line)
}
