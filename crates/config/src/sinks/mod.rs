//! `[[sink]]` types that talk to a secret store: `openbao`/`vault` (KV v2),
//! `aws-secretsmanager`, `azure-keyvault` and `exec`. Raw fields as
//! written, the validated settings, the secret references each holds (for
//! `keyrot check`) and its summary line. The sinks themselves are in
//! `crates/peers/src/sink/`.
//!
//! One file per sink type; here the checks they share and `keyrot check`.

mod aws;
mod azure;
mod exec;
mod openbao;

use jiff::SignedDuration;
use toml::Spanned;

use super::SecretRef;
use super::ctx::{Ctx, did_you_mean};
use super::raw::DurationText;
use super::secret::SecretUse;
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
pub(crate) fn secret_uses<'a>(name: &str, kind: &'a super::SinkKind) -> Vec<SecretUse<'a>> {
    let owner = format!("sink {name:?}");
    let one = |field: &'static str, secret: &'a SecretRef| SecretUse {
        owner: owner.clone(),
        field,
        secret,
    };
    match kind {
        super::SinkKind::File(_) | super::SinkKind::Exec(_) => Vec::new(),
        super::SinkKind::OpenBao(c) => match &c.auth {
            VaultAuth::Token(t) => vec![one("token", t)],
            VaultAuth::AppRole { secret_id, .. } => vec![one("secret_id", secret_id)],
        },
        super::SinkKind::AwsSecretsManager(c) => aws_secret_uses(&owner, &c.credentials),
        super::SinkKind::AzureKeyVault(c) => vec![one("client_secret", &c.client_secret)],
    }
}

/// A sink's line in the `keyrot check` summary (without indent); `None`
/// for types the summary renders itself.
pub(crate) fn summary_line(name: &str, kind: &super::SinkKind) -> Option<String> {
    let line = match kind {
        super::SinkKind::File(_) => return None,
        super::SinkKind::OpenBao(c) => {
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
        super::SinkKind::AwsSecretsManager(c) => {
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
        super::SinkKind::AzureKeyVault(c) => format!(
            "{name} (azure-keyvault, {}, secret {}, tenant {}, client {}, timeout {})",
            c.vault_url,
            c.secret_name,
            c.tenant_id,
            c.client_id,
            format_duration(c.timeout)
        ),
        super::SinkKind::Exec(c) => format!(
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
